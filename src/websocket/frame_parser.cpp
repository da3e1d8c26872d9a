#include "websocket/frame_parser.hpp"

#include <algorithm>
#include <cstring>

namespace imgate::ws {

namespace {

constexpr Violation protocol_error(std::string_view reason) { return {1002, reason}; }

// Bytes of the header announced by its first two bytes (mask key included).
std::size_t full_header_size(uint8_t b1) {
  const uint8_t len7 = b1 & 0x7F;
  return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;
}

// Checks that need only the first two bytes, so a bad frame fails at once.
Violation check_first_bytes(uint8_t b0, uint8_t b1) {
  if (b0 & 0x70) return protocol_error("reserved bits set");
  const uint8_t op = b0 & 0x0F;
  if ((op > 0x2 && op < 0x8) || op > 0xA) return protocol_error("reserved opcode");
  if (!(b1 & 0x80)) return protocol_error("client frame not masked");
  if (op >= 0x8) {
    if (!(b0 & 0x80)) return protocol_error("fragmented control frame");
    if ((b1 & 0x7F) > 125) return protocol_error("control frame longer than 125 bytes");
  }
  return {};
}

}  // namespace

std::size_t FrameParser::held_bytes() const {
  return (message_ ? message_->capacity() : 0) + (control_ ? control_->capacity() : 0);
}

Violation FrameParser::feed(char* data, std::size_t size, const ParseLimits& limits,
                            FrameSink& sink) {
  std::size_t pos = 0;
  bool go_on = true;
  while (go_on) {
    if (!in_frame_) {
      if (pos == size) break;
      std::size_t need = header_len_ < 2 ? 2 : full_header_size(header_[1]);
      while (header_len_ < need && pos < size) {
        header_[header_len_++] = static_cast<uint8_t>(data[pos++]);
        if (header_len_ == 2) {
          if (auto v = check_first_bytes(header_[0], header_[1])) return v;
          need = full_header_size(header_[1]);
        }
      }
      if (header_len_ < need) break;  // the rest of the header comes later
      if (auto v = start_frame(limits)) return v;
    }
    const std::size_t n = static_cast<std::size_t>(std::min<uint64_t>(remaining_, size - pos));
    const bool done = n == remaining_;
    if (n == 0 && !done) break;
    unmask(data + pos, n);
    remaining_ -= n;
    if (done) in_frame_ = false;
    if (auto v = on_payload(data + pos, n, done, sink, go_on)) return v;
    pos += n;
    if (!done) break;
  }
  return {};
}

Violation FrameParser::start_frame(const ParseLimits& limits) {
  const uint8_t b0 = header_[0];
  const uint8_t len7 = header_[1] & 0x7F;
  std::size_t at = 2;
  uint64_t len = len7;
  if (len7 == 126) {
    len = (uint64_t(header_[2]) << 8) | header_[3];
    if (len < 126) return protocol_error("non-minimal 16-bit length");
    at = 4;
  } else if (len7 == 127) {
    len = 0;
    for (int i = 0; i < 8; ++i) len = (len << 8) | header_[2 + i];
    if (len >> 63) return protocol_error("64-bit length with the top bit set");
    if (len <= 0xFFFF) return protocol_error("non-minimal 64-bit length");
    at = 10;
  }
  std::memcpy(mask_, header_ + at, 4);
  mask_pos_ = 0;
  header_len_ = 0;
  remaining_ = len;
  frame_op_ = b0 & 0x0F;
  frame_fin_ = (b0 & 0x80) != 0;
  in_frame_ = true;
  if (frame_op_ >= 0x8) return {};  // control: checked on its first two bytes
  if (frame_op_ == 0x0) {
    if (message_op_ == 0) return protocol_error("continuation frame without a message");
  } else {
    if (message_op_ != 0) return protocol_error("new message inside a fragmented message");
    if (frame_op_ == 0x2 && !limits.binary_allowed) {
      return {1003, "binary messages are not supported"};
    }
    message_op_ = frame_op_;
    message_size_ = 0;
    utf8_.reset();
  }
  if (len > limits.max_message || message_size_ + len > limits.max_message) {
    return {1009, "message too big"};
  }
  message_size_ += len;
  return {};
}

Violation FrameParser::on_payload(char* data, std::size_t n, bool frame_done, FrameSink& sink,
                                  bool& go_on) {
  if (frame_op_ >= 0x8) {
    if (!control_ && frame_done) return end_control({data, n}, sink, go_on);
    if (!control_) control_ = std::make_unique<std::string>();
    control_->append(data, n);
    if (!frame_done) return {};
    const auto payload = std::move(control_);
    return end_control(*payload, sink, go_on);
  }
  const bool text = message_op_ == 0x1;
  if (text && !utf8_.feed(data, n)) return {1007, "invalid UTF-8 in text message"};
  const bool message_done = frame_done && frame_fin_;
  if (message_done && text && !utf8_.at_boundary()) {
    return {1007, "text message ends inside a UTF-8 sequence"};
  }
  if (message_done && !message_) {
    // The whole message is in the caller's buffer: no copy.
    const auto op = static_cast<Opcode>(message_op_);
    message_op_ = 0;
    go_on = sink.on_message(op, {data, n});
    return {};
  }
  if (n > 0) {
    if (!message_) message_ = std::make_unique<std::string>();
    message_->append(data, n);
  }
  if (message_done) {
    const auto op = static_cast<Opcode>(message_op_);
    message_op_ = 0;
    const auto message = std::move(message_);  // freed after delivery
    go_on = sink.on_message(op, message ? std::string_view(*message) : std::string_view());
  }
  return {};
}

Violation FrameParser::end_control(std::string_view payload, FrameSink& sink, bool& go_on) {
  const auto op = static_cast<Opcode>(frame_op_);
  if (op == Opcode::kClose && !payload.empty()) {
    if (payload.size() == 1) return protocol_error("close frame with a 1-byte payload");
    const auto code = static_cast<uint16_t>((uint8_t(payload[0]) << 8) | uint8_t(payload[1]));
    if (!is_valid_close_code(code)) return protocol_error("invalid close code");
    if (!is_valid_utf8(payload.substr(2))) return protocol_error("close reason is not UTF-8");
  }
  go_on = sink.on_control(op, payload);
  return {};
}

void FrameParser::unmask(char* data, std::size_t n) {
  if (n == 0) return;
  std::size_t i = 0;
  // Byte by byte until the key is back at its start, then 8 bytes at a time.
  while (i < n && mask_pos_ != 0) {
    data[i++] ^= static_cast<char>(mask_[mask_pos_]);
    mask_pos_ = (mask_pos_ + 1) & 3;
  }
  uint8_t key8[8];
  for (int k = 0; k < 8; ++k) key8[k] = mask_[k & 3];
  uint64_t key;
  std::memcpy(&key, key8, 8);
  for (; i + 8 <= n; i += 8) {
    uint64_t word;
    std::memcpy(&word, data + i, 8);
    word ^= key;
    std::memcpy(data + i, &word, 8);
  }
  for (; i < n; ++i) {
    data[i] ^= static_cast<char>(mask_[mask_pos_]);
    mask_pos_ = (mask_pos_ + 1) & 3;
  }
}

}  // namespace imgate::ws
