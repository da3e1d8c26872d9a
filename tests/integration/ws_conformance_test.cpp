// RFC 6455 conformance of the gateway's WebSocket transport on raw sockets
// (issue 8, item 1 "Client frames"; item 2: every rule covered by a frame
// sequence built byte by byte, tests/common/client_frame.hpp). Each test
// upgrades a RawConnection by hand, writes the bytes, and checks the answer:
// a violation gets a close frame with the rule's code (1002 / 1003 / 1007 /
// 1009) and then an orderly TCP close (FIN, not a reset that could destroy
// the close frame); pings get pongs with the same payload; control frames
// between fragments, frames split over many writes and many frames in one
// write are all handled. GatewayTest's TearDown checks that /system/state
// returns to zero connections, users and sessions after every test.
//
// bad_input_test.cpp covers the JSON-level answers (1001 responses), plain
// HTTP on the WebSocket port and the same close codes through a Beast client;
// this file is the byte-exact, rule-by-rule counterpart.
#include <thread>

#include "../common/client_frame.hpp"
#include "gateway_process.hpp"
#include "raw_connection.hpp"
#include "ws_client.hpp"

namespace imgate::test {
namespace {
namespace json = boost::json;

constexpr std::size_t kMaxMessage = 4096;

std::string describe(RawConnection::End end, int error) {
  switch (end) {
    case RawConnection::End::kEof: return "an orderly close (EOF)";
    case RawConnection::End::kReset: return "a reset (" + std::string(std::strerror(error)) + ")";
    default: return "nothing (still open at the deadline)";
  }
}

// The server's answer to a violation: the next frames (server pings are
// skipped, text answers collected) up to a close frame with `code`, then an
// orderly end of the stream with nothing after the close frame. With `reply`
// the close frame is answered before waiting for the end.
testing::AssertionResult closes_with(RawConnection& raw, uint16_t code,
                                     std::vector<std::string>* texts = nullptr,
                                     Millis timeout = 3s, bool reply = false) {
  for (;;) {
    auto frame = raw.read_frame(timeout);
    if (!frame) {
      const auto end = raw.wait_end(Millis(0));
      return testing::AssertionFailure()
             << "no close frame; the stream ended with " << describe(end, raw.receive_error());
    }
    if (frame->opcode == op::kPing) continue;
    if (frame->opcode == op::kText && texts) {
      texts->push_back(frame->payload);
      continue;
    }
    if (frame->opcode != op::kClose) {
      return testing::AssertionFailure() << "frame with opcode " << int(frame->opcode)
                                         << " before the close: "
                                         << testing::PrintToString(frame->payload);
    }
    if (frame->close_code() != code) {
      return testing::AssertionFailure() << "close code " << frame->close_code() << ", expected "
                                         << code << " (reason "
                                         << testing::PrintToString(frame->payload.substr(
                                                std::min<std::size_t>(2, frame->payload.size())))
                                         << ")";
    }
    if (frame->payload.size() > 125) {
      return testing::AssertionFailure() << "close frame of " << frame->payload.size() << " bytes";
    }
    break;
  }
  // A failed connection is closed by the server without waiting for the
  // client's close frame (RFC 6455 §7.1.7); a normal one may wait for it.
  if (reply && !raw.send_all(ClientFrame::close(code).bytes())) {
    return testing::AssertionFailure() << "could not answer the close frame";
  }
  const auto end = raw.wait_end(3s);
  if (end != RawConnection::End::kEof) {
    return testing::AssertionFailure()
           << "close frame " << code << " received, then " << describe(end, raw.receive_error());
  }
  if (raw.buffered() != 0) {
    return testing::AssertionFailure() << raw.buffered() << " bytes after the close frame";
  }
  return testing::AssertionSuccess();
}

class WsConformanceTest : public GatewayTest {
 protected:
  void SetUp() override { gw.start({{"--max-message-bytes", std::to_string(kMaxMessage)}}); }

