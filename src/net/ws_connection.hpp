// WsConnection: imgate's own WebSocket transport for one upgraded client
// connection, owned by one event loop for its whole life. Beast reads the
// HTTP upgrade request (net/http_session.cpp); from the 101 response on, the
// connection's bytes are handled here.
//
// Reads on readiness: each loop has its own epoll set (LoopIo::epoll_fd),
// itself watched by the loop's io_context. A connection is a descriptor in
// that set: no Asio socket, no pending operation, no reactor state per
// connection. When it is readable, it reads without blocking into its loop's
// shared buffer (LoopIo::read_buffer) and parses every complete frame there
// (websocket/frame_parser.hpp). It owns message memory only while a frame or
// a fragmented message is incomplete.
//
// Writes are corked: send() only queues a shared, pre-framed buffer and marks
// the connection for its loop's flush, which runs once per pass of the loop
// (a posted task, or the end of the registry task that sent the frames:
// run_then_flush) and writes every queued frame of each marked connection in
// one writev. A write that would block resumes on writability where it
// stopped. The queue is bounded in bytes: overflow closes with 1008.
//
// Lifecycle contract:
//  - valid from start() to its last handler; the WsHandler sees exactly one
//    on_open() and, after it, exactly one on_end() (every ending: client
//    close, error, EOF, protocol violation, overflow, close() by the
//    registry, shutdown);
//  - handlers are never re-entered: an overflow noticed inside send() (e.g.
//    during a fan-out loop over the shard) is posted and ends the connection
//    after the caller returns;
//  - close: our close frame goes out after the frames already being written;
//    the TCP side is shut down after the peer's close frame arrives (or ours
//    answers one), and cut off after close_timeout if the peer never
//    finishes.
//
// TLS (wss), on the same readiness events: read_some() / write_some() are the
// only places that differ. A TLS 1.3 connection comes with its record state
// (net/tls13_records.hpp, handed over from the HTTP phase by net/upgrade.cpp,
// its SSL object freed): reads take the socket's bytes into the loop's TLS
// read buffer and decrypt the whole records there into the loop's read
// buffer (a record still incomplete waits in an allocation of its own until
// the rest arrives); writes encrypt the queued frames into the loop's write
// buffer (up to 64 KiB) and send them, and what the socket does not take
// waits in an allocation of its own, sent before anything else. A TLS 1.2
// connection keeps its SSL object and reads and writes through it (a write
// that would block is retried with the same bytes). The TLS state lives in
// a separate allocation, so a plain connection pays one null pointer for it.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/smart_ptr/intrusive_ptr.hpp>
#include <sys/types.h>
#include <sys/uio.h>
#include <atomic>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "metrics/counters.hpp"
#include "net/send_queue.hpp"
#include "registry/types.hpp"
#include "security/limits.hpp"
#include "websocket/frame_parser.hpp"

struct ssl_st;  // OpenSSL's SSL

namespace imgate {

class WsConnection;
class Tls13Records;
void intrusive_ptr_add_ref(WsConnection* conn);
void intrusive_ptr_release(WsConnection* conn);
// References to a connection: held by the loop's epoll set while the
// connection is registered, and by posted tasks / timers. Counted without
// atomics (a connection is only ever touched on its own loop).
using WsConnectionPtr = boost::intrusive_ptr<WsConnection>;

// What the application does with its connections (the gateway: registry and
// command router; imgate-echo: echo). Called on the connection's loop.
class WsHandler {
 public:
  virtual void on_open(WsConnection& conn) = 0;
  // A complete text or binary message (binary only if the settings allow it).
  virtual void on_message(WsConnection& conn, ws::Opcode op, std::string_view payload) = 0;
  // Any frame received (data or control): the peer is alive.
  virtual void on_activity(WsConnection& conn) = 0;
  // The connection no longer carries application traffic (exactly once).
  virtual void on_end(WsConnection& conn, EndReason reason) = 0;

 protected:
  ~WsHandler() = default;
};

struct WsSettings {
  ws::ParseLimits limits;                     // max message, binary allowed
  std::size_t send_queue_bytes = 1 << 20;     // per connection; above: close 1008
  Clock::duration close_timeout = std::chrono::seconds(5);
  // 0: corked frames leave at the end of the loop's current pass (a posted
  // task). Above 0: they wait this long, so that a connection receiving many
  // pushes gets several per write (fewer system calls, more latency).
  Clock::duration flush_interval{0};
  // Client data messages per connection (disabled: unlimited); the message
  // that finds the bucket empty closes the connection with 1008.
  TokenBucket message_rate;
};

// What one event loop shares among its connections.
struct LoopIo {
  static constexpr std::size_t kReadBufferSize = 64 * 1024;
  // TLS only: frames are gathered here for one SSL_write.
  static constexpr std::size_t kTlsWriteBufferSize = 64 * 1024;

