// A blocking TLS client for the integration tests, on OpenSSL directly: TCP
// connect + TLS handshake (the server's self-signed certificate is not
// verified; tests compare its fingerprint instead), an HTTPS request, and a
// WebSocket upgrade with masked client frames. Every read has a deadline
// (SO_RCVTIMEO). Header-only; used from the test thread only.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "gateway_process.hpp"

namespace imgate::test {

class TlsClient {
 public:
  TlsClient() = default;
  TlsClient(const TlsClient&) = delete;
  TlsClient& operator=(const TlsClient&) = delete;
  ~TlsClient() { reset(); }

  // TCP connect to 127.0.0.1:port (with SO_RCVBUF = receive_buffer if > 0)
  // and the TLS handshake. Returns false (no throw) when either fails.
  // With `resume`: offer that session (its ticket) in the handshake.
  bool connect(uint16_t port, int receive_buffer = 0, Millis timeout = 5s,
               SSL_SESSION* resume = nullptr) {
    reset();
    // OpenSSL writes with write(): a server that closed first (e.g. a
    // handshake refused by a limit) must fail the write, not kill the test.
    ::signal(SIGPIPE, SIG_IGN);
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return false;
    if (receive_buffer > 0) {
      ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    }
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    set_timeout(timeout);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return false;
    ctx_ = ::SSL_CTX_new(TLS_client_method());
    ssl_ = ::SSL_new(ctx_);
    ::SSL_set_tlsext_host_name(ssl_, "localhost");
    ::SSL_set_fd(ssl_, fd_);
    if (resume) ::SSL_set_session(ssl_, resume);
    ::ERR_clear_error();
    return ::SSL_connect(ssl_) == 1;
  }

  // The session to resume later (its ticket: TLS 1.3 sends it after the
  // handshake, so read something first); free with SSL_SESSION_free.
  SSL_SESSION* session() const { return ssl_ ? ::SSL_get1_session(ssl_) : nullptr; }
  // The handshake resumed the offered session.
  bool resumed() const { return ssl_ && ::SSL_session_reused(ssl_) == 1; }

  // SHA-256 of the server certificate (DER), hex.
  std::string peer_fingerprint() const {
    X509* cert = ::SSL_get1_peer_certificate(ssl_);
    if (cert == nullptr) return "";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    ::X509_digest(cert, ::EVP_sha256(), md, &len);
    ::X509_free(cert);
    std::string hex;
    for (unsigned i = 0; i < len; ++i) {
      static const char* digits = "0123456789abcdef";
      hex += digits[md[i] >> 4];
      hex += digits[md[i] & 15];
    }
    return hex;
  }

