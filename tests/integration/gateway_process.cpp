#include "gateway_process.hpp"
#include "tls_client.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <cctype>
#include <thread>

extern char** environ;

namespace imgate::test {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

HttpResponse http_call(uint16_t port, http::verb verb, std::string_view target, std::string body,
                       std::string_view content_type, Millis timeout) {
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  http::request<http::string_body> req{verb, target, 11};
  req.set(http::field::host, "127.0.0.1:" + std::to_string(port));
  req.set(http::field::connection, "close");
  if (verb != http::verb::get) {
    req.set(http::field::content_type, content_type);
    req.body() = std::move(body);
    req.prepare_payload();
  }
  http::response<http::string_body> res;
  beast::flat_buffer buffer;
  boost::system::error_code result = asio::error::timed_out;

  stream.expires_after(timeout);
  const asio::ip::tcp::endpoint endpoint(asio::ip::make_address_v4("127.0.0.1"), port);
  stream.async_connect(endpoint, [&](boost::system::error_code ec) {
    if (ec) {
      result = ec;
      return;
    }
    http::async_write(stream, req, [&](boost::system::error_code wec, std::size_t) {
      if (wec) {
        result = wec;
        return;
      }
      http::async_read(stream, buffer, res,
                       [&](boost::system::error_code rec, std::size_t) { result = rec; });
    });
  });
  ioc.run();
  if (result) {
    throw std::runtime_error(std::string(http::to_string(verb)) + " " + std::string(target) +
                             " on port " + std::to_string(port) + ": " + result.message());
  }
  return {res.result_int(), std::string(res[http::field::content_type]), res.body()};
}

}  // namespace

HttpResponse http_get(uint16_t port, std::string_view target, Millis timeout) {
  return http_call(port, http::verb::get, target, {}, {}, timeout);
}

HttpResponse http_post_form(uint16_t port, std::string_view target, std::string body,
                            Millis timeout) {
  return http_call(port, http::verb::post, target, std::move(body),
                   "application/x-www-form-urlencoded", timeout);
}

std::optional<std::vector<std::string>> listed(uint16_t port, uint32_t app) {
  const HttpResponse res = http_get(port, "/user/list?appID=" + std::to_string(app));
  boost::system::error_code ec;
  const json::value v = json::parse(res.body, ec);
  if (ec || !v.is_object() || v.get_object().if_contains("code") == nullptr ||
      v.at("code") != json::value(200)) {
    return std::nullopt;
  }
  const json::value* list = v.at("data").is_object()
                                ? v.at("data").get_object().if_contains("userList")
                                : nullptr;
  if (list == nullptr || !list->is_array()) return std::nullopt;
  std::vector<std::string> users;
  for (const auto& u : list->get_array()) {
    if (u.is_string()) users.emplace_back(u.get_string());
  }
  std::sort(users.begin(), users.end());
  return users;
}

// ---- State ----------------------------------------------------------------

const json::value* State::find(std::initializer_list<std::string_view> path) const {
  const json::object* obj = &data_;
  const json::value* v = nullptr;
  for (std::string_view key : path) {
    if (obj == nullptr) return nullptr;
    v = obj->if_contains(key);
    if (v == nullptr) return nullptr;
    obj = v->if_object();
  }
  return v;
}

int64_t State::number(std::initializer_list<std::string_view> path) const {
  const json::value* v = find(path);
  if (v == nullptr || !v->is_number()) return -1;
  boost::system::error_code ec;
  const auto n = v->to_number<int64_t>(ec);
  return ec ? -1 : n;
}

std::vector<std::string> State::strings(std::initializer_list<std::string_view> path) const {
  std::vector<std::string> out;
  const json::value* v = find(path);
  if (v == nullptr || !v->is_array()) return out;
  for (const auto& item : v->get_array()) {
    if (item.is_string()) out.emplace_back(item.get_string());
  }
  return out;
}

int64_t State::counter(std::string_view name) const {
  const json::value* counters = find({"imgate", "counters"});
  if (counters == nullptr || !counters->is_object()) return -1;
  const json::value* v = counters->get_object().if_contains(name);
  if (v == nullptr || !v->is_number()) return -1;
  return v->to_number<int64_t>();
}

