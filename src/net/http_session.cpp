#include "net/http_session.hpp"

#include <spdlog/spdlog.h>

#include <sys/socket.h>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <cerrno>
#include <memory>
#include <optional>
#include <utility>

#include "http/api.hpp"
#include "net/tls.hpp"
#include "net/upgrade.hpp"
#include "net/ws_connection.hpp"
#include "security/access.hpp"
#include "security/limits.hpp"

namespace imgate {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {
constexpr std::size_t kHeaderLimit = 8 * 1024;   // generous for any sane client
constexpr std::size_t kBodyLimit = 64 * 1024;    // API bodies are small JSON / forms
// HTTP API port: a connection waiting this long for (the rest of) its next
// request is closed; at --max-http-connections the longest idle one goes at
// once (security/http_connections.hpp). docs/security.md "Descriptors".
constexpr auto kRequestTimeout = std::chrono::seconds(30);

using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

std::string_view path_of(beast::string_view target) {
  std::string_view t(target.data(), target.size());
  return t.substr(0, t.find('?'));
}

// The answer to a request the parser refused (nullopt: nothing to answer, e.g. a
// timeout or a peer that went away mid-request).
std::optional<std::pair<http::status, const char*>> parse_error_answer(beast::error_code ec) {
  if (ec == http::error::header_limit) {
    return std::pair{http::status::request_header_fields_too_large, "request header too large"};
  }
  if (ec == http::error::body_limit) return std::pair{http::status::payload_too_large, "request too large"};
  if (ec == http::error::bad_method || ec == http::error::bad_target ||
      ec == http::error::bad_version || ec == http::error::bad_field ||
      ec == http::error::bad_value || ec == http::error::bad_line_ending ||
      ec == http::error::bad_content_length || ec == http::error::multiple_content_length ||
      ec == http::error::bad_transfer_encoding || ec == http::error::bad_chunk ||
      ec == http::error::bad_chunk_extension || ec == http::error::bad_obs_fold ||
      ec == http::error::unexpected_body) {
    return std::pair{http::status::bad_request, "malformed request"};
  }
  return std::nullopt;
}

// True when the request names a transfer coding other than chunked (the only one the
// parser decodes): RFC 9112 §6.1, answered 501.
bool unsupported_transfer_coding(const http::request<http::string_body>& request) {
  const auto it = request.find(http::field::transfer_encoding);
  if (it == request.end()) return false;
  for (const auto& coding : http::token_list{it->value()}) {
    if (!beast::iequals(coding, "chunked")) return true;
  }
  return false;
}

// The response as it goes on the wire (status line, fields, body), for one
// send(). Only for a response with a Content-Length (prepare_payload() on a
// string body): a chunked one goes through Beast's serializer.
void serialize(const http::response<http::string_body>& res, std::string& out) {
  const unsigned version = res.version();
  const beast::string_view reason = res.reason();
  std::size_t size = 32 + reason.size() + res.body().size();
  for (const auto& field : res) size += field.name_string().size() + field.value().size() + 4;
  out.clear();
  out.reserve(size);
  out += "HTTP/";
  out += static_cast<char>('0' + version / 10);
  out += '.';
  out += static_cast<char>('0' + version % 10);
  out += ' ';
  out += std::to_string(res.result_int());
  out += ' ';
  out.append(reason.data(), reason.size());
  out += "\r\n";
  for (const auto& field : res) {
    out.append(field.name_string().data(), field.name_string().size());
    out += ": ";
    out.append(field.value().data(), field.value().size());
    out += "\r\n";
  }
  out += "\r\n";
  out += res.body();
}

beast::tcp_stream& tcp_of(PlainStream& stream) { return stream; }
beast::tcp_stream& tcp_of(TlsStream& stream) { return stream.next_layer(); }

// The session's stream: plain, or TLS with its own reference to the context
// it was made with (a reload swaps the server's context, not this one).
struct PlainHolder {
  PlainHolder(asio::ip::tcp::socket socket, ServerContext&) : stream(std::move(socket)) {}
  PlainStream stream;
};
struct TlsHolder {
  TlsHolder(asio::ip::tcp::socket socket, ServerContext& ctx)
      : context(ctx.tls->current()), stream(std::move(socket), *context) {}
  TlsContextPtr context;
  TlsStream stream;
};

template <class Holder>
class HttpSession : public std::enable_shared_from_this<HttpSession<Holder>> {
 public:
  HttpSession(asio::ip::tcp::socket socket, ServerContext& ctx, uint32_t shard, PortRole role)
      : holder_(std::move(socket), ctx),
        deadline_timer_(holder_.stream.get_executor()),
        ctx_(ctx),
        shard_(shard),
        role_(role) {
    if (counts_as_http_connection(role, ctx)) slot_.emplace();
  }

