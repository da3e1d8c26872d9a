// Malformed input (spec §2 "Malformed input", imgate column): JSON-level
// errors get a 1001 response and leave the connection usable; frame-level
// errors close it per RFC 6455 (1003 binary, 1007 bad UTF-8, 1009 too big,
// 1002 protocol violation); plain HTTP on the WebSocket port gets 404 / 400.
#include <iterator>

#include "gateway_process.hpp"
#include "raw_connection.hpp"
#include "ws_client.hpp"

namespace imgate::test {
namespace {
namespace json = boost::json;

constexpr std::size_t kMaxMessage = 4096;
constexpr uint8_t kText = 0x1, kBinary = 0x2, kContinuation = 0x0, kPing = 0x9, kPong = 0xA,
                  kClose = 0x8;

class BadInputTest : public GatewayTest {
 protected:
  void SetUp() override { gw.start({{"--max-message-bytes", std::to_string(kMaxMessage)}}); }

  // A raw connection that has completed the upgrade.
  std::unique_ptr<RawConnection> raw_upgraded() {
    auto raw = std::make_unique<RawConnection>();
    raw->connect(gw.ws_port());
    EXPECT_EQ(raw->upgrade(), 101u);
    return raw;
  }
};

// A ping request padded to exactly `size` bytes.
std::string ping_of_size(std::size_t size) {
  const std::string head = R"({"seq":"big","cmd":"ping","data":{"pad":")";
  const std::string tail = "\"}}";
  return head + std::string(size - head.size() - tail.size(), 'x') + tail;
}

// Reads frames (skipping pings) until a close frame; returns its code, or
// kNoCloseFrame if the connection ended without one.
uint16_t raw_close_code(RawConnection& raw) {
  while (auto frame = raw.read_frame(3s)) {
    if (frame->opcode == kClose) return frame->close_code();
  }
  return kNoCloseFrame;
}

TEST_F(BadInputTest, MalformedMessagesGetParameterIllegalAndTheConnectionStaysUsable) {
  struct Case {
    std::string frame, seq, cmd;
  };
  const Case cases[] = {
      {"not json", "", ""},
      {"数据不合法", "", ""},
      {"", "", ""},
      {"{", "", ""},
      {R"([1,2])", "", ""},
      {R"([{"seq":"s","cmd":"ping"}])", "", ""},
      {R"("a string")", "", ""},
      {"42", "", ""},
      {"null", "", ""},
      {R"({"seq":"s","cmd":"ping"} trailing)", "", ""},
      {R"({"seq":1,"cmd":"ping","data":{}})", "", "ping"},
      {R"({"seq":["x"],"cmd":"login","data":{}})", "", "login"},
      {R"({"seq":"a","cmd":5,"data":{}})", "a", ""},
      {R"({"seq":"b","cmd":null})", "b", ""},
      {R"({"seq":"c","cmd":{"name":"ping"}})", "c", ""},
  };
  WsClient c;
  c.connect(gw.ws_port());
  for (const auto& [frame, seq, cmd] : cases) {
    SCOPED_TRACE("frame: " + frame);
    ASSERT_FALSE(c.send_text(frame));
    const auto res = c.read_json();
    ASSERT_TRUE(res) << "no answer";
    EXPECT_EQ(seq_of(*res), seq) << json::serialize(*res);
    EXPECT_EQ(cmd_of(*res), cmd) << json::serialize(*res);
    EXPECT_EQ(code_of(*res), 1001) << json::serialize(*res);
    EXPECT_EQ(code_msg_of(*res), "参数不合法") << json::serialize(*res);
    EXPECT_TRUE(data_of(*res).is_null()) << json::serialize(*res);
    c.expect_pong();
  }
  EXPECT_EQ(gw.state().counter("badRequests"), static_cast<int64_t>(std::size(cases)));
}

TEST_F(BadInputTest, MissingCmdIsTreatedAsEmptyCmdLikeUpstream) {
  // An absent member reads as "" (as for seq): the route "" does not exist.
  WsClient c;
  c.connect(gw.ws_port());
  const auto res = c.request_frame(R"({"seq":"d","data":{}})", "d", "");
  EXPECT_EQ(code_of(res), 1010) << json::serialize(res);
  const auto bare = c.request_frame("{}", "", "");
  EXPECT_EQ(code_of(bare), 1010) << json::serialize(bare);
  c.expect_pong();
}

TEST_F(BadInputTest, BinaryFrameIsClosedWithUnsupportedData) {
  WsClient c;
  c.connect(gw.ws_port());
  ASSERT_EQ(c.login(101, "u1"), 200);
  ASSERT_FALSE(c.send_binary(make_request("b", "ping")));
  EXPECT_EQ(c.expect_closed(), 1003);
  ASSERT_TRUE(gw.wait_idle());
  EXPECT_GE(gw.state().closes_by_code(1003), 1);
}

TEST_F(BadInputTest, InvalidUtf8TextIsClosedWithInvalidPayloadData) {
  const std::string invalid[] = {
      "\xff",
      R"({"seq":"s","cmd":"ping","data":{"x":")"
      "\xc3\x28"
      R"("}})",
      "\xc0\xaf",                // overlong '/'
      "\xed\xa0\x80",            // UTF-16 surrogate
      "\xf4\x90\x80\x80",        // above U+10FFFF
      "{\"seq\":\"\xe4\xbd\"}",  // truncated sequence inside
      "abc\xe4\xbd",             // truncated sequence at the end
  };
  for (const auto& text : invalid) {
    SCOPED_TRACE(testing::PrintToString(text));
    WsClient c;
    c.connect(gw.ws_port());
    ASSERT_FALSE(c.send_text(text));
    EXPECT_EQ(c.expect_closed(), 1007);
  }
  ASSERT_TRUE(gw.wait_idle());
  EXPECT_GE(gw.state().closes_by_code(1007), static_cast<int64_t>(std::size(invalid)));
}

