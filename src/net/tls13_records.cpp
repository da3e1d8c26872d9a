#include "net/tls13_records.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include <algorithm>
#include <cstring>
#include <string_view>

#include "security/hex.hpp"

namespace imgate {

namespace {

// The TLS 1.3 cipher suites (RFC 8446 §B.4) OpenSSL may negotiate.
struct Suite {
  uint16_t id;
  const char* cipher;  // OpenSSL's algorithm name
  const char* digest;  // the suite's hash, for HKDF
  uint8_t key_len;
  uint8_t hash_len;
};
constexpr Suite kSuites[] = {
    {0x1301, "AES-128-GCM", "SHA256", 16, 32},
    {0x1302, "AES-256-GCM", "SHA384", 32, 48},
    {0x1303, "ChaCha20-Poly1305", "SHA256", 32, 32},
};
constexpr std::size_t kSuiteCount = sizeof kSuites / sizeof kSuites[0];
constexpr std::size_t kTagLen = 16;
constexpr unsigned char kApplicationData = 23, kAlert = 21, kHandshake = 22;
constexpr unsigned char kKeyUpdate = 24;

// The algorithms, fetched once (an implicit fetch per call would cost a
// lookup per record).
const EVP_CIPHER* cipher_of(std::size_t suite) {
  static EVP_CIPHER* const ciphers[kSuiteCount] = {
      EVP_CIPHER_fetch(nullptr, kSuites[0].cipher, nullptr),
      EVP_CIPHER_fetch(nullptr, kSuites[1].cipher, nullptr),
      EVP_CIPHER_fetch(nullptr, kSuites[2].cipher, nullptr),
  };
  return ciphers[suite];
}

// One encryption and one decryption context per suite and thread, re-keyed
// per record: a connection holds keys, not OpenSSL contexts (~1 KB each).
struct ThreadContexts {
  EVP_CIPHER_CTX* seal[kSuiteCount] = {};
  EVP_CIPHER_CTX* open[kSuiteCount] = {};
  ~ThreadContexts() {
    for (std::size_t i = 0; i < kSuiteCount; ++i) {
      EVP_CIPHER_CTX_free(seal[i]);
      EVP_CIPHER_CTX_free(open[i]);
    }
  }
};
thread_local ThreadContexts contexts;

// The context for `suite` (created with its cipher on first use), keyed
// with `key` and `nonce`; null on failure.
EVP_CIPHER_CTX* keyed(bool sealing, std::size_t suite, const unsigned char* key,
                      const unsigned char* nonce) {
  EVP_CIPHER_CTX*& ctx = sealing ? contexts.seal[suite] : contexts.open[suite];
  const EVP_CIPHER* cipher = nullptr;
  if (!ctx) {
    ctx = EVP_CIPHER_CTX_new();
    cipher = cipher_of(suite);
    if (!ctx || !cipher) return nullptr;
  }
  const int ok = sealing ? EVP_EncryptInit_ex2(ctx, cipher, key, nonce, nullptr)
                         : EVP_DecryptInit_ex2(ctx, cipher, key, nonce, nullptr);
  return ok == 1 ? ctx : nullptr;
}

// HKDF-Expand-Label(secret, label, "", length) (RFC 8446 §7.1).
bool expand_label(const Suite& suite, const unsigned char* secret, std::string_view label,
                  unsigned char* out, std::size_t length) {
  static EVP_KDF* const hkdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  if (!hkdf) return false;
  unsigned char info[2 + 1 + 6 + 32 + 1];
  std::size_t n = 0;
  info[n++] = static_cast<unsigned char>(length >> 8);
  info[n++] = static_cast<unsigned char>(length);
  info[n++] = static_cast<unsigned char>(6 + label.size());
  std::memcpy(info + n, "tls13 ", 6);
  n += 6;
  std::memcpy(info + n, label.data(), label.size());
  n += label.size();
  info[n++] = 0;  // empty context
  EVP_KDF_CTX* ctx = EVP_KDF_CTX_new(hkdf);
  if (!ctx) return false;
  int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, const_cast<char*>(suite.digest), 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<unsigned char*>(secret),
                                        suite.hash_len),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, n),
      OSSL_PARAM_construct_end(),
  };
  const bool ok = EVP_KDF_derive(ctx, out, length, params) == 1;
  EVP_KDF_CTX_free(ctx);
  return ok;
}

