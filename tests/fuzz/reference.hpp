// Reference decoders for the frame-parser fuzz target (frame_parser_fuzz.cpp).
//
// Written to be obviously correct, not fast or incremental, and sharing no
// code with src/websocket/:
//  - UTF-8: every Unicode scalar value (U+0000..U+10FFFF without the
//    surrogates) is encoded with the RFC 3629 table into a set of valid
//    encodings and a set of their proper prefixes. Text is valid when it
//    splits into members of the first set (UTF-8 is prefix-free, so the split
//    is unique); it can still become valid when, after the last complete code
//    point, what is left is a member of the second set. No rule about
//    overlongs, surrogates or ranges is written by hand: they follow from the
//    encoder.
//  - Frames: the whole stream is decoded at once, frame after frame, applying
//    the rules of RFC 6455 as listed in src/websocket/frame_parser.hpp. A rule
//    is applied as soon as the bytes it needs are in the stream, the same
//    moment an incremental parser can apply it: the first two header bytes,
//    then the full header, then the payload bytes present (UTF-8), then the
//    complete frame.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace imgate::fuzz {

// ---------------------------------------------------------------- UTF-8 --

class RefUtf8 {
 public:
  // What the text can still become.
  enum class State { kComplete, kIncomplete, kInvalid };

  static const RefUtf8& get() {
    static const RefUtf8 tables;
    return tables;
  }

  // Scans `text` once. first_bad: the length of the shortest prefix that
  // cannot become valid text (npos when there is none); boundary[i]: the
  // prefix of length i ends between code points.
  struct Scan {
    std::size_t first_bad = std::string_view::npos;
    std::vector<bool> boundary;
    State prefix_state(std::size_t len) const {
      if (len >= first_bad) return State::kInvalid;
      return boundary[len] ? State::kComplete : State::kIncomplete;
    }
  };

  Scan scan(std::string_view text) const {
    Scan s;
    s.boundary.assign(text.size() + 1, false);
    std::size_t i = 0;
    s.boundary[0] = true;
    while (i < text.size()) {
      std::size_t n = 0;
      for (std::size_t k = 1; k <= 4 && i + k <= text.size(); ++k) {
        if (complete(text.substr(i, k))) {
          n = k;
          break;
        }
      }
      if (n != 0) {
        i += n;
        s.boundary[i] = true;
        continue;
      }
      // No code point starts at i: the prefix becomes invalid at the first
      // byte that leaves the set of proper prefixes.
      std::size_t k = 1;
      while (i + k <= text.size() && k <= 3 && proper_prefix(text.substr(i, k))) ++k;
      if (i + k <= text.size()) s.first_bad = i + k;
      return s;  // either invalid at first_bad, or the text ends inside a code point
    }
    return s;
  }

  State state(std::string_view text) const { return scan(text).prefix_state(text.size()); }

 private:
  RefUtf8() {
    complete_[0].assign(std::size_t(1) << 8, false);
    complete_[1].assign(std::size_t(1) << 16, false);
    complete_[2].assign(std::size_t(1) << 24, false);
    complete_[3].assign(std::size_t(1) << 27, false);
    prefix_[0].assign(std::size_t(1) << 8, false);
    prefix_[1].assign(std::size_t(1) << 16, false);
    prefix_[2].assign(std::size_t(1) << 24, false);
    for (uint32_t cp = 0; cp <= 0x10FFFF; ++cp) {
      if (cp >= 0xD800 && cp <= 0xDFFF) continue;  // surrogates are not scalar values
      uint8_t b[4];
      const std::size_t n = encode(cp, b);
      set(complete_, b, n);
      for (std::size_t k = 1; k < n; ++k) set(prefix_, b, k);
    }
  }

  // RFC 3629 section 3.
  static std::size_t encode(uint32_t cp, uint8_t* b) {
    if (cp < 0x80) {
      b[0] = static_cast<uint8_t>(cp);
      return 1;
    }
    if (cp < 0x800) {
      b[0] = static_cast<uint8_t>(0xC0 | (cp >> 6));
      b[1] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
      return 2;
    }
    if (cp < 0x10000) {
      b[0] = static_cast<uint8_t>(0xE0 | (cp >> 12));
      b[1] = static_cast<uint8_t>(0x80 | ((cp >> 6) & 0x3F));
      b[2] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
      return 3;
    }
    b[0] = static_cast<uint8_t>(0xF0 | (cp >> 18));
    b[1] = static_cast<uint8_t>(0x80 | ((cp >> 12) & 0x3F));
    b[2] = static_cast<uint8_t>(0x80 | ((cp >> 6) & 0x3F));
    b[3] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
    return 4;
  }

  // Keys: the bytes, big-endian. 4-byte keys are stored from 0xF0000000
  // (every 4-byte encoding starts with 0xF0..0xF4; checked when building).
  static bool index(const uint8_t* b, std::size_t n, std::size_t& key) {
    uint32_t k = 0;
    for (std::size_t i = 0; i < n; ++i) k = (k << 8) | b[i];
    if (n == 4) {
      if (k < 0xF0000000u || k - 0xF0000000u >= (1u << 27)) return false;
      k -= 0xF0000000u;
    }
    key = k;
    return true;
  }
  static void set(std::vector<bool>* table, const uint8_t* b, std::size_t n) {
    std::size_t key;
    if (!index(b, n, key)) std::abort();  // the table would miss a valid encoding
    table[n - 1][key] = true;
  }
  static bool lookup(const std::vector<bool>* table, std::string_view s) {
    std::size_t key;
    if (!index(reinterpret_cast<const uint8_t*>(s.data()), s.size(), key)) return false;
    return table[s.size() - 1][key];
  }
  bool complete(std::string_view s) const { return lookup(complete_, s); }
  bool proper_prefix(std::string_view s) const { return s.size() <= 3 && lookup(prefix_, s); }

