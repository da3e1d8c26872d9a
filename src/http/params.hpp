// HTTP API parameters: from the query string, a form body
// (application/x-www-form-urlencoded) or a JSON object body, as upstream's
// gin handlers read them (query and form) plus JSON. Body values override
// query values of the same name.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace imgate {

class Params {
 public:
  // Parses `target`'s query and, by `content_type`, `body`. Returns nullopt
  // with `error` set when the body is malformed (bad JSON, nested values).
  static std::optional<Params> parse(std::string_view target, std::string_view content_type,
                                     std::string_view body, std::string& error);

  // The value, or nullopt when absent.
  std::optional<std::string> get(std::string_view name) const;

  void set(std::string name, std::string value) { values_[std::move(name)] = std::move(value); }

 private:
  std::map<std::string, std::string, std::less<>> values_;
};

}  // namespace imgate