// What the callbacks record for one SSL (its ex_data), until it is freed.
struct Capture {
  unsigned char client_secret[48];
  unsigned char server_secret[48];
  uint8_t client_len = 0, server_len = 0;
  uint64_t read_records = 0;   // records read under the client's application keys
  uint64_t write_records = 0;  // records written under ours
  bool reading_app = false;    // the client's Finished was read
  bool writing_app = false;    // ours was written
  bool stale = false;          // a KeyUpdate went by: the secrets above are old
};

void free_capture(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  if (!ptr) return;
  OPENSSL_cleanse(ptr, sizeof(Capture));
  delete static_cast<Capture*>(ptr);
}

int capture_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, free_capture);
  return index;
}

Capture* capture_of(const SSL* ssl, bool create) {
  auto* cap = static_cast<Capture*>(SSL_get_ex_data(ssl, capture_index()));
  if (!cap && create) {
    cap = new Capture;
    if (SSL_set_ex_data(const_cast<SSL*>(ssl), capture_index(), cap) != 1) {
      delete cap;
      return nullptr;
    }
  }
  return cap;
}


// "LABEL <client random, hex> <secret, hex>": the two application secrets.
void on_key_log(const SSL* ssl, const char* line) {
  std::string_view text(line);
  const bool client = text.starts_with("CLIENT_TRAFFIC_SECRET_0 ");
  const bool server = text.starts_with("SERVER_TRAFFIC_SECRET_0 ");
  if (!client && !server) return;
  const std::size_t space = text.rfind(' ');
  const std::string_view hex = text.substr(space + 1);
  if (hex.size() % 2 != 0 || hex.size() > 96) return;
  Capture* cap = capture_of(ssl, true);
  if (!cap) return;
  unsigned char* out = client ? cap->client_secret : cap->server_secret;
  for (std::size_t i = 0; i < hex.size() / 2; ++i) {
    const int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return;
    out[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  (client ? cap->client_len : cap->server_len) = static_cast<uint8_t>(hex.size() / 2);
}

// Every record header and handshake message read or written: the records
// after each side's Finished are under the application keys.
void on_message(int write_p, int, int content_type, const void* buf, size_t len, SSL* ssl,
                void*) {
  if (content_type == SSL3_RT_HEADER) {
    Capture* cap = capture_of(ssl, false);
    if (!cap) return;
    if (write_p && cap->writing_app) ++cap->write_records;
    if (!write_p && cap->reading_app) ++cap->read_records;
    return;
  }
  if (content_type != SSL3_RT_HANDSHAKE || len == 0) return;
  const auto type = *static_cast<const unsigned char*>(buf);
  if (type == SSL3_MT_FINISHED) {
    Capture* cap = capture_of(ssl, true);
    if (!cap) return;
    (write_p ? cap->writing_app : cap->reading_app) = true;
  } else if (type == kKeyUpdate) {
    if (Capture* cap = capture_of(ssl, false)) cap->stale = true;
  }
}

}  // namespace

void Tls13Records::install_capture(SSL_CTX* ctx) {
  SSL_CTX_set_keylog_callback(ctx, on_key_log);
  SSL_CTX_set_msg_callback(ctx, on_message);
}

std::unique_ptr<Tls13Records> Tls13Records::take_over(SSL* ssl) {
  if (SSL_version(ssl) != TLS1_3_VERSION || !SSL_is_init_finished(ssl)) return nullptr;
  const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl);
  if (!cipher) return nullptr;
  const Capture* cap = capture_of(ssl, false);
  if (!cap || cap->stale || !cap->reading_app || !cap->writing_app ||
      cap->client_len != cap->server_len) {
    return nullptr;
  }
  return from_secrets(SSL_CIPHER_get_protocol_id(cipher), cap->client_secret, cap->server_secret,
                      cap->client_len, cap->read_records, cap->write_records);
}