  // A raw connection that has completed the upgrade.
  std::unique_ptr<RawConnection> upgraded() {
    auto raw = std::make_unique<RawConnection>();
    raw->connect(gw.ws_port());
    EXPECT_EQ(raw->upgrade(), 101u);
    return raw;
  }

  // Sends `bytes` on a fresh connection and expects the close `code`.
  testing::AssertionResult violation(const std::string& bytes, uint16_t code,
                                     std::vector<std::string>* texts = nullptr) {
    auto raw = upgraded();
    if (!raw->send_all(bytes)) return testing::AssertionFailure() << "send failed";
    return closes_with(*raw, code, texts);
  }
};

// A JSON answer's seq and data.
struct Answer {
  std::string seq;
  json::value data;
};
Answer answer_of(const std::string& text) {
  const json::object o = json::parse(text).as_object();
  return {seq_of(o), data_of(o)};
}

// The next frame that is not a server ping.
std::optional<RawFrame> next_frame(RawConnection& raw, Millis timeout = 3s) {
  while (auto f = raw.read_frame(timeout)) {
    if (f->opcode != op::kPing) return f;
  }
  return std::nullopt;
}

// Expects the pong answer to the ping request `seq`.
void expect_ping_answer(RawConnection& raw, std::string_view seq) {
  const auto f = next_frame(raw);
  ASSERT_TRUE(f) << "no answer to " << seq;
  ASSERT_EQ(f->opcode, op::kText);
  const Answer a = answer_of(f->payload);
  EXPECT_EQ(a.seq, seq) << f->payload;
  EXPECT_EQ(a.data, json::value("pong")) << f->payload;
}

// A ping request padded to exactly `size` bytes.
std::string ping_of_size(std::string_view seq, std::size_t size) {
  const std::string head = R"({"seq":")" + std::string(seq) + R"(","cmd":"ping","data":{"pad":")";
  const std::string tail = "\"}}";
  return head + std::string(size - head.size() - tail.size(), 'x') + tail;
}

// ---- 1002 ----------------------------------------------------------------------------

TEST_F(WsConformanceTest, UnmaskedFramesAreClosedWithProtocolError) {
  const std::string request = make_request("u", "ping");
  EXPECT_TRUE(violation(ClientFrame::text(request).unmasked(), 1002)) << "text";
  EXPECT_TRUE(violation(ClientFrame::ping("p").unmasked(), 1002)) << "ping";
  EXPECT_TRUE(violation(ClientFrame::close(1000).unmasked(), 1002)) << "close";
  EXPECT_TRUE(violation(ClientFrame::text(request.substr(0, 5)).fin(false) +
                            ClientFrame::continuation(request.substr(5)).unmasked(),
                        1002))
      << "continuation";
}

TEST_F(WsConformanceTest, ReservedBitsAreClosedWithProtocolError) {
  const std::string request = make_request("r", "ping");
  for (uint8_t bits : {4, 2, 1, 7}) {
    EXPECT_TRUE(violation(ClientFrame::text(request).rsv(bits), 1002)) << "text rsv " << int(bits);
  }
  EXPECT_TRUE(violation(ClientFrame::ping("p").rsv(4), 1002)) << "ping rsv1";
  EXPECT_TRUE(violation(ClientFrame::text(request.substr(0, 5)).fin(false) +
                            ClientFrame::continuation(request.substr(5)).rsv(2),
                        1002))
      << "continuation rsv2";
}

TEST_F(WsConformanceTest, ReservedOpcodesAreClosedWithProtocolError) {
  for (uint8_t opcode : {0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF}) {
    EXPECT_TRUE(violation(ClientFrame(opcode, "x"), 1002)) << "opcode " << int(opcode);
  }
}

TEST_F(WsConformanceTest, NonMinimalLengthsAreClosedWithProtocolError) {
  const std::string small = make_request("n", "ping");  // < 126 bytes
  ASSERT_LT(small.size(), 126u);
  EXPECT_TRUE(violation(ClientFrame::text(small).len16(), 1002)) << "16-bit form of a short length";
  EXPECT_TRUE(violation(ClientFrame::text(small).len64(), 1002)) << "64-bit form of a short length";
  const std::string medium = ping_of_size("m", 1000);  // < 65536 bytes, within the limit
  EXPECT_TRUE(violation(ClientFrame::text(medium).len64(), 1002)) << "64-bit form of 1000";
  EXPECT_TRUE(violation(ClientFrame::text("").len16(), 1002)) << "16-bit form of 0";
}

TEST_F(WsConformanceTest, SixtyFourBitLengthWithTheTopBitSetIsClosedWithProtocolError) {
  // The header alone; no payload could follow anyway.
  EXPECT_TRUE(violation(ClientFrame::text("").len64().declared(uint64_t{1} << 63), 1002));
  EXPECT_TRUE(violation(ClientFrame::text("").len64().declared(~uint64_t{0}), 1002));
}

TEST_F(WsConformanceTest, FragmentedOrLongControlFramesAreClosedWithProtocolError) {
  EXPECT_TRUE(violation(ClientFrame::ping("p").fin(false), 1002)) << "fragmented ping";
  EXPECT_TRUE(violation(ClientFrame::pong("p").fin(false), 1002)) << "fragmented pong";
  EXPECT_TRUE(violation(ClientFrame::close(1000).fin(false), 1002)) << "fragmented close";
  EXPECT_TRUE(violation(ClientFrame::ping(std::string(126, 'p')), 1002)) << "126-byte ping";
  EXPECT_TRUE(violation(ClientFrame::pong(std::string(126, 'p')), 1002)) << "126-byte pong";
  EXPECT_TRUE(violation(ClientFrame::close(1000, std::string(124, 'r')), 1002))
      << "126-byte close";
  EXPECT_TRUE(violation(ClientFrame::ping("short").len16(), 1002)) << "ping with a 16-bit length";
}

TEST_F(WsConformanceTest, ContinuationWithoutAStartIsClosedWithProtocolError) {
  EXPECT_TRUE(violation(ClientFrame::continuation(make_request("c", "ping")), 1002));
  // After a complete message: it is answered, then the stray continuation fails.
  std::vector<std::string> texts;
  EXPECT_TRUE(violation(ClientFrame::text(make_request("done", "ping")) +
                            ClientFrame::continuation("x"),
                        1002, &texts));
  ASSERT_EQ(texts.size(), 1u);
  EXPECT_EQ(answer_of(texts[0]).seq, "done");
}

TEST_F(WsConformanceTest, NewMessageInsideAFragmentedOneIsClosedWithProtocolError) {
  EXPECT_TRUE(violation(ClientFrame::text("{").fin(false) + ClientFrame::text("}"), 1002))
      << "text start inside text";
  EXPECT_TRUE(violation(ClientFrame::text("{").fin(false) + ClientFrame::binary("}"), 1002))
      << "binary start inside text";
}

// ---- close frames ----------------------------------------------------------------------

TEST_F(WsConformanceTest, CloseHandshakeIsAnsweredWithACloseFrameThenTheTcpClose) {
  auto raw = upgraded();
  ASSERT_TRUE(raw->send_all(ClientFrame::close(1000, "bye").bytes()));
  EXPECT_TRUE(closes_with(*raw, 1000));
  raw->close();
  EXPECT_TRUE(gw.wait_idle());
  EXPECT_GE(gw.state().closes_by_code(1000), 1);
}

TEST_F(WsConformanceTest, CloseWithoutAPayloadIsAnsweredWithACloseFrame) {
  auto raw = upgraded();
  ASSERT_TRUE(raw->send_all(ClientFrame::close().bytes()));
  auto frame = next_frame(*raw);
  ASSERT_TRUE(frame);
  ASSERT_EQ(frame->opcode, op::kClose);
  // Empty (no status) or 1000: both are a normal end.
  EXPECT_TRUE(frame->payload.empty() || frame->close_code() == 1000) << frame->close_code();
  EXPECT_EQ(raw->wait_end(3s), RawConnection::End::kEof);
}

TEST_F(WsConformanceTest, ValidCloseCodesAreAnsweredWithACloseFrame) {
  std::vector<uint16_t> codes = {3000, 4999};
  for (uint16_t c = 1000; c <= 1003; ++c) codes.push_back(c);
  for (uint16_t c = 1007; c <= 1014; ++c) codes.push_back(c);
  for (uint16_t code : codes) {
    SCOPED_TRACE("code " + std::to_string(code));
    auto raw = upgraded();
    ASSERT_TRUE(raw->send_all(ClientFrame::close(code, "reason").bytes()));
    auto frame = next_frame(*raw);
    ASSERT_TRUE(frame) << "no close reply";
    ASSERT_EQ(frame->opcode, op::kClose);
    // RFC 6455 §5.5.1: typically the code received is echoed; 1000 is also a normal end.
    EXPECT_TRUE(frame->close_code() == code || frame->close_code() == 1000)
        << "answered with close code " << frame->close_code();
    EXPECT_EQ(raw->wait_end(3s), RawConnection::End::kEof);
  }
}

TEST_F(WsConformanceTest, InvalidCloseFramesAreClosedWithProtocolError) {
  EXPECT_TRUE(violation(ClientFrame::close(std::string_view("\x03", 1)), 1002)) << "1-byte payload";
  for (uint16_t code : {0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000}) {
    EXPECT_TRUE(violation(ClientFrame::close(code), 1002)) << "code " << code;
  }
  EXPECT_TRUE(violation(ClientFrame::close(1000, "bad \xFF reason"), 1002)) << "reason 0xFF";
  EXPECT_TRUE(violation(ClientFrame::close(1000, "\xED\xA0\x80"), 1002)) << "surrogate reason";
  EXPECT_TRUE(violation(ClientFrame::close(1000, "cut \xE2\x82"), 1002)) << "truncated reason";
}

// ---- 1007 -------------------------------------------------------------------------------

TEST_F(WsConformanceTest, InvalidUtf8TextIsClosedWithInvalidPayloadData) {
  const std::string prefix = R"({"seq":"s","cmd":"ping","data":{"x":")";
  for (const std::string bad : {"\xFF", "\xC0\x80", "\xE0\x80\x80", "\xED\xA0\x80",
                                "\xF4\x90\x80\x80", "\xF5\x80\x80\x80"}) {
    EXPECT_TRUE(violation(ClientFrame::text(prefix + bad + "\"}}"), 1007))
        << testing::PrintToString(bad);
  }
  // Ends inside a sequence: decided at the message end.
  EXPECT_TRUE(violation(ClientFrame::text(prefix + "\"}}\xE4\xBD"), 1007)) << "truncated at the end";
  EXPECT_TRUE(violation(ClientFrame::text(prefix + "\"}}\xE4").fin(false) +
                            ClientFrame::continuation(""),
                        1007))
      << "truncated, then an empty last fragment";
}

