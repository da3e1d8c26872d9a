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

// The server: nothing but the unavoidable calls, level-triggered epoll.
[[noreturn]] void serve(const std::vector<int>& http, const std::vector<int>& ws,
                        const Options& o) {
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  for (const int fd : http) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
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
      pick ^= pick << 13;
      pick ^= pick >> 7;
      pick ^= pick << 17;
      ::send(ws[pick % ws.size()], frame.data(), frame.size(), MSG_NOSIGNAL);
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
    else {
      std::fprintf(stderr,
                   "usage: imgate-floor [--rate 3000] [--duration 5] [--http-connections 2]\n"
                   "  [--request-bytes 200] [--answer-bytes 150] [--frame-bytes 100]\n"
                   "  [--ws-connections 1]\n");
      return 2;
    }
  }
  if (o.rate <= 0 || o.duration <= 0 || o.connections < 1 || o.connections > 16 ||
      o.request_bytes == 0 || o.answer_bytes == 0 || o.frame_bytes == 0 ||
      o.ws_connections < 1 || o.ws_connections > 9000) {
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
  const pid_t server = ::fork();
  if (server < 0) die("fork");
  if (server == 0) serve(accepted, ws_servers, o);
  for (const int fd : accepted) ::close(fd);
  for (const int fd : ws_servers) ::close(fd);

  const auto messages = static_cast<uint64_t>(o.rate * o.duration);
  // The WebSocket clients: one thread reads every frame (epoll over them all).
  const int reader_ep = ::epoll_create1(EPOLL_CLOEXEC);
  for (const int fd : ws_clients) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    ::epoll_ctl(reader_ep, EPOLL_CTL_ADD, fd, &ev);
  }
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
  for (const int fd : backend) ::close(fd);  // the server exits on EOF
  ::kill(server, SIGTERM);
  ::waitpid(server, nullptr, 0);

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
  return answered == messages ? 0 : 1;
}
