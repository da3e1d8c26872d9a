// Access control helpers shared by the configuration (validation) and the
// network layer: WebSocket Origin allow-lists and API key comparison.
// See docs/security.md.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace imgate {

// An origin "scheme://host[:port]" split into its parts; scheme and host are
// lower-cased and an absent port is the scheme's default (80 / 443), so that
// "https://a.example.com" and "https://A.example.com:443" are the same origin.
struct OriginParts {
  std::string scheme;
  std::string host;
  unsigned port = 0;
};

// Parses an Origin header value (RFC 6454 serialization: no path, no query,
// no user info). nullopt when it is not of that form (including "null").
std::optional<OriginParts> parse_origin(std::string_view origin);

// Checks one --allowed-origins entry: an exact origin ("https://chat.example.com")
// or a wildcard pattern ("https://*.example.com[:port]", "*." only as the first
// label, at least two labels after it). Returns an error text, or "" when valid.
std::string origin_pattern_error(std::string_view pattern);

// True when `origin` (the header's value) matches one of `allowed`. An exact
// entry matches the same scheme, host and port; "scheme://*.host" matches one or
// more subdomain labels of host (not host itself) with the same scheme and port.
bool origin_allowed(std::string_view origin, const std::vector<std::string>& allowed);

// The API key a request presents: the token of "Authorization: Bearer <key>"
// (scheme case-insensitive), else the X-API-Key value. Empty when neither.
std::string_view presented_api_key(std::string_view authorization, std::string_view x_api_key);

// True when `presented` equals one of `keys`. Compares SHA-256 digests with
// CRYPTO_memcmp and always looks at every key, so neither the position of the
// first differing byte nor the key lengths show in the time taken.
bool api_key_matches(std::string_view presented, const std::vector<std::string>& keys);

}  // namespace imgate