std::unique_ptr<Tls13Records> Tls13Records::from_secrets(uint16_t suite_id,
                                                         const unsigned char* read_secret,
                                                         const unsigned char* write_secret,
                                                         std::size_t secret_len, uint64_t read_seq,
                                                         uint64_t write_seq) {
  std::size_t suite = 0;
  while (suite < kSuiteCount && kSuites[suite].id != suite_id) ++suite;
  if (suite == kSuiteCount || secret_len != kSuites[suite].hash_len || !cipher_of(suite)) {
    return nullptr;
  }
  std::unique_ptr<Tls13Records> records(new Tls13Records);
  records->suite_ = static_cast<uint8_t>(suite);
  records->secret_len_ = kSuites[suite].hash_len;
  std::memcpy(records->read_.secret, read_secret, secret_len);
  std::memcpy(records->write_.secret, write_secret, secret_len);
  records->read_.seq = read_seq;
  records->write_.seq = write_seq;
  if (!records->derive(records->read_) || !records->derive(records->write_)) return nullptr;
  return records;
}

Tls13Records::~Tls13Records() {
  OPENSSL_cleanse(&read_, sizeof read_);
  OPENSSL_cleanse(&write_, sizeof write_);
}

bool Tls13Records::derive(Direction& d) const {
  const Suite& s = kSuites[suite_];
  return expand_label(s, d.secret, "key", d.key, s.key_len) &&
         expand_label(s, d.secret, "iv", d.iv, sizeof d.iv);
}

bool Tls13Records::next_generation(Direction& d) const {
  unsigned char next[48];
  if (!expand_label(kSuites[suite_], d.secret, "traffic upd", next, secret_len_)) return false;
  std::memcpy(d.secret, next, secret_len_);
  OPENSSL_cleanse(next, sizeof next);
  d.seq = 0;
  return derive(d);
}

namespace {
// The per-record nonce: the IV xor the sequence number (RFC 8446 §5.3).
void make_nonce(const unsigned char* iv, uint64_t seq, unsigned char* nonce) {
  std::memcpy(nonce, iv, 12);
  for (int i = 0; i < 8; ++i) nonce[11 - i] ^= static_cast<unsigned char>(seq >> (8 * i));
}
}  // namespace

Tls13Records::Opened Tls13Records::open(unsigned char* in, std::size_t in_len, unsigned char* out,
                                        std::size_t out_size) {
  Opened r;
  auto fail = [&](const char* why) {
    error_ = why;
    r.status = Status::kError;
    return r;
  };
  while (in_len - r.consumed >= 5) {
    unsigned char* header = in + r.consumed;
    const std::size_t len = static_cast<std::size_t>(header[3]) << 8 | header[4];
    if (header[0] != kApplicationData) return fail("unexpected record type");
    if (len > kMaxPlaintext + 256 || len < kTagLen + 1) return fail("record length out of range");
    if (in_len - r.consumed < 5 + len) break;  // the rest of the record is still on its way
    const std::size_t sealed = len - kTagLen;
    if (out_size - r.produced < sealed) break;  // the caller reads it next time
    if (read_.seq == UINT64_MAX) return fail("sequence number exhausted");
    unsigned char nonce[12];
    make_nonce(read_.iv, read_.seq, nonce);
    EVP_CIPHER_CTX* ctx = keyed(false, suite_, read_.key, nonce);
    unsigned char* plain = out + r.produced;
    int n = 0, last = 0;
    if (!ctx || EVP_DecryptUpdate(ctx, nullptr, &n, header, 5) != 1 ||
        EVP_DecryptUpdate(ctx, plain, &n, header + 5, static_cast<int>(sealed)) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, kTagLen, header + 5 + sealed) != 1 ||
        EVP_DecryptFinal_ex(ctx, plain + n, &last) != 1) {
      return fail("record failed authentication");
    }
    ++read_.seq;
    r.consumed += 5 + len;
    std::size_t size = sealed;  // the inner plaintext: content, type, zero padding
    while (size > 0 && plain[size - 1] == 0) --size;
    if (size == 0) return fail("record without a content type");
    if (size - 1 > kMaxPlaintext) return fail("record over 2^14 bytes");
    const unsigned char type = plain[size - 1];
    const std::size_t content = size - 1;
    if (type == kApplicationData) {
      r.produced += content;
    } else if (type == kAlert) {
      if (content != 2 || plain[1] != 0) return fail("alert from the client");
      r.status = Status::kClosed;  // close_notify
      return r;
    } else if (type == kHandshake) {
      if (!handshake_message(plain, content)) return r.status = Status::kError, r;
    } else {
      return fail("unexpected content type");
    }
  }
  return r;
}

