// Test clients for the imgate WebSocket port.
//
// WsClient: a Beast WebSocket client whose stream lives on a private
// io_context run by a private thread. Every public function is called from the
// test thread only; it hands the work to the I/O thread and waits for it with a
// deadline. Incoming frames are collected by the I/O thread into an inbox.
//   - auto_read = true (default): a read is kept pending from connect on, so
//     server pings are answered with pongs even while the test thread is busy
//     elsewhere (e.g. polling /system/state). This is a live, attentive peer.
//   - auto_read = false: the client reads only while a read_* call asks for a
//     message, and does not keep reading afterwards: between calls nobody
//     answers pings. This is a "silent" peer as far as liveness goes.
//
// For byte-exact frames and unupgraded TCP sessions see raw_connection.hpp.
#pragma once

#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace imgate::test {

using Millis = std::chrono::milliseconds;
using namespace std::chrono_literals;

// Close code reported when the connection ended without a close frame.
inline constexpr uint16_t kNoCloseFrame = 1006;

// Accessors for a server envelope {"seq","cmd","response":{"code","codeMsg","data"}}.
// Missing members read as -1 / "<missing>" so comparisons fail readably.
int64_t code_of(const boost::json::object& envelope);
std::string code_msg_of(const boost::json::object& envelope);
std::string seq_of(const boost::json::object& envelope);
std::string cmd_of(const boost::json::object& envelope);
boost::json::value data_of(const boost::json::object& envelope);

// {"seq":<seq>,"cmd":<cmd>,"data":<data_json>} with seq and cmd JSON-escaped.
std::string make_request(std::string_view seq, std::string_view cmd,
                         std::string_view data_json = "{}");

struct WsClientOptions {
  bool auto_read = true;
  int receive_buffer_bytes = 0;  // SO_RCVBUF before connect; 0 = system default
  std::string path = "/acc";
};

class WsClient {
 public:
  explicit WsClient(WsClientOptions options = {});
  WsClient(const WsClient&) = delete;
  WsClient& operator=(const WsClient&) = delete;
  // Drops the connection (no close frame) if it is still open.
  ~WsClient();

  // TCP connect + WebSocket upgrade. On an upgrade refused with an HTTP
  // answer, handshake_status() holds its status code.
  boost::system::error_code try_connect(uint16_t port, Millis timeout = 5s);
  // try_connect that throws std::runtime_error on failure.
  void connect(uint16_t port, Millis timeout = 5s);
  unsigned handshake_status() const { return handshake_status_; }

  // Each write waits for completion (up to `timeout`) and returns its error.
  boost::system::error_code send_text(std::string_view text, Millis timeout = 5s);
  boost::system::error_code send_binary(std::string_view bytes, Millis timeout = 5s);
  // One text message sent as parts.size() frames (first text, then continuations).
  boost::system::error_code send_fragmented(const std::vector<std::string>& parts);
  boost::system::error_code send_ping_frame();
  // Bytes written straight to the TCP socket, bypassing Beast.
  boost::system::error_code send_raw(std::string_view bytes);

  // Switches to reading continuously (answering pings) from now on.
  void start_reading();
  // Next message from the server (any opcode), or nullopt on timeout/close.
  std::optional<std::string> read_text(Millis timeout = 2s);
  // Next message parsed as a JSON object; a non-object message is a test failure.
  std::optional<boost::json::object> read_json(Millis timeout = 2s);

  // Sends `frame` verbatim and returns the response whose seq and cmd are as
  // given; other messages received meanwhile are kept as pushes. Throws
  // std::runtime_error when no such response arrives within `timeout`.
  boost::json::object request_frame(std::string_view frame, std::string_view seq,
                                    std::string_view cmd, Millis timeout = 3s);
  // request_frame(make_request(seq, cmd, data_json)); an empty seq picks a fresh one.
  boost::json::object request(std::string_view cmd, std::string_view data_json = "{}",
                              std::string seq = "");
  // Logs in and returns the response code.
  int64_t login(uint32_t app_id, std::string_view user_id);
  // Sends cmd "ping" and checks the pong.
  void expect_pong(Millis timeout = 3s);

  // Next push with the given cmd (earlier ones of other cmds stay queued).
  std::optional<boost::json::object> next_push(std::string_view cmd, Millis timeout = 2s);
  // A ping round trip (so that pushes already on their way are collected),
  // then returns and forgets every push received so far.
  std::vector<boost::json::object> take_pushes();

  // Reads (discarding nothing: messages stay readable) until the server ends
  // the connection; returns the close code seen (kNoCloseFrame if none) or
  // nullopt if the connection is still open at the deadline.
  std::optional<uint16_t> expect_closed(Millis timeout = 3s);
  bool closed() const;
  // The error that ended reading (e.g. "The WebSocket stream was gracefully closed").
  std::string end_error() const;
  // Client-initiated close handshake.
  boost::system::error_code close(uint16_t code = 1000);
  // Abrupt end: shutdown + close of the TCP socket (a FIN), no close frame.
  void drop();
  // TCP reset: SO_LINGER {on, 0} then close, so the server's next read or
  // write fails with ECONNRESET (a peer that vanished, not one that left).
  void reset();

  // WebSocket pings received from the server while reading.
  std::size_t pings_received() const;

 private:
  void cut(bool with_reset);  // drop() (FIN) or reset() (RST)
  struct Impl;
  using Done = std::function<void(boost::system::error_code)>;
  boost::system::error_code run_on_io(std::function<void(Done)> start, Millis timeout);
  void request_read();

  WsClientOptions options_;
  unsigned handshake_status_ = 0;
  unsigned next_seq_ = 0;
  std::deque<boost::json::object> pushes_;  // unsolicited messages, test thread only
  std::unique_ptr<Impl> impl_;
};

}  // namespace imgate::test
