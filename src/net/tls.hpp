// TLS for both ports (--tls-cert / --tls-key): the server's reloadable OpenSSL
// context. The HTTP phase of a connection (handshake, HTTP API, the upgrade
// request) runs on Beast's ssl_stream with a copy of the current context; an
// upgraded wss connection takes the session's SSL object over
// (net/ws_connection.hpp), which keeps its SSL_CTX alive by OpenSSL's own
// reference count. reload() (SIGHUP) swaps the context for new connections
// only; open connections keep theirs.
//
// Resumption: TLS session tickets only (no server-side cache), encrypted with
// imgate's ticket keys (TicketKeys), which outlive a reload: from
// --tls-ticket-key-file (shared by the nodes of a cluster, rotated by the
// operator, reread on SIGHUP) or generated in memory and rotated every hour.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace imgate {

using TlsContextPtr = std::shared_ptr<boost::asio::ssl::context>;

// The keys that encrypt session tickets (AES-256-CBC + HMAC-SHA256, as
// OpenSSL's own), 80 bytes each: a 16-byte name, the AES key, the HMAC key.
// The first key encrypts new tickets; every key decrypts. Thread-safe.
class TicketKeys {
 public:
  static constexpr std::size_t kKeyBytes = 80;
  // A ticket is accepted this long after it was issued (the lifetime hint
  // clients get).
  static constexpr std::chrono::seconds kTicketLifetime{7200};
  // Keys generated in memory: a new one every `rotation`, the last three
  // kept, so a ticket lives out its lifetime.
  static std::shared_ptr<TicketKeys> generated(std::chrono::seconds rotation = std::chrono::hours(1));
  // Keys from a file: one key a line, 160 hex digits (`openssl rand -hex
  // 80`); blank lines and lines starting with # skipped. Throws
  // std::runtime_error naming the file and line when it is unusable.
  static std::shared_ptr<TicketKeys> from_file(const std::string& path);

  struct Key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
  };
  // The key for a new ticket (rotating generated keys when due).
  Key current();
  // The key named `name`: 1 when it is the current one, 2 when an older one
  // (the ticket is then renewed), 0 when unknown (a full handshake follows).
  int find(const unsigned char* name, Key& out) const;
  std::size_t size() const;

 private:
  struct Stored {
    Key key;
    std::chrono::steady_clock::time_point made;
  };
  static Key random_key();
  mutable std::mutex mutex_;
  std::vector<Stored> keys_;  // front: the current key
  std::chrono::seconds rotation_{0};  // 0: from a file, never rotated here
};

class TlsContext {
 public:
  // Loads the certificate chain and key (throws std::runtime_error with
  // OpenSSL's reason on any failure, e.g. a key that does not match), and the
  // session ticket keys from `ticket_key_file` (empty: generated).
  TlsContext(std::string cert_file, std::string key_file, std::string ticket_key_file = "");

  // The context for a new connection (thread-safe).
  TlsContextPtr current() const;

  // Reloads the files (the ticket key file too, when given); on failure logs
  // an error, keeps the current context and keys and returns false
  // (thread-safe).
  bool reload();

  // A server context for `cert_file` / `key_file` with imgate's settings
  // (TLS >= 1.2, no renegotiation, no server-side session cache, small
  // buffers while idle), tickets encrypted with `tickets` (null: OpenSSL's
  // own keys, made for this context). Throws std::runtime_error.
  static TlsContextPtr load(const std::string& cert_file, const std::string& key_file,
                            std::shared_ptr<TicketKeys> tickets = nullptr);

 private:
  const std::string cert_file_;
  const std::string key_file_;
  const std::string ticket_key_file_;
  mutable std::mutex mutex_;
  std::shared_ptr<TicketKeys> tickets_;
  TlsContextPtr current_;
};

}  // namespace imgate
