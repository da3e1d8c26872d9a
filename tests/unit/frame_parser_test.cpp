// ws::FrameParser against every rule of RFC 6455 client framing listed in
// websocket/frame_parser.hpp (issue 8, item 1). Each case is a frame sequence
// built byte by byte (tests/common/client_frame.hpp) and fed three ways:
// whole, one byte at a time, and split in two at every point. All three must
// give the same events and the same violation code, and a violation must be
// reported by the feed() call whose chunk holds the byte that makes it
// certain (so a bad frame fails as soon as its bytes arrive, not at its end).
//
// Also: ws::make_close_frame / WireFrame framing and ws::accept_key.
#include "websocket/frame_parser.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "../common/client_frame.hpp"
#include "websocket/frame.hpp"
#include "websocket/handshake.hpp"

namespace imgate::test {
namespace {

using ws::Opcode;
using ws::ParseLimits;

// ---- harness ---------------------------------------------------------------

struct Event {
  bool control = false;
  Opcode op = Opcode::kText;
  std::string payload;
  bool operator==(const Event&) const = default;
};

void PrintTo(const Event& e, std::ostream* os) {
  *os << (e.control ? "control " : "message ") << static_cast<int>(e.op) << " "
      << testing::PrintToString(e.payload);
}

Event text_msg(std::string_view p) { return {false, Opcode::kText, std::string(p)}; }
Event binary_msg(std::string_view p) { return {false, Opcode::kBinary, std::string(p)}; }
Event ping_ev(std::string_view p) { return {true, Opcode::kPing, std::string(p)}; }
Event pong_ev(std::string_view p) { return {true, Opcode::kPong, std::string(p)}; }
Event close_ev(std::string_view p) { return {true, Opcode::kClose, std::string(p)}; }

class Recorder final : public ws::FrameSink {
 public:
  bool on_message(Opcode op, std::string_view payload) override {
    record(false, op, payload);
    return true;
  }
  bool on_control(Opcode op, std::string_view payload) override {
    record(true, op, payload);
    return !(stop_on_close && op == Opcode::kClose);
  }

  // The buffer being fed, to tell views into it from copies.
  void set_buffer(const char* begin, std::size_t size) {
    begin_ = begin;
    end_ = begin + size;
  }

  std::vector<Event> events;
  std::vector<bool> in_buffer;  // per event: its payload pointed into the fed buffer
  bool stop_on_close = false;