TEST_F(WsConformanceTest, Utf8IsValidatedAcrossFragments) {
  // 马 is E9 A9 AC: split over two fragments it is fine...
  const std::string request = R"({"seq":"frag","cmd":"ping","data":{"x":"马"}})";
  const std::size_t in_char = request.find("马") + 2;
  auto raw = upgraded();
  ASSERT_TRUE(raw->send_all(ClientFrame::text(request.substr(0, in_char)).fin(false) +
                            ClientFrame::continuation(request.substr(in_char))));
  expect_ping_answer(*raw, "frag");
  // ...but a character that cannot continue it is not.
  ASSERT_TRUE(raw->send_all(ClientFrame::text(request.substr(0, in_char)).fin(false) +
                            ClientFrame::continuation("a\"}}")));
  EXPECT_TRUE(closes_with(*raw, 1007));
}

TEST_F(WsConformanceTest, InvalidUtf8IsDetectedAsSoonAsTheBadByteArrives) {
  // The start of a 4000-byte text frame (within the limit) whose first
  // payload bytes are invalid; the rest is never sent, so a server that waits
  // for the end of the frame never answers.
  {
    const auto frame = ClientFrame::text("\xFF\xFE invalid from the start").declared(4000);
    auto raw = upgraded();
    ASSERT_TRUE(raw->send_all(frame.bytes()));
    EXPECT_TRUE(closes_with(*raw, 1007)) << "first byte 0xFF";
  }
  {
    const auto frame =
        ClientFrame::text(R"({"seq":"s","cmd":"ping","data":{"x":"ok )" "\xED\xA0\x80").declared(4000);
    auto raw = upgraded();
    ASSERT_TRUE(raw->send_all(frame.bytes()));
    EXPECT_TRUE(closes_with(*raw, 1007)) << "surrogate after a valid start";
  }
  {
    // In the first fragment of a message whose final fragment never comes.
    const auto frame = ClientFrame::text(R"({"seq":"s","cmd":"ping"} )" "\xC3\x28").fin(false);
    auto raw = upgraded();
    ASSERT_TRUE(raw->send_all(frame.bytes()));
    EXPECT_TRUE(closes_with(*raw, 1007)) << "in a non-final fragment";
  }
}

