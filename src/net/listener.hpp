// Listener: accepts TCP connections on one port and spreads them round-robin
// over the worker loops; each accepted socket is created on (and stays with)
// its target loop. Enforces max_connections on WebSocket-serving ports.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <memory>

#include "net/http_session.hpp"
#include "net/server_context.hpp"

namespace imgate {

class Listener : public std::enable_shared_from_this<Listener> {
 public:
  // Binds and listens; throws boost::system::system_error on failure.
  Listener(boost::asio::io_context& loop, const boost::asio::ip::tcp::endpoint& endpoint,
           ServerContext& ctx, PortRole role);

  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  void start();
  void stop();  // stops accepting; posted to the listener's loop

 private:
  void do_accept();
  void on_accept(uint32_t shard, boost::system::error_code ec,
                 boost::asio::ip::tcp::socket socket);

  boost::asio::ip::tcp::acceptor acceptor_;
  ServerContext& ctx_;
  PortRole role_;
  uint32_t next_shard_ = 0;
  TimePoint last_warning_{};
  uint64_t accept_errors_ = 0;
};

}  // namespace imgate
