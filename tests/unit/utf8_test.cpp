// ws::Utf8Validator: RFC 3629 UTF-8, validated incrementally and failing as
// soon as the bytes seen can no longer begin valid text (RFC 6455 §8.1; the
// "fail fast" cases of Autobahn 6.x). Checked on named cases and against a
// plain reference decoder over every 1- and 2-byte string and every 4-byte
// string over an alphabet of boundary bytes.
#include "websocket/utf8.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace imgate::test {
namespace {

using ws::Utf8Validator;

// ---- reference ---------------------------------------------------------------

// Decodes code point by code point: shortest form, no surrogates, <= U+10FFFF.
bool reference_valid(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<uint8_t>(s[i]);
    if (b < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    uint32_t cp;
    if ((b & 0xE0) == 0xC0) {
      len = 2, cp = b & 0x1F;
    } else if ((b & 0xF0) == 0xE0) {
      len = 3, cp = b & 0x0F;
    } else if ((b & 0xF8) == 0xF0) {
      len = 4, cp = b & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (std::size_t k = 1; k < len; ++k) {
      const auto c = static_cast<uint8_t>(s[i + k]);
      if ((c & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

// Whether some continuation of `prefix` is valid. The second byte of a
// sequence is bounded to [80,BF], [A0,BF], [80,9F], [90,BF] or [80,8F], so
// 80, 90 and A0 reach every completion.
bool completable_from(std::string& s, int depth) {
  if (reference_valid(s)) return true;
  if (depth == 3) return false;
  for (char c : {'\x80', '\x90', '\xA0'}) {
    s.push_back(c);
    const bool ok = completable_from(s, depth + 1);
    s.pop_back();
    if (ok) return true;
  }
  return false;
}

bool reference_completable(std::string_view prefix) {
  std::string s;
  s.reserve(prefix.size() + 3);
  s.assign(prefix);
  return completable_from(s, 0);
}

// Offset of the byte at which `s` stops being completable, if any.
std::optional<std::size_t> reference_failure(std::string_view s) {
  for (std::size_t n = 1; n <= s.size(); ++n) {
    if (!reference_completable(s.substr(0, n))) return n - 1;
  }
  return std::nullopt;
}

// Offset of the byte on which feeding `s` one byte at a time first fails.
std::optional<std::size_t> bytewise_failure(std::string_view s) {
  Utf8Validator v;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (!v.feed(s.data() + i, 1)) return i;
  }
  return std::nullopt;
}

// ---- named cases ------------------------------------------------------------------

TEST(Utf8, ValidFormsOfEveryLength) {
  const std::string valid[] = {
      "",
      "plain ASCII, longer than eight bytes",
      std::string("\x00\x7F", 2),
      "\xC2\x80", "\xDF\xBF",                              // 2 bytes: U+0080, U+07FF
      "\xE0\xA0\x80", "\xED\x9F\xBF", "\xEE\x80\x80",      // U+0800, U+D7FF, U+E000
      "\xEF\xBF\xBF",                                      // U+FFFF
      "\xF0\x90\x80\x80", "\xF4\x8F\xBF\xBF",              // U+10000, U+10FFFF
      "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5",      // κόσμε
      "Hello-\xC2\xB5@\xC3\x9F\xC3\xB6\xC3\xA4\xC3\xBC\xC3\xA0\xC3\xA1-UTF-8!!",
      "\xE9\xA9\xAC\xE8\xBF\x9C", "\xF0\x9F\x98\x80 smile",
  };
  for (const auto& s : valid) {
    SCOPED_TRACE(testing::PrintToString(s));
    EXPECT_TRUE(ws::is_valid_utf8(s));
    EXPECT_TRUE(reference_valid(s));
    // Split at every point into two feeds.
    for (std::size_t cut = 0; cut <= s.size(); ++cut) {
      Utf8Validator v;
      ASSERT_TRUE(v.feed(s.data(), cut)) << "cut " << cut;
      ASSERT_TRUE(v.feed(s.data() + cut, s.size() - cut)) << "cut " << cut;
      EXPECT_TRUE(v.at_boundary()) << "cut " << cut;
    }
    EXPECT_FALSE(bytewise_failure(s).has_value());
  }
}

TEST(Utf8, InvalidFormsFailAtTheirFirstImpossibleByte) {
  struct Case {
    const char* what;
    std::string bytes;
    std::size_t fails_at;
  };
  const Case cases[] = {
      {"overlong 2-byte NUL", "\xC0\x80", 0},
      {"overlong 2-byte (C1)", "\xC1\xBF", 0},
      {"overlong 3-byte NUL", "\xE0\x80\x80", 1},
      {"overlong 3-byte U+07FF", "\xE0\x9F\xBF", 1},
      {"overlong 4-byte NUL", "\xF0\x80\x80\x80", 1},
      {"overlong 4-byte U+FFFF", "\xF0\x8F\xBF\xBF", 1},
      {"high surrogate U+D800", "\xED\xA0\x80", 1},
      {"low surrogate U+DFFF", "\xED\xBF\xBF", 1},
      {"U+110000", "\xF4\x90\x80\x80", 1},
      {"F5 lead", "\xF5\x80\x80\x80", 0},
      {"F7 lead", "\xF7\xBF\xBF\xBF", 0},
      {"F8 lead", "\xF8\x88\x80\x80\x80", 0},
      {"FC lead", "\xFC\x84\x80\x80\x80\x80", 0},
      {"FE", "\xFE", 0},
      {"FF", "\xFF", 0},
      {"lone continuation", "\x80", 0},
      {"lone continuation after ASCII", "abc\xBF", 3},
      {"ASCII where a continuation is due", "\xCE" "A", 1},
      {"new lead where a continuation is due", "\xE2\x82\xE2\x82\xAC", 2},
      {"surrogate after eight ASCII bytes", "12345678\xED\xA0\x80", 9},
      {"kuhn: valid text, then a surrogate",
       "\xCE\xBA\xE1\xBD\xB9\xCE\xBC\xCE\xB5\xED\xA0\x80", 10},
  };
  for (const auto& [what, bytes, fails_at] : cases) {
    SCOPED_TRACE(what);
    EXPECT_FALSE(ws::is_valid_utf8(bytes));
    EXPECT_FALSE(reference_valid(bytes));
    EXPECT_EQ(reference_failure(bytes), fails_at) << "reference disagrees with the test case";
    EXPECT_EQ(bytewise_failure(bytes), fails_at);
    Utf8Validator whole;
    EXPECT_FALSE(whole.feed(bytes));
    // The bytes before the failing one are a good prefix.
    Utf8Validator prefix;
    EXPECT_TRUE(prefix.feed(bytes.data(), fails_at));
  }
}

TEST(Utf8, FailFastOnTheKuhnSurrogateExampleExactlyAtA0) {
  // CE BA E1 BD B9 CE BC CE B5 ED A0 80: κόσμε then U+D800 encoded.
  const std::string bytes = "\xCE\xBA\xE1\xBD\xB9\xCE\xBC\xCE\xB5\xED\xA0\x80";
  Utf8Validator v;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    const bool ok = v.feed(bytes.data() + i, 1);
    if (i < 10) {
      ASSERT_TRUE(ok) << "failed early at byte " << i;
    } else {
      ASSERT_EQ(static_cast<uint8_t>(bytes[i]), 0xA0);
      ASSERT_FALSE(ok) << "0xA0 after 0xED must fail at once";
      break;
    }
  }
}

TEST(Utf8, IncompleteSequenceAtTheEndIsNotAtABoundary) {
  for (const std::string s : {"\xCE", "\xE1\xBD", "\xF0\x90\x80", "abc\xE2\x82", "\xF4\x8F"}) {
    SCOPED_TRACE(testing::PrintToString(s));
    Utf8Validator v;
    EXPECT_TRUE(v.feed(s)) << "an incomplete sequence can still become valid";
    EXPECT_FALSE(v.at_boundary());
    EXPECT_FALSE(ws::is_valid_utf8(s));
  }
}

TEST(Utf8, ResetMakesASpentValidatorUsable) {
  Utf8Validator v;
  EXPECT_FALSE(v.feed("\xFF"));
  v.reset();
  EXPECT_TRUE(v.feed("\xE2\x82"));
  EXPECT_FALSE(v.at_boundary());
  v.reset();
  EXPECT_TRUE(v.at_boundary());
  EXPECT_TRUE(v.feed("\xAC" "x") == false) << "the pending state must be gone after reset()";
}

TEST(Utf8, LongTextAcrossTheAsciiFastPathAtEveryAlignment) {
  // A multi-byte character (and then an invalid byte) at every offset
  // relative to the 8-byte ASCII words.
  for (std::size_t pad = 0; pad < 24; ++pad) {
    const std::string good = std::string(pad, 'a') + "\xF0\x9F\x98\x80" + std::string(17, 'b');
    EXPECT_TRUE(ws::is_valid_utf8(good)) << pad;
    const std::string bad = std::string(pad, 'a') + "\xF0\x9F\x98" + std::string(17, 'b');
    EXPECT_EQ(bytewise_failure(bad), pad + 3) << pad;
    Utf8Validator v;
    EXPECT_FALSE(v.feed(bad)) << pad;
  }
}

// ---- exhaustive comparison with the reference --------------------------------------

// Compares validator and reference on `s`: whole-text verdict, the byte at
// which a byte-by-byte feed fails, and the verdict of a single feed().
::testing::AssertionResult agrees(const std::string& s) {
  const bool valid = reference_valid(s);
  const auto fail = reference_failure(s);
  if (ws::is_valid_utf8(s) != valid) {
    return ::testing::AssertionFailure() << "is_valid_utf8 says " << !valid;
  }
  const auto got = bytewise_failure(s);
  if (got != fail) {
    return ::testing::AssertionFailure()
           << "byte-by-byte failure at " << (got ? std::to_string(*got) : "none")
           << ", reference " << (fail ? std::to_string(*fail) : "none");
  }
  Utf8Validator v;
  if (v.feed(s) != !fail.has_value()) return ::testing::AssertionFailure() << "single feed";
  if (!fail && v.at_boundary() != valid) return ::testing::AssertionFailure() << "at_boundary";
  return ::testing::AssertionSuccess();
}

std::string hex(const std::string& s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
    out += ' ';
  }
  return out;
}

TEST(Utf8, AgreesWithTheReferenceOnEveryOneAndTwoByteString) {
  int failures = 0;
  for (int a = 0; a < 256 && failures < 10; ++a) {
    const std::string one(1, static_cast<char>(a));
    if (auto r = agrees(one); !r) {
      ADD_FAILURE() << hex(one) << r.message();
      ++failures;
    }
    for (int b = 0; b < 256 && failures < 10; ++b) {
      const std::string two = one + static_cast<char>(b);
      if (auto r = agrees(two); !r) {
        ADD_FAILURE() << hex(two) << r.message();
        ++failures;
      }
    }
  }
}

TEST(Utf8, AgreesWithTheReferenceOnFourByteStringsOfBoundaryBytes) {
  const uint8_t alphabet[] = {0x00, 0x41, 0x7F, 0x80, 0x81, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0,
                              0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF};
  int failures = 0;
  for (uint8_t a : alphabet) {
    for (uint8_t b : alphabet) {
      for (uint8_t c : alphabet) {
        for (uint8_t d : alphabet) {
          const std::string s = {static_cast<char>(a), static_cast<char>(b),
                                 static_cast<char>(c), static_cast<char>(d)};
          if (auto r = agrees(s); !r) {
            ADD_FAILURE() << hex(s) << r.message();
            if (++failures >= 10) return;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace imgate::test
