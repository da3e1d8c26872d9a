#include "security/token.hpp"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <array>
#include <boost/json.hpp>
#include <cmath>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>

namespace imgate {

namespace json = boost::json;

// ---- base64url -----------------------------------------------------------------------------

namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

constexpr std::array<int8_t, 256> make_decode_table() {
  std::array<int8_t, 256> table{};
  for (auto& v : table) v = -1;
  for (int i = 0; i < 64; ++i) table[static_cast<unsigned char>(kAlphabet[i])] = static_cast<int8_t>(i);
  return table;
}
constexpr auto kDecode = make_decode_table();

}  // namespace

bool base64url_decode(std::string_view in, std::string& out) {
  out.clear();
  if (in.size() % 4 == 1) return false;  // 6 bits cannot end a byte
  out.reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (const char c : in) {
    const int8_t v = kDecode[static_cast<unsigned char>(c)];
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  // The unused low bits of the last character must be zero (one encoding per value).
  return (acc & ((1u << bits) - 1)) == 0;
}

std::string base64url_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() * 4 + 2) / 3);
  uint32_t acc = 0;
  int bits = 0;
  for (const char c : in) {
    acc = (acc << 8) | static_cast<unsigned char>(c);
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(acc >> bits) & 0x3F]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 0x3F]);
  return out;
}

// ---- keys ----------------------------------------------------------------------------------

void TokenVerifier::KeyDeleter::operator()(void* key) const {
  ::EVP_PKEY_free(static_cast<EVP_PKEY*>(key));
}

namespace {

std::string openssl_error() {
  char buf[256] = "unknown OpenSSL error";
  if (const unsigned long e = ::ERR_get_error()) ::ERR_error_string_n(e, buf, sizeof buf);
  ::ERR_clear_error();
  return buf;
}

// A PEM public key (SubjectPublicKeyInfo) or certificate; null when it is neither.
EVP_PKEY* read_public_key(std::string_view pem) {
  std::unique_ptr<BIO, decltype(&::BIO_free)> bio(
      ::BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), ::BIO_free);
  if (!bio) return nullptr;
  if (EVP_PKEY* key = ::PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr)) return key;
  ::ERR_clear_error();
  (void)BIO_reset(bio.get());
  std::unique_ptr<X509, decltype(&::X509_free)> cert(
      ::PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), ::X509_free);
  if (!cert) return nullptr;
  return ::X509_get_pubkey(cert.get());
}

