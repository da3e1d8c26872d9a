// Where logs and start-up errors go (issue 17 item 1), against the real
// binary: the log goes to stderr when no log file is set (stdout stays
// empty); a fatal start-up error (a port already in use) names the listener
// and the address and reaches stderr even when the log goes to a file; a
// typo in a YAML key is warned about; an unreachable Redis is warned about
// once at the default log level, not once per retry.
//
// The Gateway harness merges stdout and stderr, so the first tests spawn the
// binary themselves (ChildProcess) with one pipe for each.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "gateway_process.hpp"
#include "redis_process.hpp"

extern char** environ;

namespace imgate::test {
namespace {

using Clock = std::chrono::steady_clock;

// imgate in a fresh temporary directory with stdout and stderr on two pipes
// read by the test thread. The destructor SIGKILLs a still-running child and
// removes the directory (kept, with the output printed, when the test failed).
class ChildProcess {
 public:
  ChildProcess() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "imgate-startup-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) {
      throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
    }
    dir_ = tmpl;
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    for (int& fd : fds_) {
      if (fd >= 0) ::close(fd);
    }
    if (testing::Test::HasFailure()) {
      std::cerr << "---- imgate stdout ----\n" << out_ << "---- imgate stderr ----\n" << err_
                << "---- end (" << dir_ << ") ----\n";
      return;
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  const std::string& dir() const { return dir_; }

  // Spawns IMGATE_BINARY with `args` in dir(), without IMGATE_* variables.
  void start(const std::vector<std::string>& args) {
    int out_pipe[2];
    int err_pipe[2];
    if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) {
      throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
    }
    std::vector<std::string> all{IMGATE_BINARY};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::strncmp(*e, "IMGATE_", 7) != 0) envp.push_back(*e);
    }
    envp.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addchdir_np(&actions, dir_.c_str());
    posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, err_pipe[1], STDERR_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    const int rc = ::posix_spawn(&pid_, all[0].c_str(), &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    ::close(out_pipe[1]);
    ::close(err_pipe[1]);
    fds_[0] = out_pipe[0];
    fds_[1] = err_pipe[0];
    if (rc != 0) {
      pid_ = -1;
      throw std::runtime_error(std::string("posix_spawn " IMGATE_BINARY ": ") + std::strerror(rc));
    }
  }

  // Reads both pipes until `done(stdout, stderr)` holds, both reach end of
  // file (then: whether `done` holds) or `timeout` passes (false).
  bool read_until(const std::function<bool(const std::string&, const std::string&)>& done,
                  Millis timeout = 10s) {
    const auto deadline = Clock::now() + timeout;
    while (!done(out_, err_)) {
      pollfd pfds[2];
      nfds_t n = 0;
      std::string* sinks[2];
      int* owners[2];
      for (int i = 0; i < 2; ++i) {
        if (fds_[i] < 0) continue;
        pfds[n] = {fds_[i], POLLIN, 0};
        sinks[n] = i == 0 ? &out_ : &err_;
        owners[n] = &fds_[i];
        ++n;
      }
      if (n == 0) return done(out_, err_);
      const auto left =
          std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
      if (left <= 0) return false;
      if (::poll(pfds, n, static_cast<int>(left)) < 0 && errno != EINTR) return false;
      for (nfds_t i = 0; i < n; ++i) {
        if (pfds[i].revents == 0) continue;
        char buf[4096];
        const ssize_t got = ::read(pfds[i].fd, buf, sizeof buf);
        if (got > 0) {
          sinks[i]->append(buf, static_cast<std::size_t>(got));
        } else if (got == 0 || errno != EINTR) {
          ::close(*owners[i]);
          *owners[i] = -1;
        }
      }
    }
    return true;
  }

