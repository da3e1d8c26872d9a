// ClientFrame: one RFC 6455 client frame built byte by byte, including the
// frames a conforming client never sends (RSV bits, reserved opcodes,
// unmasked, non-minimal or oversized length encodings, a length that does not
// match the payload). Shared by the unit tests of the frame parser and the
// raw-socket conformance tests against the gateway. Header-only, no
// dependencies beyond the standard library.
//
//   ClientFrame::text("hi").fin(false).bytes()
//   ClientFrame::ping("").len16().bytes()             // non-minimal 16-bit length
//   ClientFrame::text("").len64().declared(1ull << 63).bytes()
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace imgate::test {

namespace op {
inline constexpr uint8_t kContinuation = 0x0, kText = 0x1, kBinary = 0x2, kClose = 0x8,
                         kPing = 0x9, kPong = 0xA;
}  // namespace op

// How the payload length is written: the shortest form (kAuto), or forced.
enum class LengthForm { kAuto, k7, k16, k64 };

class ClientFrame {
 public:
  explicit ClientFrame(uint8_t opcode, std::string_view payload = {})
      : opcode_(opcode), payload_(payload) {}

  static ClientFrame text(std::string_view p) { return ClientFrame(op::kText, p); }
  static ClientFrame binary(std::string_view p) { return ClientFrame(op::kBinary, p); }
  static ClientFrame continuation(std::string_view p) { return ClientFrame(op::kContinuation, p); }
  static ClientFrame ping(std::string_view p) { return ClientFrame(op::kPing, p); }
  static ClientFrame pong(std::string_view p) { return ClientFrame(op::kPong, p); }
  static ClientFrame close(std::string_view p = {}) { return ClientFrame(op::kClose, p); }
  // A close frame carrying `code` (big-endian) and `reason`.
  static ClientFrame close(uint16_t code, std::string_view reason = {}) {
    return ClientFrame(op::kClose, close_payload(code, reason));
  }
  static std::string close_payload(uint16_t code, std::string_view reason = {}) {
    std::string p;
    p.push_back(static_cast<char>(code >> 8));
    p.push_back(static_cast<char>(code & 0xFF));
    p.append(reason);
    return p;
  }

  ClientFrame& fin(bool f) { fin_ = f; return *this; }
  // The three RSV bits, 0..7 (4 = RSV1, 2 = RSV2, 1 = RSV3).
  ClientFrame& rsv(uint8_t bits) { rsv_ = bits & 7; return *this; }
  ClientFrame& unmasked() { masked_ = false; return *this; }
  ClientFrame& key(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
    key_ = {a, b, c, d};
    return *this;
  }
  ClientFrame& len7() { form_ = LengthForm::k7; return *this; }
  ClientFrame& len16() { form_ = LengthForm::k16; return *this; }
  ClientFrame& len64() { form_ = LengthForm::k64; return *this; }
  // Announce `n` payload bytes whatever the payload holds (the payload bytes
  // are still appended: pass an empty one to send a header alone).
  ClientFrame& declared(uint64_t n) { declared_ = n; return *this; }

  const std::string& payload() const { return payload_; }

  // Size of the header this frame is encoded with (mask key included).
  std::size_t header_size() const {
    const uint64_t n = declared_.value_or(payload_.size());
    std::size_t size = 2 + (masked_ ? 4 : 0);
    switch (form(n)) {
      case LengthForm::k16: return size + 2;
      case LengthForm::k64: return size + 8;
      default: return size;
    }
  }

  std::string bytes() const {
    const uint64_t n = declared_.value_or(payload_.size());
    std::string out;
    out.push_back(static_cast<char>((fin_ ? 0x80 : 0) | (rsv_ << 4) | (opcode_ & 0x0F)));
    const uint8_t mask_bit = masked_ ? 0x80 : 0;
    switch (form(n)) {
      case LengthForm::k7:
        if (n > 125) throw std::invalid_argument("7-bit length form holds at most 125");
        out.push_back(static_cast<char>(mask_bit | n));
        break;
      case LengthForm::k16:
        if (n > 0xFFFF) throw std::invalid_argument("16-bit length form holds at most 65535");
        out.push_back(static_cast<char>(mask_bit | 126));
        out.push_back(static_cast<char>(n >> 8));
        out.push_back(static_cast<char>(n & 0xFF));
        break;
      default:
        out.push_back(static_cast<char>(mask_bit | 127));
        for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>(n >> shift));
        break;
    }
    if (masked_) {
      for (uint8_t k : key_) out.push_back(static_cast<char>(k));
    }
    for (std::size_t i = 0; i < payload_.size(); ++i) {
      const auto k = masked_ ? key_[i % 4] : uint8_t{0};
      out.push_back(static_cast<char>(static_cast<uint8_t>(payload_[i]) ^ k));
    }
    return out;
  }

  operator std::string() const { return bytes(); }  // NOLINT: concatenation reads naturally

 private:
  LengthForm form(uint64_t n) const {
    if (form_ != LengthForm::kAuto) return form_;
    return n < 126 ? LengthForm::k7 : n <= 0xFFFF ? LengthForm::k16 : LengthForm::k64;
  }

  uint8_t opcode_;
  std::string payload_;
  bool fin_ = true;
  uint8_t rsv_ = 0;
  bool masked_ = true;
  std::array<uint8_t, 4> key_ = {0x37, 0xFA, 0x21, 0x3D};
  LengthForm form_ = LengthForm::kAuto;
  std::optional<uint64_t> declared_;
};

// Concatenation of frames (a frame sequence as one byte string).
inline std::string operator+(const ClientFrame& a, const ClientFrame& b) {
  return a.bytes() + b.bytes();
}
inline std::string operator+(std::string a, const ClientFrame& b) { return a += b.bytes(); }
inline std::string operator+(const ClientFrame& a, const std::string& b) { return a.bytes() + b; }

}  // namespace imgate::test
