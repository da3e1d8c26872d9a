// The load generator's WebSocket side: one Worker (thread + io_context) per
// core, each owning its connections; callbacks, no thread per connection.
//
// A connection is a slot (socket, partial input, unsent output, a few
// integers); idle connections hold no buffer. Frames are parsed in place from
// one per-thread scratch buffer. Handlers carry (slot, generation), so a slot
// can be recycled while a cancelled handler is still queued.
//
// Threading: each Worker's state is touched only by its thread. The main
// thread reads the counters (relaxed atomics, one writer each) and sends
// commands with post(). Every connection follows a Plan (hold it, or one of
// the churn endings).
//
// --tls: each connection drives its own SSL object over the same non-blocking
// socket (SSL_connect / SSL_read / SSL_write, a WANT_READ or WANT_WRITE waits
// for that readiness); each worker has its own SSL_CTX, and with --tls-resume
// keeps the latest session ticket its connections received and offers it.
#pragma once

#include <array>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "histogram.hpp"
#include "options.hpp"
#include "tls.hpp"

namespace bench {

int64_t now_ns();  // CLOCK_MONOTONIC, the clock of the send times carried in messages

// Why a connection failed; reported by name in the summary.
enum class Fail : uint8_t {
  kClientFds,            // socket(): EMFILE/ENFILE in the generator
  kBind,                 // bind() to the source address failed
  kPorts,                // EADDRNOTAVAIL: no ephemeral port left for that source
  kRefused,              // ECONNREFUSED
  kConnectTimeout,       // ETIMEDOUT (SYN not answered: accept queue full)
  kConnectOther,         // any other connect error
  kTlsHandshake,         // --tls: the TLS handshake failed (or EOF during it)
  kHandshake,            // a reply other than 101
  kClosedBeforeUpgrade,  // EOF/reset before the 101 (e.g. over --max-connections)
  kLoginRejected,        // login answered with a code other than 200
  kClosedBeforeLogin,    // EOF/reset before the login reply
  kSetupTimeout,         // no login reply within --setup-timeout
  kDroppedWhileHeld,     // EOF/reset on a held connection
  kServerClose,          // close frame from the gateway on a held connection
  kCount
};
const char* fail_name(Fail f);

// What a connection does: hold it, or one of the churn scripts.
enum class Plan : uint8_t {
  kHold,                  // log in, stay until teardown
  kGraceful,              // log in, close frame, wait for the gateway's close
  kDropAfterLogin,        // log in, close the socket (FIN, no close frame)
  kResetAfterLogin,       // log in, RST (SO_LINGER 0)
  kDropBeforeUpgrade,     // TCP connect, then close before the HTTP upgrade
  kDropBeforeLoginReply,  // upgrade, send login, close without waiting for the reply
  kCount
};
const char* plan_name(Plan p);

// One writer (the worker thread), any reader.
struct Counter {
  std::atomic<uint64_t> v{0};
  void add(uint64_t n = 1) {
    v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void sub(uint64_t n = 1) {
    v.store(v.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
  }
  void max(uint64_t n) {
    if (n > get()) v.store(n, std::memory_order_relaxed);
  }
  uint64_t get() const { return v.load(std::memory_order_relaxed); }
};

struct WorkerStats {
  Counter started, connected, upgraded, logged_in, setup_failed, early_dropped;
  std::array<Counter, static_cast<std::size_t>(Fail::kCount)> fails;
  std::array<Counter, static_cast<std::size_t>(Plan::kCount)> plans_done;
  Counter open_sockets, held, closed_gracefully, close_timeouts, port_fallbacks;
  Counter frames_in, bytes_in, msgs, presence, heartbeats_sent, heartbeats_ok, pings, other;
  Counter reordered, bad_msgs, server_close_code;
  Counter last_delivery_ns;
  Counter stream_msgs, stream_errors, caught_up;  // Job::streams (recovery mode)
  Counter tls_full, tls_resumed;                  // --tls: handshakes done, by SSL_session_reused
  // --tls: the protocol and suite of the last handshake (OpenSSL's static names)
  // and the last handshake failure (an OpenSSL error code, a verification result).
  std::atomic<const char*> tls_version{nullptr}, tls_cipher{nullptr};
  Counter tls_last_error, tls_last_verify;
};

// Totals over all workers, read by the main thread.
struct Totals {
  uint64_t started = 0, connected = 0, upgraded = 0, logged_in = 0, setup_failed = 0,
           early_dropped = 0;
  std::array<uint64_t, static_cast<std::size_t>(Fail::kCount)> fails{};
  std::array<uint64_t, static_cast<std::size_t>(Plan::kCount)> plans_done{};
  uint64_t open_sockets = 0, held = 0, closed_gracefully = 0, close_timeouts = 0,
           port_fallbacks = 0;
  uint64_t frames_in = 0, bytes_in = 0, msgs = 0, presence = 0, heartbeats_sent = 0,
           heartbeats_ok = 0, pings = 0, other = 0, reordered = 0, bad_msgs = 0;
  uint64_t stream_msgs = 0, stream_errors = 0, caught_up = 0;
  uint64_t tls_full = 0, tls_resumed = 0, tls_last_error = 0, tls_last_verify = 0;
  const char* tls_version = nullptr;
  const char* tls_cipher = nullptr;
  uint64_t last_server_close_code = 0, last_delivery_ns = 0;
  uint64_t setups_done() const { return logged_in + setup_failed + early_dropped; }
  uint64_t failures() const;
};

// recovery mode: what connection `index` saw of its room stream (history on:
// pushes carry data.stream / epoch / offset, docs/history.md). An entry is
// written only by the worker that owns that connection at the time, and read or
// reset by the main thread between phases, after Client::sync().
struct StreamSeen {
  std::string epoch;         // the room stream's epoch (login reply or first push)
  uint64_t offset = 0;       // last offset received (or the login reply's position)
  uint64_t received = 0;     // room pushes with an offset since the last reset
  uint64_t duplicates = 0;   // offsets at or below the last one
  uint64_t gaps = 0;         // offsets skipped
  uint64_t foreign = 0;      // pushes of another epoch
  int64_t caught_up_ns = 0;  // when `offset` reached the tracker's target
  int8_t recovered = -1;     // login reply's "recovered": -1 absent, 0 false, 1 true
};
struct StreamTracker {
  std::vector<StreamSeen> seen;     // by global connection index
  std::atomic<uint64_t> target{0};  // an offset at or above it is caught up; 0: none
};

// A batch of connection setups shared by all workers: global indices
// [first, first + count), claimed one at a time, started at most `rate` per
// second (0: unlimited), at most `inflight` setups per worker at once.
struct Job {
  uint64_t first = 0;
  uint64_t count = 0;
  double rate = 0;
  uint32_t inflight = 512;
  std::function<Plan(uint64_t index)> plan;
  std::function<uint32_t(uint64_t index)> app_of;
  // More fields for the login's data (e.g. `,"recover":{..}`); none when empty.
  std::function<std::string(uint64_t index)> login_extra;
  StreamTracker* streams = nullptr;  // track the room stream per connection
  bool recovering = false;           // streams: keep what was seen, not the reply's position
  uint64_t source_offset = 0;        // source address and port from index + this
  uint16_t ws_port = 0;              // connect to this port of --host; 0: --ws-port
  int64_t start_ns = 0;
  std::atomic<uint64_t> next{0};
  std::atomic<bool> stop{false};
};

class Worker {
 public:
  Worker(const Options& opts, unsigned index);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void start();  // runs the thread
  void join();   // after stop()
  void stop();

  // Commands (any thread; run on the worker's thread).
  void begin(Job* job);            // start claiming setups from `job`
  void heartbeats(bool on);        // periodic heartbeat on held connections
  void close_held(bool graceful);  // teardown
  void force_close_all();          // after the teardown deadline
  Histogram latency_snapshot();    // blocks until the worker copied it
  void reset_latency();
  void sync();  // blocks until the worker ran what was posted before

  const WorkerStats& stats() const { return stats_; }

 private:
  struct Conn;
  enum class Phase : uint8_t {
    kFree,
    kConnecting,
    kHandshaking,  // --tls: TCP connected, TLS handshake under way
    kUpgrading,
    kLoggingIn,
    kHeld,
    kClosing
  };

  void pump();
  void arm_pump_timer();
  void open(uint64_t index);
  void on_connect(uint32_t slot, uint32_t gen, const boost::system::error_code& ec);
  void arm_read(Conn& c);
  void arm_write(Conn& c);
  void on_readable(uint32_t slot, uint32_t gen, const boost::system::error_code& ec);
  void on_writable(uint32_t slot, uint32_t gen, const boost::system::error_code& ec);
  bool consume(Conn& c, const char* data, std::size_t size);  // false: connection ended
  bool on_upgrade_reply(Conn& c);
  bool parse_frames(Conn& c, const char* data, std::size_t size, std::size_t& used);
  bool on_frame(Conn& c, uint8_t opcode, const char* payload, std::size_t size);
  bool on_text(Conn& c, std::string_view text);
  bool after_login(Conn& c);
  void track_login(Conn& c, std::string_view reply);
  void track_push(Conn& c, std::string_view push, int64_t now);
  void on_eof(Conn& c);
  void send_frame(Conn& c, uint8_t opcode, std::string_view payload);
  void send_raw(Conn& c, std::string_view bytes);
  // --tls.
  void start_tls(Conn& c);
  void tls_handshake(Conn& c);
  void tls_ready(Conn& c);  // a readiness of either kind
  bool tls_read(Conn& c);   // false: connection ended
  void tls_send(Conn& c, std::string_view bytes);
  void start_upgrade(Conn& c);
  static int on_new_session(SSL* ssl, SSL_SESSION* session);
  void start_close(Conn& c);
  void fail(Conn& c, Fail why);
  void finish(Conn& c, bool reset = false);  // closes the socket, frees the slot
  void setup_done(Conn& c);
  void sweep();
  void arm_sweep();
  void heartbeat_tick();
  void arm_heartbeat();
  Conn* live(uint32_t slot, uint32_t gen);

  const Options& opts_;
  const unsigned index_;
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  std::thread thread_;
  WorkerStats stats_;
  Histogram latency_;

  Job* job_ = nullptr;
  uint32_t inflight_ = 0;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<uint32_t> free_;
  std::vector<uint32_t> setting_up_;  // slots to check for setup / close timeouts
  std::vector<uint32_t> held_;        // slots of held connections (heartbeats, teardown)
  std::size_t heartbeat_cursor_ = 0;
  double heartbeat_credit_ = 0;
  bool heartbeats_on_ = false;
  boost::asio::steady_timer pump_timer_, sweep_timer_, heartbeat_timer_;
  bool pump_timer_armed_ = false;
  boost::asio::ip::tcp::endpoint server_;
  std::vector<char> scratch_;
  std::string frame_buf_;
  std::string upgrade_request_;
  SslCtxPtr tls_ctx_;                   // --tls; nullptr: plain ws
  SSL_SESSION* tls_session_ = nullptr;  // --tls-resume: the latest session received (owned)
  bool first_setup_done_ = false;       // --tls-resume: one setup first, to get a session
};

// All workers, plus the totals the modes read.
class Client {
 public:
  explicit Client(const Options& opts);
  ~Client();

  unsigned threads() const { return static_cast<unsigned>(workers_.size()); }
  Totals totals() const;
  void begin(Job& job);
  void heartbeats(bool on);
  void close_held(bool graceful);
  void force_close_all();
  Histogram latency();
  void reset_latency();
  // Returns once every worker has run what was posted to it before: its writes
  // (e.g. to a StreamTracker) are then visible to the caller.
  void sync();

 private:
  std::vector<std::unique_ptr<Worker>> workers_;
};

}  // namespace bench