  // Reads both pipes to their end, then reaps the child: its exit code (or
  // -signal), nullopt when it had not exited within `timeout`.
  std::optional<int> wait_exit(Millis timeout = 10s) {
    if (!read_until([](const std::string&, const std::string&) { return false; }, timeout) &&
        (fds_[0] >= 0 || fds_[1] >= 0)) {
      return std::nullopt;
    }
    int status = 0;
    if (::waitpid(pid_, &status, 0) != pid_) return std::nullopt;
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  }

  void signal(int sig) { ::kill(pid_, sig); }

  const std::string& out() const { return out_; }
  const std::string& err() const { return err_; }

 private:
  std::string dir_;
  pid_t pid_ = -1;
  int fds_[2] = {-1, -1};  // the read ends of stdout and stderr
  std::string out_;
  std::string err_;
};

// A listening socket on 127.0.0.1 at a port the kernel picks: that port is in use.
class OccupiedPort {
 public:
  OccupiedPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(fd_, 1) != 0 || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      throw std::runtime_error(std::string("occupying a port: ") + std::strerror(errno));
    }
    port_ = ntohs(addr.sin_port);
  }
  OccupiedPort(const OccupiedPort&) = delete;
  OccupiedPort& operator=(const OccupiedPort&) = delete;
  ~OccupiedPort() { ::close(fd_); }
  uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Lines of `text` that contain every one of `parts`.
std::size_t count_lines(const std::string& text, const std::vector<std::string>& parts) {
  std::size_t n = 0;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    bool all = true;
    for (const std::string& part : parts) all = all && contains(line, part);
    if (all) ++n;
  }
  return n;
}

const std::vector<std::string> kLoopback{"--config", "", "--bind", "127.0.0.1", "--threads", "1"};

