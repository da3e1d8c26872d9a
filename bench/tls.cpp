#include "tls.hpp"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

namespace bench {

bool configure_client_ctx(SSL_CTX* ctx, const Options& o, std::string& error) {
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_IGNORE_UNEXPECTED_EOF);  // http_get reads to EOF
  // Non-blocking sockets: SSL_write may return after some records, and its
  // retry may come from another address (the unsent rest of a std::string).
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  if (o.tls_insecure) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    return true;
  }
  if (SSL_CTX_load_verify_locations(ctx, o.tls_ca.c_str(), nullptr) != 1) {
    error = "--tls-ca " + o.tls_ca + ": " + ssl_errors();
    return false;
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  X509_VERIFY_PARAM* param = SSL_CTX_get0_param(ctx);
  in_addr v4{};
  const bool ip = ::inet_pton(AF_INET, o.host.c_str(), &v4) == 1;
  const int set = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, o.host.c_str())
                     : X509_VERIFY_PARAM_set1_host(param, o.host.c_str(), 0);
  if (set != 1) {
    error = "--host " + o.host + ": cannot be matched against a certificate";
    return false;
  }
  return true;
}

SslCtxPtr make_client_ctx(const Options& o, std::string& error) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) {
    error = "SSL_CTX_new: " + ssl_errors();
    return nullptr;
  }
  if (!configure_client_ctx(ctx.get(), o, error)) return nullptr;
  return ctx;
}

std::string ssl_errors() {
  std::string text;
  char buf[256];
  while (const unsigned long e = ERR_get_error()) {
    ERR_error_string_n(e, buf, sizeof buf);
    if (!text.empty()) text += "; ";
    text += buf;
  }
  return text;
}

}  // namespace bench