int64_t State::closes_by_code(uint16_t code) const {
  const json::value* by_code = find({"imgate", "counters", "closesByCode"});
  if (by_code == nullptr || !by_code->is_object()) return -1;
  const json::value* v = by_code->get_object().if_contains(std::to_string(code));
  if (v == nullptr) return 0;
  return v->is_number() ? v->to_number<int64_t>() : -1;
}

// ---- Gateway --------------------------------------------------------------

namespace {

Flags default_flags(const std::string& ready_path) {
  return {
      {"--bind", "127.0.0.1"},
      {"--ws-port", "0"},
      {"--http-port", "0"},
      {"--threads", "2"},
      {"--app-ids", "101,102,103,104"},
      {"--heartbeat-timeout", "30"},
      {"--ping-interval", "10"},
      {"--handshake-timeout", "5"},
      {"--close-timeout", "1"},
      {"--shutdown-timeout", "3"},
      {"--log-level", "info"},
      {"--ready-file", ready_path},
  };
}

std::string read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace

Gateway::~Gateway() {
  if (pid_ > 0 && !exit_status_) {
    ::kill(pid_, SIGKILL);
    reap(true);
  }
  if (dir_.empty()) return;
  if (testing::Test::HasFailure()) {
    std::cerr << "---- imgate log (" << log_path_ << ") ----\n"
              << log() << "---- end of imgate log ----\n";
    return;  // keep the directory for inspection
  }
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

void Gateway::start(const Flags& overrides, Millis ready_timeout) {
  if (pid_ > 0) throw std::runtime_error("Gateway::start called twice");
  std::string tmpl = (fs::temp_directory_path() / "imgate-it-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
  }
  dir_ = tmpl;
  ready_path_ = dir_ + "/ready.json";
  log_path_ = dir_ + "/imgate.log";

  Flags flags = default_flags(ready_path_);
  for (const auto& [name, value] : overrides) {
    if (value.empty()) {
      flags.erase(name);
    } else {
      flags[name] = value;
    }
  }
  tls_ = flags.count("--tls-cert") > 0;
  std::vector<std::string> args{IMGATE_BINARY};
  if (descriptor_limit_ != 0) {
    // `ulimit -n` sets both limits; exec keeps the pid the ready file names.
    args = {"/bin/sh", "-c", "ulimit -n " + std::to_string(descriptor_limit_) + " && exec \"$0\" \"$@\"",
            IMGATE_BINARY};
  }
  for (const auto& [name, value] : flags) {
    args.push_back(name);
    args.push_back(value);
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  // The child sees the test's environment minus IMGATE_* settings.
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "IMGATE_", 7) != 0) envp.push_back(*e);
  }
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addchdir_np(&actions, dir_.c_str());
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path_.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  const int rc = ::posix_spawn(&pid_, args[0].c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    pid_ = -1;
    throw std::runtime_error(std::string("posix_spawn " IMGATE_BINARY ": ") + std::strerror(rc));
  }
  read_ready_file(ready_timeout);
}

void Gateway::read_ready_file(Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!fs::exists(ready_path_)) {
    if (reap(false)) {
      throw std::runtime_error("imgate exited with status " + std::to_string(*exit_status_) +
                               " before it was ready; log:\n" + log());
    }
    if (Clock::now() > deadline) {
      throw std::runtime_error("imgate wrote no ready file within the deadline; log:\n" + log());
    }
    std::this_thread::sleep_for(10ms);  // polling interval, bounded by the deadline
  }
  const json::value ready = json::parse(read_whole_file(ready_path_));
  const json::object& obj = ready.as_object();
  ws_port_ = static_cast<uint16_t>(obj.at("ws").to_number<int64_t>());
  http_port_ = static_cast<uint16_t>(obj.at("http").to_number<int64_t>());
  if (ws_port_ == 0 || http_port_ == 0) {
    throw std::runtime_error("ready file has zero ports: " + json::serialize(ready));
  }
  if (obj.at("pid").to_number<int64_t>() != pid_) {
    throw std::runtime_error("ready file names another pid: " + json::serialize(ready));
  }
}

