// Unit tests for src/security/access.cpp: Origin parsing and the --allowed-origins
// match (exact origins, *.host patterns, look-alike hosts, null, case, ports), the
// validation of --allowed-origins entries, and API key extraction and comparison.
#include "security/access.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace imgate {
namespace {

using List = std::vector<std::string>;

// ---- parse_origin ---------------------------------------------------------------------------

TEST(ParseOrigin, LowerCasesSchemeAndHostAndFillsTheDefaultPort) {
  const auto a = parse_origin("HTTPS://Chat.Example.COM");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->scheme, "https");
  EXPECT_EQ(a->host, "chat.example.com");
  EXPECT_EQ(a->port, 443u);
  const auto b = parse_origin("http://127.0.0.1:8080");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->host, "127.0.0.1");
  EXPECT_EQ(b->port, 8080u);
  EXPECT_EQ(parse_origin("http://a.example.com")->port, 80u);
  EXPECT_EQ(parse_origin("ws://a.example.com")->port, 80u);
  EXPECT_EQ(parse_origin("wss://a.example.com")->port, 443u);
  EXPECT_EQ(parse_origin("chrome-extension://abcdef:1")->port, 1u);  // unknown scheme, explicit port
}

TEST(ParseOrigin, RefusesWhatIsNotASerializedOrigin) {
  for (const char* bad : {
           "", "null", "NULL", "example.com", "://example.com", "https://", "https:///",
           "https://a.example.com/", "https://a.example.com/path", "https://a.example.com?q",
           "https://user@a.example.com", "https://a.example.com:", "https://a.example.com:0",
           "https://a.example.com:65536", "https://a.example.com:44x", "https://a.example.com:-1",
           "https://.example.com", "https://a..example.com", "https://a.example.com.",
           "https://*.example.com", "https://[::1]:8080", "chrome-extension://abcdef",
           "ht tp://a.example.com", " https://a.example.com", "https://a.example.com ",
       }) {
    EXPECT_FALSE(parse_origin(bad)) << '"' << bad << '"';
  }
}

// ---- origin_allowed -------------------------------------------------------------------------

TEST(OriginAllowed, AnEmptyListAllowsEveryOriginEvenNull) {
  for (const char* origin : {"https://anything.test", "null", "", "garbage"}) {
    EXPECT_TRUE(origin_allowed(origin, {})) << origin;
  }
}

TEST(OriginAllowed, ExactEntriesMatchSchemeHostAndPort) {
  const List allowed{"https://chat.example.com", "http://127.0.0.1:8080"};
  for (const char* yes : {"https://chat.example.com", "HTTPS://CHAT.EXAMPLE.COM",
                          "https://Chat.Example.com:443", "http://127.0.0.1:8080"}) {
    EXPECT_TRUE(origin_allowed(yes, allowed)) << yes;
  }
  for (const char* no : {
           "http://chat.example.com",         // another scheme
           "wss://chat.example.com",          // not the same scheme either
           "https://chat.example.com:8443",   // another port
           "http://127.0.0.1",                // default port 80, not 8080
           "http://127.0.0.1:8081",
           "http://localhost:8080",           // another host for the same machine
           "https://a.chat.example.com",      // a subdomain: only patterns match those
           "https://example.com",
           "https://chat.example.com.evil.net",
           "https://evilchat.example.com",
           "https://chat.example.co",
           "https://chat.example.com/",       // not an origin
       }) {
    EXPECT_FALSE(origin_allowed(no, allowed)) << no;
  }
}

TEST(OriginAllowed, PatternsMatchOneOrMoreSubdomainLabelsOnly) {
  const List allowed{"https://*.example.com"};
  for (const char* yes : {"https://a.example.com", "https://a.b.example.com",
                          "https://A.EXAMPLE.COM", "https://x-1.example.com:443"}) {
    EXPECT_TRUE(origin_allowed(yes, allowed)) << yes;
  }
  for (const char* no : {
           "https://example.com",             // the domain itself
           "https://example.com.evil.net",    // a look-alike with the name as a prefix
           "https://a.example.com.evil.net",
           "https://evil-example.com",        // a look-alike ending in the name
           "https://aexample.com",
           "https://.example.com",            // an empty label
           "http://a.example.com",            // another scheme
           "https://a.example.com:8443",      // another port
           "https://a.example.org",
           "null",
       }) {
    EXPECT_FALSE(origin_allowed(no, allowed)) << no;
  }
}

TEST(OriginAllowed, APatternWithAPortMatchesThatPortOnly) {
  const List allowed{"http://*.example.com:8080"};
  EXPECT_TRUE(origin_allowed("http://a.example.com:8080", allowed));
  EXPECT_FALSE(origin_allowed("http://a.example.com", allowed));
  EXPECT_FALSE(origin_allowed("http://a.example.com:8081", allowed));
  // An explicit default port is the default port.
  EXPECT_TRUE(origin_allowed("http://a.example.com:80", {"http://*.example.com"}));
}

TEST(OriginAllowed, NullAndMalformedOriginsNeverMatch) {
  // Not even an entry written to look like them (config validation refuses those anyway).
  const List allowed{"https://chat.example.com", "https://*.example.com", "null"};
  for (const char* no : {"null", "NULL", "", "chat.example.com", "https://chat.example.com/",
                         "https://*.example.com", "file://"}) {
    EXPECT_FALSE(origin_allowed(no, allowed)) << '"' << no << '"';
  }
}

