#include "http/params.hpp"

#include <boost/json.hpp>

#include "security/hex.hpp"

namespace imgate {

namespace json = boost::json;

namespace {

bool starts_with_ci(std::string_view text, std::string_view prefix) {
  if (text.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(text[i])) != prefix[i]) return false;
  }
  return true;
}


// application/x-www-form-urlencoded decoding as Go's net/url does it for gin:
// '+' is a space, %XX a byte, and any other byte is taken as it is (upstream
// clients send raw UTF-8 such as userID=黄帝). A malformed escape fails.
bool form_decode(std::string_view in, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '+') {
      out += ' ';
    } else if (c == '%') {
      if (i + 2 >= in.size()) return false;
      const int hi = hex_value(in[i + 1]);
      const int lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += c;
    }
  }
  return true;
}

// Adds the decoded pairs of an urlencoded string. Hand-written rather than
// Boost.URL: its parsers refuse the raw UTF-8 and punctuation that upstream
// accepts (and 1.81's parse_query read past the end of a non-terminated view).
bool add_encoded(Params& params, std::string_view encoded) {
  std::string key, value;
  while (!encoded.empty()) {
    const std::size_t amp = encoded.find('&');
    std::string_view pair = encoded.substr(0, amp);
    encoded = amp == std::string_view::npos ? std::string_view() : encoded.substr(amp + 1);
    if (pair.empty()) continue;
    const std::size_t eq = pair.find('=');
    if (!form_decode(pair.substr(0, eq), key)) return false;
    if (!form_decode(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1),
                     value)) {
      return false;
    }
    params.set(key, value);
  }
  return true;
}

bool add_json(Params& params, std::string_view body, std::string& error) {
  json::error_code ec;
  json::value root = json::parse(body, ec);
  if (ec || !root.is_object()) {
    error = "body is not a JSON object";
    return false;
  }
  for (const auto& [key, value] : root.get_object()) {
    if (value.is_string()) {
      params.set(std::string(key), std::string(value.get_string()));
    } else if (value.is_int64() || value.is_uint64() || value.is_double() || value.is_bool()) {
      params.set(std::string(key), json::serialize(value));
    } else if (!value.is_null()) {
      error = "JSON field " + std::string(key) + " must be a string or a number";
      return false;
    }
  }
  return true;
}

}  // namespace

std::optional<Params> Params::parse(std::string_view target, std::string_view content_type,
                                    std::string_view body, std::string& error) {
  Params params;
  if (auto q = target.find('?'); q != std::string_view::npos) {
    if (!add_encoded(params, target.substr(q + 1))) {
      error = "malformed query string";
      return std::nullopt;
    }
  }
  if (body.empty()) return params;
  if (starts_with_ci(content_type, "application/json")) {
    if (!add_json(params, body, error)) return std::nullopt;
  } else if (starts_with_ci(content_type, "application/x-www-form-urlencoded") ||
             content_type.empty()) {
    if (!add_encoded(params, body)) {
      error = "malformed form body";
      return std::nullopt;
    }
  }
  return params;
}

std::optional<std::string> Params::get(std::string_view name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

}  // namespace imgate
