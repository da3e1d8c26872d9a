// imgate-bench's TLS client settings (--tls, --tls-ca, --tls-insecure): one
// configuration for the WebSocket workers (a context each) and the HTTP side.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "options.hpp"

namespace bench {

struct SslCtxFree {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;

// Sets up a client context: TLS 1.2 and 1.3, OpenSSL's default suites, no
// compression, no renegotiation; the peer verified against --tls-ca (its
// certificate must name --host: an IP address or a DNS name) or not at all
// with --tls-insecure; record buffers released while a connection is idle.
// False, with `error`, when the CA file cannot be loaded.
bool configure_client_ctx(SSL_CTX* ctx, const Options& o, std::string& error);

// A new context configured as above; nullptr with `error` on failure.
SslCtxPtr make_client_ctx(const Options& o, std::string& error);

// OpenSSL's error queue as text ("" when empty); clears the queue.
std::string ssl_errors();

}  // namespace bench
