// imgate-floor: the kernel's share of one embedded /user/sendMessage, measured
// without a gateway (bench/README.md, "Embedded /user/sendMessage").
//
// A server process does only the system calls one message cannot do without:
// per request one epoll_wait, one recv() of the request from a keep-alive TCP
// connection, one send() of the answer on it and one send() of a WebSocket
// frame on another established TCP connection. The parent process is the
// backend (requests at --rate over --http-connections, one in flight on each,
// as imgate-bench's Pusher sends them) and the WebSocket client (a thread
// reading the frames). The server's CPU (utime + stime from /proc/PID/stat,
// and the scheduler's ns from /proc/PID/schedstat) over the run, divided by
// the messages, is the floor. With --ws-connections N (the gateway's 2,000
// users) each frame goes to a random one of N connections, whose kernel state
// is then as cold as a gateway's target's.
//
// With --redis-port P (a redis-server the caller started; --redis-pid its
// process for its CPU) it measures the floor of a cross-node unicast instead:
// node A reads the request, sends one PUBLISH to Redis, reads its reply and
// sends the answer; node B, subscribed to the channel, reads each published
// message and sends the frame. That is the least two nodes and Redis can do
// for one message that enters on one node and leaves on the other (no script,
// no routing lookup, no msgID). CPU per message of A, B (together: the nodes)
// and Redis, each from /proc.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Options {
  double rate = 3000;
  double duration = 5;
  int connections = 2;
  std::size_t request_bytes = 200;
  std::size_t answer_bytes = 150;
  std::size_t frame_bytes = 100;
  int ws_connections = 1;  // frames go to a random one of these
  int redis_port = 0;      // cross-node mode when set
  int redis_pid = 0;       // its CPU is reported when set
};

[[noreturn]] void die(const char* what) {
  std::perror(what);
  std::exit(2);
}

int listen_loopback(uint16_t& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) die("bind");
  if (::listen(fd, 64) != 0) die("listen");
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  port = ntohs(addr.sin_port);
  return fd;
}

int connect_loopback(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) die("connect");
  const int one = 1;  // as the gateway and the bench set it
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// A level-triggered epoll set reading `fds`.
int epoll_over(const std::vector<int>& fds) {
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  for (const int fd : fds) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
  return ep;
}

uint64_t next_pick(uint64_t& pick) {  // xorshift: the target of each frame
  pick ^= pick << 13;
  pick ^= pick >> 7;
  pick ^= pick << 17;
  return pick;
}

void send_all(int fd, const std::string& bytes) {
  if (::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(bytes.size())) {
    die("send");
  }
}

// The RESP command PUBLISH imgate-floor <payload>.
std::string publish_command(const std::string& payload) {
  return "*3\r\n$7\r\nPUBLISH\r\n$12\r\nimgate-floor\r\n$" + std::to_string(payload.size()) +
         "\r\n" + payload + "\r\n";
}

// Node A of the cross-node floor: a request becomes one PUBLISH; Redis's
// reply (":1\r\n", one per command, in order) releases the answer.
[[noreturn]] void serve_front(const std::vector<int>& http, int redis, const Options& o) {
  std::vector<int> fds = http;
  fds.push_back(redis);
  const int ep = epoll_over(fds);
  const std::string answer(o.answer_bytes, 'a');
  const std::string command = publish_command(std::string(o.frame_bytes, 'f'));
  std::vector<int> waiting;  // the requests' connections, in the order of their PUBLISH
  std::size_t head = 0;
  char buffer[4096];
  while (true) {
    epoll_event events[16];
    const int n = ::epoll_wait(ep, events, 16, -1);
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      const ssize_t r = ::recv(fd, buffer, sizeof buffer, 0);
      if (r <= 0) std::_Exit(0);  // the backend is done (or Redis went away)
      if (fd != redis) {
        send_all(redis, command);
        waiting.push_back(fd);
        continue;
      }
      for (ssize_t k = 0; k < r; ++k) {  // one '\n' ends each reply
        if (buffer[k] != '\n' || head == waiting.size()) continue;
        ::send(waiting[head++], answer.data(), answer.size(), MSG_NOSIGNAL);
      }
      if (head == waiting.size()) waiting.clear(), head = 0;
    }
  }
}