// ---- 1009 -------------------------------------------------------------------------------

TEST_F(WsConformanceTest, MessagesOverTheLimitAreClosedWithTooBigBeforeTheirPayload) {
  // Headers announcing more than the limit, followed by little or no payload:
  // the server must not wait for the rest.
  EXPECT_TRUE(violation(ClientFrame::text(std::string(100, 'x')).declared(kMaxMessage + 1), 1009))
      << "one byte over, 100 bytes of it sent";
  EXPECT_TRUE(violation(ClientFrame::text("").declared(uint64_t{1} << 30), 1009))
      << "1 GiB announced, nothing sent";
  EXPECT_TRUE(violation(ClientFrame::text(std::string(1000, 'x')).declared(1 << 20), 1009))
      << "1 MiB announced, 1000 bytes sent";
  // Over the whole message: two fragments of 2000, then the header of a third
  // that passes the limit.
  EXPECT_TRUE(violation(ClientFrame::text(std::string(2000, 'x')).fin(false) +
                            ClientFrame::continuation(std::string(2000, 'x')).fin(false) +
                            ClientFrame::continuation("").declared(kMaxMessage - 4000 + 1),
                        1009))
      << "fragments";
  // Control frames between fragments do not count towards the limit.
  const std::string at_limit = ping_of_size("limit", kMaxMessage);
  auto raw = upgraded();
  ASSERT_TRUE(raw->send_all(ClientFrame::text(at_limit.substr(0, 3000)).fin(false) +
                            ClientFrame::ping(std::string(125, 'p')) +
                            ClientFrame::continuation(at_limit.substr(3000))));
  auto pong = next_frame(*raw);
  ASSERT_TRUE(pong);
  EXPECT_EQ(pong->opcode, op::kPong);
  expect_ping_answer(*raw, "limit");
  EXPECT_TRUE(gw.wait_for("four connections closed with 1009",
                          [](const State& s) { return s.closes_by_code(1009) >= 4; }));
}

