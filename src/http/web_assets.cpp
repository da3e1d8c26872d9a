#include "http/web_assets.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>

namespace imgate {

namespace fs = std::filesystem;

namespace {

std::optional<std::string> content_type_of(const fs::path& path) {
  static const std::map<std::string, std::string, std::less<>> kTypes{
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".ico", "image/x-icon"},
      {".json", "application/json; charset=utf-8"},
      {".txt", "text/plain; charset=utf-8"},
      {".md", "text/plain; charset=utf-8"},
  };
  auto it = kTypes.find(path.extension().string());
  if (it == kTypes.end()) return std::nullopt;
  return it->second;
}

}  // namespace

WebAssets WebAssets::load(const std::string& root) {
  WebAssets assets;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    if (!entry.is_regular_file(ec)) continue;
    auto type = content_type_of(entry.path());
    if (!type) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::ostringstream body;
    body << in.rdbuf();
    assets.assets_.emplace(entry.path().filename().string(), WebAsset{*type, body.str()});
  }
  return assets;
}

WebAssets WebAssets::embedded() {
  WebAssets assets;
  for (const EmbeddedFile& file : embedded_web_files()) {
    if (auto type = content_type_of(file.name)) {
      assets.assets_.emplace(file.name, WebAsset{*type, std::string(file.text)});
    }
  }
  return assets;
}

const WebAsset* WebAssets::find(std::string_view name) const {
  auto it = assets_.find(name);
  return it == assets_.end() ? nullptr : &it->second;
}

}  // namespace imgate