TEST_F(BadInputTest, InvalidUtf8SplitAcrossFragmentsIsClosedWithInvalidPayloadData) {
  WsClient c;
  c.connect(gw.ws_port());
  // "马" is E9 A9 AC; E9 A9 followed by a new character is invalid.
  c.send_fragmented({R"({"seq":"s","cmd":"ping","data":{"x":")"
                     "\xe9\xa9",
                     "a\"}}"});
  EXPECT_EQ(c.expect_closed(), 1007);
}

TEST_F(BadInputTest, FragmentedTextMessagesAreReassembled) {
  WsClient c;
  c.connect(gw.ws_port());
  // Split inside the seq, inside a three-byte character, with an empty middle frame.
  const std::string login =
      R"({"seq":"frag-1","cmd":"login","data":{"appID":101,"userID":"马远"}})";
  const std::size_t in_char = login.find("马") + 1;
  ASSERT_FALSE(c.send_fragmented(
      {login.substr(0, 9), login.substr(9, in_char - 9), "", login.substr(in_char)}));
  const auto res = c.read_json();
  ASSERT_TRUE(res);
  EXPECT_EQ(seq_of(*res), "frag-1");
  EXPECT_EQ(code_of(*res), 200) << json::serialize(*res);
  EXPECT_EQ(gw.state(true).users(), std::vector<std::string>{"101_马远"});

  // One byte per frame.
  std::vector<std::string> bytes;
  for (char ch : make_request("frag-2", "ping")) bytes.emplace_back(1, ch);
  ASSERT_FALSE(c.send_fragmented(bytes));
  const auto pong = c.read_json();
  ASSERT_TRUE(pong);
  EXPECT_EQ(seq_of(*pong), "frag-2");
  EXPECT_EQ(data_of(*pong), json::value("pong"));
}

TEST_F(BadInputTest, ControlFrameBetweenFragmentsIsAnsweredAndTheMessageStillProcessed) {
  auto raw = raw_upgraded();
  const std::string request = make_request("mid", "ping");
  ASSERT_TRUE(raw->send_all(RawConnection::encode_frame(kText, request.substr(0, 10), false) +
                            RawConnection::encode_frame(kPing, "hello") +
                            RawConnection::encode_frame(kContinuation, request.substr(10), true)));
  std::optional<RawFrame> pong, answer;
  while (!answer) {
    auto frame = raw->read_frame(3s);
    ASSERT_TRUE(frame) << "connection ended or timed out";
    if (frame->opcode == kPong) pong = frame;
    if (frame->opcode == kText) answer = frame;
  }
  ASSERT_TRUE(pong) << "the ping between fragments was not answered before the message";
  EXPECT_EQ(pong->payload, "hello");
  EXPECT_NE(answer->payload.find(R"("data":"pong")"), std::string::npos) << answer->payload;
}

