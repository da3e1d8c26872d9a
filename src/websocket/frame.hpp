// RFC 6455 vocabulary and server-to-client frames.
//
// A server frame is built once (header + payload in one immutable buffer)
// and shared by every recipient: server frames are unmasked, so the bytes on
// the wire are the same for all of them (one push to a room of 10,000 costs
// one serialisation, one framing and one allocation).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace imgate::ws {

enum class Opcode : uint8_t {
  kContinuation = 0x0,
  kText = 0x1,
  kBinary = 0x2,
  kClose = 0x8,
  kPing = 0x9,
  kPong = 0xA,
};

inline bool is_control(Opcode op) { return static_cast<uint8_t>(op) >= 0x8; }

// Close codes a peer may send (RFC 6455 §7.4, IANA registry): 1000-1003,
// 1007-1014 and 3000-4999. 1004 is reserved; 1005, 1006 and 1015 must never
// be on the wire.
bool is_valid_close_code(uint16_t code);

// Longest close reason that fits a control frame (125 - 2 bytes of code).
inline constexpr std::size_t kMaxCloseReason = 123;

// Header size of a server (unmasked) frame with `payload` bytes.
std::size_t header_size(std::size_t payload);

// One frame as it goes on the wire: header + payload. Also carries raw bytes
// that are not a frame (the 101 response of the opening handshake), which the
// send path writes the same way.
class WireFrame {
 public:
  WireFrame(Opcode op, std::string_view payload);
  // `bytes` written as they are (no WebSocket header).
  static std::shared_ptr<const WireFrame> raw(std::string bytes);

  std::string_view bytes() const { return bytes_; }
  std::string_view payload() const { return std::string_view(bytes_).substr(header_size_); }
  std::size_t size() const { return bytes_.size(); }
  bool is_raw() const { return raw_; }
  Opcode opcode() const { return op_; }

 private:
  WireFrame() = default;
  std::string bytes_;
  uint8_t header_size_ = 0;
  Opcode op_ = Opcode::kText;
  bool raw_ = false;
};

using SharedFrame = std::shared_ptr<const WireFrame>;

SharedFrame make_text_frame(std::string_view text);
SharedFrame make_control_frame(Opcode op, std::string_view payload);
// Close frame with `code` and `reason` (cut to kMaxCloseReason bytes, at a
// UTF-8 boundary).
SharedFrame make_close_frame(uint16_t code, std::string_view reason);

}  // namespace imgate::ws
