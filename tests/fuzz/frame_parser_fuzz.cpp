// libFuzzer target: ws::FrameParser and ws::Utf8Validator against the
// reference decoders of reference.hpp (issue 8, item 2). Run it with
// tests/fuzz/run.sh.
//
// Input layout (the first bytes choose the limits and the split points):
//   [0]      flags: bit 0 binary_allowed; bit 1 the sink stops at a close
//            frame (as the server does); bits 2-3 == 3: max_message = 2^64-1,
//            else max_message = ([1] | bit 4 << 8) % 301; bit 5 repeat the
//            chunk lengths until the stream is used up (else the rest goes
//            in one piece)
//   [1]      low byte of max_message
//   [2]      k = [2] % 33: how many chunk lengths follow
//   [3..3+k) chunk lengths, 0..255 (0: an empty read)
//   rest     the byte stream, as a client would send it
//
// Checks, on every input:
//  - the parser fed the stream in those chunks (each chunk a heap buffer of
//    exactly its size, freed after the call: ASan sees any read past it or
//    any use after the call) produces the same events (messages with opcode
//    and payload, control frames with payload) and the same violation code
//    (0, 1002, 1003, 1007, 1009) as ref_decode() on the whole stream; idle()
//    agrees at the end, and an idle parser holds no heap memory;
//  - Utf8Validator fed the same stream, same chunks, returns false exactly
//    at the first chunk after which the bytes seen cannot become valid
//    UTF-8, and at_boundary() is true exactly when they are complete text;
//    is_valid_utf8() agrees on the whole stream.
// A mismatch prints the details and aborts (libFuzzer saves the input).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "reference.hpp"
#include "websocket/frame_parser.hpp"
#include "websocket/utf8.hpp"

namespace {

using imgate::fuzz::Event;
using imgate::fuzz::RefResult;
using imgate::fuzz::RefUtf8;
namespace ws = imgate::ws;

bool verbose = false;  // IMGATE_FUZZ_VERBOSE set: one line per input (to check seeds)

struct Config {
  ws::ParseLimits limits;
  bool stop_on_close = false;
  bool repeat_chunks = false;
  std::vector<std::size_t> chunk_lengths;
  std::string_view stream;
};

bool parse_config(const uint8_t* data, std::size_t size, Config& c) {
  if (size < 3) return false;
  const uint8_t flags = data[0];
  c.limits.binary_allowed = (flags & 0x01) != 0;
  c.stop_on_close = (flags & 0x02) != 0;
  if (((flags >> 2) & 3) == 3) {
    c.limits.max_message = std::numeric_limits<std::size_t>::max();
  } else {
    c.limits.max_message = (data[1] | ((flags & 0x10) << 4)) % 301;
  }
  c.repeat_chunks = (flags & 0x20) != 0;
  const std::size_t k = data[2] % 33;
  if (size < 3 + k) return false;
  for (std::size_t i = 0; i < k; ++i) c.chunk_lengths.push_back(data[3 + i]);
  c.stream = std::string_view(reinterpret_cast<const char*>(data) + 3 + k, size - 3 - k);
  return true;
}

// The stream cut into chunks: their lengths, in order (0: an empty read).
std::vector<std::size_t> split(const Config& c) {
  std::vector<std::size_t> out;
  std::size_t left = c.stream.size();
  std::size_t total = 0;
  for (std::size_t n : c.chunk_lengths) total += n;
  std::size_t i = 0;
  while (left > 0 && i < c.chunk_lengths.size()) {
    const std::size_t n = std::min(c.chunk_lengths[i], left);
    out.push_back(n);
    left -= n;
    if (++i == c.chunk_lengths.size() && c.repeat_chunks && total > 0) i = 0;
  }
  if (left > 0) out.push_back(left);
  return out;
}

std::string hex(std::string_view s, std::size_t max = 256) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < s.size() && i < max; ++i) {
    out += d[uint8_t(s[i]) >> 4];
    out += d[uint8_t(s[i]) & 15];
  }
  if (s.size() > max) out += "...";
  return out;
}

void print_event(const char* who, std::size_t i, const Event& e) {
  std::fprintf(stderr, "  %s[%zu] %s op=%u len=%zu %s\n", who, i, e.control ? "control" : "message",
               e.op, e.payload.size(), hex(e.payload, 64).c_str());
}

[[noreturn]] void mismatch(const char* what, const Config& c, const std::vector<std::size_t>& chunks) {
  std::fprintf(stderr, "\nMISMATCH: %s\n  max_message=%zu binary_allowed=%d stop_on_close=%d\n", what,
               c.limits.max_message, int(c.limits.binary_allowed), int(c.stop_on_close));
  std::fprintf(stderr, "  stream (%zu bytes): %s\n  chunks:", c.stream.size(), hex(c.stream).c_str());
  for (std::size_t n : chunks) std::fprintf(stderr, " %zu", n);
  std::fprintf(stderr, "\n");
  std::abort();
}

class RecordingSink final : public ws::FrameSink {
 public:
  explicit RecordingSink(bool stop_on_close) : stop_on_close_(stop_on_close) {}

