#include "websocket/utf8.hpp"

#include <cstring>

namespace imgate::ws {

bool Utf8Validator::feed(const char* data, std::size_t size) {
  const auto* p = reinterpret_cast<const uint8_t*>(data);
  const uint8_t* const end = p + size;
  while (p < end) {
    if (need_ == 0) {
      // Fast path: eight ASCII bytes at a time.
      while (end - p >= 8) {
        uint64_t word;
        std::memcpy(&word, p, 8);
        if (word & 0x8080808080808080ULL) break;
        p += 8;
      }
      if (p == end) break;
      const uint8_t b = *p++;
      if (b < 0x80) continue;
      if (b < 0xC2) return false;  // continuation byte or overlong 2-byte lead
      if (b < 0xE0) {
        need_ = 1;
      } else if (b < 0xF0) {
        need_ = 2;
        if (b == 0xE0) lo_ = 0xA0;  // overlong 3-byte form
        if (b == 0xED) hi_ = 0x9F;  // surrogates
      } else if (b < 0xF5) {
        need_ = 3;
        if (b == 0xF0) lo_ = 0x90;  // overlong 4-byte form
        if (b == 0xF4) hi_ = 0x8F;  // above U+10FFFF
      } else {
        return false;
      }
      continue;
    }
    const uint8_t b = *p++;
    if (b < lo_ || b > hi_) return false;
    lo_ = 0x80;
    hi_ = 0xBF;
    --need_;
  }
  return true;
}

bool is_valid_utf8(std::string_view text) {
  Utf8Validator v;
  return v.feed(text) && v.at_boundary();
}

}  // namespace imgate::ws
