#include "http/params.hpp"

#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

namespace imgate {

namespace json = boost::json;
namespace urls = boost::urls;

namespace {

bool starts_with_ci(std::string_view text, std::string_view prefix) {
  if (text.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(text[i])) != prefix[i]) return false;
  }
  return true;
}

// Adds the decoded pairs of an urlencoded string ('+' is a space in forms).
// Parsed as the query of an origin-form target: Boost.URL 1.81's parse_query
// reads past the end of a view that is not NUL-terminated (seen here: the
// last value picked up bytes of the previous request in Beast's buffer).
bool add_encoded(Params& params, std::string_view encoded, bool plus_is_space) {
  std::string target = "/?";
  target.append(encoded);
  auto url = urls::parse_origin_form(target);
  if (!url) return false;
  urls::encoding_opts opts;
  opts.space_as_plus = plus_is_space;
  for (auto param : url->params(opts)) {
    params.set(std::string(param.key), param.has_value ? std::string(param.value) : "");
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
    if (!add_encoded(params, target.substr(q + 1), true)) {
      error = "malformed query string";
      return std::nullopt;
    }
  }
  if (body.empty()) return params;
  if (starts_with_ci(content_type, "application/json")) {
    if (!add_json(params, body, error)) return std::nullopt;
  } else if (starts_with_ci(content_type, "application/x-www-form-urlencoded") ||
             content_type.empty()) {
    if (!add_encoded(params, body, true)) {
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
