// WebSocketSession: one upgraded client connection, owned by one event loop
// (its shard) for its whole life.
//
// Contract: registered in the shard from a successful accept until its end;
// every ending (client close, error, timeout, overflow, bad input, shutdown)
// calls Shard::unlink exactly-once-effectively (unlink is idempotent). A close
// asked for while a handler runs (e.g. overflow during a fan-out loop) is
// posted and takes effect after that handler returns.
//
// Writes: one writer; frames wait in a queue bounded in bytes
// (send_queue_bytes). Overflow closes the connection with 1008. A close that
// cannot complete (peer not reading) is forced after close_timeout.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <deque>
#include <memory>

#include "net/send_queue.hpp"
#include "net/server_context.hpp"
#include "registry/types.hpp"

namespace imgate {

class WebSocketSession final : public Peer, public std::enable_shared_from_this<WebSocketSession> {
 public:
  WebSocketSession(boost::asio::ip::tcp::socket socket, ServerContext& ctx, uint32_t shard);
  ~WebSocketSession();

  // Completes the upgrade for `request` (already checked to be an upgrade at
  // the WebSocket path) and starts reading.
  void start(boost::beast::http::request<boost::beast::http::string_body> request);

  // Peer (called on this session's thread by the shard).
  void send(const Frame& frame) override;
  void ping() override;
  void close(uint16_t code, std::string_view reason) override;

 private:
  void on_accept(boost::beast::error_code ec);
  void do_read();
  void on_read(boost::beast::error_code ec, std::size_t bytes);
  void do_write();
  void on_write(boost::beast::error_code ec, std::size_t bytes);
  void end(EndReason reason, uint16_t close_code);  // unlink, then close
  void start_close();
  void arm_close_deadline();
  void handle_read_error(boost::beast::error_code ec);
  void on_peer_close();

  boost::beast::websocket::stream<boost::asio::ip::tcp::socket> ws_;
  boost::beast::flat_buffer buffer_;
  ServerContext& ctx_;
  Shard& shard_;
  ConnId id_ = 0;
  SendQueue queue_;
  std::unique_ptr<boost::asio::steady_timer> close_deadline_;  // only while closing
  boost::beast::websocket::close_reason close_reason_;
  bool registered_ = false;
  bool writing_ = false;        // a write or ping is in flight
  bool closing_ = false;        // no more frames are queued
  bool close_started_ = false;  // async_close issued
};

}  // namespace imgate
