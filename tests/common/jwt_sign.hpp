// Test-side JWT minting (HS*, RS256, ES256) with OpenSSL, independent of the
// gateway's verifier except for base64url: unit and integration tests build
// valid tokens and every kind of broken one from these pieces.
#pragma once

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <boost/json.hpp>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>

#include "security/token.hpp"

namespace imgate::test {

inline int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A 40-byte secret (above TokenVerifier::kMinSecretBytes).
inline const std::string kTestSecret = "test-secret-0123456789-0123456789-abcdef";

struct KeyPair {
  std::shared_ptr<EVP_PKEY> key;  // private (signs)

  static KeyPair rsa(unsigned bits = 2048) { return KeyPair{wrap(EVP_RSA_gen(bits))}; }
  static KeyPair ec(const char* curve = "P-256") { return KeyPair{wrap(EVP_EC_gen(curve))}; }

  std::string public_pem() const {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
    PEM_write_bio_PUBKEY(bio.get(), key.get());
    char* data = nullptr;
    const long len = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(len));
  }

 private:
  static std::shared_ptr<EVP_PKEY> wrap(EVP_PKEY* k) {
    if (!k) throw std::runtime_error("key generation failed");
    return std::shared_ptr<EVP_PKEY>(k, EVP_PKEY_free);
  }
};

inline std::string hmac(const EVP_MD* md, std::string_view secret, std::string_view input) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(md, secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
  return std::string(reinterpret_cast<char*>(mac), len);
}

// DER signature of SHA-256(input) with `key`.
inline std::string sign_der(EVP_PKEY* key, std::string_view input) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  std::size_t len = 0;
  EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key);
  EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()),
                 input.size());
  std::string sig(len, '\0');
  EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                 reinterpret_cast<const unsigned char*>(input.data()), input.size());
  sig.resize(len);
  return sig;
}

// DER ECDSA signature -> JWS R || S (32 bytes each).
inline std::string der_to_raw(const std::string& der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size()));
  std::string raw(64, '\0');
  BN_bn2binpad(ECDSA_SIG_get0_r(sig), reinterpret_cast<unsigned char*>(raw.data()), 32);
  BN_bn2binpad(ECDSA_SIG_get0_s(sig), reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
  ECDSA_SIG_free(sig);
  return raw;
}

inline std::string encode_json(const boost::json::value& v) {
  return base64url_encode(boost::json::serialize(v));
}

// header.payload (base64url of the JSON texts given as they are).
inline std::string signing_input(std::string_view header_json, std::string_view claims_json) {
  return base64url_encode(header_json) + "." + base64url_encode(claims_json);
}

// A signed token: alg HS256/384/512 with `secret`, RS256/ES256 with `key`.
inline std::string mint(std::string_view alg, const boost::json::object& claims,
                        std::string_view secret = kTestSecret, EVP_PKEY* key = nullptr) {
  const std::string header = boost::json::serialize(boost::json::object{{"alg", alg}, {"typ", "JWT"}});
  const std::string input = signing_input(header, boost::json::serialize(claims));
  std::string sig;
  if (alg == "HS256") sig = hmac(EVP_sha256(), secret, input);
  else if (alg == "HS384") sig = hmac(EVP_sha384(), secret, input);
  else if (alg == "HS512") sig = hmac(EVP_sha512(), secret, input);
  else if (alg == "RS256") sig = sign_der(key, input);
  else if (alg == "ES256") sig = der_to_raw(sign_der(key, input));
  return input + "." + base64url_encode(sig);
}

// Claims for `sub` valid for `ttl` seconds from now.
inline boost::json::object claims_for(std::string_view sub, int64_t ttl = 3600) {
  return boost::json::object{{"sub", sub}, {"exp", unix_now() + ttl}};
}

inline std::string hs256(std::string_view sub, int64_t ttl = 3600) {
  return mint("HS256", claims_for(sub, ttl));
}

}  // namespace imgate::test
