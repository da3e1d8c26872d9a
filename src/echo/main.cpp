// imgate-echo: the production WebSocket transport (net/ws_connection.hpp) as
// an echo server, so that conformance suites (Autobahn|Testsuite) can drive
// it: any path, text and binary messages echoed, messages up to 16 MiB, no
// login. Not part of the gateway; a test and development tool.
//
//   imgate-echo --port 9001 [--bind 127.0.0.1] [--threads 1]
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <iostream>
#include <memory>
#include <thread>

#include "net/upgrade.hpp"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using namespace imgate;

class EchoHandler final : public WsHandler {
 public:
  void on_open(WsConnection&) override {}
  void on_message(WsConnection& conn, ws::Opcode op, std::string_view payload) override {
    conn.send(std::make_shared<const ws::WireFrame>(op, payload));
  }
  void on_activity(WsConnection&) override {}
  void on_end(WsConnection&, EndReason) override {}
};

// Reads the upgrade request (Beast), then hands the socket to the transport.
class UpgradeSession : public std::enable_shared_from_this<UpgradeSession> {
 public:
  UpgradeSession(tcp::socket socket, LoopIo& loop) : stream_(std::move(socket)), loop_(loop) {}

  void run() {
    stream_.expires_after(std::chrono::seconds(10));
    http::async_read(stream_, buffer_, request_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                       if (!ec) self->on_request();
                     });
  }

 private:
  void on_request() {
    if (!beast::websocket::is_upgrade(request_)) {
      return refuse(UpgradeRefusal{http::status::bad_request, request_.version()});
    }
    if (auto refusal = check_upgrade(request_)) return refuse(std::move(*refusal));
    hand_over(stream_, buffer_, request_, loop_);
  }

  void refuse(UpgradeRefusal response) {
    auto res = std::make_shared<UpgradeRefusal>(std::move(response));
    res->keep_alive(false);
    res->prepare_payload();
    http::async_write(stream_, *res, [self = shared_from_this(), res](beast::error_code, std::size_t) {
      beast::error_code ignored;
      self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    });
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  UpgradeRequest request_;
  LoopIo& loop_;
};

class Acceptor : public std::enable_shared_from_this<Acceptor> {
 public:
  Acceptor(asio::io_context& io, const tcp::endpoint& endpoint, std::vector<LoopIo*> loops)
      : acceptor_(io, endpoint), loops_(std::move(loops)) {}

  void accept() {
    LoopIo& loop = *loops_[next_++ % loops_.size()];
    acceptor_.async_accept(loop.io, [self = shared_from_this(), &loop](beast::error_code ec,
                                                                         tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) {
        socket.set_option(tcp::no_delay(true), ec);
        std::make_shared<UpgradeSession>(std::move(socket), loop)->run();
      }
      self->accept();
    });
  }
  void stop() { acceptor_.close(); }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }

 private:
  tcp::acceptor acceptor_;
  std::vector<LoopIo*> loops_;
  std::size_t next_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"imgate-echo: imgate's WebSocket transport as an echo server"};
  std::string bind = "127.0.0.1";
  uint16_t port = 9001;
  unsigned threads = 1;
  std::size_t max_message = 16u << 20;
  app.add_option("--bind", bind, "address to listen on");
  app.add_option("--port", port, "port to listen on (0: any free port, printed)");
  app.add_option("--threads", threads, "event loops")->check(CLI::Range(1, 64));
  app.add_option("--max-message", max_message, "largest message echoed, bytes");
  CLI11_PARSE(app, argc, argv);

  WsSettings settings;
  settings.limits.max_message = max_message;
  settings.limits.binary_allowed = true;
  settings.send_queue_bytes = 2 * max_message + (1u << 20);
  Counters counters;
  EchoHandler handler;
  std::vector<std::unique_ptr<asio::io_context>> ios;
  std::vector<std::unique_ptr<LoopIo>> loops;
  std::vector<LoopIo*> loop_ptrs;
  for (unsigned i = 0; i < threads; ++i) {
    ios.push_back(std::make_unique<asio::io_context>(1));
    loops.push_back(std::make_unique<LoopIo>(*ios.back(), i, settings, handler, counters));
    loop_ptrs.push_back(loops.back().get());
  }
  auto acceptor = std::make_shared<Acceptor>(
      *ios[0], tcp::endpoint(asio::ip::make_address(bind), port), loop_ptrs);
  acceptor->accept();
  std::cout << "imgate-echo listening on " << bind << ":" << acceptor->port() << std::endl;

  asio::signal_set signals(*ios[0], SIGINT, SIGTERM);
  signals.async_wait([&](beast::error_code, int) {
    acceptor->stop();
    for (auto& io : ios) io->stop();
  });
  std::vector<std::thread> workers;
  for (unsigned i = 1; i < threads; ++i) workers.emplace_back([&io = *ios[i]] { io.run(); });
  ios[0]->run();
  for (auto& io : ios) io->stop();
  for (auto& w : workers) w.join();
  for (auto& loop : loops) loop->stop();
  ios.clear();
  return 0;
}
