// TLS for both ports (--tls-cert / --tls-key): the server's reloadable OpenSSL
// context. The HTTP phase of a connection (handshake, HTTP API, the upgrade
// request) runs on Beast's ssl_stream with a copy of the current context; an
// upgraded wss connection takes the session's SSL object over
// (net/ws_connection.hpp), which keeps its SSL_CTX alive by OpenSSL's own
// reference count. reload() (SIGHUP) swaps the context for new connections
// only; open connections keep theirs.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <mutex>
#include <string>

namespace imgate {

using TlsContextPtr = std::shared_ptr<boost::asio::ssl::context>;

class TlsContext {
 public:
  // Loads the certificate chain and key (throws std::runtime_error with
  // OpenSSL's reason on any failure, e.g. a key that does not match).
  TlsContext(std::string cert_file, std::string key_file);

  // The context for a new connection (thread-safe).
  TlsContextPtr current() const;

  // Reloads both files; on failure logs an error, keeps the current context
  // and returns false (thread-safe).
  bool reload();

  // A server context for `cert_file` / `key_file` with imgate's settings
  // (TLS >= 1.2, no renegotiation, no server-side session cache, small
  // buffers while idle). Throws std::runtime_error.
  static TlsContextPtr load(const std::string& cert_file, const std::string& key_file);

 private:
  const std::string cert_file_;
  const std::string key_file_;
  mutable std::mutex mutex_;
  TlsContextPtr current_;
};

}  // namespace imgate
