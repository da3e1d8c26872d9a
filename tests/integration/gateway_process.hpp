// Integration-test harness: runs the real imgate binary as a child process on
// free loopback ports and reads its /system/state endpoint.
//
// Thread safety: a Gateway is used from the test thread only. State and
// HttpResponse are plain values.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <boost/json.hpp>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace imgate::test {

using Millis = std::chrono::milliseconds;
using namespace std::chrono_literals;

// Command-line flags by name ("--threads" -> "2"). A map, so that a test's
// overrides replace the harness defaults instead of repeating a flag.
using Flags = std::map<std::string, std::string>;

struct HttpResponse {
  unsigned status = 0;
  std::string content_type;
  std::string body;
};

// One HTTP/1.1 GET to 127.0.0.1:port with a deadline for the whole exchange.
// Throws std::runtime_error on connection errors and timeouts.
HttpResponse http_get(uint16_t port, std::string_view target, Millis timeout = 5s);
// The same as a POST of a form (`body`: "a=1&b=2", already percent-encoded).
HttpResponse http_post_form(uint16_t port, std::string_view target, std::string body,
                            Millis timeout = 5s);

// The sorted userList of a successful /user/list?appID=app, asserting nothing
// (for polling); nullopt for any other answer.
std::optional<std::vector<std::string>> listed(uint16_t port, uint32_t app);

// A non-blocking TCP socket connected to 127.0.0.1:port (the caller closes
// it). Throws std::runtime_error when the connection is refused.
int connect_loopback_nonblocking(uint16_t port);

// Polls `pred` every 20 ms until it holds or `timeout` passes.
bool eventually(const std::function<bool()>& pred, Millis timeout = 5s);

// The time since `t0` on the steady clock, in whole milliseconds.
inline Millis since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - t0);
}

// Percent-encodes every byte outside [A-Za-z0-9-._~].
std::string pct(std::string_view s);

// The `data` member of a /system/state answer, with typed accessors.
// Missing numeric members read as -1 so that a wrong shape fails comparisons.
class State {
 public:
  State() = default;
  explicit State(boost::json::object data) : data_(std::move(data)) {}

  int64_t clients_len() const { return number({"managerInfo", "clientsLen"}); }
  int64_t users_len() const { return number({"managerInfo", "usersLen"}); }
  int64_t sessions() const { return number({"imgate", "sessions"}); }
  int64_t rooms_len() const { return number({"imgate", "roomsLen"}); }
  int64_t threads() const { return number({"imgate", "threads"}); }
  // counters.<name>, e.g. "heartbeatTimeouts".
  int64_t counter(std::string_view name) const;
  // counters.closesByCode["<code>"]; 0 when the code was never counted.
  int64_t closes_by_code(uint16_t code) const;
  // managerInfo.users / managerInfo.clients (only with isDebug=true).
  std::vector<std::string> users() const { return strings({"managerInfo", "users"}); }
  std::vector<std::string> clients() const { return strings({"managerInfo", "clients"}); }

  // No WebSocket client, no logged-in user and no TCP session left.
  bool idle() const { return clients_len() == 0 && users_len() == 0 && sessions() == 0; }

  const boost::json::object& data() const { return data_; }
  std::string dump() const { return boost::json::serialize(data_); }

  // Value at a path of object keys, or nullptr.
  const boost::json::value* find(std::initializer_list<std::string_view> path) const;

 private:
  int64_t number(std::initializer_list<std::string_view> path) const;
  std::vector<std::string> strings(std::initializer_list<std::string_view> path) const;

  boost::json::object data_;
};

// The imgate child process. start() spawns it in a fresh temporary directory
// (so no config/app.yaml is picked up) with stdout/stderr in <dir>/imgate.log
// and waits for its ready file. The destructor SIGKILLs a still-running child,
// prints the log when the current test failed, and removes the directory.
class Gateway {
 public:
  Gateway() = default;
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;
  ~Gateway();

  // Harness defaults (loopback, free ports, short timeouts) overridden by
  // `overrides`; a value of "" drops the flag. Throws std::runtime_error when
  // the child exits early or is not ready within `ready_timeout`.
  void start(const Flags& overrides = {}, Millis ready_timeout = 10s);
  // Before start(): the child runs with RLIMIT_NOFILE (soft and hard) set to
  // `limit`, so that it cannot raise it (0: the test's own limit).
  void set_descriptor_limit(unsigned limit) { descriptor_limit_ = limit; }

  uint16_t ws_port() const { return ws_port_; }
  uint16_t http_port() const { return http_port_; }
  // Started with --tls-cert: state() and wait_*() use HTTPS.
  bool tls() const { return tls_; }
  pid_t pid() const { return pid_; }
  const std::string& dir() const { return dir_; }

  // True while the child has not been reaped (reaps it if it has exited).
  bool running();

  // GET /system/state[?isDebug=true]. Throws when the answer is not the
  // expected {"code":200,"msg":"Success","data":{...}} envelope.
  State state(bool debug = false) const;

  // Polls state() every 20 ms until `pred` holds or `timeout` passes; the
  // failure message names `what` and shows the last state seen.
  testing::AssertionResult wait_for(std::string_view what,
                                    const std::function<bool(const State&)>& pred,
                                    Millis timeout = 5s, bool debug = false) const;

  // wait_for(State::idle).
  testing::AssertionResult wait_idle(Millis timeout = 5s) const;

  // Sends `sig` to the child without waiting.
  void signal(int sig);
  // Waits up to `timeout` for the child to exit. Returns its exit code, or -N
  // if it died of signal N, or nullopt if it was still running at the
  // deadline (it is then SIGKILLed).
  std::optional<int> wait_exit(Millis timeout);
  // signal(sig) + wait_exit(timeout).
  std::optional<int> terminate(int sig = SIGTERM, Millis timeout = 10s);

  bool terminate_requested() const { return terminate_requested_; }
  // Exit code (or -signal) once the child has been reaped.
  std::optional<int> exit_status() const { return exit_status_; }

  // The child's stdout+stderr so far.
  std::string log() const;

 private:
  std::optional<int> reap(bool block);
  void read_ready_file(Millis timeout);

  std::string dir_;
  std::string ready_path_;
  std::string log_path_;
  pid_t pid_ = -1;
  std::optional<int> exit_status_;
  bool terminate_requested_ = false;
  uint16_t ws_port_ = 0;
  uint16_t http_port_ = 0;
  bool tls_ = false;
  unsigned descriptor_limit_ = 0;
};

// Base fixture: owns a Gateway and, after every test that left the gateway
// running, checks that all connections, users and sessions are gone. Clients
// must be locals of the test body so that they are closed before TearDown.
class GatewayTest : public testing::Test {
 protected:
  void TearDown() override;

  Gateway gw;
};

}  // namespace imgate::test
