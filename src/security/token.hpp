// Signed login tokens: verification of compact JWS JSON Web Tokens (RFC 7515,
// RFC 7519) with OpenSSL, claims read with Boost.JSON. See docs/security.md.
//
// The algorithm follows the configured key, never the token alone:
//   - an HMAC secret allows HS256, HS384 and HS512;
//   - an RSA public key (at least 2048 bits) allows RS256;
//   - an EC P-256 public key allows ES256 (signature: raw R || S, 64 bytes).
// "none", any other algorithm, and an HMAC algorithm when only a public key is
// configured (the HS/RS confusion attack) are refused before any signature is
// computed. Thread-safe: verify() is const and OpenSSL objects are only read.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace imgate {

// What a verified token says.
struct TokenClaims {
  std::string sub;              // the userID the token is for
  int64_t exp = 0;              // unix seconds
  bool limits_apps = false;     // an appIDs claim is present
  std::vector<uint32_t> app_ids;  // the appIDs it may log in to (when limits_apps)

  bool allows_app(uint32_t app) const;
};

class TokenVerifier {
 public:
  // Longest token accepted (a compact JWS is header.payload.signature in
  // base64url); longer ones are refused before any decoding.
  static constexpr std::size_t kMaxTokenBytes = 8 * 1024;
  // Shortest HMAC secret accepted: 32 bytes, the output size of HS256
  // (RFC 7518 §3.2 asks for a key at least as long as the hash).
  static constexpr std::size_t kMinSecretBytes = 32;

  // Either may be empty (not both, or there is nothing to verify with).
  // `public_key_pem`: a PEM SubjectPublicKeyInfo, RSA or EC P-256. Throws
  // ConfigError with a readable message when a key is unusable.
  TokenVerifier(std::string hmac_secret, std::string_view public_key_pem,
                std::chrono::seconds leeway);
  ~TokenVerifier();
  TokenVerifier(const TokenVerifier&) = delete;
  TokenVerifier& operator=(const TokenVerifier&) = delete;

  // The verifier the configuration asks for (reads the secret and key files),
  // or null when login tokens are off. Throws ConfigError.
  static std::unique_ptr<TokenVerifier> from_config(const Config& config);

  // Checks `token` at `now_unix` (seconds): form, algorithm, signature, then
  // claims (sub, exp, nbf, appIDs). Returns "" and fills `out` when it is
  // valid, else the reason it is not (e.g. "token expired").
  std::string verify(std::string_view token, int64_t now_unix, TokenClaims& out) const;

  std::chrono::seconds leeway() const { return leeway_; }
  bool has_hmac() const { return !secret_.empty(); }
  bool has_public_key() const { return key_ != nullptr; }

 private:
  enum class KeyType { kNone, kRsa, kEcP256 };

  std::string secret_;
  struct KeyDeleter {
    void operator()(void* key) const;
  };
  std::unique_ptr<void, KeyDeleter> key_;  // EVP_PKEY
  KeyType key_type_ = KeyType::kNone;
  std::chrono::seconds leeway_;
};

// Strict base64url (RFC 4648 §5) without padding, as JWS uses: false for any
// other character, a "=" pad, an impossible length or non-zero unused bits.
bool base64url_decode(std::string_view in, std::string& out);
std::string base64url_encode(std::string_view in);

}  // namespace imgate
