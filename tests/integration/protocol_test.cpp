// The WebSocket request/response protocol of spec §2 and samples.md, including
// the "Details observed" on the running original, plus /system/state.
#include <numeric>
#include <set>

#include "gateway_process.hpp"
#include "raw_connection.hpp"
#include "ws_client.hpp"

namespace imgate::test {
namespace {
namespace json = boost::json;

class ProtocolTest : public GatewayTest {
 protected:
  void SetUp() override { gw.start(); }
};

// The whole envelope: exactly seq, cmd and response{code, codeMsg, data}.
void expect_response(const json::object& res, std::string_view seq, std::string_view cmd,
                     int64_t code, std::string_view code_msg, const json::value& data = nullptr) {
  SCOPED_TRACE(json::serialize(res));
  EXPECT_EQ(seq_of(res), seq);
  EXPECT_EQ(cmd_of(res), cmd);
  EXPECT_EQ(code_of(res), code);
  EXPECT_EQ(code_msg_of(res), code_msg);
  EXPECT_EQ(data_of(res), data);
  EXPECT_EQ(res.size(), 3u) << "expected only seq, cmd and response";
  if (const auto* r = res.if_contains("response"); r != nullptr && r->is_object()) {
    EXPECT_EQ(r->get_object().size(), 3u) << "expected only code, codeMsg and data";
  }
}

std::string repeat(std::string_view s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

TEST_F(ProtocolTest, LoginSampleSucceedsWithSuccessAndNullData) {
  WsClient c;
  c.connect(gw.ws_port());
  const auto res = c.request_frame(
      R"({"seq":"1565336219141-266129","cmd":"login","data":{"userID":"马远","appID":101}})",
      "1565336219141-266129", "login");
  expect_response(res, "1565336219141-266129", "login", 200, "Success");
}

TEST_F(ProtocolTest, ResponsesMatchUpstreamSamplesByteForByte) {
  WsClient c;
  c.connect(gw.ws_port());
  const std::pair<std::string, std::string> exchanges[] = {
      {R"({"seq":"7","cmd":"ping","data":{}})",
       R"({"seq":"7","cmd":"ping","response":{"code":200,"codeMsg":"Success","data":"pong"}})"},
      {R"({"seq":"5","cmd":"heartbeat","data":{}})",
       R"({"seq":"5","cmd":"heartbeat","response":{"code":1000,"codeMsg":"未登录","data":null}})"},
      {R"({"seq":"8","cmd":"dance","data":{}})",
       R"({"seq":"8","cmd":"dance","response":{"code":1010,"codeMsg":"路由不存在","data":null}})"},
      {R"({"seq":"2","cmd":"login","data":{"userID":"u1","appID":999}})",
       R"({"seq":"2","cmd":"login","response":{"code":1003,"codeMsg":"未授权","data":null}})"},
      {R"({"seq":"3","cmd":"login","data":{"userID":"","appID":101}})",
       R"({"seq":"3","cmd":"login","response":{"code":1002,"codeMsg":"非法的用户ID","data":null}})"},
      {R"({"seq":"1","cmd":"login","data":{"userID":"马远","appID":101}})",
       R"({"seq":"1","cmd":"login","response":{"code":200,"codeMsg":"Success","data":null}})"},
      {R"({"seq":"4","cmd":"login","data":{"userID":"马远","appID":101}})",
       R"({"seq":"4","cmd":"login","response":{"code":1009,"codeMsg":"操作失败","data":null}})"},
      {R"({"seq":"6","cmd":"heartbeat","data":{}})",
       R"({"seq":"6","cmd":"heartbeat","response":{"code":200,"codeMsg":"Success","data":null}})"},
  };
  for (const auto& [request, expected] : exchanges) {
    ASSERT_FALSE(c.send_text(request)) << request;
    EXPECT_EQ(c.read_text().value_or("<no answer>"), expected) << "request: " << request;
  }
}

TEST_F(ProtocolTest, LoginWithUnconfiguredAppIdIsUnauthorized) {
  WsClient c;
  c.connect(gw.ws_port());
  for (const char* data : {R"({"userID":"u1","appID":999})", R"({"userID":"u1","appID":0})",
                           R"({"userID":"u1","appID":100})", R"({"userID":"u1"})"}) {
    const auto res = c.request("login", data, "s");
    expect_response(res, "s", "login", 1003, "未授权");
  }
  // Every configured app is accepted.
  for (uint32_t app : {101u, 102u, 103u, 104u}) {
    WsClient fresh;
    fresh.connect(gw.ws_port());
    EXPECT_EQ(fresh.login(app, "u1"), 200) << "appID " << app;
  }
}

TEST_F(ProtocolTest, LoginChecksUserIdBeforeAppId) {
  WsClient c;
  c.connect(gw.ws_port());
  expect_response(c.request("login", R"({"appID":999,"userID":""})", "s"), "s", "login", 1002,
                  "非法的用户ID");
}

TEST_F(ProtocolTest, LoginAcceptsUserIdsShorterThanTwentyBytes) {
  const std::string accepted[] = {"a", std::string(19, 'a'), repeat("é", 9) + "a",
                                  repeat("马", 6) + "a", repeat("马", 6)};
  for (const auto& user : accepted) {
    WsClient c;
    c.connect(gw.ws_port());
    EXPECT_EQ(c.login(101, user), 200) << user << " (" << user.size() << " bytes)";
  }
  const std::string rejected[] = {"",
                                  std::string(20, 'a'),
                                  repeat("é", 10),
                                  repeat("马", 7),
                                  repeat("é", 9) + "ab",
                                  std::string(100, 'x')};
  for (const auto& user : rejected) {
    WsClient c;
    c.connect(gw.ws_port());
    const auto res =
        c.request("login", json::serialize(json::object{{"userID", user}, {"appID", 101}}), "s");
    expect_response(res, "s", "login", 1002, "非法的用户ID");
  }
}

TEST_F(ProtocolTest, LoginWithWrongTypedDataIsParameterIllegal) {
  WsClient c;
  c.connect(gw.ws_port());
  for (const char* data :
       {R"("马远")", R"(["马远",101])", R"(42)", R"({"userID":"u1","appID":"101"})",
        R"({"userID":7,"appID":101})", R"({"userID":"u1","appID":-1})",
        R"({"userID":"u1","appID":4294967296})", R"({"userID":"u1","appID":101.5})"}) {
    expect_response(c.request("login", data, "s"), "s", "login", 1001, "参数不合法");
  }
  // None of this logged the connection in.
  EXPECT_EQ(c.login(101, "u1"), 200);
}

TEST_F(ProtocolTest, LoginWithNullOrMissingDataIsIllegalUserId) {
  WsClient c;
  c.connect(gw.ws_port());
  expect_response(c.request("login", "null", "s"), "s", "login", 1002, "非法的用户ID");
  const auto res = c.request_frame(R"({"seq":"m","cmd":"login"})", "m", "login");
  expect_response(res, "m", "login", 1002, "非法的用户ID");
}

TEST_F(ProtocolTest, LoginIgnoresExtraFieldsAndTheServiceToken) {
  WsClient c;
  c.connect(gw.ws_port());
  const auto res = c.request(
      "login", R"({"serviceToken":"anything","appID":101,"userID":"u1","extra":[1,{"x":2}]})", "s");
  expect_response(res, "s", "login", 200, "Success");
}

TEST_F(ProtocolTest, SecondLoginOnSameConnectionIsOperationFailure) {
  WsClient c;
  c.connect(gw.ws_port());
  ASSERT_EQ(c.login(101, "u1"), 200);
  expect_response(c.request("login", R"({"appID":101,"userID":"u1"})", "a"), "a", "login", 1009,
                  "操作失败");
  expect_response(c.request("login", R"({"appID":102,"userID":"u2"})", "b"), "b", "login", 1009,
                  "操作失败");
  // Still logged in as the first user only.
  const State s = gw.state(true);
  EXPECT_EQ(s.users(), std::vector<std::string>{"101_u1"}) << s.dump();
}

TEST_F(ProtocolTest, FailedLoginLeavesConnectionLoggedOut) {
  WsClient c;
  c.connect(gw.ws_port());
  ASSERT_EQ(c.login(999, "u1"), 1003);
  expect_response(c.request("heartbeat", "{}", "h"), "h", "heartbeat", 1000, "未登录");
  EXPECT_EQ(gw.state().users_len(), 0);
  EXPECT_EQ(c.login(101, "u1"), 200);
}

TEST_F(ProtocolTest, HeartbeatRequiresLogin) {
  WsClient c;
  c.connect(gw.ws_port());
  expect_response(c.request("heartbeat", R"({"userID":"u1"})", "h1"), "h1", "heartbeat", 1000,
                  "未登录");
  ASSERT_EQ(c.login(101, "u1"), 200);
  expect_response(c.request("heartbeat", R"({"userID":"u1"})", "h2"), "h2", "heartbeat", 200,
                  "Success");
  // The userID in heartbeat data is ignored.
  expect_response(c.request("heartbeat", R"({"userID":"someone else"})", "h3"), "h3", "heartbeat",
                  200, "Success");
  expect_response(c.request("heartbeat", "{}", "h4"), "h4", "heartbeat", 200, "Success");
}

TEST_F(ProtocolTest, LoggedInHeartbeatWithNonObjectDataIsParameterIllegal) {
  WsClient c;
  c.connect(gw.ws_port());
  ASSERT_EQ(c.login(101, "u1"), 200);
  for (const char* data : {R"("u1")", "[]", "7", "true"}) {
    expect_response(c.request("heartbeat", data, "h"), "h", "heartbeat", 1001, "参数不合法");
  }
  expect_response(c.request("heartbeat", "{}", "ok"), "ok", "heartbeat", 200, "Success");
}

TEST_F(ProtocolTest, PingWorksBeforeLoginAndWithoutData) {
  WsClient c;
  c.connect(gw.ws_port());
  expect_response(c.request("ping", "{}", "p1"), "p1", "ping", 200, "Success", "pong");
  const auto res = c.request_frame(R"({"seq":"p2","cmd":"ping"})", "p2", "ping");
  expect_response(res, "p2", "ping", 200, "Success", "pong");
  ASSERT_EQ(c.login(101, "u1"), 200);
  expect_response(c.request("ping", "{}", "p3"), "p3", "ping", 200, "Success", "pong");
}

TEST_F(ProtocolTest, RequestWithoutSeqIsAnsweredWithEmptySeq) {
  WsClient c;
  c.connect(gw.ws_port());
  expect_response(c.request_frame(R"({"cmd":"ping","data":{}})", "", "ping"), "", "ping", 200,
                  "Success", "pong");
  expect_response(c.request_frame(R"({"cmd":"heartbeat","data":{}})", "", "heartbeat"), "",
                  "heartbeat", 1000, "未登录");
}

TEST_F(ProtocolTest, UnknownCmdIsRouteNotFound) {
  WsClient c;
  c.connect(gw.ws_port());
  for (const char* cmd : {"dance", "", "Ping", "LOGIN", "enter", "msg", "ping "}) {
    expect_response(c.request(cmd, "{}", "u"), "u", cmd, 1010, "路由不存在");
  }
  c.expect_pong();
}

TEST_F(ProtocolTest, ResponsesFollowRequestOrderOnOneConnection) {
  WsClient c;
  c.connect(gw.ws_port());
  for (int i = 0; i < 200; ++i) {
    ASSERT_FALSE(c.send_text(make_request("o" + std::to_string(i), i % 2 ? "ping" : "heartbeat")));
  }
  for (int i = 0; i < 200; ++i) {
    const auto res = c.read_json();
    ASSERT_TRUE(res) << "response " << i << " missing";
    EXPECT_EQ(seq_of(*res), "o" + std::to_string(i));
  }
}

TEST_F(ProtocolTest, WebSocketPingGetsPongAndCloseFrameIsEchoed) {
  RawConnection raw;
  raw.connect(gw.ws_port());
  ASSERT_EQ(raw.upgrade(), 101u);
  ASSERT_TRUE(raw.send_all(RawConnection::encode_frame(0x9, "are you there")));
  auto pong = raw.read_frame();
  ASSERT_TRUE(pong);
  EXPECT_EQ(pong->opcode, 0xA);
  EXPECT_EQ(pong->payload, "are you there");

  ASSERT_TRUE(raw.send_all(RawConnection::encode_frame(0x8, std::string("\x03\xe8"
                                                                        "bye",
                                                                        5))));
  std::optional<RawFrame> echo;
  while ((echo = raw.read_frame()) && echo->opcode != 0x8) {
  }
  ASSERT_TRUE(echo) << "no close frame came back";
  EXPECT_EQ(echo->close_code(), 1000);
  EXPECT_TRUE(raw.wait_closed()) << "the server did not end the TCP connection after the close";
  // The peer keeps its side of the TCP connection open: --close-timeout (1 s)
  // bounds how long the server may wait for it.
  ASSERT_TRUE(gw.wait_idle(3s)) << "session kept after the close handshake completed";
  EXPECT_GE(gw.state().closes_by_code(1000), 1);
}

TEST_F(ProtocolTest, SystemStateDescribesConnectionsUsersAndCounters) {
  State idle = gw.state();
  EXPECT_EQ(idle.clients_len(), 0) << idle.dump();
  EXPECT_EQ(idle.users_len(), 0);
  for (const char* chan :
       {"chanBroadcastLen", "chanLoginLen", "chanRegisterLen", "chanUnregisterLen"}) {
    const json::value* v = idle.find({"managerInfo", chan});
    ASSERT_NE(v, nullptr) << chan << " missing: " << idle.dump();
    EXPECT_EQ(v->to_number<int64_t>(), 0) << chan;
  }
  ASSERT_NE(idle.find({"numCPU"}), nullptr) << idle.dump();
  EXPECT_GE(idle.find({"numCPU"})->to_number<int64_t>(), 1);
  ASSERT_NE(idle.find({"numGoroutine"}), nullptr) << idle.dump();
  ASSERT_NE(idle.find({"imgate", "version"}), nullptr) << idle.dump();
  EXPECT_TRUE(idle.find({"imgate", "version"})->is_string());
  const json::value* uptime = idle.find({"imgate", "uptimeSeconds"});
  ASSERT_TRUE(uptime != nullptr && uptime->is_number()) << idle.dump();
  EXPECT_GE(uptime->to_number<double>(), 0.0);
  EXPECT_EQ(idle.threads(), 2);
  EXPECT_EQ(idle.find({"managerInfo", "clients"}), nullptr) << "lists only with isDebug=true";
  EXPECT_EQ(idle.find({"managerInfo", "users"}), nullptr) << "lists only with isDebug=true";

  WsClient a, b;
  a.connect(gw.ws_port());
  b.connect(gw.ws_port());
  ASSERT_EQ(a.login(101, "马远"), 200);
  ASSERT_TRUE(gw.wait_for("two clients, one user", [](const State& s) {
    return s.clients_len() == 2 && s.users_len() == 1 && s.sessions() == 2;
  }));
  const State s = gw.state(true);
  EXPECT_EQ(s.users(), std::vector<std::string>{"101_马远"}) << s.dump();
  const auto clients = s.clients();
  EXPECT_EQ(clients.size(), 2u) << s.dump();
  EXPECT_EQ(std::set<std::string>(clients.begin(), clients.end()).size(), clients.size());
  const json::value* per_thread = s.find({"imgate", "connectionsPerThread"});
  ASSERT_TRUE(per_thread != nullptr && per_thread->is_array()) << s.dump();
  ASSERT_EQ(per_thread->get_array().size(), 2u) << s.dump();
  int64_t total = 0;
  for (const auto& n : per_thread->get_array()) total += n.to_number<int64_t>();
  EXPECT_EQ(total, 2) << s.dump();
  EXPECT_EQ(s.counter("connectionsOpened"), 2) << s.dump();
  EXPECT_EQ(s.counter("logins"), 1) << s.dump();
  EXPECT_EQ(s.counter("connectionsClosed"), 0) << s.dump();
  EXPECT_GE(s.counter("messagesIn"), 1) << s.dump();

  // A TCP session that has not upgraded counts in sessions, not in clientsLen.
  RawConnection raw;
  raw.connect(gw.ws_port());
  EXPECT_TRUE(gw.wait_for("sessions == 3 with clientsLen == 2", [](const State& st) {
    return st.sessions() == 3 && st.clients_len() == 2;
  }));
  raw.close();
  a.close();
  b.drop();
  ASSERT_TRUE(gw.wait_idle());
  const State after = gw.state();
  EXPECT_EQ(after.counter("connectionsClosed"), 2) << after.dump();
  EXPECT_EQ(after.rooms_len(), 0) << after.dump();
}

// A client that has its 101 finds itself in /system/state at once: the
// connection is counted and indexed before its upgrade response is written.
TEST_F(ProtocolTest, AClientThatHasIts101IsAlreadyCounted) {
  std::vector<std::unique_ptr<WsClient>> clients;
  for (int64_t i = 1; i <= 40; ++i) {
    clients.push_back(std::make_unique<WsClient>());
    clients.back()->connect(gw.ws_port());
    const State s = gw.state();
    ASSERT_EQ(s.clients_len(), i) << s.dump();
    ASSERT_EQ(s.counter("connectionsOpened"), i) << s.dump();
  }
}

TEST(AppIdsFlag, OnlyConfiguredAppIdsMayLogIn) {
  Gateway gw;
  gw.start({{"--app-ids", "7,4000000000"}});
  WsClient a, b, c;
  a.connect(gw.ws_port());
  b.connect(gw.ws_port());
  c.connect(gw.ws_port());
  EXPECT_EQ(a.login(7, "u"), 200);
  EXPECT_EQ(b.login(4000000000u, "u"), 200);
  EXPECT_EQ(c.login(101, "u"), 1003);
  a.drop();
  b.drop();
  c.drop();
  EXPECT_TRUE(gw.wait_idle());
}

}  // namespace
}  // namespace imgate::test