// ---- 1003 -------------------------------------------------------------------------------

TEST_F(WsConformanceTest, BinaryMessagesAreClosedWithUnsupportedData) {
  EXPECT_TRUE(violation(ClientFrame::binary(make_request("b", "ping")), 1003)) << "binary";
  EXPECT_TRUE(violation(ClientFrame::binary("").fin(false), 1003)) << "empty first fragment";
  EXPECT_TRUE(violation(ClientFrame::binary("").declared(3000), 1003)) << "header only";
}

// ---- control frames, fragmentation, TCP segmentation ------------------------------------

TEST_F(WsConformanceTest, PingIsAnsweredWithAPongOfTheSamePayload) {
  auto raw = upgraded();
  std::string p125(125, '\0');
  for (std::size_t i = 0; i < p125.size(); ++i) p125[i] = static_cast<char>(i * 7 + 0x80);
  for (const std::string& payload : {std::string(), std::string("hello"), p125}) {
    SCOPED_TRACE("payload of " + std::to_string(payload.size()));
    ASSERT_TRUE(raw->send_all(ClientFrame::ping(payload).key(0x00, 0x80, 0x7F, 0xFF).bytes()));
    auto pong = next_frame(*raw);
    ASSERT_TRUE(pong);
    EXPECT_EQ(pong->opcode, op::kPong);
    EXPECT_TRUE(pong->fin);
    EXPECT_EQ(pong->payload, payload);
  }
  // An unsolicited pong gets no answer; the connection stays usable.
  ASSERT_TRUE(raw->send_all(ClientFrame::pong("unsolicited") +
                            ClientFrame::text(make_request("after", "ping"))));
  expect_ping_answer(*raw, "after");
  ASSERT_TRUE(raw->send_all(ClientFrame::close(1000).bytes()));
  EXPECT_TRUE(closes_with(*raw, 1000));
}