  bool write_all(std::string_view bytes) {
    while (!bytes.empty()) {
      ::ERR_clear_error();
      const int n = ::SSL_write(ssl_, bytes.data(), static_cast<int>(bytes.size()));
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // Appends what arrives to the input buffer; false on EOF, error or timeout.
  bool fill(Millis timeout) {
    set_timeout(timeout);
    char buf[16384];
    ::ERR_clear_error();
    const int n = ::SSL_read(ssl_, buf, sizeof buf);
    if (n <= 0) {
      const int err = ::SSL_get_error(ssl_, n);
      eof_ = err != SSL_ERROR_WANT_READ;
      return false;
    }
    in_.append(buf, static_cast<std::size_t>(n));
    return true;
  }
  bool eof() const { return eof_; }

  // Sends the upgrade request and reads the response head; its status code
  // (0: no answer).
  unsigned upgrade(std::string_view path = "/acc", Millis timeout = 5s) {
    std::string req = "GET " + std::string(path) +
                      " HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    if (!write_all(req)) return 0;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::size_t end;
    while ((end = in_.find("\r\n\r\n")) == std::string::npos) {
      if (std::chrono::steady_clock::now() > deadline || !fill(timeout)) return 0;
    }
    const unsigned status = static_cast<unsigned>(std::atoi(in_.c_str() + in_.find(' ') + 1));
    in_.erase(0, end + 4);
    return status;
  }

  // One masked client frame (FIN set).
  bool send_frame(uint8_t opcode, std::string_view payload) {
    std::string frame;
    frame += static_cast<char>(0x80 | opcode);
    if (payload.size() < 126) {
      frame += static_cast<char>(0x80 | payload.size());
    } else if (payload.size() < 65536) {
      frame += static_cast<char>(0x80 | 126);
      frame += static_cast<char>(payload.size() >> 8);
      frame += static_cast<char>(payload.size() & 0xff);
    } else {
      frame += static_cast<char>(0x80 | 127);
      for (int i = 7; i >= 0; --i) frame += static_cast<char>((payload.size() >> (8 * i)) & 0xff);
    }
    const char mask[4] = {0x12, 0x34, 0x56, 0x78};
    frame.append(mask, 4);
    for (std::size_t i = 0; i < payload.size(); ++i) frame += static_cast<char>(payload[i] ^ mask[i % 4]);
    return write_all(frame);
  }
  bool send_text(std::string_view text) { return send_frame(0x1, text); }

  struct Frame {
    uint8_t opcode;
    std::string payload;
  };
  // The next server frame (unmasked), or nullopt on timeout / EOF.
  std::optional<Frame> recv_frame(Millis timeout = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (in_.size() >= 2) {
        std::size_t len = static_cast<uint8_t>(in_[1]) & 0x7f;
        std::size_t off = 2;
        if (len == 126 && in_.size() >= 4) {
          len = (std::size_t(uint8_t(in_[2])) << 8) | uint8_t(in_[3]);
          off = 4;
        } else if (len == 127 && in_.size() >= 10) {
          len = 0;
          for (int i = 0; i < 8; ++i) len = (len << 8) | uint8_t(in_[2 + i]);
          off = 10;
        }
        if ((len < 126 || off > 2) && in_.size() >= off + len) {
          Frame f{static_cast<uint8_t>(in_[0] & 0x0f), in_.substr(off, len)};
          in_.erase(0, off + len);
          return f;
        }
      }
      const auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
      if (left <= 0ms || !fill(left)) return std::nullopt;
    }
  }
  // The next text frame, skipping pings (answered) and pongs.
  std::optional<std::string> recv_text(Millis timeout = 5s) {
    for (;;) {
      auto f = recv_frame(timeout);
      if (!f) return std::nullopt;
      if (f->opcode == 0x9) {
        send_frame(0xA, f->payload);
        continue;
      }
      if (f->opcode == 0xA) continue;
      if (f->opcode == 0x8) {
        close_code_ = f->payload.size() >= 2
                          ? static_cast<uint16_t>((uint8_t(f->payload[0]) << 8) | uint8_t(f->payload[1]))
                          : 1005;
        return std::nullopt;
      }
      return f->payload;
    }
  }
  // The close code of a close frame seen by recv_text (0: none).
  uint16_t close_code() const { return close_code_; }

  // Sends a close frame (1000) and waits for the server's close and EOF.
  bool close(Millis timeout = 5s) {
    std::string code("\x03\xe8", 2);
    if (!send_frame(0x8, code)) return false;
    for (;;) {
      auto f = recv_frame(timeout);
      if (!f) return false;
      if (f->opcode == 0x8) break;
    }
    while (fill(timeout)) {
    }
    return eof_;
  }

  // Bytes waiting in the input buffer (read past the last frame).
  std::string& input() { return in_; }
  int fd() const { return fd_; }

  void reset() {
    // Dropped without close_notify, OpenSSL would mark the session not
    // resumable; a client that lost its connection still resumes (TLS 1.3).
    if (ssl_) ::SSL_set_shutdown(ssl_, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    if (ssl_) ::SSL_free(ssl_);
    if (ctx_) ::SSL_CTX_free(ctx_);
    if (fd_ >= 0) ::close(fd_);
    ssl_ = nullptr;
    ctx_ = nullptr;
    fd_ = -1;
    in_.clear();
    eof_ = false;
    close_code_ = 0;
  }

 private:
  void set_timeout(Millis timeout) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
    if (tv.tv_sec == 0 && tv.tv_usec == 0) tv.tv_usec = 1000;
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }

  int fd_ = -1;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  std::string in_;
  bool eof_ = false;
  uint16_t close_code_ = 0;
};

// One HTTPS request (Connection: close) to 127.0.0.1:port; throws
// std::runtime_error when there is no complete answer within `timeout`.
inline HttpResponse https_request(uint16_t port, std::string_view method, std::string_view target,
                                  std::string_view form_body = {}, Millis timeout = 5s) {
  TlsClient c;
  if (!c.connect(port, 0, timeout)) {
    throw std::runtime_error("https " + std::string(target) + ": TLS connect failed on port " +
                             std::to_string(port));
  }
  std::string req = std::string(method) + " " + std::string(target) +
                    " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n";
  if (!form_body.empty() || method == "POST") {
    req += "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: " +
           std::to_string(form_body.size()) + "\r\n";
  }
  req += "\r\n";
  req += form_body;
  if (!c.write_all(req)) throw std::runtime_error("https " + std::string(target) + ": write failed");
  while (c.fill(timeout)) {
  }
  const std::string& raw = c.input();
  const std::size_t head_end = raw.find("\r\n\r\n");
  if (!c.eof() || head_end == std::string::npos || raw.compare(0, 5, "HTTP/") != 0) {
    throw std::runtime_error("https " + std::string(target) + ": no complete answer");
  }
  HttpResponse res;
  res.status = static_cast<unsigned>(std::atoi(raw.c_str() + raw.find(' ') + 1));
  const std::string head = raw.substr(0, head_end);
  const std::size_t ct = head.find("Content-Type: ");
  if (ct != std::string::npos) res.content_type = head.substr(ct + 14, head.find("\r\n", ct) - ct - 14);
  res.body = raw.substr(head_end + 4);
  return res;
}

}  // namespace imgate::test