std::vector<std::string> with(std::vector<std::string> args, const std::vector<std::string>& more) {
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

// With no log file the log goes to stderr; stdout stays empty.
TEST(StartupTest, WithoutALogFileTheLogGoesToStderrNotStdout) {
  ChildProcess imgate;
  imgate.start(with(kLoopback, {"--http-port", "0", "--ws-port", "0"}));
  ASSERT_TRUE(imgate.read_until(
      [](const std::string&, const std::string& err) { return contains(err, "listening"); }))
      << "no 'listening' line on stderr";
  imgate.signal(SIGTERM);
  EXPECT_EQ(imgate.wait_exit(), 0);
  EXPECT_TRUE(contains(imgate.err(), "imgate stopped"));
  EXPECT_EQ(imgate.out(), "");
}

// Each port in use: the message names the listener and the address, without
// library source paths, on stderr; exit code 1.
TEST(StartupTest, APortInUseIsNamedWithItsListenerAndAddress) {
  struct Case {
    std::vector<std::string> ports;  // filled with the occupied port below
    const char* listener;
  };
  OccupiedPort taken;
  const std::string port = std::to_string(taken.port());
  const std::vector<Case> cases{
      {{"--http-port", port, "--ws-port", "0"}, "HTTP API"},
      {{"--http-port", "0", "--ws-port", port}, "WebSocket"},
      {{"--http-port", port, "--ws-port", port}, "WebSocket and HTTP API"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.listener);
    ChildProcess imgate;
    imgate.start(with(kLoopback, c.ports));
    EXPECT_EQ(imgate.wait_exit(), 1);
    const std::string expected = "cannot listen on 127.0.0.1:" + port + " (" + c.listener +
                                 "): address already in use";
    EXPECT_TRUE(contains(imgate.err(), expected)) << "expected on stderr: " << expected;
    EXPECT_FALSE(contains(imgate.err(), ".hpp")) << "a library source path on stderr";
    EXPECT_EQ(imgate.out(), "");
  }
}

// Upstream's app.yaml sets logFile: log/gin.log. The log goes there, and a
// fatal start-up error and a configuration warning reach stderr as well.
TEST(StartupTest, WithALogFileAFatalErrorAndConfigWarningsStillReachStderr) {
  OccupiedPort taken;
  const std::string port = std::to_string(taken.port());
  ChildProcess imgate;
  std::ofstream(imgate.dir() + "/app.yaml") << "app:\n  logFile: log/gin.log\n  httpPrt: 9090\n";
  imgate.start({"--config", "app.yaml", "--bind", "127.0.0.1", "--threads", "1", "--http-port",
                port, "--ws-port", "0"});
  EXPECT_EQ(imgate.wait_exit(), 1);
  const std::string fatal = "cannot listen on 127.0.0.1:" + port + " (HTTP API)";
  const std::string warning = "unknown key app.httpPrt";
  EXPECT_TRUE(contains(imgate.err(), fatal)) << "expected on stderr: " << fatal;
  EXPECT_TRUE(contains(imgate.err(), warning)) << "expected on stderr: " << warning;
  const std::string log = read_file(imgate.dir() + "/log/gin.log");
  EXPECT_TRUE(contains(log, fatal)) << "log file: " << log;
  EXPECT_TRUE(contains(log, warning)) << "log file: " << log;
  EXPECT_FALSE(contains(imgate.err(), "RLIMIT_NOFILE")) << "info lines belong to the log file";
  EXPECT_EQ(imgate.out(), "");
}

// Redis unreachable at start-up: a warning at the default log level. (The
// connection for commands is named "redis <node id>-cmd".)
TEST(StartupTest, UnreachableRedisAtStartUpIsAWarning) {
  RedisServer redis;
  redis.start();
  redis.kill();  // its port is free now: nothing answers there
  Gateway gw;
  gw.start({{"--redis-addr", redis.addr()}});
  const std::string failure = "-cmd: cannot connect to " + redis.addr();
  EXPECT_TRUE(eventually([&] { return count_lines(gw.log(), {"[warning]", failure}) == 1; }))
      << gw.log();
}

// One warning per connection while Redis stays unreachable, not one per
// retry (those are debug lines); the connection once made is logged.
TEST(StartupTest, UnreachableRedisIsWarnedOnceNotOnEveryRetry) {
  RedisServer redis;
  redis.start();
  redis.kill();
  Gateway gw;
  gw.start({{"--redis-addr", redis.addr()}, {"--log-level", "debug"}});
  const std::string failure = "-cmd: cannot connect to " + redis.addr();
  ASSERT_TRUE(eventually([&] { return count_lines(gw.log(), {failure}) >= 3; }, 10s))
      << "fewer than 3 failed connects:\n" << gw.log();
  redis.start();
  ASSERT_TRUE(eventually([&] {
    return count_lines(gw.log(), {"-cmd: connected to " + redis.addr()}) == 1;
  }, 10s)) << gw.log();
  const std::string log = gw.log();
  EXPECT_EQ(count_lines(log, {"[warning]", failure}), 1u) << log;
  EXPECT_EQ(count_lines(log, {"[debug]", failure}), count_lines(log, {failure}) - 1) << log;
}

// Redis Cluster mode, no seed answering: the seeds are probed again and
// again (a new probe connection a second, a few connects each); only the
// first failure is a warning.
TEST(StartupTest, UnreachableRedisClusterSeedIsWarnedOnceNotOnEveryProbe) {
  RedisServer redis;
  redis.start();
  redis.kill();
  Gateway gw;
  gw.start({{"--redis-cluster", redis.addr()}, {"--log-level", "debug"}});
  const std::string failure = "-probe: cannot connect to " + redis.addr();
  // At most 4 connects a probe (0, 100, 300, 700 ms): 6 failures span two probes.
  ASSERT_TRUE(eventually([&] { return count_lines(gw.log(), {failure}) >= 6; }, 10s))
      << "fewer than 6 failed connects:\n" << gw.log();
  EXPECT_EQ(count_lines(gw.log(), {"[warning]", failure}), 1u) << gw.log();
}

}  // namespace
}  // namespace imgate::test