TEST_F(WsConformanceTest, FragmentedMessageWithControlFramesBetweenIsAnswered) {
  auto raw = upgraded();
  const std::string request = R"({"seq":"1","cmd":"ping"})";
  ASSERT_TRUE(raw->send_all(ClientFrame::text(request.substr(0, 8)).fin(false) +
                            ClientFrame::ping("between") +
                            ClientFrame::continuation("").fin(false) +
                            ClientFrame::pong("ignored") +
                            ClientFrame::continuation(request.substr(8, 7)).fin(false) +
                            ClientFrame::ping("") + ClientFrame::continuation(request.substr(15))));
  auto first = next_frame(*raw);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->opcode, op::kPong);
  EXPECT_EQ(first->payload, "between");
  auto second = next_frame(*raw);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->opcode, op::kPong);
  EXPECT_EQ(second->payload, "");
  expect_ping_answer(*raw, "1");
}

TEST_F(WsConformanceTest, ZeroLengthFramesAndFragments) {
  auto raw = upgraded();
  // An empty text message is a malformed request (1001 answer), not a framing error.
  ASSERT_TRUE(raw->send_all(ClientFrame::text("").bytes()));
  auto empty = next_frame(*raw);
  ASSERT_TRUE(empty);
  ASSERT_EQ(empty->opcode, op::kText);
  EXPECT_EQ(code_of(json::parse(empty->payload).as_object()), 1001) << empty->payload;
  // Empty first and last fragments around the request.
  ASSERT_TRUE(raw->send_all(ClientFrame::text("").fin(false) +
                            ClientFrame::continuation(make_request("z", "ping")).fin(false) +
                            ClientFrame::continuation("")));
  expect_ping_answer(*raw, "z");
}

TEST_F(WsConformanceTest, FrameSplitAcrossManySmallWritesIsParsed) {
  auto raw = upgraded();
  // A 300-byte request (16-bit length) and a ping, one byte per TCP segment,
  // then a frame in 7-byte pieces that cut header, mask key and payload.
  const std::string request = ping_of_size("trickle", 300);
  ASSERT_TRUE(raw->send_in_pieces(ClientFrame::text(request) + ClientFrame::ping("pp"), 1, 1ms));
  expect_ping_answer(*raw, "trickle");
  auto pong = next_frame(*raw);
  ASSERT_TRUE(pong);
  EXPECT_EQ(pong->opcode, op::kPong);
  EXPECT_EQ(pong->payload, "pp");
  ASSERT_TRUE(raw->send_in_pieces(ClientFrame::text(ping_of_size("pieces", 1000)).fin(false) +
                                      ClientFrame::continuation(" "),
                                  7, 1ms));
  expect_ping_answer(*raw, "pieces");
}

TEST_F(WsConformanceTest, SeveralFramesInOneWriteAreAllAnswered) {
  auto raw = upgraded();
  std::string bytes;
  for (int i = 0; i < 20; ++i) {
    bytes += ClientFrame::text(make_request("m" + std::to_string(i), "ping"));
    if (i == 9) bytes += ClientFrame::ping("mid");
  }
  bytes += ClientFrame::text(ping_of_size("long", 3000)).fin(false) +
           ClientFrame::continuation("");
  ASSERT_TRUE(raw->send_all(bytes));
  for (int i = 0; i < 20; ++i) {
    if (i == 10) {
      auto pong = next_frame(*raw);
      ASSERT_TRUE(pong);
      EXPECT_EQ(pong->opcode, op::kPong);
      EXPECT_EQ(pong->payload, "mid");
    }
    expect_ping_answer(*raw, "m" + std::to_string(i));
  }
  expect_ping_answer(*raw, "long");
  ASSERT_TRUE(raw->send_all(ClientFrame::close(1000).bytes()));
  EXPECT_TRUE(closes_with(*raw, 1000));
}