std::optional<int> Gateway::reap(bool block) {
  if (exit_status_) return exit_status_;
  if (pid_ <= 0) return std::nullopt;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
  if (r != pid_) return std::nullopt;
  if (WIFEXITED(status)) {
    exit_status_ = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    exit_status_ = -WTERMSIG(status);
  } else {
    exit_status_ = -1000;
  }
  return exit_status_;
}

bool Gateway::running() {
  return pid_ > 0 && !reap(false);
}

State Gateway::state(bool debug) const {
  const char* target = debug ? "/system/state?isDebug=true" : "/system/state";
  const HttpResponse res = tls_ ? https_request(http_port_, "GET", target) : http_get(http_port_, target);
  if (res.status != 200) {
    throw std::runtime_error("/system/state answered " + std::to_string(res.status) + ": " +
                             res.body);
  }
  json::value body = json::parse(res.body);
  json::object& obj = body.as_object();
  if (obj.at("code").to_number<int64_t>() != 200 || obj.at("msg") != "Success") {
    throw std::runtime_error("/system/state envelope: " + res.body);
  }
  State state(obj.at("data").as_object());
  if (debug && (state.find({"managerInfo", "clients"}) == nullptr ||
                state.find({"managerInfo", "users"}) == nullptr)) {
    throw std::runtime_error(
        "/system/state?isDebug=true answered without managerInfo.clients / "
        "managerInfo.users: " +
        res.body);
  }
  return state;
}

testing::AssertionResult Gateway::wait_for(std::string_view what,
                                           const std::function<bool(const State&)>& pred,
                                           Millis timeout, bool debug) const {
  const auto deadline = Clock::now() + timeout;
  State last;
  for (;;) {
    last = state(debug);
    if (pred(last)) return testing::AssertionSuccess();
    if (Clock::now() > deadline) break;
    std::this_thread::sleep_for(20ms);  // polling interval, bounded by the deadline
  }
  return testing::AssertionFailure()
         << "timed out after " << timeout.count() << " ms waiting for: " << what
         << "\nlast /system/state data: " << last.dump();
}

testing::AssertionResult Gateway::wait_idle(Millis timeout) const {
  return wait_for(
      "clientsLen == 0 && usersLen == 0 && sessions == 0", [](const State& s) { return s.idle(); },
      timeout);
}

void Gateway::signal(int sig) {
  if (pid_ <= 0) return;
  terminate_requested_ = true;
  if (!exit_status_) ::kill(pid_, sig);
}

std::optional<int> Gateway::wait_exit(Millis timeout) {
  if (pid_ <= 0) return std::nullopt;
  const auto deadline = Clock::now() + timeout;
  while (!reap(false)) {
    if (Clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      reap(true);
      return std::nullopt;
    }
    std::this_thread::sleep_for(5ms);  // polling interval, bounded by the deadline
  }
  return exit_status_;
}

std::optional<int> Gateway::terminate(int sig, Millis timeout) {
  signal(sig);
  return wait_exit(timeout);
}

std::string Gateway::log() const {
  return log_path_.empty() ? "" : read_whole_file(log_path_);
}

void GatewayTest::TearDown() {
  if (gw.pid() <= 0) return;
  if (gw.running()) {
    EXPECT_TRUE(gw.wait_idle()) << "connections, users or sessions left behind by the test";
  } else if (!gw.terminate_requested()) {
    ADD_FAILURE() << "imgate exited unexpectedly with status " << gw.exit_status().value_or(-1);
  }
}

// Polls `pred` every 20 ms until it holds or `timeout` passes.
int connect_loopback_nonblocking(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    throw std::runtime_error("connect failed");
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

bool eventually(const std::function<bool()>& pred, Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(20ms);  // polling interval, bounded by the deadline
  }
}

// Percent-encodes every byte outside [A-Za-z0-9-._~].
std::string pct(std::string_view s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace imgate::test
