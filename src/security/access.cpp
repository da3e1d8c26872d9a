#include "security/access.hpp"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>

namespace imgate {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && lower(a) == lower(b);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool host_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '.' || c == '_';
}

// A DNS name or IPv4 address: labels of host characters separated by single dots.
bool valid_host(std::string_view host) {
  if (host.empty() || host.front() == '.' || host.back() == '.') return false;
  if (host.find("..") != std::string_view::npos) return false;
  return std::all_of(host.begin(), host.end(), host_char);
}

unsigned default_port(std::string_view scheme) {
  if (scheme == "http" || scheme == "ws") return 80;
  if (scheme == "https" || scheme == "wss") return 443;
  return 0;
}

// Splits "scheme://host[:port]" without checking the host's characters.
std::optional<OriginParts> split_origin(std::string_view origin) {
  const auto sep = origin.find("://");
  if (sep == std::string_view::npos || sep == 0) return std::nullopt;
  OriginParts parts;
  parts.scheme = lower(origin.substr(0, sep));
  if (!std::all_of(parts.scheme.begin(), parts.scheme.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '+' || c == '-' ||
               c == '.';
      })) {
    return std::nullopt;
  }
  std::string_view rest = origin.substr(sep + 3);
  if (rest.empty() || rest.front() == '[') return std::nullopt;  // IPv6 literals: not supported
  std::string_view host = rest;
  parts.port = default_port(parts.scheme);
  if (const auto colon = rest.find(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    const std::string_view port = rest.substr(colon + 1);
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (port.empty() || ec != std::errc{} || end != port.data() + port.size() || value == 0 ||
        value > 65535) {
      return std::nullopt;
    }
    parts.port = value;
  }
  if (parts.port == 0) return std::nullopt;  // unknown scheme without an explicit port
  parts.host = lower(host);
  return parts;
}

using Digest = std::array<unsigned char, SHA256_DIGEST_LENGTH>;

Digest sha256(std::string_view text) {
  Digest digest{};
  ::SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest.data());
  return digest;
}

}  // namespace

std::optional<OriginParts> parse_origin(std::string_view origin) {
  auto parts = split_origin(origin);
  if (!parts || !valid_host(parts->host)) return std::nullopt;
  return parts;
}

std::string origin_pattern_error(std::string_view pattern) {
  const std::string expected =
      "expected an origin like https://chat.example.com or a pattern like https://*.example.com";
  auto parts = split_origin(pattern);
  if (!parts) return expected;
  std::string_view host = parts->host;
  if (host.starts_with("*.")) {
    host.remove_prefix(2);
    if (host.find('.') == std::string_view::npos) {
      return "a wildcard needs at least two labels after \"*.\" (e.g. https://*.example.com)";
    }
  }
  if (!valid_host(host)) return expected;
  return "";
}

bool origin_allowed(std::string_view origin, const std::vector<std::string>& allowed) {
  if (allowed.empty()) return true;
  const auto parts = parse_origin(origin);
  if (!parts) return false;
  for (const std::string& entry : allowed) {
    const auto want = split_origin(entry);
    if (!want || want->scheme != parts->scheme || want->port != parts->port) continue;
    if (want->host.starts_with("*.")) {
      // "*.example.com" -> ".example.com": the origin's host must end with it and have at
      // least one (non-empty, by valid_host) label before it.
      const std::string_view suffix = std::string_view(want->host).substr(1);
      if (parts->host.size() > suffix.size() && parts->host.ends_with(suffix)) return true;
    } else if (want->host == parts->host) {
      return true;
    }
  }
  return false;
}

std::string_view presented_api_key(std::string_view authorization, std::string_view x_api_key) {
  authorization = trim(authorization);
  if (authorization.size() > 7 && iequals(authorization.substr(0, 7), "bearer ")) {
    return trim(authorization.substr(7));
  }
  return trim(x_api_key);
}

bool api_key_matches(std::string_view presented, const std::vector<std::string>& keys) {
  if (presented.empty()) return false;
  const Digest given = sha256(presented);
  int matches = 0;
  for (const std::string& key : keys) {
    const Digest want = sha256(key);
    matches |= ::CRYPTO_memcmp(given.data(), want.data(), want.size()) == 0 ? 1 : 0;
  }
  return matches != 0;
}

}  // namespace imgate
