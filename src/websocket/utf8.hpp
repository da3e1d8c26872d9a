// Incremental UTF-8 validation (RFC 3629): text arrives in pieces (TCP
// reads, WebSocket fragments) and must fail as soon as the bytes seen so far
// cannot begin any valid text, not only at the end (RFC 6455 §8.1; Autobahn
// 6.x checks it). Overlong forms, surrogates (U+D800..DFFF) and code points
// above U+10FFFF are invalid.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace imgate::ws {

class Utf8Validator {
 public:
  // Validates the next `size` bytes. Returns false as soon as the text can no
  // longer become valid; the validator is then spent (reset() to reuse).
  bool feed(const char* data, std::size_t size);
  bool feed(std::string_view text) { return feed(text.data(), text.size()); }

  // True between code points (nothing pending): the text so far is complete.
  bool at_boundary() const { return need_ == 0; }

  void reset() { *this = Utf8Validator{}; }

 private:
  uint8_t need_ = 0;    // continuation bytes still expected
  uint8_t lo_ = 0x80;   // bounds of the next continuation byte (narrower
  uint8_t hi_ = 0xBF;   // after E0, ED, F0, F4)
};

// Whole-text check.
bool is_valid_utf8(std::string_view text);

}  // namespace imgate::ws