  // Creates the loop's epoll set and starts watching it (throws
  // std::system_error if epoll is unavailable).
  LoopIo(boost::asio::io_context& io, uint32_t index, const WsSettings& settings,
         WsHandler& handler, Counters& counters);
  ~LoopIo();
  LoopIo(const LoopIo&) = delete;
  LoopIo& operator=(const LoopIo&) = delete;

  // Ends the registered connections, drops the ones waiting for a flush and
  // stops watching the epoll set; must be called before the io_context is
  // destroyed (and is, by Server and imgate-echo).
  void stop();
  // Runs the tasks `after_request` collected (see there).
  void run_after_request();

  boost::asio::io_context& io;
  const uint32_t index;
  const WsSettings& settings;
  WsHandler& handler;
  Counters& counters;
  // Optional gauges (null: none). `upgraded`: WsConnections alive (counted
  // up when constructed, down when destroyed; what a shutdown waits for).
  // `sessions`: TCP sessions counted up by the listener; a WsConnection counts
  // its own down when destroyed.
  std::atomic<std::size_t>* upgraded = nullptr;
  std::atomic<std::size_t>* sessions = nullptr;
  // Optional (null: none): the per-address table; a connection given a slot
  // (set_client_slot) releases it there when it is destroyed, whatever
  // ended it.
  ClientTable* clients = nullptr;
  std::unique_ptr<char[]> read_buffer;
  std::unique_ptr<char[]> tls_write_buffer;  // allocated by the loop's first TLS write
  // TLS 1.3 (Tls13Records): the socket's bytes before decryption
  // (kReadBufferSize), allocated by the loop's first such read.
  std::unique_ptr<unsigned char[]> tls_read_buffer;
  // Connections with frames waiting for this pass's flush.
  std::vector<WsConnectionPtr> corked;
  // While an HTTP request is served on this loop (HttpSession), registry
  // tasks posted to the loop from its thread wait here and run (with
  // run_then_flush) as soon as the request's handler returns, in the same
  // pass: run_after_request(). Touched only on the loop's thread.
  bool serving_request = false;
  std::vector<std::function<void()>> after_request;
  bool flush_posted = false;  // a flush is posted or its timer armed
  std::unique_ptr<boost::asio::steady_timer> flush_timer;  // flush_interval > 0 only
  int epoll_fd = -1;
  // Every registered connection (intrusive list), so that stop() can end
  // the ones a shutdown deadline cut off.
  WsConnection* registered = nullptr;

 private:
  void watch();
  void dispatch_ready();
  std::unique_ptr<boost::asio::posix::stream_descriptor> epoll_watch_;  // null after stop()
};

class WsConnection final : public Peer {
 public:
  // Takes ownership of `fd`, a connected TCP socket, and of one reference to
  // `ssl` (TLS 1.2, set to talk to `fd`), if given; create with
  // WsConnectionPtr(new WsConnection(...)).
  WsConnection(int fd, LoopIo& loop, ssl_st* ssl = nullptr);
  // TLS 1.3: `records` protects the connection's records from the 101 on.
  WsConnection(int fd, LoopIo& loop, std::unique_ptr<Tls13Records> records);
  ~WsConnection();
  WsConnection(const WsConnection&) = delete;
  WsConnection& operator=(const WsConnection&) = delete;

  // Queues `response` (the 101), calls on_open, parses `early` (bytes that
  // followed the upgrade request in the HTTP reader's buffer) and starts
  // waiting for data.
  void start(std::string response, std::string_view early);
  // Instead of start(), for an upgrade refused by a per-client limit: queues
  // `response` (the 101, so that a browser sees the close code and reason)
  // and a close frame with `code` and `reason`, and finishes the close
  // handshake. The handler never sees the connection (no on_open / on_end).
  void start_refused(std::string response, uint16_t code, std::string_view reason);
  // The connection holds `slot` of LoopIo::clients (released when it is
  // destroyed). Set before start().
  void set_client_slot(uint32_t slot) { client_slot_ = slot; }