// Node B: every published message becomes one frame to a random connection.
[[noreturn]] void serve_subscriber(int redis, const std::vector<int>& ws, const Options& o) {
  const int ep = epoll_over({redis});
  const std::string frame(o.frame_bytes, 'f');
  const std::size_t message_bytes =  // *3 $7 message $12 imgate-floor $N payload
      std::string("*3\r\n$7\r\nmessage\r\n$12\r\nimgate-floor\r\n$" +
                  std::to_string(o.frame_bytes) + "\r\n\r\n")
          .size() +
      o.frame_bytes;
  std::size_t partial = 0;
  char buffer[65536];
  uint64_t pick = 88172645463325252ull;
  while (true) {
    epoll_event events[4];
    if (::epoll_wait(ep, events, 4, -1) <= 0) continue;
    const ssize_t r = ::recv(redis, buffer, sizeof buffer, 0);
    if (r <= 0) std::_Exit(0);
    partial += static_cast<std::size_t>(r);
    for (; partial >= message_bytes; partial -= message_bytes) {
      ::send(ws[next_pick(pick) % ws.size()], frame.data(), frame.size(), MSG_NOSIGNAL);
    }
  }
}

// The server: nothing but the unavoidable calls, level-triggered epoll.
[[noreturn]] void serve(const std::vector<int>& http, const std::vector<int>& ws,
                        const Options& o) {
  const int ep = epoll_over(http);
  const std::string answer(o.answer_bytes, 'a');
  const std::string frame(o.frame_bytes, 'f');
  char buffer[4096];
  uint64_t pick = 88172645463325252ull;  // xorshift: the target of each frame
  while (true) {
    epoll_event events[16];
    const int n = ::epoll_wait(ep, events, 16, -1);
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (::recv(fd, buffer, sizeof buffer, 0) <= 0) std::_Exit(0);  // the backend is done
      ::send(fd, answer.data(), answer.size(), MSG_NOSIGNAL);
      ::send(ws[next_pick(pick) % ws.size()], frame.data(), frame.size(), MSG_NOSIGNAL);
    }
  }
}

struct Cpu {
  double ticks = 0;   // utime + stime, clock ticks
  double sched_ns = 0;  // time on CPU, ns
};

