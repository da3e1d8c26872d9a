#include "net/tls.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <cstring>
#include <fstream>
#include <stdexcept>

#include "net/tls13_records.hpp"
#include "security/hex.hpp"

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

// The ticket keys of a context (its ex_data: a heap shared_ptr, freed with
// the context).
void free_tickets(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<std::shared_ptr<TicketKeys>*>(ptr);
}
int tickets_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, free_tickets);
  return index;
}

// OpenSSL's ticket key callback: encrypt a new ticket with the current key
// (enc = 1), or find the key a presented ticket names (enc = 0).
int ticket_key_callback(SSL* ssl, unsigned char* key_name, unsigned char* iv, EVP_CIPHER_CTX* cipher,
                        EVP_MAC_CTX* mac, int enc) {
  const auto* keys =
      static_cast<std::shared_ptr<TicketKeys>*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), tickets_index()));
  if (!keys || !*keys) return -1;
  TicketKeys::Key key;
  int found = 1;
  if (enc) {
    key = (*keys)->current();
    std::memcpy(key_name, key.name, sizeof key.name);
    if (RAND_bytes(iv, 16) != 1 ||
        EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes, iv) != 1) {
      found = -1;
    }
  } else {
    found = (*keys)->find(key_name, key);
    if (found != 0 && EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes, iv) != 1) {
      found = -1;
    }
  }
  if (found > 0) {
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key.hmac, sizeof key.hmac),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_MAC_CTX_set_params(mac, params) != 1) found = -1;
  }
  OPENSSL_cleanse(&key, sizeof key);
  return found;
}

}  // namespace

// ---- TicketKeys ---------------------------------------------------------------

TicketKeys::Key TicketKeys::random_key() {
  Key key;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&key), sizeof key) != 1) {
    throw std::runtime_error("TLS ticket key: no random bytes: " + openssl_errors());
  }
  return key;
}

std::shared_ptr<TicketKeys> TicketKeys::generated(std::chrono::seconds rotation) {
  auto keys = std::make_shared<TicketKeys>();
  keys->rotation_ = rotation;
  keys->keys_.push_back({random_key(), std::chrono::steady_clock::now()});
  return keys;
}

std::shared_ptr<TicketKeys> TicketKeys::from_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("TLS ticket key file " + path + ": cannot be read");
  auto keys = std::make_shared<TicketKeys>();
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const auto first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#') continue;
    const auto last = line.find_last_not_of(" \t\r");
    const std::string_view hex = std::string_view(line).substr(first, last - first + 1);
    Stored stored{};
    auto* bytes = reinterpret_cast<unsigned char*>(&stored.key);
    bool ok = hex.size() == 2 * kKeyBytes;
    for (std::size_t i = 0; ok && i < kKeyBytes; ++i) {
      const int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
      ok = hi >= 0 && lo >= 0;
      bytes[i] = static_cast<unsigned char>(hi << 4 | lo);
    }
    if (!ok) {
      OPENSSL_cleanse(&stored, sizeof stored);
      throw std::runtime_error("TLS ticket key file " + path + " line " + std::to_string(number) +
                               ": not a key (160 hex digits, e.g. from `openssl rand -hex 80`)");
    }
    keys->keys_.push_back(stored);
  }
  OPENSSL_cleanse(line.data(), line.size());
  if (keys->keys_.empty()) throw std::runtime_error("TLS ticket key file " + path + ": no key");
  return keys;
}

TicketKeys::Key TicketKeys::current() {
  std::lock_guard lock(mutex_);
  const auto now = std::chrono::steady_clock::now();
  if (rotation_.count() > 0 && now - keys_.front().made >= rotation_) {
    keys_.insert(keys_.begin(), Stored{random_key(), now});
    if (keys_.size() > 3) {
      OPENSSL_cleanse(&keys_.back(), sizeof(Stored));
      keys_.pop_back();
    }
  }
  return keys_.front().key;
}

int TicketKeys::find(const unsigned char* name, Key& out) const {
  std::lock_guard lock(mutex_);
  for (std::size_t i = 0; i < keys_.size(); ++i) {
    if (CRYPTO_memcmp(keys_[i].key.name, name, sizeof out.name) == 0) {
      out = keys_[i].key;
      return i == 0 ? 1 : 2;
    }
  }
  return 0;
}

std::size_t TicketKeys::size() const {
  std::lock_guard lock(mutex_);
  return keys_.size();
}

// ---- TlsContext ---------------------------------------------------------------

TlsContextPtr TlsContext::load(const std::string& cert_file, const std::string& key_file,
                               std::shared_ptr<TicketKeys> tickets) {
  ::ERR_clear_error();
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* native = ctx->native_handle();
  ::SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  // TLS 1.3 suites, ours preferred (SSL_OP_CIPHER_SERVER_PREFERENCE): AES-128-GCM
  // first, as browsers order them; its SHA-256 handshake costs ~20 us less than
  // AES-256-GCM's SHA-384 one (docs/security.md, "Handshake CPU").
  if (::SSL_CTX_set_ciphersuites(
          native, "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384") != 1) {
    throw std::runtime_error("TLS 1.3 cipher suites: " + openssl_errors());
  }
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
  ::SSL_CTX_set_timeout(native, static_cast<long>(TicketKeys::kTicketLifetime.count()));
  if (tickets) {
    auto* stored = new std::shared_ptr<TicketKeys>(std::move(tickets));
    if (::SSL_CTX_set_ex_data(native, tickets_index(), stored) != 1) {
      delete stored;
      throw std::runtime_error("TLS ticket keys: " + openssl_errors());
    }
    ::SSL_CTX_set_tlsext_ticket_key_evp_cb(native, ticket_key_callback);
  }
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

TlsContext::TlsContext(std::string cert_file, std::string key_file, std::string ticket_key_file)
    : cert_file_(std::move(cert_file)),
      key_file_(std::move(key_file)),
      ticket_key_file_(std::move(ticket_key_file)),
      tickets_(ticket_key_file_.empty() ? TicketKeys::generated()
                                        : TicketKeys::from_file(ticket_key_file_)),
      current_(load(cert_file_, key_file_, tickets_)) {}

TlsContextPtr TlsContext::current() const {
  std::lock_guard lock(mutex_);
  return current_;
}

bool TlsContext::reload() {
  TlsContextPtr fresh;
  std::shared_ptr<TicketKeys> tickets;
  try {
    {
      std::lock_guard lock(mutex_);
      tickets = tickets_;  // generated keys live on: tickets issued before still resume
    }
    if (!ticket_key_file_.empty()) tickets = TicketKeys::from_file(ticket_key_file_);
    fresh = load(cert_file_, key_file_, tickets);
  } catch (const std::exception& e) {
    spdlog::error("TLS reload failed, keeping the previous certificate and ticket keys: {}", e.what());
    return false;
  }
  {
    std::lock_guard lock(mutex_);
    current_.swap(fresh);
    tickets_ = std::move(tickets);
  }
  spdlog::info("TLS certificate and key reloaded from {} and {}{}", cert_file_, key_file_,
               ticket_key_file_.empty() ? "" : ", session ticket keys from " + ticket_key_file_);
  return true;  // the old context goes when its last session does
}

}  // namespace imgate