  // Peer: called on this connection's loop.
  void send(const Frame& frame) override;
  void ping() override;
  void close(uint16_t code, std::string_view reason) override;

  // Application data (the gateway stores the registry's ConnId).
  uint64_t tag = 0;
  LoopIo& loop() const { return loop_; }

  // Writes every queued frame of every corked connection of `loop`.
  static void flush_loop(LoopIo& loop);
  // Runs `task` (work the registry posted to this loop) and then writes what
  // it corked, in the same pass: no flush of its own is posted. With a
  // flush_interval, or a flush already on its way, the task just runs.
  static void run_then_flush(LoopIo& loop, const std::function<void()>& task);
  // epoll reported `events` for this connection.
  void on_events(uint32_t events);
  // Closes the descriptor at once, without a close handshake (the loop is
  // being torn down).
  void abandon();

 private:
  class Sink;
  enum class State : uint8_t {
    kOpen,        // application traffic flows
    kClosing,     // our close frame is queued / sent; waiting for the peer's
    kDraining,    // close handshake done on our side: TCP write side shut,
                  // reading until EOF (bounded by the close deadline)
    kDone,        // socket closed
  };

  void on_readable();
  // The transport's I/O, plain or TLS: bytes moved (> 0), or one of these.
  enum : ssize_t { kWouldRead = -1, kWouldWrite = -2, kEof = -3, kIoError = -4 };
  ssize_t read_some(char* buffer, std::size_t size);
  // Writes from the `count` buffers of `iov` (`offered` bytes in all); TLS
  // may offer fewer and lowers `offered` to what it offered. Less than
  // `offered` written: the socket is full.
  ssize_t write_some(const iovec* iov, std::size_t count, std::size_t& offered);
  ssize_t tls_read(char* buffer, std::size_t size);
  ssize_t tls_write(const iovec* iov, std::size_t count, std::size_t& offered);
  ssize_t records_read(char* buffer, std::size_t size);
  ssize_t records_write(const iovec* iov, std::size_t count, std::size_t& offered);
  bool tls_output_due() const;  // TLS 1.3: encrypted bytes wait, or a KeyUpdate answer
  void tls_shutdown();
  bool watch_socket();                       // start(): false when the socket is gone
  bool send_response(std::string& response); // start(): false on a socket error
  bool parse(char* data, std::size_t size);  // false: stop reading
  bool within_message_rate();                // false: it closed the connection (1008)
  void on_peer_close(std::string_view payload);
  void fail(EndReason reason, uint16_t code, std::string_view text);
  void end(EndReason reason);
  void queue_close(Frame close_frame, bool drop_queued = false);
  void cork();
  void flush();
  void on_all_written();
  void wait_writable();
  void shutdown_write();
  void finish();
  void arm_close_deadline();
  void link();
  void unlink_from_loop();
  friend void intrusive_ptr_add_ref(WsConnection* conn) { ++conn->refs_; }
  friend void intrusive_ptr_release(WsConnection* conn) {
    if (--conn->refs_ == 0) delete conn;
  }

  LoopIo& loop_;
  WsConnection* prev_ = nullptr;  // LoopIo::registered list
  WsConnection* next_ = nullptr;
  SendQueue queue_;
  ws::FrameParser parser_;
  std::unique_ptr<boost::asio::steady_timer> close_deadline_;  // only while closing
  struct TlsState;
  TlsState* tls_ = nullptr;     // wss only; owned
  uint32_t front_written_ = 0;  // bytes of queue_.front() already written
  int fd_;
  // References: the epoll set, the cork list, the close deadline and a posted
  // task or two at a time; 16 bits are plenty.
  uint16_t refs_ = 0;
  State state_ = State::kOpen;
  bool ended_ : 1 = false;           // on_end() called
  bool corked_ : 1 = false;          // in loop_.corked
  bool write_waiting_ : 1 = false;   // waiting for writability
  bool close_queued_ : 1 = false;    // our close frame is in the queue
  bool close_received_ : 1 = false;  // the peer's close frame arrived
  bool input_failed_ : 1 = false;    // a protocol violation: the rest is not parsed
  bool registered_ : 1 = false;      // in the epoll set and LoopIo::registered (holds a reference)
  uint32_t client_slot_ = 0;         // in LoopIo::clients; 0: none
  uint64_t message_bucket_ = 0;      // TokenBucket state of settings.message_rate
};

}  // namespace imgate