std::string read_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(std::string("config: cannot read ") + what + " " + path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

TokenVerifier::TokenVerifier(std::string hmac_secret, std::string_view public_key_pem,
                             std::chrono::seconds leeway)
    : secret_(std::move(hmac_secret)), leeway_(leeway) {
  if (!secret_.empty() && secret_.size() < kMinSecretBytes) {
    throw ConfigError("config: --auth-hmac-secret must be at least " +
                      std::to_string(kMinSecretBytes) + " bytes (e.g. openssl rand -hex 32)");
  }
  if (!public_key_pem.empty()) {
    EVP_PKEY* key = read_public_key(public_key_pem);
    if (!key) {
      throw ConfigError("config: --auth-public-key is not a PEM public key or certificate: " +
                        openssl_error());
    }
    key_.reset(key);
    const int type = ::EVP_PKEY_get_base_id(key);
    if (type == EVP_PKEY_RSA) {
      if (::EVP_PKEY_get_bits(key) < 2048) {
        throw ConfigError("config: --auth-public-key: RSA keys must have at least 2048 bits");
      }
      key_type_ = KeyType::kRsa;
    } else if (type == EVP_PKEY_EC) {
      char group[64] = "";
      std::size_t len = 0;
      ::EVP_PKEY_get_group_name(key, group, sizeof group, &len);
      const std::string_view name(group, len);
      if (name != "prime256v1" && name != "P-256") {
        throw ConfigError("config: --auth-public-key: EC keys must be on P-256 (ES256), not " +
                          std::string(name));
      }
      key_type_ = KeyType::kEcP256;
    } else {
      throw ConfigError("config: --auth-public-key must be an RSA or EC P-256 key");
    }
  }
  if (secret_.empty() && !key_) throw ConfigError("config: login tokens need a secret or a key");
}

TokenVerifier::~TokenVerifier() = default;

std::unique_ptr<TokenVerifier> TokenVerifier::from_config(const Config& config) {
  std::string secret = config.auth_hmac_secret;
  if (!config.auth_hmac_secret_file.empty()) {
    secret = read_file(config.auth_hmac_secret_file, "--auth-hmac-secret-file");
    // One trailing newline (as `echo` or an editor leaves it) is not part of the secret.
    if (secret.ends_with("\r\n")) {
      secret.resize(secret.size() - 2);
    } else if (secret.ends_with('\n')) {
      secret.pop_back();
    }
    if (secret.empty()) {
      throw ConfigError("config: --auth-hmac-secret-file " + config.auth_hmac_secret_file +
                        " is empty");
    }
  }
  std::string pem;
  if (!config.auth_public_key.empty()) pem = read_file(config.auth_public_key, "--auth-public-key");
  if (secret.empty() && pem.empty()) return nullptr;
  return std::make_unique<TokenVerifier>(
      std::move(secret), pem,
      std::chrono::duration_cast<std::chrono::seconds>(config.auth_leeway));
}

bool TokenClaims::allows_app(uint32_t app) const {
  return !limits_apps || std::find(app_ids.begin(), app_ids.end(), app) != app_ids.end();
}

// ---- verification --------------------------------------------------------------------------

namespace {

const EVP_MD* hmac_digest(std::string_view alg) {
  if (alg == "HS256") return ::EVP_sha256();
  if (alg == "HS384") return ::EVP_sha384();
  if (alg == "HS512") return ::EVP_sha512();
  return nullptr;
}

bool hmac_matches(const EVP_MD* md, const std::string& secret, std::string_view input,
                  const std::string& signature) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  if (!::HMAC(md, secret.data(), static_cast<int>(secret.size()),
              reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &mac_len)) {
    ::ERR_clear_error();
    return false;
  }
  return signature.size() == mac_len && ::CRYPTO_memcmp(mac, signature.data(), mac_len) == 0;
}

// JWS ES256 signatures are R || S (32 bytes each); OpenSSL verifies DER.
bool es256_to_der(const std::string& raw, std::string& der) {
  if (raw.size() != 64) return false;
  ECDSA_SIG* sig = ::ECDSA_SIG_new();
  if (!sig) return false;
  const auto* bytes = reinterpret_cast<const unsigned char*>(raw.data());
  BIGNUM* r = ::BN_bin2bn(bytes, 32, nullptr);
  BIGNUM* s = ::BN_bin2bn(bytes + 32, 32, nullptr);
  if (!r || !s || ::ECDSA_SIG_set0(sig, r, s) != 1) {
    ::BN_free(r);
    ::BN_free(s);
    ::ECDSA_SIG_free(sig);
    return false;
  }
  unsigned char* out = nullptr;
  const int len = ::i2d_ECDSA_SIG(sig, &out);
  ::ECDSA_SIG_free(sig);
  if (len <= 0) return false;
  der.assign(reinterpret_cast<char*>(out), static_cast<std::size_t>(len));
  ::OPENSSL_free(out);
  return true;
}

bool signature_matches(EVP_PKEY* key, std::string_view input, const std::string& signature) {
  std::unique_ptr<EVP_MD_CTX, decltype(&::EVP_MD_CTX_free)> ctx(::EVP_MD_CTX_new(),
                                                                 ::EVP_MD_CTX_free);
  const bool ok =
      ctx && ::EVP_DigestVerifyInit(ctx.get(), nullptr, ::EVP_sha256(), nullptr, key) == 1 &&
      ::EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                         signature.size(), reinterpret_cast<const unsigned char*>(input.data()),
                         input.size()) == 1;
  ::ERR_clear_error();
  return ok;
}

// A JSON object from base64url text; null when either layer is malformed.
std::optional<json::object> decode_object(std::string_view part) {
  std::string text;
  if (!base64url_decode(part, text)) return std::nullopt;
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) return std::nullopt;
  return std::move(v.get_object());
}

// A NumericDate (RFC 7519 §2): seconds, possibly fractional; false if not a number.
bool numeric_date(const json::value& v, int64_t& out) {
  if (v.is_int64()) return out = v.get_int64(), true;
  if (v.is_uint64()) {
    out = static_cast<int64_t>(std::min<uint64_t>(v.get_uint64(), INT64_MAX));
    return true;
  }
  if (v.is_double() && std::isfinite(v.get_double())) {
    const double d = std::floor(v.get_double());
    out = d >= 9.2e18 ? INT64_MAX : d <= -9.2e18 ? INT64_MIN : static_cast<int64_t>(d);
    return true;
  }
  return false;
}

}  // namespace

