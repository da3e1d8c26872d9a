// Listener: accepts TCP connections on one port and spreads them round-robin
// over the worker loops; each accepted socket is created on (and stays with)
// its target loop. Enforces max_connections on WebSocket-serving ports and
// --max-http-connections on the HTTP API port (ServerContext::http_connections);
// a connection over either bound, or one accepted on the spare descriptor
// when the process has none left, is answered 503 and closed
// (net/descriptors.hpp).
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <memory>

#include "net/descriptors.hpp"
#include "net/http_session.hpp"
#include "net/server_context.hpp"

namespace imgate {

class Listener : public std::enable_shared_from_this<Listener> {
 public:
  // Binds and listens. Throws std::runtime_error naming the address and the
  // port's role on failure ("cannot listen on 0.0.0.0:8080 (HTTP API):
  // address already in use").
  Listener(boost::asio::io_context& loop, const boost::asio::ip::tcp::endpoint& endpoint,
           ServerContext& ctx, PortRole role);

  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  void start();
  void stop();  // stops accepting; posted to the listener's loop

 private:
  void do_accept();
  void on_accept(uint32_t shard, boost::system::error_code ec,
                 boost::asio::ip::tcp::socket socket);
  enum class Verdict { kServe, kRefused, kWait };
  // Serves the connection, refuses it (503) over a bound, or (HTTP port, the
  // longest-idle sessions still closing) asks again a millisecond later, not
  // accepting meanwhile; then accepts the next one.
  void admit(uint32_t shard, boost::asio::ip::tcp::socket socket, int waited_ms);
  Verdict verdict(boost::asio::ip::tcp::socket& socket, int waited_ms);
  void refuse(boost::asio::ip::tcp::socket& socket, Counters::Counter& counter, const char* why);
  // At most one warning a second, with the number of refusals since the last.
  void warn_refused(const char* why);

  boost::asio::ip::tcp::acceptor acceptor_;
  ServerContext& ctx_;
  PortRole role_;
  uint32_t next_shard_ = 0;
  SpareDescriptor spare_;
  TimePoint last_warning_{};
  uint64_t accept_errors_ = 0;
  TimePoint last_refusal_warning_{};
  uint64_t refusals_ = 0;  // since the last warning
};

}  // namespace imgate