bool Tls13Records::handshake_message(const unsigned char* msg, std::size_t len) {
  // Only KeyUpdate may come after the handshake (no post-handshake
  // authentication is asked, tickets go the other way); whole messages only.
  for (std::size_t at = 0; at < len;) {
    if (len - at < 4) return error_ = "fragmented handshake message", false;
    const std::size_t body = static_cast<std::size_t>(msg[at + 1]) << 16 |
                             static_cast<std::size_t>(msg[at + 2]) << 8 | msg[at + 3];
    if (len - at - 4 < body) return error_ = "fragmented handshake message", false;
    if (msg[at] != kKeyUpdate || body != 1 || msg[at + 4] > 1) {
      return error_ = "unexpected handshake message", false;
    }
    if (!next_generation(read_)) return error_ = "key update failed", false;
    if (msg[at + 4] == 1) key_update_due_ = true;  // update_requested
    at += 4 + body;
  }
  return true;
}

std::size_t Tls13Records::seal_record(unsigned char type, const iovec* iov, std::size_t count,
                                      std::size_t skip, std::size_t len, unsigned char* out) {
  // Header, then the inner plaintext (content and type) encrypted in place,
  // then the tag.
  unsigned char* plain = out + 5;
  std::size_t copied = 0;
  for (std::size_t i = 0; i < count && copied < len; ++i) {
    std::size_t size = iov[i].iov_len;
    const auto* base = static_cast<const unsigned char*>(iov[i].iov_base);
    if (skip >= size) {
      skip -= size;
      continue;
    }
    const std::size_t take = std::min(size - skip, len - copied);
    std::memcpy(plain + copied, base + skip, take);
    copied += take;
    skip = 0;
  }
  plain[len] = type;
  const std::size_t sealed = len + 1 + kTagLen;
  out[0] = kApplicationData;
  out[1] = 3;
  out[2] = 3;
  out[3] = static_cast<unsigned char>(sealed >> 8);
  out[4] = static_cast<unsigned char>(sealed);
  unsigned char nonce[12];
  make_nonce(write_.iv, write_.seq, nonce);
  EVP_CIPHER_CTX* ctx = keyed(true, suite_, write_.key, nonce);
  int n = 0, last = 0;
  if (!ctx || EVP_EncryptUpdate(ctx, nullptr, &n, out, 5) != 1 ||
      EVP_EncryptUpdate(ctx, plain, &n, plain, static_cast<int>(len + 1)) != 1 ||
      EVP_EncryptFinal_ex(ctx, plain + n, &last) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, kTagLen, plain + len + 1) != 1) {
    error_ = "encryption failed";
    return 0;
  }
  ++write_.seq;
  return 5 + sealed;
}

std::size_t Tls13Records::seal(const iovec* iov, std::size_t count, unsigned char* out,
                               std::size_t out_size, std::size_t& taken) {
  taken = 0;
  std::size_t written = 0;
  if (key_update_due_) {
    if (out_size < kOverhead + 5) return 0;
    const unsigned char update[5] = {kKeyUpdate, 0, 0, 1, 0};  // update_not_requested
    const iovec one{const_cast<unsigned char*>(update), sizeof update};
    const std::size_t n = seal_record(kHandshake, &one, 1, 0, sizeof update, out);
    if (n == 0 || !next_generation(write_)) return error_ = "key update failed", 0;
    key_update_due_ = false;
    written += n;
  }
  std::size_t available = 0;
  for (std::size_t i = 0; i < count; ++i) available += iov[i].iov_len;
  while (taken < available && out_size - written > kOverhead) {
    const std::size_t len =
        std::min({available - taken, kMaxPlaintext, out_size - written - kOverhead});
    const std::size_t n = seal_record(kApplicationData, iov, count, taken, len, out + written);
    if (n == 0) return written;  // error() is set; the caller checks it
    written += n;
    taken += len;
  }
  return written;
}

std::size_t Tls13Records::seal_close_notify(unsigned char* out) {
  const unsigned char alert[2] = {1, 0};  // warning, close_notify
  const iovec one{const_cast<unsigned char*>(alert), sizeof alert};
  return seal_record(kAlert, &one, 1, 0, sizeof alert, out);
}

}  // namespace imgate