TEST(OriginAllowed, AnyEntryOfTheListMayMatch) {
  const List allowed{"https://one.example.net", "https://*.example.org", "http://127.0.0.1:3000"};
  EXPECT_TRUE(origin_allowed("https://one.example.net", allowed));
  EXPECT_TRUE(origin_allowed("https://two.example.org", allowed));
  EXPECT_TRUE(origin_allowed("http://127.0.0.1:3000", allowed));
  EXPECT_FALSE(origin_allowed("https://two.example.net", allowed));
}

// ---- origin_pattern_error -------------------------------------------------------------------

TEST(OriginPatternError, AcceptsExactOriginsAndWildcardPatterns) {
  for (const char* ok : {"https://chat.example.com", "HTTPS://Chat.Example.com", "http://127.0.0.1:8080",
                         "https://*.example.com", "https://*.example.com:8443", "http://*.a.b.example.org",
                         "chrome-extension://abcdef:1"}) {
    EXPECT_EQ(origin_pattern_error(ok), "") << ok;
  }
}

TEST(OriginPatternError, RefusesWhatCouldNeverMatchAnOrigin) {
  const std::string expected =
      "expected an origin like https://chat.example.com or a pattern like https://*.example.com";
  for (const char* bad : {"", "null", "*", "example.com", "https://", "https://a.example.com/",
                          "https://a.example.com/path", "https://a..example.com", "https://a.*.example.com",
                          "https://*.*.example.com", "https://**.example.com", "https://*example.com",
                          "https://a.example.com:0", "https://a.example.com:99999",
                          "chrome-extension://abcdef"}) {
    EXPECT_EQ(origin_pattern_error(bad), expected) << '"' << bad << '"';
  }
  // A wildcard over a single label would take a whole top-level domain.
  for (const char* tld : {"https://*.com", "https://*.localhost:8080"}) {
    EXPECT_EQ(origin_pattern_error(tld),
              "a wildcard needs at least two labels after \"*.\" (e.g. https://*.example.com)")
        << tld;
  }
}

// ---- presented_api_key ----------------------------------------------------------------------

TEST(PresentedApiKey, TakesTheBearerTokenCaseInsensitivelyAndTrimmed) {
  EXPECT_EQ(presented_api_key("Bearer k-123", ""), "k-123");
  EXPECT_EQ(presented_api_key("bearer k-123", ""), "k-123");
  EXPECT_EQ(presented_api_key("BEARER k-123", ""), "k-123");
  EXPECT_EQ(presented_api_key("  Bearer   k-123 \t", ""), "k-123");
  // Bearer wins over X-API-Key when both are sent.
  EXPECT_EQ(presented_api_key("Bearer from-auth", "from-header"), "from-auth");
}

TEST(PresentedApiKey, FallsBackToXApiKeyWhenAuthorizationIsNoBearerToken) {
  EXPECT_EQ(presented_api_key("", "k-456"), "k-456");
  EXPECT_EQ(presented_api_key("", "  k-456  "), "k-456");
  EXPECT_EQ(presented_api_key("Basic YWxwaGE=", "k-456"), "k-456");
  EXPECT_EQ(presented_api_key("Bearer", "k-456"), "k-456");     // a scheme without a token
  EXPECT_EQ(presented_api_key("Bearer   ", "k-456"), "k-456");
  EXPECT_EQ(presented_api_key("Bearerk-123", "k-456"), "k-456");  // no space after the scheme
}

TEST(PresentedApiKey, IsEmptyWhenNeitherHeaderCarriesAKey) {
  for (const auto& [authorization, x_api_key] : std::vector<std::pair<const char*, const char*>>{
           {"", ""}, {"Bearer", ""}, {"Bearer ", ""}, {"Basic YWxwaGE=", ""}, {"Token abc", ""},
           {"", "   "}, {"Bearerabc", ""}}) {
    EXPECT_EQ(presented_api_key(authorization, x_api_key), "")
        << '"' << authorization << "\" / \"" << x_api_key << '"';
  }
}

// ---- api_key_matches ------------------------------------------------------------------------

TEST(ApiKeyMatches, MatchesAnyConfiguredKeyExactly) {
  const List keys{"alpha-0123456789", "beta-key-xyz"};
  EXPECT_TRUE(api_key_matches("alpha-0123456789", keys));
  EXPECT_TRUE(api_key_matches("beta-key-xyz", keys));  // not only the first
  for (const char* no : {"alpha-0123456780", "alpha-012345678", "alpha-0123456789x", "ALPHA-0123456789",
                         "beta-key-xy", " beta-key-xyz", "alpha"}) {
    EXPECT_FALSE(api_key_matches(no, keys)) << no;
  }
}

TEST(ApiKeyMatches, AnEmptyKeyOrAnEmptyListNeverMatches) {
  EXPECT_FALSE(api_key_matches("", {"alpha-0123456789"}));
  EXPECT_FALSE(api_key_matches("", {""}));  // even against an empty configured key
  EXPECT_FALSE(api_key_matches("alpha-0123456789", {}));
}

TEST(ApiKeyMatches, KeysAreBytesNotText) {
  const std::string with_nul("key\0tail", 8);
  EXPECT_TRUE(api_key_matches(with_nul, {with_nul}));
  EXPECT_FALSE(api_key_matches("key", {with_nul}));
  EXPECT_TRUE(api_key_matches("ключ-κλειδί", {"ключ-κλειδί"}));
}

}  // namespace
}  // namespace imgate
