// Unit tests for src/security/token: base64url strictness, every way a token
// can be refused (form, algorithm, signature, claims) and the keys the
// verifier accepts at start-up.
#include "security/token.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <string>

#include "../common/jwt_sign.hpp"

namespace imgate {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;
using test::claims_for;
using test::kTestSecret;
using test::mint;
using test::unix_now;

TokenVerifier hmac_verifier(std::chrono::seconds leeway = 30s) {
  return TokenVerifier(kTestSecret, "", leeway);
}

std::string verify(const TokenVerifier& v, std::string_view token, TokenClaims* out = nullptr) {
  TokenClaims claims;
  std::string error = v.verify(token, unix_now(), claims);
  if (out) *out = claims;
  return error;
}

// --- base64url ---

TEST(Base64Url, RoundTripsEveryLength) {
  std::string bytes;
  for (int n = 0; n < 70; ++n) {
    std::string decoded;
    ASSERT_TRUE(base64url_decode(base64url_encode(bytes), decoded)) << n;
    EXPECT_EQ(decoded, bytes);
    bytes.push_back(static_cast<char>(n * 37 + 200));
  }
  EXPECT_EQ(base64url_encode("\xfb\xff"), "-_8");
}

TEST(Base64Url, RefusesPaddingOtherAlphabetsAndNonCanonicalText) {
  std::string out;
  EXPECT_FALSE(base64url_decode("YQ==", out));   // padding
  EXPECT_FALSE(base64url_decode("+/8", out));    // standard base64 alphabet
  EXPECT_FALSE(base64url_decode("Y", out));      // 6 bits cannot make a byte
  EXPECT_FALSE(base64url_decode("YR", out));     // unused bits set ("a" is "YQ")
  EXPECT_FALSE(base64url_decode("Y Q", out));
  EXPECT_TRUE(base64url_decode("YQ", out));
  EXPECT_EQ(out, "a");
}

// --- valid tokens ---

TEST(TokenVerifier, AcceptsEveryHmacAlgorithmWithTheSecret) {
  auto v = hmac_verifier();
  for (const char* alg : {"HS256", "HS384", "HS512"}) {
    TokenClaims claims;
    EXPECT_EQ(verify(v, mint(alg, claims_for("alice")), &claims), "") << alg;
    EXPECT_EQ(claims.sub, "alice");
    EXPECT_GT(claims.exp, unix_now());
    EXPECT_FALSE(claims.limits_apps);
    EXPECT_TRUE(claims.allows_app(101));
  }
}

TEST(TokenVerifier, AcceptsRs256AndEs256WithTheMatchingPublicKey) {
  auto rsa = test::KeyPair::rsa();
  TokenVerifier rv("", rsa.public_pem(), 30s);
  EXPECT_EQ(verify(rv, mint("RS256", claims_for("bob"), "", rsa.key.get())), "");
  auto ec = test::KeyPair::ec();
  TokenVerifier ev("", ec.public_pem(), 30s);
  TokenClaims claims;
  EXPECT_EQ(verify(ev, mint("ES256", claims_for("carol"), "", ec.key.get()), &claims), "");
  EXPECT_EQ(claims.sub, "carol");
}

TEST(TokenVerifier, ReadsTheAppIdsClaim) {
  auto claims = claims_for("alice");
  claims["appIDs"] = json::array{101, 103};
  TokenClaims out;
  ASSERT_EQ(verify(hmac_verifier(), mint("HS256", claims), &out), "");
  EXPECT_TRUE(out.limits_apps);
  EXPECT_TRUE(out.allows_app(101));
  EXPECT_TRUE(out.allows_app(103));
  EXPECT_FALSE(out.allows_app(102));
  claims["appIDs"] = json::array{};  // an empty grant allows no room
  ASSERT_EQ(verify(hmac_verifier(), mint("HS256", claims), &out), "");
  EXPECT_FALSE(out.allows_app(101));
}

// --- algorithms ---

TEST(TokenVerifier, RefusesAlgNoneWhateverTheSignature) {
  auto v = hmac_verifier();
  const std::string input =
      test::signing_input(R"({"alg":"none","typ":"JWT"})", json::serialize(claims_for("alice")));
  EXPECT_EQ(verify(v, input + "."), "algorithm none is not allowed");
  EXPECT_EQ(verify(v, input + "." + base64url_encode("x")), "algorithm none is not allowed");
  const std::string upper =
      test::signing_input(R"({"alg":"NONE"})", json::serialize(claims_for("alice")));
  EXPECT_EQ(verify(v, upper + "."), "algorithm none is not allowed");
}

TEST(TokenVerifier, RefusesHmacSignedWithThePublicKeyItself) {
  // The classic confusion: the attacker knows the public key and uses its PEM as an HMAC secret.
  auto rsa = test::KeyPair::rsa();
  const std::string pem = rsa.public_pem();
  TokenVerifier v("", pem, 30s);
  EXPECT_EQ(verify(v, mint("HS256", claims_for("alice"), pem)),
            "HS256 is not allowed: no HMAC secret configured");
}

TEST(TokenVerifier, RefusesPublicKeyAlgorithmsWithoutTheirKey) {
  auto rsa = test::KeyPair::rsa();
  auto ec = test::KeyPair::ec();
  auto v = hmac_verifier();
  EXPECT_EQ(verify(v, mint("RS256", claims_for("a"), "", rsa.key.get())),
            "RS256 is not allowed: no RSA public key configured");
  EXPECT_EQ(verify(v, mint("ES256", claims_for("a"), "", ec.key.get())),
            "ES256 is not allowed: no EC P-256 public key configured");
  TokenVerifier ev("", ec.public_pem(), 30s);  // an EC key does not verify RS256
  EXPECT_EQ(verify(ev, mint("RS256", claims_for("a"), "", rsa.key.get())),
            "RS256 is not allowed: no RSA public key configured");
}

TEST(TokenVerifier, RefusesUnknownAlgorithmsAndCritHeaders) {
  auto v = hmac_verifier();
  const std::string claims = json::serialize(claims_for("alice"));
  for (const char* header : {R"({"alg":"HS1024"})", R"({"alg":"PS256"})", R"({"alg":"hs256"})"}) {
    EXPECT_TRUE(verify(v, test::signing_input(header, claims) + ".c2ln").starts_with(
        "unsupported algorithm"))
        << header;
  }
  EXPECT_EQ(verify(v, test::signing_input(R"({"alg":"HS256","crit":["exp"]})", claims) + ".c2ln"),
            "token header crit is not supported");
  EXPECT_EQ(verify(v, test::signing_input(R"({"typ":"JWT"})", claims) + ".c2ln"),
            "token header has no alg");
  EXPECT_EQ(verify(v, test::signing_input(R"({"alg":256})", claims) + ".c2ln"),
            "token header has no alg");
}

// --- signatures ---

TEST(TokenVerifier, RefusesBadSignatures) {
  auto v = hmac_verifier();
  std::string token = test::hs256("alice");
  // A character inside the signature (the last one also carries unused bits,
  // which must stay zero: changing it may make the text non-canonical instead).
  char& c = token[token.size() - 5];
  c = c == 'A' ? 'B' : 'A';
  EXPECT_EQ(verify(v, token), "bad signature");
  EXPECT_EQ(verify(v, mint("HS256", claims_for("alice"), "another-secret-another-secret-1234")),
            "bad signature");
  // A valid signature over other claims.
  const std::string good = test::hs256("alice");
  const std::string other = test::hs256("mallory");
  const std::string spliced = other.substr(0, other.rfind('.')) + good.substr(good.rfind('.'));
  EXPECT_EQ(verify(v, spliced), "bad signature");
  // Truncated and empty signatures.
  EXPECT_EQ(verify(v, good.substr(0, good.rfind('.') + 1)), "bad signature");
}

TEST(TokenVerifier, RefusesBadEs256AndRs256Signatures) {
  auto ec = test::KeyPair::ec();
  auto other = test::KeyPair::ec();
  TokenVerifier v("", ec.public_pem(), 30s);
  EXPECT_EQ(verify(v, mint("ES256", claims_for("a"), "", other.key.get())), "bad signature");
  // DER instead of R || S.
  const std::string input = test::signing_input(R"({"alg":"ES256"})", json::serialize(claims_for("a")));
  EXPECT_EQ(verify(v, input + "." + base64url_encode(test::sign_der(ec.key.get(), input))),
            "bad signature");
  auto rsa = test::KeyPair::rsa();
  auto rsa2 = test::KeyPair::rsa();
  TokenVerifier rv("", rsa.public_pem(), 30s);
  EXPECT_EQ(verify(rv, mint("RS256", claims_for("a"), "", rsa2.key.get())), "bad signature");
}

// --- form ---

TEST(TokenVerifier, RefusesMalformedTokens) {
  auto v = hmac_verifier();
  const std::string good = test::hs256("alice");
  EXPECT_EQ(verify(v, ""), "token required");
  EXPECT_EQ(verify(v, "abc"), "token is not a compact JWS (header.payload.signature)");
  EXPECT_EQ(verify(v, "a.b"), "token is not a compact JWS (header.payload.signature)");
  EXPECT_EQ(verify(v, good + ".x"), "token is not a compact JWS (header.payload.signature)");
  EXPECT_EQ(verify(v, "!!!." + good.substr(good.find('.') + 1)), "token header is not base64url JSON");
  EXPECT_EQ(verify(v, base64url_encode("{\"alg\":") + "." + good.substr(good.find('.') + 1)),
            "token header is not base64url JSON");
  EXPECT_EQ(verify(v, base64url_encode("[1]") + "." + good.substr(good.find('.') + 1)),
            "token header is not base64url JSON");
  EXPECT_EQ(verify(v, good.substr(0, good.rfind('.')) + ".***"), "token signature is not base64url");
  // Well-signed payloads that are not base64url JSON objects.
  const auto signed_raw = [&](std::string_view payload_b64) {
    const std::string input = base64url_encode(R"({"alg":"HS256"})") + "." + std::string(payload_b64);
    return input + "." + base64url_encode(test::hmac(EVP_sha256(), kTestSecret, input));
  };
  EXPECT_EQ(verify(v, signed_raw("e30=")), "token payload is not base64url JSON");  // padded
  EXPECT_EQ(verify(v, signed_raw(base64url_encode("not json"))), "token payload is not base64url JSON");
  EXPECT_EQ(verify(v, signed_raw(base64url_encode("\"alice\""))), "token payload is not base64url JSON");
}

TEST(TokenVerifier, RefusesA64KiBTokenBeforeDecodingIt) {
  auto claims = claims_for("alice");
  claims["pad"] = std::string(64 * 1024, 'x');
  EXPECT_EQ(verify(hmac_verifier(), mint("HS256", claims)), "token too large");
  EXPECT_EQ(verify(hmac_verifier(), std::string(TokenVerifier::kMaxTokenBytes + 1, 'a')),
            "token too large");
}

// --- claims ---

TEST(TokenVerifier, RefusesMissingOrMistypedClaims) {
  auto v = hmac_verifier();
  const int64_t exp = unix_now() + 60;
  const std::pair<json::object, std::string> cases[] = {
      {{{"exp", exp}}, "sub claim missing"},
      {{{"sub", "alice"}}, "exp claim missing"},
      {{{"sub", 42}, {"exp", exp}}, "sub claim must be a non-empty string"},
      {{{"sub", ""}, {"exp", exp}}, "sub claim must be a non-empty string"},
      {{{"sub", "alice"}, {"exp", "tomorrow"}}, "exp claim must be a number"},
      {{{"sub", "alice"}, {"exp", exp}, {"nbf", true}}, "nbf claim must be a number"},
      {{{"sub", "alice"}, {"exp", exp}, {"appIDs", 101}}, "appIDs claim must be an array of appIDs"},
      {{{"sub", "alice"}, {"exp", exp}, {"appIDs", json::array{-1}}},
       "appIDs claim must be an array of appIDs"},
      {{{"sub", "alice"}, {"exp", exp}, {"appIDs", json::array{"101"}}},
       "appIDs claim must be an array of appIDs"},
      {{{"sub", "alice"}, {"exp", exp}, {"appIDs", json::array{4294967296LL}}},
       "appIDs claim must be an array of appIDs"},
  };
  for (const auto& [claims, error] : cases) {
    EXPECT_EQ(verify(v, mint("HS256", claims)), error) << json::serialize(claims);
  }
}

TEST(TokenVerifier, ExpiryAndNotBeforeHonourTheLeeway) {
  auto v = hmac_verifier(30s);
  const int64_t now = unix_now();
  TokenClaims out;
  const auto at = [&](json::object claims) { return v.verify(mint("HS256", claims), now, out); };
  EXPECT_EQ(at({{"sub", "a"}, {"exp", now - 31}}), "token expired");
  EXPECT_EQ(at({{"sub", "a"}, {"exp", now - 29}}), "");  // within the leeway
  EXPECT_EQ(at({{"sub", "a"}, {"exp", double(now) - 100.5}}), "token expired");
  EXPECT_EQ(at({{"sub", "a"}, {"exp", now + 60}, {"nbf", now + 31}}), "token not yet valid (nbf)");
  EXPECT_EQ(at({{"sub", "a"}, {"exp", now + 60}, {"nbf", now + 29}}), "");
  EXPECT_EQ(at({{"sub", "a"}, {"exp", INT64_MAX}}), "");  // no overflow
  auto strict = hmac_verifier(0s);
  EXPECT_EQ(strict.verify(mint("HS256", {{"sub", "a"}, {"exp", now - 1}}), now, out), "token expired");
  EXPECT_EQ(strict.verify(mint("HS256", {{"sub", "a"}, {"exp", now}}), now, out), "");
}

// --- keys at start-up ---

TEST(TokenVerifier, RefusesUnusableKeys) {
  EXPECT_THROW(TokenVerifier("short", "", 30s), ConfigError);
  EXPECT_THROW(TokenVerifier("", "not a pem", 30s), ConfigError);
  EXPECT_THROW(TokenVerifier("", test::KeyPair::rsa(1024).public_pem(), 30s), ConfigError);
  EXPECT_THROW(TokenVerifier("", test::KeyPair::ec("P-384").public_pem(), 30s), ConfigError);
  EXPECT_THROW(TokenVerifier("", "", 30s), ConfigError);
  EXPECT_NO_THROW(TokenVerifier(kTestSecret, test::KeyPair::ec().public_pem(), 30s));
}

TEST(TokenVerifier, FromConfigIsNullWithoutSecretOrKey) {
  Config config;
  EXPECT_EQ(TokenVerifier::from_config(config), nullptr);
  config.auth_hmac_secret = kTestSecret;
  auto v = TokenVerifier::from_config(config);
  ASSERT_NE(v, nullptr);
  EXPECT_TRUE(v->has_hmac());
  EXPECT_FALSE(v->has_public_key());
  EXPECT_EQ(v->leeway(), 30s);
  config.auth_hmac_secret.clear();
  config.auth_public_key = "/nonexistent/key.pem";
  EXPECT_THROW(TokenVerifier::from_config(config), ConfigError);
}

}  // namespace
}  // namespace imgate