 private:
  void record(bool control, Opcode op, std::string_view payload) {
    events.push_back({control, op, std::string(payload)});
    in_buffer.push_back(!payload.empty() && payload.data() >= begin_ &&
                        payload.data() + payload.size() <= end_);
  }
  const char* begin_ = nullptr;
  const char* end_ = nullptr;
};

constexpr std::size_t kNone = static_cast<std::size_t>(-1);

struct Outcome {
  std::vector<Event> events;
  uint16_t code = 0;
  std::size_t chunk = kNone;  // index of the feed() call that reported the violation
  bool idle = false;
  std::size_t held = 0;
};

// Feeds `bytes` cut at the given ascending offsets, each chunk in its own
// exactly sized heap buffer (so that ASan sees any read past a chunk). Stops
// at the first violation, as a connection would.
Outcome feed_chunks(const std::string& bytes, const std::vector<std::size_t>& cuts,
                    const ParseLimits& limits) {
  ws::FrameParser parser;
  Recorder sink;
  Outcome out;
  std::size_t from = 0;
  for (std::size_t i = 0; i <= cuts.size(); ++i) {
    const std::size_t to = i < cuts.size() ? cuts[i] : bytes.size();
    const std::size_t n = to - from;
    auto buf = std::make_unique<char[]>(n == 0 ? 1 : n);
    std::memcpy(buf.get(), bytes.data() + from, n);
    sink.set_buffer(buf.get(), n);
    const ws::Violation v = parser.feed(buf.get(), n, limits, sink);
    from = to;
    if (v) {
      EXPECT_FALSE(v.reason.empty()) << "violation " << v.code << " without a reason";
      out.code = v.code;
      out.chunk = i;
      break;
    }
  }
  out.events = std::move(sink.events);
  out.idle = parser.idle();
  out.held = parser.held_bytes();
  return out;
}

struct Expect {
  std::vector<Event> events;
  uint16_t code = 0;  // 0: no violation
  // Offset of the byte whose arrival must trigger the violation (exact).
  std::optional<std::size_t> at;
  // Or: the violation must be reported before this offset (e.g. before the
  // first payload byte of the offending frame).
  std::optional<std::size_t> before;
  // Without a violation: the sequence is complete, the parser must end idle
  // and hold no memory.
  bool complete = true;
};

// Split points to try: all of them for short sequences; for long ones every
// point near the start and the end, near `extra` offsets, and a stride.
std::vector<std::size_t> split_points(std::size_t n, const std::vector<std::size_t>& extra = {}) {
  std::vector<std::size_t> points;
  constexpr std::size_t kAll = 3000;
  for (std::size_t i = 1; i < n; ++i) {
    const bool near_edge = i < 40 || n - i < 40;
    bool near_extra = false;
    for (std::size_t e : extra) near_extra |= (i + 20 > e && i < e + 20);
    if (n <= kAll || near_edge || near_extra || i % 997 == 0) points.push_back(i);
  }
  return points;
}

// Runs `bytes` whole, byte by byte, and split at every point, and checks each
// against `expect`. `hot` lists offsets worth splitting around in long inputs.
void check(const std::string& bytes, const Expect& expect, const ParseLimits& limits = {},
           const std::vector<std::size_t>& hot = {}) {
  // (1) whole
  const Outcome whole = feed_chunks(bytes, {}, limits);
  EXPECT_EQ(whole.events, expect.events) << "fed whole";
  EXPECT_EQ(whole.code, expect.code) << "fed whole";
  if (expect.code == 0 && expect.complete) {
    EXPECT_TRUE(whole.idle) << "fed whole: parser not idle after a complete sequence";
    EXPECT_EQ(whole.held, 0u) << "fed whole: memory still held after a complete sequence";
  }

  // (2) one byte at a time: the chunk index is the offset of the deciding byte
  std::vector<std::size_t> every;
  for (std::size_t i = 1; i < bytes.size(); ++i) every.push_back(i);
  const Outcome bytewise = feed_chunks(bytes, every, limits);
  EXPECT_EQ(bytewise.events, expect.events) << "fed one byte at a time";
  EXPECT_EQ(bytewise.code, expect.code) << "fed one byte at a time";
  if (expect.code == 0 && expect.complete) {
    EXPECT_TRUE(bytewise.idle) << "fed byte by byte: parser not idle after a complete sequence";
    EXPECT_EQ(bytewise.held, 0u) << "fed byte by byte: memory still held";
  }
  const std::size_t decided = bytewise.chunk;
  if (expect.code != 0) {
    if (expect.at) {
      EXPECT_EQ(decided, *expect.at) << "violation reported at the wrong byte";
    }
    if (expect.before) {
      EXPECT_LT(decided, *expect.before) << "violation reported later than it could be known";
    }
  }

  // (3) every split point: same result, violation in the chunk holding the deciding byte
  std::vector<std::size_t> hot_points = hot;
  if (decided != kNone) hot_points.push_back(decided);
  for (std::size_t cut : split_points(bytes.size(), hot_points)) {
    const Outcome split = feed_chunks(bytes, {cut}, limits);
    if (split.events != expect.events || split.code != expect.code) {
      ADD_FAILURE() << "split at " << cut << ": events " << testing::PrintToString(split.events)
                    << " code " << split.code << "; expected "
                    << testing::PrintToString(expect.events) << " code " << expect.code;
      return;  // one report per case is enough
    }
    if (expect.code != 0 && decided != kNone) {
      const std::size_t want_chunk = decided < cut ? 0 : 1;
      if (split.chunk != want_chunk) {
        ADD_FAILURE() << "split at " << cut << ": violation reported in chunk " << split.chunk
                      << ", the deciding byte " << decided << " is in chunk " << want_chunk;
        return;
      }
    }
    if (expect.code == 0 && expect.complete && (!split.idle || split.held != 0)) {
      ADD_FAILURE() << "split at " << cut << ": idle " << split.idle << ", held " << split.held;
      return;
    }
  }
}

// A violation decided by the header of the frame starting at `offset`:
// reported before any payload byte of that frame.
Expect header_violation(uint16_t code, const ClientFrame& frame, std::size_t offset = 0,
                        std::vector<Event> events = {}) {
  return Expect{.events = std::move(events),
                .code = code,
                .before = offset + frame.header_size()};
}

std::string pattern(std::size_t n, char seed = 'a') {
  std::string s(n, ' ');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed + i % 23);
  return s;
}

ParseLimits binary_ok(std::size_t max = 64 * 1024) {
  return ParseLimits{.max_message = max, .binary_allowed = true};
}

// ---- well-formed input ----------------------------------------------------------

TEST(FrameParser, TextMessageInEveryLengthForm) {
  const ParseLimits big{.max_message = 1 << 20};
  for (std::size_t n : {0u, 1u, 7u, 8u, 9u, 125u, 126u, 127u, 1000u, 65535u, 65536u, 70001u}) {
    SCOPED_TRACE("payload " + std::to_string(n));
    const std::string payload = pattern(n);
    const auto frame = ClientFrame::text(payload).key(0x01, 0x80, 0xFE, 0x7F);
    check(frame.bytes(), {.events = {text_msg(payload)}}, big, {frame.header_size()});
  }
}

TEST(FrameParser, UnmaskingIsRightForEveryLengthKeyAndSplit) {
  // Payloads 0..40 cover the byte-wise head, the 8-byte body and the tail of
  // the unmasking loop, each resumed at every key position by the splits.
  const uint8_t keys[][4] = {{0, 0, 0, 0}, {0xFF, 0xFF, 0xFF, 0xFF}, {0x12, 0x34, 0x56, 0x78}};
  for (const auto& k : keys) {
    for (std::size_t n = 0; n <= 40; ++n) {
      SCOPED_TRACE("payload " + std::to_string(n));
      const std::string payload = pattern(n, '0');
      check(ClientFrame::text(payload).key(k[0], k[1], k[2], k[3]),
            {.events = {text_msg(payload)}});
    }
  }
}

TEST(FrameParser, LongestMinimalFormsAreAccepted) {
  // 126 in the 16-bit form and 65536 in the 64-bit form are the shortest
  // lengths each form may carry.
  const std::string p126 = pattern(126), p65536 = pattern(65536);
  check(ClientFrame::text(p126).len16(), {.events = {text_msg(p126)}});
  check(ClientFrame::text(p65536).len64(), {.events = {text_msg(p65536)}},
        ParseLimits{.max_message = 65536});
  check(ClientFrame::text("x").len7(), {.events = {text_msg("x")}});
}

TEST(FrameParser, SeveralFramesInOneBufferAreAllDelivered) {
  const std::string bytes = ClientFrame::text("one") + ClientFrame::ping("p") +
                            ClientFrame::text("two").fin(false) +
                            ClientFrame::continuation("three") + ClientFrame::pong("") +
                            ClientFrame::text(pattern(300));
  check(bytes, {.events = {text_msg("one"), ping_ev("p"), text_msg("twothree"), pong_ev(""),
                           text_msg(pattern(300))}});
}

TEST(FrameParser, PingAndPongAreDeliveredWithTheirPayload) {
  const std::string p125 = pattern(125, '!');
  check(ClientFrame::ping(""), {.events = {ping_ev("")}});
  check(ClientFrame::ping("hello"), {.events = {ping_ev("hello")}});
  check(ClientFrame::ping(p125), {.events = {ping_ev(p125)}});
  check(ClientFrame::pong(""), {.events = {pong_ev("")}});
  check(ClientFrame::pong(p125), {.events = {pong_ev(p125)}});
  // Control payloads are not text: any bytes.
  const std::string binary_payload("\xFF\x00\xC0\x80", 4);
  check(ClientFrame::ping(binary_payload), {.events = {ping_ev(binary_payload)}});
}

TEST(FrameParser, ControlFramesBetweenFragmentsAreDeliveredAndTheMessageStillCompletes) {
  const std::string p125 = pattern(125);
  const std::string bytes = ClientFrame::text("Hel").fin(false) + ClientFrame::ping("1") +
                            ClientFrame::continuation("lo, ").fin(false) +
                            ClientFrame::pong(p125) + ClientFrame::ping("") +
                            ClientFrame::continuation("world");
  check(bytes, {.events = {ping_ev("1"), pong_ev(p125), ping_ev(""), text_msg("Hello, world")}});

  // A close between fragments is delivered too (what follows is the sink's
  // business; this sink keeps going).
  check(ClientFrame::text("a").fin(false) + ClientFrame::close(1000) +
            ClientFrame::continuation("b"),
        {.events = {close_ev(ClientFrame::close_payload(1000)), text_msg("ab")}});

  // Binary, when allowed.
  check(ClientFrame::binary("\x01\x02").fin(false) + ClientFrame::ping("x") +
            ClientFrame::continuation("\x03"),
        {.events = {ping_ev("x"), binary_msg("\x01\x02\x03")}}, binary_ok());
}

TEST(FrameParser, ZeroLengthFramesAndFragments) {
  check(ClientFrame::text(""), {.events = {text_msg("")}});
  check(ClientFrame::text("").fin(false) + ClientFrame::continuation("").fin(false) +
            ClientFrame::continuation(""),
        {.events = {text_msg("")}});
  check(ClientFrame::text("").fin(false) + ClientFrame::continuation("abc").fin(false) +
            ClientFrame::continuation(""),
        {.events = {text_msg("abc")}});
  check(ClientFrame::text("").fin(false) + ClientFrame::continuation("abc"),
        {.events = {text_msg("abc")}});
  check(ClientFrame::text("ab").fin(false) + ClientFrame::continuation("") + ClientFrame::text(""),
        {.events = {text_msg("ab"), text_msg("")}});
  check(ClientFrame::binary(""), {.events = {binary_msg("")}}, binary_ok());
  check(ClientFrame::binary("").fin(false) + ClientFrame::continuation(""),
        {.events = {binary_msg("")}}, binary_ok());
  check(ClientFrame::close(), {.events = {close_ev("")}});
}

TEST(FrameParser, FragmentedMessagesBackToBack) {
  check(ClientFrame::text("a").fin(false) + ClientFrame::continuation("b") +
            ClientFrame::binary("c").fin(false) + ClientFrame::continuation("d") +
            ClientFrame::text("e"),
        {.events = {text_msg("ab"), binary_msg("cd"), text_msg("e")}}, binary_ok());
}

TEST(FrameParser, BinaryIsEchoedAsAMessageWhenAllowed) {
  const std::string payload("\x00\xFF\xC0\x80\xED\xA0\x80", 7);  // not UTF-8: no matter
  check(ClientFrame::binary(payload), {.events = {binary_msg(payload)}}, binary_ok());
  check(ClientFrame::binary(payload.substr(0, 3)).fin(false) +
            ClientFrame::continuation(payload.substr(3)),
        {.events = {binary_msg(payload)}}, binary_ok());
}

// ---- 1002: framing violations ----------------------------------------------------

TEST(FrameParser, UnmaskedFramesAre1002) {
  for (const auto& frame :
       {ClientFrame::text("hi").unmasked(), ClientFrame::text("").unmasked(),
        ClientFrame::binary("hi").unmasked(), ClientFrame::ping("p").unmasked(),
        ClientFrame::pong("").unmasked(), ClientFrame::close(1000).unmasked(),
        ClientFrame::text(pattern(200)).unmasked()}) {
    SCOPED_TRACE(testing::PrintToString(frame.bytes().substr(0, 2)));
    check(frame, header_violation(1002, frame), binary_ok());
  }
  // A continuation without its mask inside a started message.
  const auto first = ClientFrame::text("a").fin(false);
  const auto cont = ClientFrame::continuation("b").unmasked();
  check(first + cont, header_violation(1002, cont, first.bytes().size()));
}

TEST(FrameParser, ReservedBitsAre1002) {
  for (uint8_t bits = 1; bits <= 7; ++bits) {
    SCOPED_TRACE("rsv " + std::to_string(bits));
    for (const auto& frame : {ClientFrame::text("hi").rsv(bits), ClientFrame::ping("").rsv(bits),
                              ClientFrame::close(1000).rsv(bits),
                              ClientFrame::binary("b").rsv(bits)}) {
      check(frame, header_violation(1002, frame), binary_ok());
    }
    const auto first = ClientFrame::text("a").fin(false);
    const auto cont = ClientFrame::continuation("b").rsv(bits);
    check(first + cont, header_violation(1002, cont, first.bytes().size()));
  }
}

TEST(FrameParser, ReservedOpcodesAre1002) {
  for (uint8_t opcode : {0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF}) {
    SCOPED_TRACE("opcode " + std::to_string(opcode));
    for (bool fin : {true, false}) {
      const auto frame = ClientFrame(opcode, "x").fin(fin);
      check(frame, header_violation(1002, frame));
    }
    // Also inside a fragmented message.
    const auto first = ClientFrame::text("a").fin(false);
    const auto bad = ClientFrame(opcode, "");
    check(first + bad, header_violation(1002, bad, first.bytes().size()));
  }
}

TEST(FrameParser, NonMinimal16BitLengthsAre1002) {
  for (std::size_t n : {0u, 1u, 100u, 125u}) {
    SCOPED_TRACE("length " + std::to_string(n));
    const auto frame = ClientFrame::text(pattern(n)).len16();
    check(frame, header_violation(1002, frame));
    const auto cont = ClientFrame::continuation(pattern(n)).len16();
    const auto first = ClientFrame::text("a").fin(false);
    check(first + cont, header_violation(1002, cont, first.bytes().size()));
  }
}

TEST(FrameParser, NonMinimal64BitLengthsAre1002) {
  for (std::size_t n : {0u, 1u, 125u, 126u, 1000u, 65535u}) {
    SCOPED_TRACE("length " + std::to_string(n));
    const auto frame = ClientFrame::text(pattern(n)).len64();
    check(frame, header_violation(1002, frame), ParseLimits{.max_message = 1 << 20});
  }
}

TEST(FrameParser, SixtyFourBitLengthWithTheTopBitSetIs1002) {
  // The header alone: no payload follows (it could never be sent anyway).
  for (uint64_t n : {uint64_t{1} << 63, (uint64_t{1} << 63) | 5, ~uint64_t{0}}) {
    SCOPED_TRACE("length " + std::to_string(n));
    const auto frame = ClientFrame::text("").len64().declared(n);
    check(frame, header_violation(1002, frame), ParseLimits{.max_message = ~std::size_t{0}});
    check(frame, header_violation(1002, frame));  // 1002, not 1009, with the default limit
  }
}

TEST(FrameParser, FragmentedControlFramesAre1002) {
  for (const auto& frame : {ClientFrame::ping("p").fin(false), ClientFrame::pong("").fin(false),
                            ClientFrame::close(1000).fin(false), ClientFrame::close().fin(false)}) {
    check(frame, header_violation(1002, frame));
    const auto first = ClientFrame::text("a").fin(false);
    check(first + frame, header_violation(1002, frame, first.bytes().size()));
  }
}

TEST(FrameParser, ControlFramesOver125BytesAre1002) {
  const std::string p126 = pattern(126);
  for (const auto& frame :
       {ClientFrame::ping(p126), ClientFrame::pong(p126), ClientFrame::close(1000, pattern(124)),
        ClientFrame::ping(pattern(200)).len64(), ClientFrame::ping("").declared(70000),
        ClientFrame::ping("short").len16()}) {
    check(frame, header_violation(1002, frame));
  }
  // 125 is the limit and fine.
  check(ClientFrame::close(1000, pattern(123)),
        {.events = {close_ev(ClientFrame::close_payload(1000, pattern(123)))}});
}

TEST(FrameParser, ContinuationWithoutAStartIs1002) {
  for (const auto& frame : {ClientFrame::continuation("x"), ClientFrame::continuation(""),
                            ClientFrame::continuation("x").fin(false)}) {
    check(frame, header_violation(1002, frame));
  }
  // After a complete message (fragmented or not) nothing is open.
  const std::string done = ClientFrame::text("a").fin(false) + ClientFrame::continuation("b");
  const auto cont = ClientFrame::continuation("c");
  check(done + cont, header_violation(1002, cont, done.size(), {text_msg("ab")}));
  const std::string single = ClientFrame::text("a");
  check(single + cont, header_violation(1002, cont, single.size(), {text_msg("a")}));
  // A control frame between does not open a message either.
  const std::string ping = ClientFrame::ping("p");
  check(ping + cont, header_violation(1002, cont, ping.size(), {ping_ev("p")}));
}

TEST(FrameParser, NewMessageStartInsideAFragmentedMessageIs1002) {
  struct Case {
    ClientFrame first, second;
  };
  const Case cases[] = {
      {ClientFrame::text("a").fin(false), ClientFrame::text("b")},
      {ClientFrame::text("a").fin(false), ClientFrame::text("b").fin(false)},
      {ClientFrame::text("a").fin(false), ClientFrame::binary("b")},
      {ClientFrame::binary("a").fin(false), ClientFrame::text("b")},
      {ClientFrame::binary("a").fin(false), ClientFrame::binary("b")},
      {ClientFrame::text("").fin(false), ClientFrame::text("")},
  };
  for (const auto& [first, second] : cases) {
    SCOPED_TRACE(testing::PrintToString(first.bytes() + second.bytes()));
    const std::string a = first;
    check(a + second, header_violation(1002, second, a.size()), binary_ok());
  }
  // With binary refused, a binary start inside a text message is still a
  // framing error (or refused binary): never delivered.
  const std::string a = ClientFrame::text("a").fin(false);
  const Outcome o = feed_chunks(a + ClientFrame::binary("b"), {}, ParseLimits{});
  EXPECT_TRUE(o.code == 1002 || o.code == 1003) << o.code;
  EXPECT_TRUE(o.events.empty());
}

// ---- close frames ---------------------------------------------------------------------

TEST(FrameParser, CloseWithAOneBytePayloadIs1002) {
  const auto frame = ClientFrame::close(std::string_view("\x03", 1));
  check(frame, {.code = 1002, .at = frame.bytes().size() - 1});
}

TEST(FrameParser, InvalidCloseCodesAre1002) {
  for (uint16_t code : {0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535}) {
    SCOPED_TRACE("code " + std::to_string(code));
    const auto frame = ClientFrame::close(code);
    check(frame, {.code = 1002, .before = frame.bytes().size()});
    const auto with_reason = ClientFrame::close(code, "reason");
    check(with_reason, {.code = 1002, .before = with_reason.bytes().size()});
  }
}

TEST(FrameParser, ValidCloseCodesAreDelivered) {
  std::vector<uint16_t> codes = {3000, 3999, 4000, 4999};
  for (uint16_t c = 1000; c <= 1003; ++c) codes.push_back(c);
  for (uint16_t c = 1007; c <= 1014; ++c) codes.push_back(c);
  for (uint16_t code : codes) {
    SCOPED_TRACE("code " + std::to_string(code));
    check(ClientFrame::close(code), {.events = {close_ev(ClientFrame::close_payload(code))}});
    check(ClientFrame::close(code, "bye"),
          {.events = {close_ev(ClientFrame::close_payload(code, "bye"))}});
  }
}

TEST(FrameParser, CloseReasonMustBeUtf8) {
  const std::string good[] = {"", "normal", "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5",
                              "\xF0\x9F\x98\x80"};
  for (const auto& reason : good) {
    check(ClientFrame::close(1000, reason),
          {.events = {close_ev(ClientFrame::close_payload(1000, reason))}});
  }
  const std::string bad[] = {"\xFF", "ok\xC3\x28", "\xED\xA0\x80", "\xC0\x80",
                             "truncated \xCE", "\xF4\x90\x80\x80", "\xE1\xBD"};
  for (const auto& reason : bad) {
    SCOPED_TRACE(testing::PrintToString(reason));
    const auto frame = ClientFrame::close(1000, reason);
    check(frame, {.code = 1002, .before = frame.bytes().size()});
  }
}

TEST(FrameParser, SinkReturningFalseStopsParsingAfterTheClose) {
  // A connection stops reading at the close: whatever follows, even garbage,
  // is left unread and is no violation.
  std::string bytes = ClientFrame::text("before") + ClientFrame::close(1000) +
                      ClientFrame::text("after") + std::string("\xFF\xFF\xFF\xFF", 4);
  ws::FrameParser parser;
  Recorder sink;
  sink.stop_on_close = true;
  const ws::Violation v = parser.feed(bytes.data(), bytes.size(), ParseLimits{}, sink);
  EXPECT_FALSE(v) << v.code;
  EXPECT_EQ(sink.events,
            (std::vector<Event>{text_msg("before"), close_ev(ClientFrame::close_payload(1000))}));
}

// ---- 1003: binary refused ---------------------------------------------------------------

TEST(FrameParser, BinaryIsRefusedWith1003BeforeItsPayload) {
  for (const auto& frame : {ClientFrame::binary("abc"), ClientFrame::binary(""),
                            ClientFrame::binary("abc").fin(false),
                            ClientFrame::binary(pattern(5000))}) {
    check(frame, header_violation(1003, frame));
  }
  // After a text message, binary is still refused.
  const std::string text = ClientFrame::text("t");
  const auto bin = ClientFrame::binary("b");
  check(text + bin, header_violation(1003, bin, text.size(), {text_msg("t")}));
  // A header announcing more than max_message: refused either way, never read.
  const auto huge = ClientFrame::binary("").declared(1 << 20);
  const Outcome o = feed_chunks(huge, {}, ParseLimits{});
  EXPECT_TRUE(o.code == 1003 || o.code == 1009) << o.code;
}

// ---- 1007: UTF-8 --------------------------------------------------------------------

TEST(FrameParser, InvalidUtf8TextIs1007AtTheBadByte) {
  struct Case {
    std::string text;
    std::size_t bad;  // offset in the text of the byte that makes it invalid
  };
  const Case cases[] = {
      {"\xFF", 0},
      {"abc\xFE", 3},
      {"\x80", 0},
      {"\xC0\x80", 0},                       // overlong lead
      {"\xC1\xBF", 0},
      {"\xE0\x80\x80", 1},                   // overlong 3-byte
      {"\xF0\x80\x80\x80", 1},               // overlong 4-byte
      {"\xED\xA0\x80", 1},                   // surrogate
      {"\xF4\x90\x80\x80", 1},               // above U+10FFFF
      {"\xF5\x80\x80\x80", 0},
      {"\xCE\xBA\xE1\xBD\xB9\xCE\xBC\xCE\xB5\xED\xA0\x80" "edited", 10},
      {"\xC3\x28", 1},
      {"0123456789abcdef\xE2\x82" "0123", 18},  // after the 8-byte ASCII path
  };
  for (const auto& [text, bad] : cases) {
    SCOPED_TRACE(testing::PrintToString(text));
    const auto frame = ClientFrame::text(text);
    check(frame, {.code = 1007, .at = frame.header_size() + bad});
  }
}

TEST(FrameParser, TextEndingInsideASequenceIs1007AtTheMessageEnd) {
  for (const std::string text : {"\xCE", "abc\xE1\xBD", "\xF0\x9F\x98"}) {
    SCOPED_TRACE(testing::PrintToString(text));
    const auto frame = ClientFrame::text(text);
    check(frame, {.code = 1007, .at = frame.bytes().size() - 1});
    // Fragmented, the last fragment empty: decided by the last header byte.
    const std::string first = ClientFrame::text(text).fin(false);
    const auto last = ClientFrame::continuation("");
    check(first + last, {.code = 1007, .at = first.size() + last.bytes().size() - 1});
    // Control frames after a fragment ending mid-sequence are fine; the
    // message end decides.
    const std::string ping = ClientFrame::ping("p");
    check(first + ping + last,
          {.events = {ping_ev("p")}, .code = 1007,
           .at = first.size() + ping.size() + last.bytes().size() - 1});
  }
}

TEST(FrameParser, InvalidUtf8IsDetectedBeforeTheFrameEnds) {
  // A 10,000-byte text frame whose first payload byte is 0xFF: the violation
  // comes with that byte; the rest of the frame is never sent.
  const auto frame = ClientFrame::text("\xFF" + pattern(60)).declared(10000);
  const std::string partial = frame.bytes();
  check(partial, {.code = 1007, .at = frame.header_size()});

  // A bad byte deep inside a long 64-bit-length frame, with the rest missing.
  std::string text = pattern(40000);
  text[30000] = '\xC0';
  const auto long_frame = ClientFrame::text(text).declared(200000);
  check(long_frame, {.code = 1007, .at = long_frame.header_size() + 30000},
        ParseLimits{.max_message = 1 << 20});

  // In a later fragment.
  const std::string first = ClientFrame::text(pattern(100)).fin(false);
  const auto second = ClientFrame::continuation("ab\xED\xBF").declared(5000);
  check(first + second, {.code = 1007, .at = first.size() + second.header_size() + 3});
}

TEST(FrameParser, Utf8SequencesSplitAcrossFragmentsAreValid) {
  const std::string text = "a\xCE\xBA\xE2\x82\xAC\xF0\x9D\x84\x9E z";  // a κ € 𝄞 z
  for (std::size_t cut = 0; cut <= text.size(); ++cut) {
    SCOPED_TRACE("fragment cut at " + std::to_string(cut));
    check(ClientFrame::text(text.substr(0, cut)).fin(false) + ClientFrame::ping("") +
              ClientFrame::continuation(text.substr(cut)),
          {.events = {ping_ev(""), text_msg(text)}});
  }
  // One byte per fragment.
  std::string bytes = ClientFrame::text(text.substr(0, 1)).fin(false);
  for (std::size_t i = 1; i + 1 < text.size(); ++i) {
    bytes += ClientFrame::continuation(text.substr(i, 1)).fin(false);
  }
  bytes += ClientFrame::continuation(text.substr(text.size() - 1));
  check(bytes, {.events = {text_msg(text)}});
}

TEST(FrameParser, InvalidSequenceAcrossFragmentsIs1007) {
  // E9 A9 starts a 3-byte character; 'a' cannot continue it.
  const std::string first = ClientFrame::text("x\xE9\xA9").fin(false);
  const auto second = ClientFrame::continuation("a\"}");
  check(first + second, {.code = 1007, .at = first.size() + second.header_size()});
  // ED then A0 in the next fragment: a surrogate.
  const std::string ed = ClientFrame::text("\xED").fin(false);
  const auto a0 = ClientFrame::continuation("\xA0\x80");
  check(ed + a0, {.code = 1007, .at = ed.size() + a0.header_size()});
}

TEST(FrameParser, Utf8StateDoesNotLeakIntoTheNextMessage) {
  // A binary message with bytes that would be an open sequence in text, then a text message.
  check(ClientFrame::binary("\xE2\x82") + ClientFrame::text("\xAC"),
        {.events = {binary_msg("\xE2\x82")}, .code = 1007,
         .at = ClientFrame::binary("\xE2\x82").bytes().size() + ClientFrame::text("").header_size()},
        binary_ok());
  check(ClientFrame::text("\xE2\x82\xAC") + ClientFrame::text("ok"),
        {.events = {text_msg("\xE2\x82\xAC"), text_msg("ok")}});
}

// ---- 1009: size limit ------------------------------------------------------------------

TEST(FrameParser, SingleFrameOverTheLimitIs1009FromTheHeader) {
  const ParseLimits limits{.max_message = 1000};
  check(ClientFrame::text(pattern(1000)), {.events = {text_msg(pattern(1000))}}, limits);
  for (const auto& frame : {ClientFrame::text(pattern(1001)), ClientFrame::text("").declared(1001),
                            ClientFrame::text("").declared(uint64_t{1} << 40),
                            ClientFrame::text(pattern(1001)).fin(false)}) {
    check(frame, header_violation(1009, frame), limits);
  }
  // The default limit is 64 KiB.
  const auto over = ClientFrame::text("").declared(65537);
  check(over, header_violation(1009, over));
}

TEST(FrameParser, FragmentsOverTheLimitAre1009FromTheOffendingHeader) {
  const ParseLimits limits{.max_message = 1000};
  // Exactly the limit over three fragments: fine.
  check(ClientFrame::text(pattern(400)).fin(false) +
            ClientFrame::continuation(pattern(400)).fin(false) +
            ClientFrame::continuation(pattern(200)),
        {.events = {text_msg(pattern(400) + pattern(400) + pattern(200))}}, limits);
  // One byte more: decided by the third header, its payload never needed.
  const std::string two =
      ClientFrame::text(pattern(400)).fin(false) + ClientFrame::continuation(pattern(400)).fin(false);
  const auto third = ClientFrame::continuation(pattern(201));
  check(two + third, header_violation(1009, third, two.size()), limits);
  check(two + ClientFrame::continuation("").declared(201),
        header_violation(1009, third, two.size()), limits);
  // Control frames between fragments do not count.
  const std::string with_ping = ClientFrame::text(pattern(900)).fin(false) +
                                ClientFrame::ping(pattern(125)) +
                                ClientFrame::continuation(pattern(100));
  check(with_ping, {.events = {ping_ev(pattern(125)), text_msg(pattern(900) + pattern(100))}},
        limits);
  // The limit is per message: many messages of the limit are fine.
  std::string many;
  std::vector<Event> events;
  for (int i = 0; i < 5; ++i) {
    many += ClientFrame::text(pattern(600)).fin(false) + ClientFrame::continuation(pattern(400));
    events.push_back(text_msg(pattern(600) + pattern(400)));
  }
  check(many, {.events = events}, limits);
}

TEST(FrameParser, BinaryFragmentsOverTheLimitAre1009WhenBinaryIsAllowed) {
  const std::string first = ClientFrame::binary(pattern(800)).fin(false);
  const auto second = ClientFrame::continuation(pattern(300));
  check(first + second, header_violation(1009, second, first.size()), binary_ok(1000));
}

// ---- memory: zero copy, idle, held bytes --------------------------------------------------

TEST(FrameParser, WholeFrameInTheBufferIsDeliveredAsAViewOfIt) {
  for (std::size_t n : {1u, 125u, 126u, 5000u, 65536u}) {
    SCOPED_TRACE("payload " + std::to_string(n));
    std::string bytes = ClientFrame::text(pattern(n)) + ClientFrame::ping("pp") +
                        ClientFrame::text(pattern(n, 'b'));
    ws::FrameParser parser;
    Recorder sink;
    sink.set_buffer(bytes.data(), bytes.size());
    const ws::Violation v =
        parser.feed(bytes.data(), bytes.size(), ParseLimits{.max_message = 1 << 20}, sink);
    ASSERT_FALSE(v) << v.code;
    ASSERT_EQ(sink.events.size(), 3u);
    EXPECT_EQ(sink.events[0], text_msg(pattern(n)));
    EXPECT_EQ(sink.events[2], text_msg(pattern(n, 'b')));
    for (std::size_t i = 0; i < 3; ++i) {
      EXPECT_TRUE(sink.in_buffer[i]) << "event " << i << " was copied, not a view of the buffer";
    }
    EXPECT_TRUE(parser.idle());
    EXPECT_EQ(parser.held_bytes(), 0u);
  }
}

TEST(FrameParser, BinaryWholeFrameIsAViewToo) {
  std::string bytes = ClientFrame::binary(pattern(300));
  ws::FrameParser parser;
  Recorder sink;
  sink.set_buffer(bytes.data(), bytes.size());
  ASSERT_FALSE(parser.feed(bytes.data(), bytes.size(), binary_ok(), sink));
  ASSERT_EQ(sink.events.size(), 1u);
  EXPECT_TRUE(sink.in_buffer[0]);
}

TEST(FrameParser, IdleAndHeldBytesAcrossAFragmentedMessage) {
  ws::FrameParser parser;
  Recorder sink;
  const ParseLimits limits;
  EXPECT_TRUE(parser.idle());
  EXPECT_EQ(parser.held_bytes(), 0u);

  auto feed = [&](std::string bytes) {
    sink.set_buffer(bytes.data(), bytes.size());
    const ws::Violation v = parser.feed(bytes.data(), bytes.size(), limits, sink);
    EXPECT_FALSE(v) << v.code;
  };

  // Half a header: not idle, nothing on the heap.
  const std::string first = ClientFrame::text(pattern(1000)).fin(false);
  feed(first.substr(0, 3));
  EXPECT_FALSE(parser.idle());
  EXPECT_EQ(parser.held_bytes(), 0u);
  // The rest of the first fragment: the message is open and held.
  feed(first.substr(3));
  EXPECT_FALSE(parser.idle());
  EXPECT_GE(parser.held_bytes(), 1000u);
  // A ping split in two between fragments.
  const std::string ping = ClientFrame::ping("hello");
  feed(ping.substr(0, 8));
  EXPECT_FALSE(parser.idle());
  feed(ping.substr(8));
  EXPECT_FALSE(parser.idle());  // the message is still open
  // The final fragment, split mid-payload.
  const std::string last = ClientFrame::continuation(pattern(500));
  feed(last.substr(0, 100));
  EXPECT_FALSE(parser.idle());
  feed(last.substr(100));
  ASSERT_EQ(sink.events.size(), 2u);
  EXPECT_EQ(sink.events[0], ping_ev("hello"));
  EXPECT_EQ(sink.events[1], text_msg(pattern(1000) + pattern(500)));
  EXPECT_FALSE(sink.in_buffer[1]) << "a reassembled message cannot be a view of the last read";
  EXPECT_TRUE(parser.idle());
  EXPECT_EQ(parser.held_bytes(), 0u) << "message memory kept after delivery";

  // An unfragmented frame split across reads: held while incomplete, given back after.
  const std::string split = ClientFrame::text(pattern(3000));
  feed(split.substr(0, 1500));
  EXPECT_FALSE(parser.idle());
  EXPECT_GT(parser.held_bytes(), 0u);
  feed(split.substr(1500));
  EXPECT_TRUE(parser.idle());
  EXPECT_EQ(parser.held_bytes(), 0u);

  // A control frame split across reads: same.
  const std::string close = ClientFrame::close(1000, "bye");
  feed(close.substr(0, 7));
  EXPECT_FALSE(parser.idle());
  feed(close.substr(7));
  EXPECT_TRUE(parser.idle());
  EXPECT_EQ(parser.held_bytes(), 0u);
  EXPECT_EQ(sink.events.back(), close_ev(ClientFrame::close_payload(1000, "bye")));
}

// ---- server frames and the handshake -------------------------------------------------------

TEST(WireFrame, HeaderFormsAndBytes) {
  for (std::size_t n : {0u, 125u, 126u, 65535u, 65536u}) {
    SCOPED_TRACE("payload " + std::to_string(n));
    const std::string payload = pattern(n);
    const auto frame = ws::make_text_frame(payload);
    const std::size_t header = n < 126 ? 2 : n <= 0xFFFF ? 4 : 10;
    EXPECT_EQ(ws::header_size(n), header);
    ASSERT_EQ(frame->size(), header + n);
    const std::string_view b = frame->bytes();
    EXPECT_EQ(static_cast<uint8_t>(b[0]), 0x81);  // FIN + text, no RSV
    const uint8_t len7 = static_cast<uint8_t>(b[1]);
    EXPECT_EQ(len7 & 0x80, 0) << "server frames are not masked";
    uint64_t len = len7;
    if (len7 == 126) len = (uint64_t(uint8_t(b[2])) << 8) | uint8_t(b[3]);
    if (len7 == 127) {
      len = 0;
      for (int i = 0; i < 8; ++i) len = (len << 8) | uint8_t(b[2 + i]);
    }
    EXPECT_EQ(len, n);
    EXPECT_EQ(frame->payload(), payload);
    EXPECT_FALSE(frame->is_raw());
  }
  const auto pong = ws::make_control_frame(Opcode::kPong, pattern(200));
  EXPECT_EQ(static_cast<uint8_t>(pong->bytes()[0]), 0x8A);
  EXPECT_EQ(pong->payload(), pattern(125)) << "control payloads are cut to 125 bytes";
  const auto raw = ws::WireFrame::raw("HTTP/1.1 101\r\n\r\n");
  EXPECT_TRUE(raw->is_raw());
  EXPECT_EQ(raw->bytes(), "HTTP/1.1 101\r\n\r\n");
}

TEST(WireFrame, CloseFrameCarriesCodeAndReason) {
  const auto frame = ws::make_close_frame(1009, "too big");
  EXPECT_EQ(frame->bytes(), std::string("\x88\x09\x03\xF1too big", 11));
  const auto empty_reason = ws::make_close_frame(1000, "");
  EXPECT_EQ(empty_reason->bytes(), std::string("\x88\x02\x03\xE8", 4));
}

TEST(WireFrame, CloseReasonIsCutAtAUtf8Boundary) {
  // 'a' then 66 euro signs (3 bytes each): byte 123 falls inside a character.
  std::string reason = "a";
  for (int i = 0; i < 66; ++i) reason += "\xE2\x82\xAC";
  const auto frame = ws::make_close_frame(1000, reason);
  const std::string_view payload = frame->payload();
  ASSERT_LE(payload.size(), 125u);
  const std::string_view cut = payload.substr(2);
  EXPECT_EQ(cut.size(), 121u) << "cut at the last whole character before 123 bytes";
  EXPECT_TRUE(ws::is_valid_utf8(cut));
  EXPECT_EQ(cut, std::string_view(reason).substr(0, 121));

  // For every alignment of a multi-byte character against the limit.
  for (const std::string ch : {"\xCE\xBA", "\xE2\x82\xAC", "\xF0\x9F\x98\x80"}) {
    for (std::size_t pad = 0; pad < 4; ++pad) {
      std::string r(pad, 'x');
      while (r.size() < 200) r += ch;
      const auto close = ws::make_close_frame(4000, r);
      const std::string_view p = close->payload();
      SCOPED_TRACE(testing::PrintToString(ch) + " pad " + std::to_string(pad));
      ASSERT_GE(p.size(), 2u);
      EXPECT_LE(p.size() - 2, ws::kMaxCloseReason);
      EXPECT_GT(p.size() - 2, ws::kMaxCloseReason - ch.size()) << "cut more than needed";
      EXPECT_TRUE(ws::is_valid_utf8(p.substr(2)));
      EXPECT_EQ(p.substr(2), std::string_view(r).substr(0, p.size() - 2));
    }
  }
  // ASCII: exactly 123 kept, 124 cut to 123.
  EXPECT_EQ(ws::make_close_frame(1000, std::string(123, 'r'))->payload().size(), 125u);
  EXPECT_EQ(ws::make_close_frame(1000, std::string(124, 'r'))->payload().size(), 125u);
}

TEST(CloseCodes, ValidityFollowsRfc6455AndTheIanaRegistry) {
  for (uint32_t code = 0; code <= 65535; ++code) {
    const bool valid = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
                       (code >= 3000 && code <= 4999);
    EXPECT_EQ(ws::is_valid_close_code(static_cast<uint16_t>(code)), valid) << code;
  }
}

TEST(Handshake, AcceptKeyOfTheRfcExample) {
  EXPECT_EQ(ws::accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(Handshake, ClientKeyValidationAndTheSwitchingProtocolsResponse) {
  EXPECT_TRUE(ws::is_valid_client_key("dGhlIHNhbXBsZSBub25jZQ=="));
  EXPECT_FALSE(ws::is_valid_client_key(""));
  EXPECT_FALSE(ws::is_valid_client_key("dGhlIHNhbXBsZSBub25jZQ"));     // unpadded
  EXPECT_FALSE(ws::is_valid_client_key("dGhlIHNhbXBsZSBub25jZQ==x"));  // too long
  EXPECT_FALSE(ws::is_valid_client_key("dGhlIHNhbXBsZSBub25j!Q=="));   // not base64
  EXPECT_FALSE(ws::is_valid_client_key("c2hvcnQ="));                   // 5 bytes
  const std::string r = ws::switching_protocols_response("dGhlIHNhbXBsZSBub25jZQ==", "imgate/t");
  EXPECT_EQ(r.rfind("HTTP/1.1 101 Switching Protocols\r\n", 0), 0u) << r;
  EXPECT_NE(r.find("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), std::string::npos);
  EXPECT_NE(r.find("\r\nUpgrade: websocket\r\n"), std::string::npos);
  EXPECT_NE(r.find("\r\nServer: imgate/t\r\n"), std::string::npos);
  EXPECT_EQ(r.substr(r.size() - 4), "\r\n\r\n");
}

}  // namespace
}  // namespace imgate::test
