#include "net/listener.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

namespace imgate {

namespace asio = boost::asio;
using asio::ip::tcp;

Listener::Listener(asio::io_context& loop, const tcp::endpoint& endpoint, ServerContext& ctx,
                   PortRole role)
    : acceptor_(loop), ctx_(ctx), role_(role) {
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(asio::socket_base::reuse_address(true));
  acceptor_.bind(endpoint);
  acceptor_.listen(asio::socket_base::max_listen_connections);
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
  if (ec) {
    // EMFILE / ENFILE / ENOBUFS: back off briefly instead of spinning.
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
  if (role_.websocket) {
    const std::size_t limit = ctx_.config.max_connections;
    const std::size_t now = ctx_.ws_sessions.fetch_add(1, std::memory_order_relaxed);
    if (limit != 0 && now >= limit) {
      ctx_.ws_sessions.fetch_sub(1, std::memory_order_relaxed);
      Counters::bump(ctx_.counters.rejected_connections);
      boost::system::error_code ignored;
      socket.close(ignored);  // over the limit: refuse before any work
      do_accept();
      return;
    }
  }
  socket.set_option(tcp::no_delay(true), ec);
  start_http_session(std::move(socket), ctx_, shard, role_);
  do_accept();
}

}  // namespace imgate
