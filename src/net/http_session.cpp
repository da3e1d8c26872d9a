#include "net/http_session.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include "http/api.hpp"
#include "net/upgrade.hpp"

namespace imgate {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {
constexpr std::size_t kHeaderLimit = 8 * 1024;   // generous for any sane client
constexpr std::size_t kBodyLimit = 64 * 1024;    // API bodies are small JSON / forms
constexpr auto kRequestTimeout = std::chrono::seconds(30);  // keep-alive idle + request

std::string_view path_of(beast::string_view target) {
  std::string_view t(target.data(), target.size());
  return t.substr(0, t.find('?'));
}
}  // namespace

HttpSession::HttpSession(asio::ip::tcp::socket socket, ServerContext& ctx, uint32_t shard,
                         PortRole role)
    : stream_(std::move(socket)), ctx_(ctx), shard_(shard), role_(role) {}

HttpSession::~HttpSession() {
  if (role_.websocket && !upgraded_) {
    // Never became a WebSocket: timeout, bad or missing request, 400 / 404.
    Counters::bump(ctx_.counters.handshake_failures);
    ctx_.ws_sessions.fetch_sub(1, std::memory_order_relaxed);
  }
}

void HttpSession::run() {
  asio::dispatch(stream_.get_executor(),
                 beast::bind_front_handler(&HttpSession::do_read, shared_from_this()));
}

void HttpSession::do_read() {
  parser_.emplace();
  parser_->header_limit(kHeaderLimit);
  parser_->body_limit(kBodyLimit);
  stream_.expires_after(role_.api ? std::chrono::milliseconds(kRequestTimeout)
                                  : ctx_.config.handshake_timeout);
  http::async_read(stream_, buffer_, *parser_,
                   beast::bind_front_handler(&HttpSession::on_read, shared_from_this()));
}

void HttpSession::on_read(beast::error_code ec, std::size_t) {
  if (ec == http::error::end_of_stream) {
    stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ec);
    return;
  }
  if (ec) {
    if (ec == http::error::header_limit || ec == http::error::body_limit) {
      // The rest of the oversized request is still unread: answer once and close,
      // or the next read would trip on it again (and again).
      auto res = text_response(parser_->get(), http::status::payload_too_large, "request too large");
      res.keep_alive(false);
      write(std::move(res));
    }
    return;
  }
  request_ = parser_->release();
  HttpRequest& request = request_;  // lives until the response is written (async API replies)
  const bool at_ws_path = role_.websocket && path_of(request.target()) == ctx_.config.ws_path;
  if (at_ws_path && beast::websocket::is_upgrade(request)) {
    if (auto refusal = check_upgrade(request)) {
      write(std::move(*refusal));
      return;
    }
    // Hand the socket over: the WebSocket connection counts itself from here on.
    upgraded_ = true;
    hand_over(stream_, buffer_, request, *ctx_.loop_io[shard_]);
    return;
  }
  if (at_ws_path) {
    write(text_response(request, http::status::bad_request, "Bad Request"));
    return;
  }
  if (!role_.api) {
    write(text_response(request, http::status::not_found, "404 page not found"));
    return;
  }
  serve_api(request, ctx_, [self = shared_from_this()](HttpResponse response) {
    asio::dispatch(self->stream_.get_executor(),
                   [self, response = std::move(response)]() mutable {
                     self->write(std::move(response));
                   });
  });
}

void HttpSession::write(Response response) {
  auto shared = std::make_shared<Response>(std::move(response));
  bool keep_alive = shared->keep_alive() && role_.api;
  shared->keep_alive(keep_alive);
  http::async_write(stream_, *shared,
                    [self = shared_from_this(), shared, keep_alive](beast::error_code ec,
                                                                    std::size_t bytes) {
                      self->on_write(keep_alive, ec, bytes);
                    });
}

void HttpSession::on_write(bool keep_alive, beast::error_code ec, std::size_t) {
  if (ec) return;
  if (!keep_alive) {
    stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ec);
    return;
  }
  do_read();
}

}  // namespace imgate
