// The chat page and client assets (web/), read once at start-up so that no
// request touches the disk on an event loop.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace imgate {

struct WebAsset {
  std::string content_type;
  std::string body;
};

class WebAssets {
 public:
  // Loads the regular files directly in `root` with a known extension
  // (.html .js .mjs .css .svg .png .ico .json .txt .md). A missing directory
  // leaves the set empty (logged by the caller).
  static WebAssets load(const std::string& root);

  // The asset named `name` (a bare file name, no directories), if any.
  const WebAsset* find(std::string_view name) const;
  bool empty() const { return assets_.empty(); }
  std::size_t size() const { return assets_.size(); }

 private:
  std::map<std::string, WebAsset, std::less<>> assets_;
};

}  // namespace imgate