TEST_F(BadInputTest, MessageOfExactlyMaxBytesIsAnsweredAndOneByteMoreIsClosedWithTooBig) {
  WsClient c;
  c.connect(gw.ws_port());
  const std::string at_limit = ping_of_size(kMaxMessage);
  ASSERT_EQ(at_limit.size(), kMaxMessage);
  const auto res = c.request_frame(at_limit, "big", "ping");
  EXPECT_EQ(data_of(res), json::value("pong"));

  // The server may reset the connection before the whole frame is written.
  c.send_text(ping_of_size(kMaxMessage + 1));
  EXPECT_EQ(c.expect_closed(), 1009);

  // The limit applies to the reassembled message, not to each frame.
  WsClient fragmented;
  fragmented.connect(gw.ws_port());
  const std::string over = ping_of_size(kMaxMessage + 100);
  fragmented.send_fragmented({over.substr(0, 2000), over.substr(2000, 2000), over.substr(4000)});
  EXPECT_EQ(fragmented.expect_closed(), 1009);

  // Far above the limit: the frame header alone announces 1 MiB.
  auto raw = raw_upgraded();
  const std::string huge = RawConnection::encode_frame(kText, std::string(1 << 20, 'x'));
  ASSERT_TRUE(raw->send_all(std::string_view(huge).substr(0, 1000)));
  EXPECT_EQ(raw_close_code(*raw), 1009);
  raw->close();
  ASSERT_TRUE(gw.wait_idle());
  EXPECT_GE(gw.state().closes_by_code(1009), 3);
}

TEST_F(BadInputTest, ProtocolViolationsAreClosedWithProtocolError) {
  struct Case {
    const char* what;
    std::string bytes;
  };
  std::string rsv1 = RawConnection::encode_frame(kText, make_request("r", "ping"));
  rsv1[0] = static_cast<char>(rsv1[0] | 0x40);
  const Case cases[] = {
      {"unmasked client frame",
       RawConnection::encode_frame(kText, make_request("u", "ping"), true, false)},
      {"continuation without a first frame", RawConnection::encode_frame(kContinuation, "x")},
      {"reserved opcode 3", RawConnection::encode_frame(0x3, "x")},
      {"RSV1 without a negotiated extension", rsv1},
      {"control frame longer than 125 bytes",
       RawConnection::encode_frame(kPing, std::string(126, 'p'))},
      {"fragmented control frame", RawConnection::encode_frame(kPing, "p", false)},
      {"new text frame inside a fragmented message",
       RawConnection::encode_frame(kText, "{", false) + RawConnection::encode_frame(kText, "}")},
  };
  for (const auto& [what, bytes] : cases) {
    SCOPED_TRACE(what);
    auto raw = raw_upgraded();
    ASSERT_TRUE(raw->send_all(bytes));
    EXPECT_EQ(raw_close_code(*raw), 1002);
  }
  ASSERT_TRUE(gw.wait_idle());
}

TEST_F(BadInputTest, BinaryFrameSentRawIsClosedWithUnsupportedData) {
  auto raw = raw_upgraded();
  ASSERT_TRUE(raw->send_all(RawConnection::encode_frame(kBinary, make_request("b", "ping"))));
  EXPECT_EQ(raw_close_code(*raw), 1003);
}

TEST_F(BadInputTest, PlainHttpOnTheWebSocketPortGets404Or400) {
  EXPECT_EQ(http_get(gw.ws_port(), "/").status, 404u);
  EXPECT_EQ(http_get(gw.ws_port(), "/system/state").status, 404u);
  EXPECT_EQ(http_get(gw.ws_port(), "/accx").status, 404u);
  EXPECT_EQ(http_get(gw.ws_port(), "/acc").status, 400u);
  EXPECT_EQ(http_get(gw.ws_port(), "/acc?appID=101").status, 400u);

  WsClient wrong_path(WsClientOptions{.path = "/chat"});
  EXPECT_TRUE(wrong_path.try_connect(gw.ws_port())) << "upgrade accepted on /chat";
  EXPECT_EQ(wrong_path.handshake_status(), 404u);

  RawConnection raw;
  raw.connect(gw.ws_port());
  EXPECT_EQ(raw.upgrade("/other"), 404u);
  ASSERT_TRUE(gw.wait_idle());
  EXPECT_EQ(gw.state().counter("connectionsOpened"), 0);
}

}  // namespace
}  // namespace imgate::test
