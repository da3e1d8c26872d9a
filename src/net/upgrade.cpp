#include "net/upgrade.hpp"

#include <openssl/ssl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "net/tls13_records.hpp"
#include "protocol/codes.hpp"
#include "websocket/handshake.hpp"

namespace imgate {

namespace http = boost::beast::http;

namespace {
UpgradeRefusal refusal(const UpgradeRequest& request, http::status status, std::string body) {
  UpgradeRefusal res{status, request.version()};
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.keep_alive(false);
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

std::string_view key_of(const UpgradeRequest& request) {
  const auto key = request[http::field::sec_websocket_key];
  return {key.data(), key.size()};
}

void start(WsConnection& conn, const boost::beast::flat_buffer& buffer,
           const UpgradeRequest& request, const ClientTable::Admission& admission) {
  std::string response =
      ws::switching_protocols_response(key_of(request), "imgate/" IMGATE_VERSION);
  if (admission.verdict != ClientTable::Verdict::kAdmitted) {
    conn.start_refused(std::move(response), close_code::kPolicyViolation,
                       to_string(admission.verdict));
    return;
  }
  conn.set_client_slot(admission.slot);
  const std::string_view early(static_cast<const char*>(buffer.data().data()), buffer.size());
  conn.start(std::move(response), early);
}

void release(LoopIo& loop, const ClientTable::Admission& admission) {
  if (loop.clients) loop.clients->release(admission.slot, to_ns(std::chrono::steady_clock::now()));
}
}  // namespace

std::optional<UpgradeRefusal> check_upgrade(const UpgradeRequest& request) {
  if (request[http::field::sec_websocket_version] != "13") {
    auto res = refusal(request, http::status::upgrade_required, "Sec-WebSocket-Version: 13 required");
    res.set(http::field::sec_websocket_version, "13");
    return res;
  }
  if (!ws::is_valid_client_key(key_of(request))) {
    return refusal(request, http::status::bad_request, "invalid Sec-WebSocket-Key");
  }
  return std::nullopt;
}

bool hand_over(boost::beast::tcp_stream& stream, const boost::beast::flat_buffer& buffer,
               const UpgradeRequest& request, LoopIo& loop,
               const ClientTable::Admission& admission) {
  stream.expires_never();
  // The transport watches the descriptor itself (LoopIo's epoll set): Asio
  // lets go of it and of its reactor state.
  WsConnectionPtr conn(new WsConnection(stream.release_socket().release(), loop));
  start(*conn, buffer, request, admission);
  return true;
}

bool hand_over(boost::beast::ssl_stream<boost::beast::tcp_stream>& stream,
               const boost::beast::flat_buffer& buffer, const UpgradeRequest& request, LoopIo& loop,
               const ClientTable::Admission& admission) {
  SSL* ssl = stream.native_handle();
  // Asio's engine talks to OpenSSL through a memory BIO pair; what it holds
  // (decrypted but unread, or received but not yet decrypted) would be lost.
  // A client sends no frame before the 101, so this is only a misbehaving one.
  if (::SSL_pending(ssl) != 0 || ::BIO_ctrl_pending(::SSL_get_rbio(ssl)) != 0) {
    spdlog::debug("wss upgrade refused: data buffered in the TLS layer before the 101");
    release(loop, admission);
    return false;
  }
  stream.next_layer().expires_never();
  // TLS 1.3: the connection keeps only its record state; the SSL object goes
  // with the Asio stream (docs/security.md, "TLS memory").
  if (auto records = Tls13Records::take_over(ssl)) {
    const int fd = stream.next_layer().release_socket().release();
    WsConnectionPtr conn(new WsConnection(fd, loop, std::move(records)));
    start(*conn, buffer, request, admission);
    return true;
  }
  ::SSL_up_ref(ssl);  // ours now; the Asio stream drops its reference when destroyed
  const int fd = stream.next_layer().release_socket().release();
  // The SSL object reads and writes the (non-blocking) socket itself; the
  // BIO pair is freed.
  if (::SSL_set_fd(ssl, fd) != 1) {
    spdlog::warn("wss upgrade: SSL_set_fd failed");
    ::SSL_free(ssl);
    ::close(fd);
    release(loop, admission);
    return false;
  }
  WsConnectionPtr conn(new WsConnection(fd, loop, ssl));
  start(*conn, buffer, request, admission);
  return true;
}

}  // namespace imgate