  ~HttpSession() {
    if (slot_) ctx_.http_connections->leave(*slot_);
    if (role_.websocket && !upgraded_) {
      // Never became a WebSocket: timeout, bad or missing request, 400 / 404,
      // failed TLS handshake.
      Counters::bump(ctx_.counters.handshake_failures);
      ctx_.ws_sessions.fetch_sub(1, std::memory_order_relaxed);
    }
  }

  void run() {
    asio::dispatch(stream().get_executor(), [self = this->shared_from_this()] { self->begin(); });
  }

 private:
  using Request = http::request<http::string_body>;
  using Response = http::response<http::string_body>;
  using Self = HttpSession<Holder>;
  static constexpr bool kTls = std::is_same_v<Holder, TlsHolder>;

  auto& stream() { return holder_.stream; }
  beast::tcp_stream& tcp() { return tcp_of(holder_.stream); }

  void begin() {
    if (slot_) {
      slot_->evict = [weak = this->weak_from_this(), executor = stream().get_executor()] {
        asio::post(executor, [weak] {
          if (const auto self = weak.lock()) self->on_evicted();
        });
      };
      ctx_.http_connections->idle(*slot_);
    }
    if constexpr (kTls) {
      // On the WebSocket port a TLS handshake takes the address's upgrade
      // token (the upgrade that may follow does not take another): a client
      // cannot make the server run handshakes faster than it may upgrade.
      if (role_.websocket && ctx_.clients && ctx_.clients->active()) {
        handshake_peer_ = peer_address();
        if (handshake_peer_ && !ctx_.clients->take_handshake(*handshake_peer_, to_ns(Clock::now()))) {
          ctx_.counters.count_limit(Limit::kIpUpgradeRate);
          spdlog::debug("TLS handshake from {} refused: upgrade rate", to_string(*handshake_peer_));
          beast::error_code ignored;
          tcp().socket().close(ignored);
          return;
        }
      }
      tcp().expires_after(ctx_.config.handshake_timeout);
      stream().async_handshake(asio::ssl::stream_base::server,
                               [self = this->shared_from_this()](beast::error_code ec) {
                                 if (ec) {
                                   spdlog::debug("TLS handshake failed: {}", ec.message());
                                   return;
                                 }
                                 self->do_read();
                               });
    } else {
      do_read();
    }
  }

  // Picked to make room for a new connection while idle: closed, unless a
  // request arrived meanwhile.
  void on_evicted() {
    if (!ctx_.http_connections->evicted(*slot_)) return;
    spdlog::debug("idle HTTP connection closed: --max-http-connections reached");
    tcp().close();  // the pending read ends with operation_aborted
  }

  void do_read() {
    if (slot_) ctx_.http_connections->idle(*slot_);
    parser_.emplace();
    parser_->header_limit(kHeaderLimit);
    parser_->body_limit(kBodyLimit);
    const auto timeout = role_.api ? std::chrono::milliseconds(kRequestTimeout)
                                   : std::chrono::milliseconds(ctx_.config.handshake_timeout);
    if constexpr (kTls) {
      tcp().expires_after(timeout);
      http::async_read(stream(), buffer_, *parser_,
                       beast::bind_front_handler(&Self::on_read, this->shared_from_this()));
    } else {
      // Plain: straight from the socket, under the session's own deadline
      // (tcp_stream would arm and cancel a timer around every read and write).
      set_deadline(timeout);
      http::async_read(tcp().socket(), buffer_, *parser_,
                       beast::bind_front_handler(&Self::on_read, this->shared_from_this()));
    }
  }

  // Plain sessions: the socket is closed once `timeout` passes without the
  // deadline being moved again (a pending read or write then fails). One
  // timer wait at a time, re-armed when it fires early: moving the deadline
  // is a store, not a timer operation.
  void set_deadline(std::chrono::milliseconds timeout) {
    deadline_ = std::chrono::steady_clock::now() + timeout;
    if (deadline_waiting_) return;
    deadline_waiting_ = true;
    deadline_timer_.expires_at(deadline_);
    deadline_timer_.async_wait([weak = this->weak_from_this()](beast::error_code ec) {
      if (const auto self = weak.lock()) self->on_deadline(ec);
    });
  }

