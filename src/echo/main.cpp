// imgate-echo: the production WebSocket transport (net/ws_connection.hpp) as
// an echo server, so that conformance suites (Autobahn|Testsuite) can drive
// it: any path, text and binary messages echoed, messages up to 16 MiB, no
// login. Not part of the gateway; a test and development tool.
//
//   imgate-echo --port 9001 [--bind 127.0.0.1] [--threads 1]
//               [--tls-cert FILE --tls-key FILE]   (wss://, same TLS path as imgate)
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
#include <csignal>
#include <iostream>
#include <memory>
#include <thread>
#include <type_traits>

#include "net/tls.hpp"
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

// Reads the upgrade request (Beast; after the TLS handshake with TLS), then
// hands the socket to the transport.
template <bool kTls>
class UpgradeSession : public std::enable_shared_from_this<UpgradeSession<kTls>> {
  using Stream = std::conditional_t<kTls, beast::ssl_stream<beast::tcp_stream>, beast::tcp_stream>;

 public:
  UpgradeSession(tcp::socket socket, LoopIo& loop) : stream_(std::move(socket)), loop_(loop) {}
  UpgradeSession(tcp::socket socket, LoopIo& loop, TlsContextPtr context)
      : context_(std::move(context)), stream_(std::move(socket), *context_), loop_(loop) {}

  void run() {
    tcp_layer().expires_after(std::chrono::seconds(10));
    if constexpr (kTls) {
      stream_.async_handshake(asio::ssl::stream_base::server,
                              [self = this->shared_from_this()](beast::error_code ec) {
                                if (!ec) self->read();
                              });
    } else {
      read();
    }
  }

 private:
  beast::tcp_stream& tcp_layer() {
    if constexpr (kTls) {
      return stream_.next_layer();
    } else {
      return stream_;
    }
  }

  void read() {
    http::async_read(stream_, buffer_, request_,
                     [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                       if (!ec) self->on_request();
                     });
  }

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
    http::async_write(stream_, *res,
                      [self = this->shared_from_this(), res](beast::error_code, std::size_t) {
                        beast::error_code ignored;
                        self->tcp_layer().socket().shutdown(tcp::socket::shutdown_send, ignored);
                      });
  }

  TlsContextPtr context_;
  Stream stream_;
  beast::flat_buffer buffer_;
  UpgradeRequest request_;
  LoopIo& loop_;
};

class Acceptor : public std::enable_shared_from_this<Acceptor> {
 public:
  Acceptor(asio::io_context& io, const tcp::endpoint& endpoint, std::vector<LoopIo*> loops,
           TlsContext* tls)
      : acceptor_(io, endpoint), loops_(std::move(loops)), tls_(tls) {}

  void accept() {
    LoopIo& loop = *loops_[next_++ % loops_.size()];
    acceptor_.async_accept(loop.io, [self = shared_from_this(), &loop](beast::error_code ec,
                                                                         tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) {
        socket.set_option(tcp::no_delay(true), ec);
        if (self->tls_) {
          std::make_shared<UpgradeSession<true>>(std::move(socket), loop, self->tls_->current())
              ->run();
        } else {
          std::make_shared<UpgradeSession<false>>(std::move(socket), loop)->run();
        }
      }
      self->accept();
    });
  }
  void stop() { acceptor_.close(); }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }

 private:
  tcp::acceptor acceptor_;
  std::vector<LoopIo*> loops_;
  TlsContext* tls_;
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
  std::string tls_cert;
  std::string tls_key;
  auto* cert_opt = app.add_option("--tls-cert", tls_cert, "PEM certificate chain: serve wss://");
  auto* key_opt = app.add_option("--tls-key", tls_key, "PEM private key of --tls-cert");
  cert_opt->needs(key_opt);
  key_opt->needs(cert_opt);
  CLI11_PARSE(app, argc, argv);
  std::signal(SIGPIPE, SIG_IGN);
  std::unique_ptr<TlsContext> tls;
  if (!tls_cert.empty()) {
    try {
      tls = std::make_unique<TlsContext>(tls_cert, tls_key);
    } catch (const std::exception& e) {
      std::cerr << "imgate-echo: " << e.what() << std::endl;
      return 1;
    }
  }

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
      *ios[0], tcp::endpoint(asio::ip::make_address(bind), port), loop_ptrs, tls.get());
  acceptor->accept();
  std::cout << "imgate-echo listening on " << bind << ":" << acceptor->port()
            << (tls ? " (wss)" : "") << std::endl;

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