// ---- the default limit, liveness -------------------------------------------------------

class WsConformanceDefaultsTest : public GatewayTest {
 protected:
  void SetUp() override { gw.start(); }
};

TEST_F(WsConformanceDefaultsTest, SixtyFourKibMessageInThe64BitFormIsAnsweredAndOneMoreByteIs1009) {
  // The default limit is 64 KiB = 65536 bytes, the shortest length that
  // needs the 64-bit form.
  RawConnection raw;
  raw.connect(gw.ws_port());
  ASSERT_EQ(raw.upgrade(), 101u);
  const std::string request = ping_of_size("64k", 65536);
  ASSERT_TRUE(raw.send_all(ClientFrame::text(request).bytes()));
  expect_ping_answer(raw, "64k");
  ASSERT_TRUE(raw.send_all(ClientFrame::text("").declared(65537).bytes()));
  EXPECT_TRUE(closes_with(raw, 1009));
}

class WsConformanceLivenessTest : public GatewayTest {
 protected:
  void SetUp() override {
    gw.start({{"--heartbeat-timeout", "1"}, {"--ping-interval", "0.5"}, {"--close-timeout", "0.5"}});
  }
};

TEST_F(WsConformanceLivenessTest, AnyClientFrameRefreshesLiveness) {
  // This client never answers the server's pings; it only sends unsolicited
  // pongs, which alone must keep it alive past several timeouts.
  RawConnection raw;
  raw.connect(gw.ws_port());
  ASSERT_EQ(raw.upgrade(), 101u);
  const auto until = std::chrono::steady_clock::now() + 2500ms;
  while (std::chrono::steady_clock::now() < until) {
    ASSERT_TRUE(raw.send_all(ClientFrame::pong("alive").bytes()));
    std::this_thread::sleep_for(200ms);  // well inside the 1 s heartbeat timeout
  }
  ASSERT_TRUE(raw.send_all(ClientFrame::text(make_request("still", "ping")).bytes()));
  expect_ping_answer(raw, "still");
  // Silent from now on: closed as gone away (the close is answered, as a
  // client would).
  EXPECT_TRUE(closes_with(raw, 1001, nullptr, 4s, /*reply=*/true));
}

}  // namespace
// --flush-interval: frames corked for a connection wait for the interval and
// leave together, in one write system call (counted as wsWrites).
class WsFlushIntervalTest : public GatewayTest {};

TEST_F(WsFlushIntervalTest, PushesWithinTheIntervalLeaveInOneWriteAfterIt) {
  gw.start({{"--flush-interval", "1"}});
  WsClient client;
  client.connect(gw.ws_port());
  ASSERT_EQ(client.login(101, "u"), 200);
  const int64_t writes_before = gw.state().counter("wsWrites");
  const auto sent = std::chrono::steady_clock::now();
  for (const char* id : {"f-1", "f-2"}) {
    const auto res = http_get(gw.http_port(), std::string("/user/sendMessage?appID=101&userID=u&msgID=") +
                                                  id + "&message=" + id);
    ASSERT_EQ(res.status, 200u) << res.body;
  }
  const auto first = client.next_push("msg", 5s);
  const auto second = client.next_push("msg", 5s);
  const auto waited = std::chrono::steady_clock::now() - sent;
  ASSERT_TRUE(first && second);
  EXPECT_GE(waited, 800ms) << "the pushes did not wait for the interval";
  EXPECT_EQ(gw.state().counter("wsWrites") - writes_before, 1) << "both pushes in one write";
}

}  // namespace imgate::test
