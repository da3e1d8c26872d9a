#include "net/tls.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <stdexcept>

#include "net/tls13_records.hpp"

namespace imgate {

namespace ssl = boost::asio::ssl;

namespace {
// OpenSSL's error queue as text (emptied).
std::string openssl_errors() {
  std::string out;
  while (const unsigned long e = ::ERR_get_error()) {
    char buf[256];
    ::ERR_error_string_n(e, buf, sizeof buf);
    out += (out.empty() ? "" : "; ") + std::string(buf);
  }
  return out.empty() ? "unknown error" : out;
}
}  // namespace

TlsContextPtr TlsContext::load(const std::string& cert_file, const std::string& key_file) {
  ::ERR_clear_error();
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* native = ctx->native_handle();
  ::SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  ::SSL_CTX_set_options(native, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                                    SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // The transport writes with partial writes from moving buffers and keeps
  // idle connections small (read / write buffers freed between records).
  ::SSL_CTX_set_mode(native, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                 SSL_MODE_RELEASE_BUFFERS);
  // Resumption by tickets only: a server-side cache would hold a session per
  // client for its lifetime.
  ::SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_OFF);
  ::SSL_CTX_set_num_tickets(native, 1);
  // What an upgraded TLS 1.3 connection needs to leave its SSL object behind.
  Tls13Records::install_capture(native);
  if (::SSL_CTX_use_certificate_chain_file(native, cert_file.c_str()) != 1) {
    throw std::runtime_error("TLS certificate " + cert_file + ": " + openssl_errors());
  }
  if (::SSL_CTX_use_PrivateKey_file(native, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    throw std::runtime_error("TLS key " + key_file + ": " + openssl_errors());
  }
  if (::SSL_CTX_check_private_key(native) != 1) {
    throw std::runtime_error("TLS key " + key_file + " does not match certificate " + cert_file +
                             ": " + openssl_errors());
  }
  return ctx;
}

TlsContext::TlsContext(std::string cert_file, std::string key_file)
    : cert_file_(std::move(cert_file)),
      key_file_(std::move(key_file)),
      current_(load(cert_file_, key_file_)) {}

TlsContextPtr TlsContext::current() const {
  std::lock_guard lock(mutex_);
  return current_;
}

bool TlsContext::reload() {
  TlsContextPtr fresh;
  try {
    fresh = load(cert_file_, key_file_);
  } catch (const std::exception& e) {
    spdlog::error("TLS reload failed, keeping the previous certificate: {}", e.what());
    return false;
  }
  {
    std::lock_guard lock(mutex_);
    current_.swap(fresh);
  }
  spdlog::info("TLS certificate and key reloaded from {} and {}", cert_file_, key_file_);
  return true;  // the old context goes when its last session does
}

}  // namespace imgate