  bool on_message(ws::Opcode op, std::string_view payload) override {
    events.push_back({false, static_cast<uint8_t>(op), std::string(payload)});
    return true;
  }
  bool on_control(ws::Opcode op, std::string_view payload) override {
    events.push_back({true, static_cast<uint8_t>(op), std::string(payload)});
    if (op == ws::Opcode::kClose && stop_on_close_) {
      stopped = true;
      return false;
    }
    return true;
  }

  std::vector<Event> events;
  bool stopped = false;

 private:
  bool stop_on_close_;
};

void check_frame_parser(const Config& c, const std::vector<std::size_t>& chunks) {
  const RefResult ref = imgate::fuzz::ref_decode(c.stream, c.limits.max_message,
                                                 c.limits.binary_allowed, c.stop_on_close);
  ws::FrameParser parser;
  RecordingSink sink(c.stop_on_close);
  ws::Violation violation;
  std::size_t pos = 0;
  for (std::size_t n : chunks) {
    // A buffer of exactly n bytes, gone after the call.
    std::vector<char> buf(c.stream.begin() + pos, c.stream.begin() + pos + n);
    pos += n;
    violation = parser.feed(buf.data(), buf.size(), c.limits, sink);
    if (violation || sink.stopped) break;
    if (c.limits.max_message <= 300) {
      // Messages are bounded by max_message, control frames by 125 bytes;
      // allow for std::string growing its capacity to twice the size.
      const std::size_t bound = 2 * (c.limits.max_message + 125) + 64;
      if (parser.held_bytes() > bound) mismatch("parser holds more than the limits allow", c, chunks);
    }
  }
  if (violation && violation.code != 1002 && violation.code != 1003 && violation.code != 1007 &&
      violation.code != 1009) {
    mismatch("unexpected violation code", c, chunks);
  }
  if (violation && violation.reason.empty()) mismatch("violation without a reason", c, chunks);
  const bool same_events = sink.events == ref.events;
  if (!same_events || violation.code != ref.code || sink.stopped != ref.stopped) {
    std::fprintf(stderr, "\nparser: code %u (%.*s), %zu events, stopped %d\n", violation.code,
                 int(violation.reason.size()), violation.reason.data(), sink.events.size(),
                 int(sink.stopped));
    for (std::size_t i = 0; i < sink.events.size(); ++i) print_event("parser", i, sink.events[i]);
    std::fprintf(stderr, "reference: code %u, %zu events, stopped %d\n", ref.code, ref.events.size(),
                 int(ref.stopped));
    for (std::size_t i = 0; i < ref.events.size(); ++i) print_event("ref", i, ref.events[i]);
    mismatch(!same_events ? "events differ" : violation.code != ref.code ? "violation code differs"
                                                                          : "stop differs",
             c, chunks);
  }
  if (verbose) {
    std::fprintf(stderr, "frames: code %u (%.*s), %zu events, stopped %d, idle %d; chunks %zu\n",
                 violation.code, int(violation.reason.size()), violation.reason.data(),
                 sink.events.size(), int(sink.stopped), int(parser.idle()), chunks.size());
  }
  if (!violation && !sink.stopped) {
    if (parser.idle() != ref.idle) mismatch("idle() differs from the reference", c, chunks);
    if (parser.idle() && parser.held_bytes() != 0) mismatch("idle parser holds heap memory", c, chunks);
  }
}

void check_utf8(const Config& c, const std::vector<std::size_t>& chunks) {
  const RefUtf8::Scan scan = RefUtf8::get().scan(c.stream);
  const bool whole_ok = scan.prefix_state(c.stream.size()) == RefUtf8::State::kComplete;
  if (ws::is_valid_utf8(c.stream) != whole_ok) mismatch("is_valid_utf8() differs", c, chunks);

  ws::Utf8Validator v;
  std::size_t pos = 0;
  for (std::size_t n : chunks) {
    std::vector<char> buf(c.stream.begin() + pos, c.stream.begin() + pos + n);
    pos += n;
    const bool ok = v.feed(buf.data(), buf.size());
    const RefUtf8::State want = scan.prefix_state(pos);
    if (ok != (want != RefUtf8::State::kInvalid)) {
      std::fprintf(stderr, "\nUtf8Validator::feed() returned %d after %zu bytes; first invalid prefix: %zu\n",
                   int(ok), pos, scan.first_bad);
      mismatch("Utf8Validator::feed() differs", c, chunks);
    }
    if (!ok) break;
    if (v.at_boundary() != (want == RefUtf8::State::kComplete)) {
      std::fprintf(stderr, "\nat_boundary() %d after %zu bytes\n", int(v.at_boundary()), pos);
      mismatch("Utf8Validator::at_boundary() differs", c, chunks);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  verbose = std::getenv("IMGATE_FUZZ_VERBOSE") != nullptr;
  RefUtf8::get();  // builds the tables once, outside the timed runs
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  Config c;
  if (!parse_config(data, size, c)) return 0;
  const std::vector<std::size_t> chunks = split(c);
  check_frame_parser(c, chunks);
  check_utf8(c, chunks);
  return 0;
}
