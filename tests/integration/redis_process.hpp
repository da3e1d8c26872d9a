// RedisServer: a real `redis-server` (Debian package) as a child process on a
// free loopback port, without persistence, in its own temporary directory;
// plus a tiny blocking RESP client to inspect it (redis_command and
// redis_pipeline, also used by RedisCluster). Every wait has a deadline.
// Test thread only. Header-only, POSIX.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace imgate::test {

// A RESP reply: simple string (+), error (-), integer (:), bulk string ($,
// nil when `nil`), array (*).
struct RespValue {
  char type = 0;
  bool nil = false;
  int64_t integer = 0;
  std::string str;
  std::vector<RespValue> elements;

  std::string dump() const {
    switch (type) {
      case '+': return "+" + str;
      case '-': return "-" + str;
      case ':': return std::to_string(integer);
      case '$': return nil ? "(nil)" : "\"" + str + "\"";
      case '*': {
        if (nil) return "(nil array)";
        std::string out = "[";
        for (std::size_t i = 0; i < elements.size(); ++i) {
          out += (i ? ", " : "") + elements[i].dump();
        }
        return out + "]";
      }
      default: return "?";
    }
  }
};

namespace detail {

using Clock = std::chrono::steady_clock;

// Waits until `fd` is ready for `events`; false at the deadline.
inline bool wait(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    using std::chrono::milliseconds;
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left));
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
}

// Incremental RESP parser over a blocking-with-deadline socket.
struct RespReader {
  int fd;
  Clock::time_point deadline;
  std::string buf;
  std::size_t pos;

  void fill() {
    char chunk[16384];
    for (;;) {
      const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n > 0) {
        buf.append(chunk, static_cast<std::size_t>(n));
        return;
      }
      if (n == 0) throw std::runtime_error("redis closed the connection");
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        throw std::runtime_error(std::string("recv from redis: ") + std::strerror(errno));
      }
      if (!wait(fd, POLLIN, deadline)) throw std::runtime_error("redis reply: timed out");
    }
  }
  std::string line() {
    std::size_t end;
    while ((end = buf.find("\r\n", pos)) == std::string::npos) fill();
    std::string out = buf.substr(pos, end - pos);
    pos = end + 2;
    return out;
  }
  RespValue value() {
    const std::string head = line();
    if (head.empty()) throw std::runtime_error("empty RESP line");
    RespValue v;
    v.type = head[0];
    const std::string body = head.substr(1);
    switch (v.type) {
      case '+':
      case '-': v.str = body; break;
      case ':': v.integer = std::stoll(body); break;
      case '$': {
        const long long n = std::stoll(body);
        if (n < 0) {
          v.nil = true;
          break;
        }
        while (buf.size() < pos + static_cast<std::size_t>(n) + 2) fill();
        v.str = buf.substr(pos, static_cast<std::size_t>(n));
        pos += static_cast<std::size_t>(n) + 2;
        break;
      }
      case '*': {
        const long long n = std::stoll(body);
        if (n < 0) {
          v.nil = true;
          break;
        }
        for (long long i = 0; i < n; ++i) v.elements.push_back(value());
        break;
      }
      default: throw std::runtime_error("unexpected RESP type: " + head);
    }
    return v;
  }
};

}  // namespace detail

// Commands to the redis-server at 127.0.0.1:`port`, sent together on one
// fresh connection (so that, e.g., WAIT counts the replicas that have the
// SET before it); their replies in order. Throws on connection errors and
// timeouts; an error reply is a RespValue of type '-'.
inline std::vector<RespValue> redis_pipeline(
    uint16_t port, const std::vector<std::vector<std::string>>& commands,
    std::chrono::milliseconds timeout = std::chrono::seconds(3)) {
  const auto deadline = detail::Clock::now() + timeout;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno != EINPROGRESS) {
      throw std::runtime_error(std::string("connect to redis: ") + std::strerror(errno));
    }
    if (!detail::wait(fd, POLLOUT, deadline)) {
      throw std::runtime_error("connect to redis: timed out");
    }
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) throw std::runtime_error(std::string("connect to redis: ") + std::strerror(err));
  }
  std::string out;
  for (const auto& args : commands) {
    out += "*" + std::to_string(args.size()) + "\r\n";
    for (const auto& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  }
  std::string_view rest = out;
  while (!rest.empty()) {
    const ssize_t n = ::send(fd, rest.data(), rest.size(), MSG_NOSIGNAL);
    if (n > 0) {
      rest.remove_prefix(static_cast<std::size_t>(n));
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!detail::wait(fd, POLLOUT, deadline)) {
        throw std::runtime_error("send to redis: timed out");
      }
    } else {
      throw std::runtime_error(std::string("send to redis: ") + std::strerror(errno));
    }
  }
  detail::RespReader reader{fd, deadline, {}, 0};
  std::vector<RespValue> replies;
  for (std::size_t i = 0; i < commands.size(); ++i) replies.push_back(reader.value());
  return replies;
}

// One command on a fresh connection; see redis_pipeline.
inline RespValue redis_command(uint16_t port, const std::vector<std::string>& args,
                               std::chrono::milliseconds timeout = std::chrono::seconds(3)) {
  return redis_pipeline(port, {args}, timeout).front();
}