  std::vector<bool> complete_[4];
  std::vector<bool> prefix_[3];
};

// --------------------------------------------------------------- frames --

struct Event {
  bool control = false;
  uint8_t op = 0;
  std::string payload;
  bool operator==(const Event&) const = default;
};

struct RefResult {
  std::vector<Event> events;
  uint16_t code = 0;     // 0, 1002, 1003, 1007 or 1009
  bool stopped = false;  // ended at a close frame (stop_on_close)
  bool idle = false;     // the stream ended between frames, outside any fragmented message
};

// RFC 6455 section 7.4 and the IANA registry, as in issue 8: 1000-1003,
// 1007-1014 and 3000-4999 may be sent by a peer; 1004 is reserved, 1005,
// 1006 and 1015 never go on the wire, the rest below 3000 is unassigned.
inline bool ref_close_code_ok(unsigned code) {
  static constexpr unsigned kValid[] = {1000, 1001, 1002, 1003, 1007, 1008,
                                        1009, 1010, 1011, 1012, 1013, 1014};
  for (unsigned c : kValid) {
    if (code == c) return true;
  }
  return code >= 3000 && code <= 4999;
}

inline RefResult ref_decode(std::string_view s, uint64_t max_message, bool binary_allowed,
                            bool stop_on_close) {
  const RefUtf8& utf8 = RefUtf8::get();
  RefResult r;
  std::size_t pos = 0;
  uint8_t msg_op = 0;      // 1 or 2 while a message is open
  std::string msg;         // its unmasked payload so far
  uint64_t msg_size = 0;   // the lengths its frames announced so far
  auto byte = [&](std::size_t i) { return static_cast<uint8_t>(s[i]); };
  auto fail = [&](uint16_t code) {
    r.code = code;
    return r;
  };
  for (;;) {
    const std::size_t avail = s.size() - pos;
    if (avail == 0) {
      r.idle = msg_op == 0;
      return r;
    }
    if (avail < 2) return r;  // ends inside a header
    const uint8_t b0 = byte(pos), b1 = byte(pos + 1);
    const bool fin = (b0 & 0x80) != 0;
    const uint8_t rsv = b0 & 0x70;
    const uint8_t op = b0 & 0x0F;
    const bool masked = (b1 & 0x80) != 0;
    const uint8_t len7 = b1 & 0x7F;
    const bool control = op == 0x8 || op == 0x9 || op == 0xA;
    const bool data = op == 0x0 || op == 0x1 || op == 0x2;
    // Decidable from the first two bytes.
    if (rsv != 0) return fail(1002);
    if (!control && !data) return fail(1002);
    if (!masked) return fail(1002);
    if (control && !fin) return fail(1002);
    if (control && len7 > 125) return fail(1002);
    // The full header.
    const std::size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    const std::size_t hlen = 2 + ext + 4;
    if (avail < hlen) return r;
    uint64_t len = len7;
    if (ext != 0) {
      len = 0;
      for (std::size_t i = 0; i < ext; ++i) len = len * 256 + byte(pos + 2 + i);
    }
    if (len7 == 126 && len < 126) return fail(1002);
    if (len7 == 127 && len >= (uint64_t(1) << 63)) return fail(1002);
    if (len7 == 127 && len < 65536) return fail(1002);
    uint8_t mask[4];
    for (std::size_t i = 0; i < 4; ++i) mask[i] = byte(pos + 2 + ext + i);
    pos += hlen;
    if (data) {
      if (op == 0x0 && msg_op == 0) return fail(1002);
      if (op != 0x0 && msg_op != 0) return fail(1002);
      if (op == 0x2 && !binary_allowed) return fail(1003);
      if (op != 0x0) {
        msg_op = op;
        msg.clear();
        msg_size = 0;
      }
      // Both below 2^64 and len < 2^63: the sum cannot wrap unless
      // max_message is huge, so compare in 128 bits.
      if (static_cast<unsigned __int128>(msg_size) + len > max_message) return fail(1009);
      msg_size += len;
    }
    // The payload present in the stream.
    const std::size_t have = static_cast<std::size_t>(len < s.size() - pos ? len : s.size() - pos);
    std::string payload(s.substr(pos, have));
    for (std::size_t i = 0; i < have; ++i) payload[i] = static_cast<char>(payload[i] ^ mask[i % 4]);
    pos += have;
    if (control) {
      if (have < len) return r;  // ends inside the frame
      if (op == 0x8 && !payload.empty()) {
        if (payload.size() == 1) return fail(1002);
        const unsigned code = static_cast<uint8_t>(payload[0]) * 256u + static_cast<uint8_t>(payload[1]);
        if (!ref_close_code_ok(code)) return fail(1002);
        if (utf8.state(std::string_view(payload).substr(2)) != RefUtf8::State::kComplete) {
          return fail(1002);
        }
      }
      r.events.push_back({true, op, payload});
      if (op == 0x8 && stop_on_close) {
        r.stopped = true;
        return r;
      }
      continue;
    }
    msg += payload;
    if (msg_op == 0x1 && utf8.state(msg) == RefUtf8::State::kInvalid) return fail(1007);
    if (have < len) return r;  // ends inside the frame
    if (fin) {
      if (msg_op == 0x1 && utf8.state(msg) != RefUtf8::State::kComplete) return fail(1007);
      r.events.push_back({false, msg_op, msg});
      msg_op = 0;
      msg.clear();
      msg_size = 0;
    }
  }
}

}  // namespace imgate::fuzz
