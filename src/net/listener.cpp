#include "net/listener.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cctype>
#include <stdexcept>
#include <string>

namespace imgate {

namespace asio = boost::asio;
using asio::ip::tcp;

Listener::Listener(asio::io_context& loop, const tcp::endpoint& endpoint, ServerContext& ctx,
                   PortRole role)
    : acceptor_(loop), ctx_(ctx), role_(role) {
  boost::system::error_code ec;
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (!ec) return;
  // "cannot listen on 0.0.0.0:8080 (HTTP API): address already in use"
  std::string why = ec.message();
  if (!why.empty()) why[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(why[0])));
  const std::string host = endpoint.address().is_v6() ? "[" + endpoint.address().to_string() + "]"
                                                       : endpoint.address().to_string();
  const char* what = role.websocket ? (role.api ? "WebSocket and HTTP API" : "WebSocket")
                                    : "HTTP API";
  throw std::runtime_error("cannot listen on " + host + ":" + std::to_string(endpoint.port()) +
                           " (" + what + "): " + why);
}

void Listener::start() { do_accept(); }

void Listener::stop() {
  asio::post(acceptor_.get_executor(), [self = shared_from_this()] {
    boost::system::error_code ignored;
    self->acceptor_.close(ignored);
  });
}

void Listener::do_accept() {
  const uint32_t shard = next_shard_;
  next_shard_ = (next_shard_ + 1) % static_cast<uint32_t>(ctx_.loops.size());
  acceptor_.async_accept(*ctx_.loops[shard],
                         [self = shared_from_this(), shard](boost::system::error_code ec,
                                                            tcp::socket socket) {
                           self->on_accept(shard, ec, std::move(socket));
                         });
}

void Listener::on_accept(uint32_t shard, boost::system::error_code ec, tcp::socket socket) {
  if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
  if (ec == asio::error::no_descriptors || ec == boost::system::errc::too_many_files_open_in_system) {
    // No descriptor for the connection waiting in the backlog: give up the
    // spare for a moment to answer it 503 instead of leaving it unanswered.
    if (spare_.refuse_one(acceptor_.native_handle(), ctx_.tls != nullptr)) {
      Counters::bump(ctx_.counters.descriptor_refusals);
      warn_refused("no file descriptor left");
      do_accept();
      return;
    }
  }
  if (ec) {
    // EMFILE / ENFILE without a spare, ENOBUFS: back off briefly instead of spinning.
    ++accept_errors_;
    if (Clock::now() - last_warning_ >= std::chrono::seconds(1)) {  // at most one line a second
      spdlog::warn("accept failed: {} ({} times)", ec.message(), accept_errors_);
      last_warning_ = Clock::now();
      accept_errors_ = 0;
    }
    auto timer = std::make_shared<asio::steady_timer>(acceptor_.get_executor(),
                                                      std::chrono::milliseconds(50));
    timer->async_wait([self = shared_from_this(), timer](boost::system::error_code) {
      self->do_accept();
    });
    return;
  }
  admit(shard, std::move(socket), 0);
}

void Listener::admit(uint32_t shard, tcp::socket socket, int waited_ms) {
  switch (verdict(socket, waited_ms)) {
    case Verdict::kServe: {
      boost::system::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      start_http_session(std::move(socket), ctx_, shard, role_);
      break;
    }
    case Verdict::kRefused:
      break;
    case Verdict::kWait: {
      // Not accepting meanwhile: the next connections wait in the backlog.
      auto timer = std::make_shared<asio::steady_timer>(acceptor_.get_executor(),
                                                        std::chrono::milliseconds(1));
      auto held = std::make_shared<tcp::socket>(std::move(socket));
      timer->async_wait([self = shared_from_this(), timer, held, shard,
                         waited_ms](boost::system::error_code) {
        if (self->acceptor_.is_open()) self->admit(shard, std::move(*held), waited_ms + 1);
      });
      return;
    }
  }
  do_accept();
}

Listener::Verdict Listener::verdict(tcp::socket& socket, int waited_ms) {
  if (role_.websocket) {
    const std::size_t limit = ctx_.config.max_connections;
    const std::size_t now = ctx_.ws_sessions.fetch_add(1, std::memory_order_relaxed);
    if (limit != 0 && now >= limit) {
      ctx_.ws_sessions.fetch_sub(1, std::memory_order_relaxed);
      refuse(socket, ctx_.counters.rejected_connections, "WebSocket port at --max-connections");
      return Verdict::kRefused;
    }
    return Verdict::kServe;
  }
  if (!counts_as_http_connection(role_, ctx_)) return Verdict::kServe;
  switch (ctx_.http_connections->admit()) {
    case HttpConnections::Admission::kAdmitted:
      return Verdict::kServe;
    case HttpConnections::Admission::kReplacing:
      Counters::bump(ctx_.counters.http_idle_closes);
      return Verdict::kServe;
    case HttpConnections::Admission::kWait:
      if (waited_ms < HttpConnections::kWaitMillis) return Verdict::kWait;
      break;
    case HttpConnections::Admission::kFull:
      break;
  }
  refuse(socket, ctx_.counters.http_rejected_connections,
         "HTTP port at --max-http-connections, none idle");
  return Verdict::kRefused;
}

void Listener::refuse(tcp::socket& socket, Counters::Counter& counter, const char* why) {
  Counters::bump(counter);
  refuse_unavailable(socket.release(), ctx_.tls != nullptr);
  warn_refused(why);
}

void Listener::warn_refused(const char* why) {
  ++refusals_;
  if (Clock::now() - last_refusal_warning_ < std::chrono::seconds(1)) return;
  spdlog::warn("port {}: {} connection(s) refused with 503 ({})", port(), refusals_, why);
  last_refusal_warning_ = Clock::now();
  refusals_ = 0;
}

}  // namespace imgate
