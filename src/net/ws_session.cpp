#include "net/ws_session.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/websocket/error.hpp>

namespace imgate {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;

namespace {
websocket::close_reason make_reason(uint16_t code, std::string_view text) {
  websocket::close_reason reason;
  reason.code = code;
  reason.reason.assign(text.data(), std::min(text.size(), reason.reason.max_size()));
  return reason;
}
}  // namespace

WebSocketSession::WebSocketSession(asio::ip::tcp::socket socket, ServerContext& ctx,
                                   uint32_t shard)
    : ws_(std::move(socket)), ctx_(ctx), shard_(ctx.hub.shard(shard)) {
  ctx_.ws_upgraded.fetch_add(1, std::memory_order_relaxed);
}

WebSocketSession::~WebSocketSession() {
  // Reached only after every handler has run; an accepted session has ended
  // through end() (or its loop was destroyed at shutdown after close_all).
  ctx_.ws_sessions.fetch_sub(1, std::memory_order_relaxed);
  ctx_.ws_upgraded.fetch_sub(1, std::memory_order_relaxed);
}

void WebSocketSession::start(beast::http::request<beast::http::string_body> request) {
  websocket::stream_base::timeout timeouts{};
  timeouts.handshake_timeout = ctx_.config.handshake_timeout;  // opening handshake
  timeouts.idle_timeout = websocket::stream_base::none();      // liveness: the shard's wheel
  timeouts.keep_alive_pings = false;
  ws_.set_option(timeouts);
  ws_.read_message_max(ctx_.config.max_message_bytes);
  ws_.auto_fragment(false);
  ws_.set_option(websocket::stream_base::decorator([](websocket::response_type& res) {
    res.set(beast::http::field::server, "imgate/" IMGATE_VERSION);
  }));
  ws_.async_accept(request, beast::bind_front_handler(&WebSocketSession::on_accept,
                                                      shared_from_this()));
}

void WebSocketSession::on_accept(beast::error_code ec) {
  if (ec) {
    Counters::bump(ctx_.counters.handshake_failures);
    spdlog::debug("websocket handshake failed: {}", ec.message());
    return;
  }
  if (ctx_.stopping.load(std::memory_order_relaxed)) {
    close_reason_ = make_reason(close_code::kGoingAway, "server shutdown");
    closing_ = true;
    start_close();
    return;
  }
  // The close handshake gets close_timeout from here on.
  websocket::stream_base::timeout timeouts{};
  timeouts.handshake_timeout = ctx_.config.close_timeout;
  timeouts.idle_timeout = websocket::stream_base::none();
  timeouts.keep_alive_pings = false;
  ws_.set_option(timeouts);
  ws_.control_callback([this](websocket::frame_type kind, beast::string_view) {
    if (kind == websocket::frame_type::close) {
      on_peer_close();
    } else {
      shard_.touch(id_, Clock::now());
    }
  });
  id_ = shard_.add(*this, Clock::now());
  registered_ = true;
  Counters::bump(ctx_.counters.connections_opened);
  do_read();
}

void WebSocketSession::do_read() {
  ws_.async_read(buffer_, beast::bind_front_handler(&WebSocketSession::on_read,
                                                    shared_from_this()));
}

void WebSocketSession::on_read(beast::error_code ec, std::size_t bytes) {
  if (ec) {
    handle_read_error(ec);
    return;
  }
  Counters::bump(ctx_.counters.messages_in);
  Counters::bump(ctx_.counters.bytes_in, bytes);
  const TimePoint now = Clock::now();
  shard_.touch(id_, now);
  if (!ws_.got_text()) {
    end(EndReason::kProtocol, close_code::kUnsupportedData);
    return;
  }
  if (!closing_) {
    // flat_buffer is contiguous: parse in place, no copy of the message.
    const std::string_view text(static_cast<const char*>(buffer_.data().data()), buffer_.size());
    CommandContext cmd{shard_, id_, ctx_.sorted_app_ids, now};
    send(make_frame(ctx_.router.handle(cmd, text, ctx_.counters)));
  }
  // Give the read buffer back between messages: an idle connection then holds
  // no message memory (a malloc per message is cheap next to parsing it).
  buffer_.consume(buffer_.size());
  buffer_.shrink_to_fit();
  do_read();
}

void WebSocketSession::on_peer_close() {
  // The client said goodbye: it leaves the registry now, not when its TCP
  // side finally closes (Beast keeps reading until then, bounded by the
  // close deadline).
  if (closing_) return;  // the answer to our own close
  closing_ = true;
  ctx_.counters.count_close(ws_.reason().code);
  shard_.unlink(id_, EndReason::kClientClose);
  arm_close_deadline();
}

void WebSocketSession::handle_read_error(beast::error_code ec) {
  if (close_deadline_) close_deadline_->cancel();
  if (closing_) {  // our own close (already counted) completing or being forced
    shard_.unlink(id_, EndReason::kNetworkError);
    return;
  }
  if (ec == websocket::error::closed) {
    ctx_.counters.count_close(ws_.reason().code);
    shard_.unlink(id_, EndReason::kClientClose);
    return;
  }
  if (ec == websocket::error::message_too_big) {
    ctx_.counters.count_close(close_code::kTooBig);
    shard_.unlink(id_, EndReason::kProtocol);
    return;
  }
  if (ec.category() == websocket::make_error_code(websocket::error::closed).category()) {
    // Beast failed the connection for an RFC 6455 violation and sent the close.
    uint16_t code = ec == websocket::error::bad_frame_payload ? close_code::kInvalidPayload
                                                                : close_code::kProtocolError;
    ctx_.counters.count_close(code);
    shard_.unlink(id_, EndReason::kProtocol);
    return;
  }
  spdlog::debug("connection {:x} read error: {}", id_, ec.message());
  shard_.unlink(id_, EndReason::kNetworkError);
}

void WebSocketSession::send(const Frame& frame) {
  if (closing_) return;
  if (queue_.bytes() + frame->size() > ctx_.config.send_queue_bytes) {
    // Slow consumer: never wait for it. The close is posted so that the caller
    // (possibly a fan-out loop over the shard's indexes) finishes first.
    closing_ = true;
    Counters::bump(ctx_.counters.send_queue_overflows);
    asio::post(ws_.get_executor(), [self = shared_from_this()] {
      self->end(EndReason::kOverflow, close_code::kPolicyViolation);
    });
    return;
  }
  queue_.push_back(frame);
  if (!writing_) do_write();
}

void WebSocketSession::do_write() {
  writing_ = true;
  ws_.text(true);
  ws_.async_write(asio::buffer(*queue_.front()),
                  beast::bind_front_handler(&WebSocketSession::on_write, shared_from_this()));
}

void WebSocketSession::on_write(beast::error_code ec, std::size_t bytes) {
  writing_ = false;
  if (ec) {
    queue_.release();
    shard_.unlink(id_, EndReason::kNetworkError);
    return;
  }
  Counters::bump(ctx_.counters.messages_out);
  Counters::bump(ctx_.counters.bytes_out, bytes);
  queue_.pop_front();
  if (close_started_) return;
  if (!queue_.empty() && !closing_) {
    do_write();
  } else if (closing_) {
    start_close();
  }
}

void WebSocketSession::ping() {
  if (closing_ || writing_) return;  // a write in flight will be retried by the next check
  writing_ = true;
  ws_.async_ping({}, [self = shared_from_this()](beast::error_code ec) {
    self->writing_ = false;
    if (ec) {
      self->shard_.unlink(self->id_, EndReason::kNetworkError);
      return;
    }
    if (self->closing_) {
      self->start_close();
    } else if (!self->queue_.empty()) {
      self->do_write();
    }
  });
}

void WebSocketSession::close(uint16_t code, std::string_view reason) {
  // Called by the shard after it unlinked us (timeout, shutdown).
  ctx_.counters.count_close(code);
  close_reason_ = make_reason(code, reason);
  closing_ = true;
  arm_close_deadline();
  if (!writing_) start_close();
}

void WebSocketSession::end(EndReason reason, uint16_t code) {
  shard_.unlink(id_, reason);
  close_reason_ = make_reason(code, to_string(reason));
  ctx_.counters.count_close(code);
  closing_ = true;
  // Frames not yet started are dropped; the one in flight (if any) finishes or
  // is cut off by the deadline.
  if (writing_) {
    queue_.keep_front_only();
  } else {
    queue_.release();
  }
  arm_close_deadline();
  if (!writing_) start_close();
}

void WebSocketSession::start_close() {
  if (close_started_) return;
  close_started_ = true;
  queue_.release();
  ws_.async_close(close_reason_, [self = shared_from_this()](beast::error_code) {
    // Handshake done (or failed): nothing left to wait for. A pending read,
    // if any, completes on its own.
    if (self->close_deadline_) self->close_deadline_->cancel();
  });
}

void WebSocketSession::arm_close_deadline() {
  if (close_deadline_) return;
  close_deadline_ = std::make_unique<asio::steady_timer>(ws_.get_executor());
  close_deadline_->expires_after(ctx_.config.close_timeout);
  close_deadline_->async_wait([self = shared_from_this()](beast::error_code ec) {
    if (ec) return;  // cancelled: the session ended normally
    beast::error_code ignored;
    beast::get_lowest_layer(self->ws_).close(ignored);  // peer never drained: cut it off
  });
}

}  // namespace imgate