// True when 127.0.0.1:`port` can be bound now (nobody listens on it).
inline bool loopback_port_free(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool free = ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return free;
}

class RedisServer {
 public:
  using Millis = std::chrono::milliseconds;
  using Clock = std::chrono::steady_clock;

  RedisServer() = default;
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;
  ~RedisServer() {
    kill();
    if (dir_.empty()) return;
    if (testing::Test::HasFailure()) {
      std::cerr << "---- redis-server log (" << dir_ << "/redis.log) ----\n"
                << log() << "---- end of redis-server log ----\n";
      return;
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Starts redis-server on `port` (0: the port of the previous start, or on
  // the first start a free one) and waits until it answers (INFO names its
  // pid). Throws on failure.
  void start(uint16_t port = 0, Millis timeout = Millis(10000)) {
    if (port == 0 && port_ == 0) {
      // Another process may take the chosen port first: try a few.
      for (int attempt = 1;; ++attempt) {
        try {
          return start_on(free_port(), timeout);
        } catch (const std::exception&) {
          kill();
          if (attempt == 3) throw;
        }
      }
    }
    start_on(port != 0 ? port : port_, timeout);
  }

  // SIGKILL and reap (no-op when not running).
  void kill() {
    if (!running()) return;
    ::kill(pid_, SIGKILL);
    reap(true);
  }

  bool running() { return pid_ > 0 && !reap(false); }
  // Configuration given on the command line of every later start, e.g. an
  // ACL rule: {"--user", "default", "on", "nopass", "~*", "&*", "+@all", "-zcount"}.
  void set_extra_args(std::vector<std::string> args) { extra_args_ = std::move(args); }
  uint16_t port() const { return port_; }
  std::string addr() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  void start_on(uint16_t port, Millis timeout) {
    if (running()) throw std::runtime_error("RedisServer::start: already running");
    if (dir_.empty()) {
      std::string tmpl = (std::filesystem::temp_directory_path() / "imgate-redis-XXXXXX").string();
      if (::mkdtemp(tmpl.data()) == nullptr) {
        throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
      }
      dir_ = tmpl;
    }
    port_ = port;
    const std::string log_path = dir_ + "/redis.log";
    std::vector<std::string> args{kBinary,     "--port",   std::to_string(port_),
                                  "--bind",    "127.0.0.1", "--save",
                                  "",          "--appendonly", "no",
                                  "--daemonize", "no",     "--dir",
                                  dir_,        "--logfile", ""};
    args.insert(args.end(), extra_args_.begin(), extra_args_.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    const int rc = ::posix_spawn(&pid_, kBinary, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      pid_ = -1;
      throw std::runtime_error(std::string("posix_spawn " ) + kBinary + ": " + std::strerror(rc));
    }
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      if (reap(false)) {
        throw std::runtime_error("redis-server exited before answering; log:\n" + log());
      }
      try {
        // Ours, not another server that took the port first.
        const RespValue info = command({"INFO", "server"}, Millis(500));
        if (info.str.find("\nprocess_id:" + std::to_string(pid_) + "\r") != std::string::npos) {
          return;
        }
      } catch (const std::exception&) {
        // not listening yet
      }
      if (Clock::now() > deadline) {
        throw std::runtime_error("redis-server did not answer in time; log:\n" + log());
      }
      std::this_thread::sleep_for(Millis(10));  // polling interval, bounded by the deadline
    }
  }

 public:
  // One command on a fresh connection. Throws on connection errors and timeouts.
  RespValue command(const std::vector<std::string>& args, Millis timeout = Millis(3000)) const {
    return redis_command(port_, args, timeout);
  }

  // Keys matching `pattern` (KEYS; fine for a test's small data set).
  std::vector<std::string> keys(const std::string& pattern) const {
    std::vector<std::string> out;
    for (const auto& e : command({"KEYS", pattern}).elements) out.push_back(e.str);
    return out;
  }

  std::string log() const {
    std::ifstream in(dir_ + "/redis.log", std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }

 private:
  static constexpr const char* kBinary = "/usr/bin/redis-server";

  // A port that is free now, below the kernel's ephemeral range (32768 and
  // up on Linux), so that no outgoing connection takes it while the server is
  // down between a kill() and a restart on the same port.
  static uint16_t free_port() {
    std::random_device rd;
    for (int attempt = 0; attempt < 200; ++attempt) {
      const auto port = static_cast<uint16_t>(20000 + rd() % 12000);
      if (loopback_port_free(port)) return port;
    }
    throw std::runtime_error("no free port for redis-server");
  }

  // Reaps the child if it has exited (or, with `block`, once it exits); its
  // exit status (or -signal) then, nullopt while it runs. Afterwards the
  // server can be started again.
  std::optional<int> reap(bool block) {
    if (pid_ <= 0) return std::nullopt;
    int status = 0;
    if (::waitpid(pid_, &status, block ? 0 : WNOHANG) != pid_) return std::nullopt;
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  }

  std::string dir_;
  std::vector<std::string> extra_args_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace imgate::test
