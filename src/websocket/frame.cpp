#include "websocket/frame.hpp"

namespace imgate::ws {

bool is_valid_close_code(uint16_t code) {
  if (code >= 3000 && code <= 4999) return true;
  if (code < 1000 || code > 1014) return false;
  return code != 1004 && code != 1005 && code != 1006;
}

std::size_t header_size(std::size_t payload) {
  if (payload < 126) return 2;
  if (payload <= 0xFFFF) return 4;
  return 10;
}

WireFrame::WireFrame(Opcode op, std::string_view payload) : op_(op) {
  const std::size_t n = payload.size();
  header_size_ = static_cast<uint8_t>(header_size(n));
  bytes_.resize(header_size_ + n);
  auto* h = reinterpret_cast<uint8_t*>(bytes_.data());
  h[0] = static_cast<uint8_t>(0x80 | static_cast<uint8_t>(op));  // FIN, no RSV
  if (n < 126) {
    h[1] = static_cast<uint8_t>(n);
  } else if (n <= 0xFFFF) {
    h[1] = 126;
    h[2] = static_cast<uint8_t>(n >> 8);
    h[3] = static_cast<uint8_t>(n);
  } else {
    h[1] = 127;
    for (int i = 0; i < 8; ++i) h[2 + i] = static_cast<uint8_t>(uint64_t(n) >> (56 - 8 * i));
  }
  bytes_.replace(header_size_, n, payload);
}

SharedFrame WireFrame::raw(std::string bytes) {
  auto f = std::shared_ptr<WireFrame>(new WireFrame());
  f->bytes_ = std::move(bytes);
  f->raw_ = true;
  return f;
}

SharedFrame make_text_frame(std::string_view text) {
  return std::make_shared<const WireFrame>(Opcode::kText, text);
}

SharedFrame make_control_frame(Opcode op, std::string_view payload) {
  return std::make_shared<const WireFrame>(op, payload.substr(0, 125));
}

SharedFrame make_close_frame(uint16_t code, std::string_view reason) {
  if (reason.size() > kMaxCloseReason) {
    std::size_t cut = kMaxCloseReason;
    // Back up over continuation bytes so the cut falls between code points.
    while (cut > 0 && (static_cast<uint8_t>(reason[cut]) & 0xC0) == 0x80) --cut;
    reason = reason.substr(0, cut);
  }
  std::string payload;
  payload.reserve(2 + reason.size());
  payload.push_back(static_cast<char>(code >> 8));
  payload.push_back(static_cast<char>(code & 0xFF));
  payload.append(reason);
  return std::make_shared<const WireFrame>(Opcode::kClose, payload);
}

}  // namespace imgate::ws
