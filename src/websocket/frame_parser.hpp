// FrameParser: RFC 6455 client-to-server frames, parsed incrementally from
// whatever the socket gave (any split: mid-header, mid-payload, several
// frames at once).
//
// Memory: a complete unfragmented frame found whole in the caller's buffer is
// unmasked in place and handed over as a view of that buffer (no copy, no
// allocation). The parser owns heap memory only while a frame or a fragmented
// message is incomplete, and gives it back as soon as it is delivered; an idle
// parser is a few dozen bytes.
//
// Rules enforced (each failure names its close code):
//  1002 unmasked frame, reserved bits, reserved opcodes, non-minimal or
//       > 2^63 lengths, fragmented or > 125-byte control frames, continuation
//       without a start, a new message inside a fragmented one, close payload
//       of 1 byte, invalid close code, close reason not UTF-8;
//  1003 binary message when ParseLimits::binary_allowed is false (at its
//       first frame, before any payload is buffered);
//  1007 text that is not UTF-8, detected as soon as the bytes seen cannot
//       become valid (across fragments);
//  1009 message above ParseLimits::max_message (whole message, all fragments),
//       detected from the frame header, before its payload is read.
// Thread safety: none; one parser per connection, used on its loop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "websocket/frame.hpp"
#include "websocket/utf8.hpp"

namespace imgate::ws {

struct ParseLimits {
  std::size_t max_message = 64 * 1024;
  bool binary_allowed = false;
};

// Why the parser failed the connection: the close code to send and a short
// reason (a static string).
struct Violation {
  uint16_t code = 0;  // 0: no violation
  std::string_view reason;
  explicit operator bool() const { return code != 0; }
};

// Receives what the parser completes. Returning false stops parsing (the
// rest of the buffer is left unread), e.g. after a close frame.
class FrameSink {
 public:
  // A complete text (valid UTF-8) or binary message. `payload` is valid only
  // during the call.
  virtual bool on_message(Opcode op, std::string_view payload) = 0;
  // A ping, pong or close frame (close payload already validated: empty, or
  // a valid code followed by a UTF-8 reason).
  virtual bool on_control(Opcode op, std::string_view payload) = 0;

 protected:
  ~FrameSink() = default;
};

class FrameParser {
 public:
  // Parses `size` bytes at `data`. Payloads are unmasked in place, so `data`
  // must be writable; it is not referenced after the call. Returns the first
  // violation found (the connection must then be failed; the parser is
  // spent), or {} when every byte was consumed or the sink stopped.
  Violation feed(char* data, std::size_t size, const ParseLimits& limits, FrameSink& sink);

  // True when no frame or message is partly received.
  bool idle() const { return header_len_ == 0 && !in_frame_ && message_op_ == 0; }
  // Heap bytes held for incomplete frames / messages.
  std::size_t held_bytes() const;

 private:
  Violation start_frame(const ParseLimits& limits);
  Violation on_payload(char* data, std::size_t n, bool frame_done, FrameSink& sink, bool& go_on);
  Violation end_control(std::string_view payload, FrameSink& sink, bool& go_on);
  void unmask(char* data, std::size_t n);

  uint64_t remaining_ = 0;          // payload bytes of the current frame still to come
  uint64_t message_size_ = 0;       // bytes of the current message so far
  std::unique_ptr<std::string> message_;  // fragmented / split data message
  std::unique_ptr<std::string> control_;  // control frame split across reads
  uint8_t header_[14];              // the frame header, collected byte by byte
  uint8_t header_len_ = 0;
  uint8_t mask_[4] = {0, 0, 0, 0};
  uint8_t mask_pos_ = 0;
  uint8_t frame_op_ = 0;            // opcode of the current frame
  uint8_t message_op_ = 0;          // 1 text / 2 binary while a message is open, else 0
  bool frame_fin_ = false;
  bool in_frame_ = false;           // header done, payload (possibly empty) pending
  Utf8Validator utf8_;
};

}  // namespace imgate::ws