  void on_deadline(beast::error_code ec) {
    deadline_waiting_ = false;
    if (ec) return;  // the session is going away
    const auto now = std::chrono::steady_clock::now();
    if (now < deadline_) {
      set_deadline(std::chrono::ceil<std::chrono::milliseconds>(deadline_ - now));
      return;
    }
    beast::error_code ignored;
    tcp().socket().close(ignored);  // the pending read or write ends with operation_aborted
  }

  // The peer gets no more from us: TCP half-close (plain), close_notify (TLS,
  // best effort within the close timeout).
  void shutdown_send() {
    if constexpr (kTls) {
      tcp().expires_after(ctx_.config.close_timeout);
      stream().async_shutdown([self = this->shared_from_this()](beast::error_code) {});
    } else {
      beast::error_code ignored;
      tcp().socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    }
  }

  void on_read(beast::error_code ec, std::size_t) {
    if (slot_) ctx_.http_connections->busy(*slot_);
    if (ec == http::error::end_of_stream) return shutdown_send();
    if (ec) {
      // The rest of a refused request is unread (or unparseable): answer once and
      // close, or the next read would trip on it again (and again).
      if (const auto answer = parse_error_answer(ec)) {
        spdlog::debug("HTTP request refused ({}): {}", static_cast<unsigned>(answer->first),
                      ec.message());
        write(error_response(answer->first, answer->second));
      }
      return;
    }
    request_ = parser_->release();
    HttpRequest& request = request_;  // lives until the response is written (async API replies)
    if (unsupported_transfer_coding(request)) {
      write(error_response(http::status::not_implemented, "unsupported transfer coding"));
      return;
    }
    const bool at_ws_path = role_.websocket && path_of(request.target()) == ctx_.config.ws_path;
    if (at_ws_path && beast::websocket::is_upgrade(request)) {
      if (const auto origin = request[http::field::origin];
          request.count(http::field::origin) != 0 &&
          !origin_allowed(std::string_view(origin.data(), origin.size()),
                          ctx_.config.allowed_origins)) {
        Counters::bump(ctx_.counters.origin_rejections);
        spdlog::debug("WebSocket upgrade refused: Origin {} not allowed", std::string(origin));
        write(error_response(http::status::forbidden, "origin not allowed"));
        return;
      }
      if (auto refusal = check_upgrade(request)) {
        write(std::move(*refusal));
        return;
      }
      // Hand the socket over: the WebSocket connection counts itself from here on.
      upgraded_ = hand_over(stream(), buffer_, request, *ctx_.loop_io[shard_], admit(request));
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
    // Registry work the request posts to this loop (a delivery) runs right
    // after it, in this pass (LoopIo::after_request).
    LoopIo& loop = *ctx_.loop_io[shard_];
    loop.serving_request = true;
    serve_api(request, ctx_, [self = this->shared_from_this()](HttpResponse response) {
      asio::dispatch(self->stream().get_executor(),
                     [self, response = std::move(response)]() mutable {
                       self->write(std::move(response));
                     });
    });
    loop.serving_request = false;
    loop.run_after_request();
  }

  // The per-client limits' verdict on this upgrade (docs/security.md): the
  // client's address is the TCP peer's, or X-Forwarded-For's behind a
  // trusted proxy. Refusals are counted here and closed after the upgrade.
  // The TCP peer's address (IPv4 as IPv4-mapped IPv6); nullopt when the
  // socket is gone.
  std::optional<IpAddress> peer_address() {
    beast::error_code ec;
    const auto endpoint = tcp().socket().remote_endpoint(ec);
    if (ec) return std::nullopt;
    const asio::ip::address address = endpoint.address();
    IpAddress peer{};
    if (address.is_v4()) {
      peer = *parse_ip("::ffff:0.0.0.0");
      const auto bytes = address.to_v4().to_bytes();
      std::copy(bytes.begin(), bytes.end(), peer.begin() + 12);
    } else {
      peer = address.to_v6().to_bytes();
    }
    return peer;
  }

  ClientTable::Admission admit(const Request& request) {
    if (!ctx_.clients || !ctx_.clients->active()) return {};
    const std::optional<IpAddress> peer = peer_address();
    if (!peer) return {};  // gone already: the hand-over fails too
    std::string forwarded;
    if (!ctx_.trusted_proxies.empty()) {
      for (const auto& field : request) {
        if (!beast::iequals(field.name_string(), "X-Forwarded-For")) continue;
        if (!forwarded.empty()) forwarded += ',';
        forwarded.append(field.value().data(), field.value().size());
      }
    }
    const IpAddress client = client_address(*peer, forwarded, ctx_.trusted_proxies);
    const bool token_paid = handshake_peer_ == client;
    handshake_peer_.reset();
    const ClientTable::Admission admission =
        ctx_.clients->admit(client, to_ns(Clock::now()), token_paid);
    switch (admission.verdict) {
      case ClientTable::Verdict::kAdmitted:
        return admission;
      case ClientTable::Verdict::kTooManyConnections:
        ctx_.counters.count_limit(Limit::kIpConnections);
        break;
      case ClientTable::Verdict::kUpgradeRate:
      case ClientTable::Verdict::kTableFull:
        ctx_.counters.count_limit(Limit::kIpUpgradeRate);
        break;
    }
    spdlog::debug("WebSocket upgrade from {} closed: {}", to_string(client),
                  to_string(admission.verdict));
    return admission;
  }

  // A plain-text error the session itself answers (not the API): always closes.
  static Response error_response(http::status status, const char* text) {
    Response res{status, 11};
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.body() = std::string(text) + "\n";
    res.keep_alive(false);
    res.prepare_payload();
    return res;
  }

  void write(Response response) {
    auto shared = std::make_shared<Response>(std::move(response));
    // Refusals close (400, 401, 403, 413, 431, 501, ...); 404 and API answers keep
    // the connection as upstream does.
    const unsigned status = shared->result_int();
    const bool refusal = status >= 400 && status != 404;
    bool keep_alive = shared->keep_alive() && role_.api && !refusal;
    shared->keep_alive(keep_alive);
    if constexpr (!kTls) {
      if (!shared->chunked()) return send_now(*shared, keep_alive);
    }
    http::async_write(stream(), *shared,
                      [self = this->shared_from_this(), shared, keep_alive](beast::error_code ec,
                                                                            std::size_t bytes) {
                        self->on_write(keep_alive, ec, bytes);
                      });
  }

  // Plain: the answer in one send() (it fits the socket buffer unless the peer
  // stopped reading); what does not fit follows asynchronously.
  void send_now(const Response& response, bool keep_alive) {
    serialize(response, out_);
    auto& socket = tcp().socket();
    const ssize_t n =
        ::send(socket.native_handle(), out_.data(), out_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      return on_write(keep_alive, beast::error_code(errno, boost::system::system_category()), 0);
    }
    const auto sent = static_cast<std::size_t>(std::max<ssize_t>(n, 0));
    if (sent == out_.size()) return on_write(keep_alive, {}, sent);
    asio::async_write(socket, asio::buffer(out_.data() + sent, out_.size() - sent),
                      [self = this->shared_from_this(), keep_alive](beast::error_code ec,
                                                                    std::size_t bytes) {
                        self->on_write(keep_alive, ec, bytes);
                      });
  }

  void on_write(bool keep_alive, beast::error_code ec, std::size_t) {
    if (ec) return;
    if (!keep_alive) return shutdown_send();
    do_read();
  }

  Holder holder_;
  asio::steady_timer deadline_timer_;  // plain only (set_deadline)
  std::chrono::steady_clock::time_point deadline_{};
  bool deadline_waiting_ = false;
  std::string out_;  // plain only: the answer being written (send_now)
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  Request request_;
  ServerContext& ctx_;
  uint32_t shard_;
  PortRole role_;
  // TLS on the WebSocket port: the address whose upgrade token the handshake
  // took (the upgrade from that address takes none; used once).
  std::optional<IpAddress> handshake_peer_;
  bool upgraded_ = false;
  std::optional<HttpConnections::Slot> slot_;  // counted by ctx_.http_connections
};

}  // namespace

void start_http_session(asio::ip::tcp::socket socket, ServerContext& ctx, uint32_t shard,
                        PortRole role) {
  if (ctx.tls) {
    std::make_shared<HttpSession<TlsHolder>>(std::move(socket), ctx, shard, role)->run();
  } else {
    std::make_shared<HttpSession<PlainHolder>>(std::move(socket), ctx, shard, role)->run();
  }
}

}  // namespace imgate