std::string TokenVerifier::verify(std::string_view token, int64_t now_unix,
                                  TokenClaims& out) const {
  if (token.empty()) return "token required";
  if (token.size() > kMaxTokenBytes) return "token too large";
  const std::size_t dot1 = token.find('.');
  const std::size_t dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
    return "token is not a compact JWS (header.payload.signature)";
  }
  const std::string_view signing_input = token.substr(0, dot2);
  const auto header = decode_object(token.substr(0, dot1));
  if (!header) return "token header is not base64url JSON";
  const json::value* alg_value = header->if_contains("alg");
  if (!alg_value || !alg_value->is_string()) return "token header has no alg";
  const std::string_view alg = alg_value->get_string();
  if (header->contains("crit")) return "token header crit is not supported";
  if (alg == "none" || alg == "None" || alg == "NONE") return "algorithm none is not allowed";

  std::string signature;
  if (!base64url_decode(token.substr(dot2 + 1), signature)) return "token signature is not base64url";
  if (const EVP_MD* md = hmac_digest(alg)) {
    // An HMAC token when only a public key is configured: the key's bytes
    // must never serve as an HMAC secret.
    if (secret_.empty()) return std::string(alg) + " is not allowed: no HMAC secret configured";
    if (!hmac_matches(md, secret_, signing_input, signature)) return "bad signature";
  } else if (alg == "RS256") {
    if (key_type_ != KeyType::kRsa) return "RS256 is not allowed: no RSA public key configured";
    if (!signature_matches(static_cast<EVP_PKEY*>(key_.get()), signing_input, signature)) {
      return "bad signature";
    }
  } else if (alg == "ES256") {
    if (key_type_ != KeyType::kEcP256) return "ES256 is not allowed: no EC P-256 public key configured";
    std::string der;
    if (!es256_to_der(signature, der) ||
        !signature_matches(static_cast<EVP_PKEY*>(key_.get()), signing_input, der)) {
      return "bad signature";
    }
  } else {
    return "unsupported algorithm " + std::string(alg.substr(0, 16));
  }

  // Signed by us: the claims can be trusted to be ours, but not to be well formed.
  const auto claims = decode_object(token.substr(dot1 + 1, dot2 - dot1 - 1));
  if (!claims) return "token payload is not base64url JSON";
  const json::value* sub = claims->if_contains("sub");
  if (!sub) return "sub claim missing";
  if (!sub->is_string() || sub->get_string().empty()) return "sub claim must be a non-empty string";
  const json::value* exp = claims->if_contains("exp");
  if (!exp) return "exp claim missing";
  int64_t exp_at = 0;
  if (!numeric_date(*exp, exp_at)) return "exp claim must be a number";
  const int64_t leeway = leeway_.count();
  if (exp_at < INT64_MAX - leeway && now_unix > exp_at + leeway) return "token expired";
  if (const json::value* nbf = claims->if_contains("nbf")) {
    int64_t nbf_at = 0;
    if (!numeric_date(*nbf, nbf_at)) return "nbf claim must be a number";
    if (nbf_at > INT64_MIN + leeway && now_unix < nbf_at - leeway) return "token not yet valid (nbf)";
  }
  TokenClaims result;
  if (const json::value* apps = claims->if_contains("appIDs")) {
    if (!apps->is_array()) return "appIDs claim must be an array of appIDs";
    result.limits_apps = true;
    for (const json::value& app : apps->get_array()) {
      if (app.is_uint64() && app.get_uint64() <= UINT32_MAX) {
        result.app_ids.push_back(static_cast<uint32_t>(app.get_uint64()));
      } else if (app.is_int64() && app.get_int64() >= 0 && app.get_int64() <= UINT32_MAX) {
        result.app_ids.push_back(static_cast<uint32_t>(app.get_int64()));
      } else {
        return "appIDs claim must be an array of appIDs";
      }
    }
  }
  result.sub = sub->get_string();
  result.exp = exp_at;
  out = std::move(result);
  return {};
}

}  // namespace imgate