Cpu cpu_of(pid_t pid) {
  Cpu cpu;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  // Fields after the command name (in parentheses): state is field 3; utime 14, stime 15.
  const auto rest = line.substr(line.rfind(')') + 2);
  std::vector<std::string> fields;
  std::size_t at = 0;
  while (at < rest.size()) {
    const auto end = rest.find(' ', at);
    fields.push_back(rest.substr(at, end - at));
    if (end == std::string::npos) break;
    at = end + 1;
  }
  cpu.ticks = std::stod(fields[11]) + std::stod(fields[12]);
  std::ifstream sched("/proc/" + std::to_string(pid) + "/schedstat");
  sched >> cpu.sched_ns;
  return cpu;
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const double v = std::atof(argv[i + 1]);
    if (flag == "--rate") o.rate = v;
    else if (flag == "--duration") o.duration = v;
    else if (flag == "--http-connections") o.connections = static_cast<int>(v);
    else if (flag == "--request-bytes") o.request_bytes = static_cast<std::size_t>(v);
    else if (flag == "--answer-bytes") o.answer_bytes = static_cast<std::size_t>(v);
    else if (flag == "--frame-bytes") o.frame_bytes = static_cast<std::size_t>(v);
    else if (flag == "--ws-connections") o.ws_connections = static_cast<int>(v);
    else if (flag == "--redis-port") o.redis_port = static_cast<int>(v);
    else if (flag == "--redis-pid") o.redis_pid = static_cast<int>(v);
    else {
      std::fprintf(stderr,
                   "usage: imgate-floor [--rate 3000] [--duration 5] [--http-connections 2]\n"
                   "  [--request-bytes 200] [--answer-bytes 150] [--frame-bytes 100]\n"
                   "  [--ws-connections 1] [--redis-port P [--redis-pid PID]]\n");
      return 2;
    }
  }
  if (o.rate <= 0 || o.duration <= 0 || o.connections < 1 || o.connections > 16 ||
      o.request_bytes == 0 || o.answer_bytes == 0 || o.frame_bytes == 0 ||
      o.ws_connections < 1 || o.ws_connections > 9000 || o.redis_port < 0 ||
      o.redis_port > 65535 || o.redis_pid < 0) {
    std::fprintf(stderr, "imgate-floor: bad option value\n");
    return 2;
  }
  // Every socket is set up before the fork: the server accepts from the backlog.
  uint16_t http_port = 0, ws_port = 0;
  const int http_listener = listen_loopback(http_port);
  const int ws_listener = listen_loopback(ws_port);
  std::vector<int> ws_clients, ws_servers;
  for (int i = 0; i < o.ws_connections; ++i) {
    ws_clients.push_back(connect_loopback(ws_port));
    ws_servers.push_back(::accept4(ws_listener, nullptr, nullptr, SOCK_CLOEXEC));
    if (ws_servers.back() < 0) die("accept");
  }
  std::vector<int> backend;
  for (int i = 0; i < o.connections; ++i) backend.push_back(connect_loopback(http_port));
  std::vector<int> accepted;
  for (int i = 0; i < o.connections; ++i) {
    accepted.push_back(::accept4(http_listener, nullptr, nullptr, SOCK_CLOEXEC));
    if (accepted.back() < 0) die("accept");
  }
  // Cross-node: node B subscribes (its confirmation read here), node A publishes.
  pid_t subscriber = 0;
  int front_redis = -1;
  if (o.redis_port != 0) {
    const int sub = connect_loopback(static_cast<uint16_t>(o.redis_port));
    send_all(sub, "*2\r\n$9\r\nSUBSCRIBE\r\n$12\r\nimgate-floor\r\n");
    char confirm[256];
    // *3 $9 subscribe $12 imgate-floor :1: six '\n'-ended lines
    for (int lines = 0; lines < 6;) {
      const ssize_t r = ::recv(sub, confirm, sizeof confirm, 0);
      if (r <= 0) die("subscribe");
      for (ssize_t k = 0; k < r; ++k) lines += confirm[k] == '\n';
    }
    front_redis = connect_loopback(static_cast<uint16_t>(o.redis_port));
    subscriber = ::fork();
    if (subscriber < 0) die("fork");
    if (subscriber == 0) serve_subscriber(sub, ws_servers, o);
    ::close(sub);
  }
  const pid_t server = ::fork();
  if (server < 0) die("fork");
  if (server == 0) {
    if (o.redis_port != 0) serve_front(accepted, front_redis, o);
    serve(accepted, ws_servers, o);
  }
  for (const int fd : accepted) ::close(fd);
  for (const int fd : ws_servers) ::close(fd);
  if (front_redis >= 0) ::close(front_redis);

  const auto messages = static_cast<uint64_t>(o.rate * o.duration);
  // The WebSocket clients: one thread reads every frame (epoll over them all).
  const int reader_ep = epoll_over(ws_clients);
  std::atomic<bool> stop_reading{false};
  std::thread reader([reader_ep, &stop_reading, want = messages * o.frame_bytes] {
    char buffer[65536];
    uint64_t got = 0;
    while (got < want && !stop_reading.load()) {
      epoll_event events[64];
      const int n = ::epoll_wait(reader_ep, events, 64, 100);
      for (int i = 0; i < n; ++i) {
        const ssize_t r = ::recv(events[i].data.fd, buffer, sizeof buffer, 0);
        if (r > 0) got += static_cast<uint64_t>(r);
      }
    }
  });

  // The backend: one request in flight per connection, sent when due.
  const std::string request(o.request_bytes, 'r');
  std::vector<std::size_t> awaiting(backend.size(), 0);  // answer bytes still to read
  std::vector<pollfd> polls(backend.size());
  for (std::size_t i = 0; i < backend.size(); ++i) polls[i] = {backend[i], POLLIN, 0};
  uint64_t sent = 0, answered = 0, backlog_max = 0;
  const Cpu before = cpu_of(server);
  const Cpu sub_before = subscriber ? cpu_of(subscriber) : Cpu{};
  const Cpu redis_before = o.redis_pid ? cpu_of(o.redis_pid) : Cpu{};
  const int64_t start = now_ns();
  const int64_t deadline = start + static_cast<int64_t>((o.duration + 30) * 1e9);
  char buffer[4096];
  while (answered < messages && now_ns() < deadline) {
    const int64_t now = now_ns();
    const auto due = std::min<uint64_t>(
        messages, static_cast<uint64_t>(static_cast<double>(now - start) * o.rate / 1e9) + 1);
    for (std::size_t i = 0; i < backend.size() && sent < due; ++i) {
      if (awaiting[i] != 0) continue;
      if (::send(backend[i], request.data(), request.size(), MSG_NOSIGNAL) !=
          static_cast<ssize_t>(request.size())) {
        die("send");
      }
      awaiting[i] = o.answer_bytes;
      ++sent;
    }
    if (due > sent) backlog_max = std::max(backlog_max, due - sent);
    // Wait for an answer, or (a connection free) until the next request is due.
    bool free = false;
    for (const std::size_t left : awaiting) free = free || left == 0;
    int64_t wait = 100'000'000;
    if (free && sent < messages) {
      const int64_t next_due =
          start + static_cast<int64_t>(static_cast<double>(sent) * 1e9 / o.rate);
      wait = std::max<int64_t>(0, next_due - now_ns());
    }
    const timespec timeout{static_cast<time_t>(wait / 1'000'000'000),
                           static_cast<long>(wait % 1'000'000'000)};
    if (::ppoll(polls.data(), polls.size(), &timeout, nullptr) <= 0) continue;
    for (std::size_t i = 0; i < backend.size(); ++i) {
      if (!(polls[i].revents & POLLIN)) continue;
      const ssize_t n = ::recv(backend[i], buffer, std::min(sizeof buffer, awaiting[i]), 0);
      if (n <= 0) die("recv");
      awaiting[i] -= static_cast<std::size_t>(n);
      if (awaiting[i] == 0) ++answered;
    }
  }
  if (answered < messages) stop_reading = true;  // deadline
  reader.join();
  const int64_t elapsed = now_ns() - start;
  const Cpu after = cpu_of(server);
  const Cpu sub_after = subscriber ? cpu_of(subscriber) : Cpu{};
  const Cpu redis_after = o.redis_pid ? cpu_of(o.redis_pid) : Cpu{};
  for (const int fd : backend) ::close(fd);  // the server exits on EOF
  ::kill(server, SIGTERM);
  ::waitpid(server, nullptr, 0);
  if (subscriber) {
    ::kill(subscriber, SIGTERM);
    ::waitpid(subscriber, nullptr, 0);
  }

  const double ticks_us = 1e6 / static_cast<double>(::sysconf(_SC_CLK_TCK));
  const double per_stat = (after.ticks - before.ticks) * ticks_us / static_cast<double>(answered);
  const double per_sched = (after.sched_ns - before.sched_ns) / 1e3 / static_cast<double>(answered);
  std::printf("imgate-floor: %" PRIu64 " messages answered in %.2f s (%.0f/s, max backlog %" PRIu64
              "), %zu-byte request, %zu-byte answer, %zu-byte frame to 1 of %d connections\n"
              "server CPU per message: %.1f us (/proc/PID/stat, %.0f ticks), %.1f us "
              "(/proc/PID/schedstat)\n",
              answered, static_cast<double>(elapsed) / 1e9,
              static_cast<double>(answered) * 1e9 / static_cast<double>(elapsed), backlog_max,
              o.request_bytes, o.answer_bytes, o.frame_bytes, o.ws_connections, per_stat,
              after.ticks - before.ticks, per_sched);
  if (o.redis_port != 0) {
    auto per = [&](const Cpu& a, const Cpu& b) {
      return (b.sched_ns - a.sched_ns) / 1e3 / static_cast<double>(answered);
    };
    const double front = per(before, after), back = per(sub_before, sub_after);
    std::printf("cross-node floor per message (/proc/PID/schedstat): node A %.1f us + node B %.1f "
                "us = nodes %.1f us",
                front, back, front + back);
    if (o.redis_pid) std::printf("; Redis %.1f us", per(redis_before, redis_after));
    std::printf("\n");
  }
  return answered == messages ? 0 : 1;
}
