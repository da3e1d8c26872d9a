// HttpSession: the first stage of every TCP connection. Reads HTTP requests
// (bounded header and body, a deadline per request); an upgrade at the
// WebSocket path hands the socket to a WebSocketSession, anything else is
// answered by the HTTP API (on the API port) or 404 / 400 (on the WS port).
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <memory>
#include <optional>

#include "net/server_context.hpp"

namespace imgate {

// What a listening port serves.
struct PortRole {
  bool websocket = false;  // upgrades at config.ws_path
  bool api = false;        // the HTTP API
};

class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(boost::asio::ip::tcp::socket socket, ServerContext& ctx, uint32_t shard,
              PortRole role);
  ~HttpSession();

  void run();

 private:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;
  using Response = boost::beast::http::response<boost::beast::http::string_body>;

  void do_read();
  void on_read(boost::beast::error_code ec, std::size_t bytes);
  void write(Response response);
  void on_write(bool keep_alive, boost::beast::error_code ec, std::size_t bytes);

  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  Request request_;
  ServerContext& ctx_;
  uint32_t shard_;
  PortRole role_;
  bool upgraded_ = false;
};

}  // namespace imgate
