// Unit tests for src/protocol/router and src/protocol/commands: table dispatch, the error replies
// every frame gets (1001 / 1010 / 1004), and the default gowebsocket commands (login, heartbeat,
// ping) against a real Hub/Shard, row by row from spec §2 and samples.md "Details observed".
#include "protocol/envelope.hpp"
#include "protocol/router.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "fake_peer.hpp"

namespace imgate {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;
using test::FakePeer;
using test::TaskQueues;

const TimePoint kStart{std::chrono::hours(1)};

struct Parsed {
  std::string seq;
  std::string cmd;
  uint32_t code = 0;
  std::string code_msg;
  json::value data;
};

Parsed parse_response(const std::string& text) {
  json::value v = json::parse(text);
  const json::object& root = v.as_object();
  EXPECT_EQ(root.size(), 3u) << text;
  const json::object& response = root.at("response").as_object();
  EXPECT_EQ(response.size(), 3u) << text;
  return Parsed{std::string(root.at("seq").as_string()), std::string(root.at("cmd").as_string()),
                static_cast<uint32_t>(response.at("code").to_number<uint64_t>()),
                std::string(response.at("codeMsg").as_string()), response.at("data")};
}

// A one-shard hub with one registered connection, plus a router under test.
class RouterFixture : public ::testing::Test {
 protected:
  RouterFixture() : hub_(1, LivenessSettings{2000ms, 800ms}, counters_, kStart), queues_(1) {
    hub_.set_poster(queues_.poster());
    hub_.set_presence_frames(make_presence_push);
    conn_ = shard().add(peer_, kStart);
  }

  Shard& shard() { return hub_.shard(0); }

  std::string handle(const Router& router, std::string_view text, ConnId conn, TimePoint now) {
    CommandContext ctx{shard(), conn, app_ids_, now};
    return router.handle(ctx, text, counters_);
  }
  std::string handle(const Router& router, std::string_view text) {
    return handle(router, text, conn_, kStart);
  }

  test::QuietLogs quiet_;
  Counters counters_;
  Hub hub_;
  TaskQueues queues_;
  FakePeer peer_;
  ConnId conn_ = 0;
  std::vector<AppId> app_ids_{101, 102, 103, 104};
};

// --- Router: table dispatch and error replies ---

using RouterTable = RouterFixture;

TEST_F(RouterTable, DispatchesToTheRegisteredHandlerWithContextAndData) {
  Router router;
  int calls = 0;
  router.add("echo", [&](CommandContext& ctx, const json::value& data) {
    ++calls;
    EXPECT_EQ(ctx.conn, conn_);
    EXPECT_EQ(&ctx.shard, &shard());
    EXPECT_EQ(ctx.now, kStart + 5s);
    EXPECT_EQ(ctx.app_ids, app_ids_);
    return Reply{Code::kOk, data};
  });
  std::string out =
      handle(router, R"({"seq":"s1","cmd":"echo","data":{"k":[1,"v"]}})", conn_, kStart + 5s);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(out, R"({"seq":"s1","cmd":"echo","response":{"code":200,"codeMsg":"Success",)"
                 R"("data":{"k":[1,"v"]}}})");
  EXPECT_EQ(counters_.bad_requests.load(), 0u);
}

TEST_F(RouterTable, HandlerErrorCodeIsReturned) {
  Router router;
  router.add("nope", [](CommandContext&, const json::value&) {
    return Reply{Code::kNotData, nullptr};
  });
  EXPECT_EQ(
      handle(router, R"({"seq":"1","cmd":"nope"})"),
      R"({"seq":"1","cmd":"nope","response":{"code":1005,"codeMsg":"没有数据","data":null}})");
}

TEST_F(RouterTable, LaterRegistrationReplacesEarlier) {
  Router router;
  int first = 0, second = 0;
  router.add("x", [&](CommandContext&, const json::value&) {
    ++first;
    return Reply{Code::kOk, "first"};
  });
  router.add("x", [&](CommandContext&, const json::value&) {
    ++second;
    return Reply{Code::kOk, "second"};
  });
  Parsed p = parse_response(handle(router, R"({"seq":"1","cmd":"x","data":{}})"));
  EXPECT_EQ(first, 0);
  EXPECT_EQ(second, 1);
  EXPECT_EQ(p.data, json::value("second"));
}

TEST_F(RouterTable, CommandNamesAreCaseSensitive) {
  Router router;
  router.add("ping", [](CommandContext&, const json::value&) { return Reply{Code::kOk, "pong"}; });
  EXPECT_EQ(parse_response(handle(router, R"({"seq":"1","cmd":"PING"})")).code, 1010u);
}

TEST_F(RouterTable, UnknownCmdIs1010WithSeqAndCmdEchoed) {
  Router router;
  router.add("ping", [](CommandContext&, const json::value&) { return Reply{Code::kOk, "pong"}; });
  EXPECT_EQ(
      handle(router, R"({"seq":"8","cmd":"dance","data":{}})"),
      R"({"seq":"8","cmd":"dance","response":{"code":1010,"codeMsg":"路由不存在","data":null}})");
  EXPECT_EQ(counters_.bad_requests.load(), 1u);
}

TEST_F(RouterTable, MissingCmdIsAnUnknownRoute) {
  Router router;
  Parsed p = parse_response(handle(router, R"({"seq":"8","data":{}})"));
  EXPECT_EQ(p.code, 1010u);
  EXPECT_EQ(p.seq, "8");
  EXPECT_EQ(p.cmd, "");
}

TEST_F(RouterTable, NotJsonIs1001WithEmptySeqAndCmd) {
  Router router;
  for (const char* text : {"not json", "", "[]", R"(["seq","1"])", "42", "{"}) {
    SCOPED_TRACE(text);
    EXPECT_EQ(handle(router, text),
              R"({"seq":"","cmd":"","response":{"code":1001,"codeMsg":"参数不合法","data":null}})");
  }
  EXPECT_EQ(counters_.bad_requests.load(), 6u);
}

TEST_F(RouterTable, NumericSeqIs1001WithCmdEchoedAndHandlerNotCalled) {
  Router router;
  int calls = 0;
  router.add("ping", [&](CommandContext&, const json::value&) {
    ++calls;
    return Reply{Code::kOk, "pong"};
  });
  EXPECT_EQ(
      handle(router, R"({"seq":12,"cmd":"ping","data":{}})"),
      R"({"seq":"","cmd":"ping","response":{"code":1001,"codeMsg":"参数不合法","data":null}})");
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(counters_.bad_requests.load(), 1u);
}

TEST_F(RouterTable, NonStringCmdIs1001WithSeqEchoed) {
  Router router;
  EXPECT_EQ(handle(router, R"({"seq":"9","cmd":7})"),
            R"({"seq":"9","cmd":"","response":{"code":1001,"codeMsg":"参数不合法","data":null}})");
}

TEST_F(RouterTable, ThrowingHandlerGives1004AndDoesNotPropagate) {
  Router router;
  router.add("boom", [](CommandContext&, const json::value&) -> Reply {
    throw std::runtime_error("handler bug");
  });
  router.add("ok", [](CommandContext&, const json::value&) { return Reply{Code::kOk, nullptr}; });
  std::string out;
  EXPECT_NO_THROW(out = handle(router, R"({"seq":"b","cmd":"boom","data":{}})"));
  EXPECT_EQ(
      out, R"({"seq":"b","cmd":"boom","response":{"code":1004,"codeMsg":"系统错误","data":null}})");
  // The router is still usable afterwards.
  EXPECT_EQ(parse_response(handle(router, R"({"seq":"c","cmd":"ok"})")).code, 200u);
}

// Disabled: Router::handle catches only std::exception, so a handler throwing anything else
// (e.g. `throw 42;`) propagates out of handle(). Enable once router.cpp adds `catch (...)`.
TEST_F(RouterTable, NonStandardExceptionInHandlerGives1004) {
  Router router;
  router.add("boom", [](CommandContext&, const json::value&) -> Reply { throw 42; });
  std::string out;
  EXPECT_NO_THROW(out = handle(router, R"({"seq":"b","cmd":"boom"})"));
  EXPECT_EQ(
      out, R"({"seq":"b","cmd":"boom","response":{"code":1004,"codeMsg":"系统错误","data":null}})");
}

TEST_F(RouterTable, JsonAccessErrorInHandlerGives1004) {
  // A handler that trusts its input (data.at on a missing key / wrong type) throws from Boost.JSON.
  Router router;
  router.add("strict", [](CommandContext&, const json::value& data) {
    return Reply{Code::kOk, data.at("missing").as_string()};
  });
  std::string out;
  EXPECT_NO_THROW(out = handle(router, R"({"seq":"1","cmd":"strict","data":{}})"));
  EXPECT_EQ(parse_response(out).code, 1004u);
  EXPECT_NO_THROW(out = handle(router, R"({"seq":"2","cmd":"strict","data":5})"));
  EXPECT_EQ(parse_response(out).code, 1004u);
}

TEST_F(RouterTable, BadRequestsCountsOnly1001And1010) {
  Router router;
  router.add("ok", [](CommandContext&, const json::value&) { return Reply{Code::kOk, nullptr}; });
  router.add("refuse", [](CommandContext&, const json::value&) {
    return Reply{Code::kNotLoggedIn, nullptr};
  });
  handle(router, R"({"seq":"1","cmd":"ok"})");
  handle(router, R"({"seq":"1","cmd":"refuse"})");
  EXPECT_EQ(counters_.bad_requests.load(), 0u);
  handle(router, "nope");
  EXPECT_EQ(counters_.bad_requests.load(), 1u);
  handle(router, R"({"seq":"1","cmd":"missing"})");
  EXPECT_EQ(counters_.bad_requests.load(), 2u);
}

// --- Default router: the gowebsocket commands ---

class DefaultRouter : public RouterFixture {
 protected:
  // Sends `text` on conn_ and returns the parsed response.
  Parsed send(std::string_view text, TimePoint now = kStart) {
    return parse_response(handle(router_, text, conn_, now));
  }
  uint32_t login_code(std::string_view data_json) {
    std::string text = R"({"seq":"L","cmd":"login","data":)" + std::string(data_json) + "}";
    Parsed p = send(text);
    EXPECT_EQ(p.seq, "L");
    EXPECT_EQ(p.cmd, "login");
    EXPECT_TRUE(p.data.is_null());
    return p.code;
  }

  Router router_ = make_default_router();
};

TEST_F(DefaultRouter, LoginSampleExactBytes) {
  EXPECT_EQ(
      handle(
          router_,
          R"({"seq":"1565336219141-266129","cmd":"login","data":{"userID":"马远","appID":101}})"),
      R"({"seq":"1565336219141-266129","cmd":"login","response":)"
      R"({"code":200,"codeMsg":"Success","data":null}})");
  EXPECT_TRUE(shard().logged_in(conn_));
  EXPECT_TRUE(hub_.directory().online(101, "马远"));
  EXPECT_EQ(counters_.logins.load(), 1u);
}

TEST_F(DefaultRouter, LoginUnknownAppIs1003ExactBytes) {
  EXPECT_EQ(handle(router_, R"({"seq":"2","cmd":"login","data":{"userID":"u1","appID":999}})"),
            R"({"seq":"2","cmd":"login","response":{"code":1003,"codeMsg":"未授权","data":null}})");
  EXPECT_FALSE(shard().logged_in(conn_));
  EXPECT_EQ(hub_.directory().user_count(), 0u);
}

TEST_F(DefaultRouter, LoginEmptyUserIs1002ExactBytes) {
  EXPECT_EQ(
      handle(router_, R"({"seq":"3","cmd":"login","data":{"userID":"","appID":101}})"),
      R"({"seq":"3","cmd":"login","response":{"code":1002,"codeMsg":"非法的用户ID","data":null}})");
}

TEST_F(DefaultRouter, SecondLoginIs1009AndKeepsTheFirstIdentity) {
  ASSERT_EQ(login_code(R"({"userID":"u1","appID":101})"), 200u);
  EXPECT_EQ(
      handle(router_, R"({"seq":"4","cmd":"login","data":{"userID":"u1","appID":101}})"),
      R"({"seq":"4","cmd":"login","response":{"code":1009,"codeMsg":"操作失败","data":null}})");
  EXPECT_EQ(login_code(R"({"userID":"other","appID":102})"), 1009u);
  EXPECT_TRUE(hub_.directory().online(101, "u1"));
  EXPECT_FALSE(hub_.directory().online(0, "other"));
  EXPECT_EQ(hub_.directory().connection_count(), 1u);
  EXPECT_EQ(counters_.logins.load(), 1u);
}

TEST_F(DefaultRouter, ValidationComesBeforeTheAlreadyLoggedInCheck) {
  ASSERT_EQ(login_code(R"({"userID":"u1","appID":101})"), 200u);
  EXPECT_EQ(login_code(R"({"userID":"","appID":101})"), 1002u);
  EXPECT_EQ(login_code(R"({"userID":"u1","appID":999})"), 1003u);
  EXPECT_EQ(login_code(R"({"userID":"u1","appID":"101"})"), 1001u);
  EXPECT_EQ(login_code(R"({"userID":"u1","appID":101})"), 1009u);
  EXPECT_TRUE(shard().logged_in(conn_));
}

TEST_F(DefaultRouter, ValidationOrderUserIdBeforeAppId) {
  EXPECT_EQ(login_code(R"({"appID":999,"userID":""})"), 1002u);
  EXPECT_EQ(login_code(R"({"appID":999})"), 1002u);
}

TEST_F(DefaultRouter, TypeErrorsComeBeforeUserIdAndAppIdChecks) {
  EXPECT_EQ(login_code(R"({"appID":"x","userID":""})"), 1001u);
  EXPECT_EQ(login_code(R"({"appID":999,"userID":5})"), 1001u);
}

TEST_F(DefaultRouter, UserIdLengthLimitIsInBytes) {
  EXPECT_EQ(login_code(R"({"appID":101,"userID":"aaaaaaaaaaaaaaaaaaaa"})"), 1002u);  // 20 ASCII
  // Ten 2-byte characters: 10 characters but 20 bytes.
  EXPECT_EQ(login_code(R"({"appID":101,"userID":"éééééééééé"})"), 1002u);
  EXPECT_FALSE(shard().logged_in(conn_));
  // Nine 2-byte characters and one ASCII: 19 bytes, accepted.
  EXPECT_EQ(login_code(R"({"appID":101,"userID":"éééééééééa"})"), 200u);
  EXPECT_TRUE(hub_.directory().online(101, "éééééééééa"));
}

TEST_F(DefaultRouter, NineteenAsciiBytesAccepted) {
  EXPECT_EQ(login_code(R"({"appID":101,"userID":"aaaaaaaaaaaaaaaaaaa"})"), 200u);
}

TEST_F(DefaultRouter, DataOfTheWrongTypeIs1001) {
  EXPECT_EQ(login_code(R"("u1")"), 1001u);
  EXPECT_EQ(login_code("[]"), 1001u);
  EXPECT_EQ(login_code("101"), 1001u);
  EXPECT_EQ(login_code("true"), 1001u);
}

TEST_F(DefaultRouter, AppIdOfTheWrongTypeOrRangeIs1001) {
  for (const char* app : {R"("101")", "-1", "101.0", "101.5", "1e2", "4294967296",
                          "18446744073709551615", "true", "[]", "{}"}) {
    SCOPED_TRACE(app);
    EXPECT_EQ(login_code(std::string(R"({"userID":"u1","appID":)") + app + "}"), 1001u);
  }
  EXPECT_FALSE(shard().logged_in(conn_));
}

TEST_F(DefaultRouter, AppIdInRangeButNotConfiguredIs1003) {
  EXPECT_EQ(login_code(R"({"userID":"u1","appID":4294967295})"), 1003u);
  EXPECT_EQ(login_code(R"({"userID":"u1","appID":0})"), 1003u);
  EXPECT_EQ(login_code(R"({"userID":"u1"})"), 1003u);  // missing appID reads as 0
  EXPECT_EQ(login_code(R"({"userID":"u1","appID":100})"), 1003u);
}

TEST_F(DefaultRouter, EveryConfiguredAppIdIsAccepted) {
  for (AppId app : {101u, 102u, 103u, 104u}) {
    FakePeer peer;
    ConnId id = shard().add(peer, kStart);
    std::string text =
        R"({"seq":"1","cmd":"login","data":{"userID":"u","appID":)" + std::to_string(app) + "}}";
    EXPECT_EQ(parse_response(handle(router_, text, id, kStart)).code, 200u) << app;
    EXPECT_TRUE(hub_.directory().online(app, "u"));
    shard().unlink(id, EndReason::kClientClose);
  }
}

TEST_F(DefaultRouter, OtherFieldTypesAreChecked) {
  EXPECT_EQ(login_code(R"({"userID":"u1","appID":101,"serviceToken":5})"), 1001u);
  EXPECT_EQ(login_code(R"({"userID":["u1"],"appID":101})"), 1001u);
}

TEST_F(DefaultRouter, DataNullOrMissingIs1002) {
  EXPECT_EQ(login_code("null"), 1002u);
  Parsed p = send(R"({"seq":"M","cmd":"login"})");
  EXPECT_EQ(p.code, 1002u);
  EXPECT_EQ(p.code_msg, "非法的用户ID");
  EXPECT_EQ(login_code("{}"), 1002u);
}

TEST_F(DefaultRouter, ExtraFieldsAreIgnored) {
  EXPECT_EQ(
      login_code(R"({"serviceToken":"t","appID":101,"userID":"u1","extra":{"a":[1]},"x":null})"),
      200u);
  EXPECT_TRUE(hub_.directory().online(101, "u1"));
}

TEST_F(DefaultRouter, NullFieldsReadAsAbsent) {
  EXPECT_EQ(login_code(R"({"serviceToken":null,"appID":101,"userID":null})"), 1002u);
  EXPECT_EQ(login_code(R"({"appID":null,"userID":"u1"})"), 1003u);
}

TEST_F(DefaultRouter, FailedLoginsLeaveTheConnectionLoggedOut) {
  login_code(R"({"appID":999,"userID":"u1"})");
  login_code(R"({"appID":101,"userID":""})");
  login_code(R"({"appID":"101","userID":"u1"})");
  EXPECT_FALSE(shard().logged_in(conn_));
  EXPECT_EQ(hub_.directory().user_count(), 0u);
  EXPECT_EQ(counters_.logins.load(), 0u);
  EXPECT_EQ(queues_.pending(), 0u);  // no enter was broadcast
  EXPECT_EQ(send(R"({"seq":"h","cmd":"heartbeat","data":{}})").code, 1000u);
  EXPECT_EQ(login_code(R"({"appID":101,"userID":"u1"})"), 200u);
}

TEST_F(DefaultRouter, LoginAnnouncesEnterToTheRoomButNotToTheUser) {
  FakePeer other_peer;
  ConnId other = shard().add(other_peer, kStart);
  ASSERT_EQ(parse_response(handle(router_,
                                  R"({"seq":"1","cmd":"login","data":{"userID":"o","appID":101}})",
                                  other, kStart))
                .code,
            200u);
  queues_.drain();
  ASSERT_EQ(login_code(R"({"userID":"马远","appID":101})"), 200u);
  queues_.drain();
  ASSERT_EQ(other_peer.frames.size(), 1u);
  test::Push push = test::parse_push(other_peer.frames[0]);
  EXPECT_EQ(push.cmd, "enter");
  EXPECT_EQ(push.from, "马远");
  EXPECT_EQ(push.msg, "哈喽~");
  EXPECT_EQ(push.code, 200u);
  EXPECT_EQ(push.code_msg, "Ok");
  EXPECT_TRUE(peer_.frames.empty());  // no enter to yourself
}

TEST_F(DefaultRouter, HeartbeatNotLoggedInIs1000ExactBytes) {
  EXPECT_EQ(
      handle(router_, R"({"seq":"5","cmd":"heartbeat","data":{}})"),
      R"({"seq":"5","cmd":"heartbeat","response":{"code":1000,"codeMsg":"未登录","data":null}})");
}

TEST_F(DefaultRouter, HeartbeatLoggedInIs200ExactBytes) {
  ASSERT_EQ(login_code(R"({"userID":"u1","appID":101})"), 200u);
  EXPECT_EQ(
      handle(router_, R"({"seq":"6","cmd":"heartbeat","data":{}})"),
      R"({"seq":"6","cmd":"heartbeat","response":{"code":200,"codeMsg":"Success","data":null}})");
  EXPECT_EQ(send(R"({"seq":"6","cmd":"heartbeat","data":{"userID":"someone-else"}})").code, 200u);
  EXPECT_EQ(send(R"({"seq":"6","cmd":"heartbeat","data":null})").code, 200u);
  EXPECT_EQ(send(R"({"seq":"6","cmd":"heartbeat"})").code, 200u);
}

TEST_F(DefaultRouter, HeartbeatWithNonObjectDataIs1001) {
  ASSERT_EQ(login_code(R"({"userID":"u1","appID":101})"), 200u);
  for (const char* data : {R"("x")", "5", "[]", "true"}) {
    SCOPED_TRACE(data);
    Parsed p = send(std::string(R"({"seq":"h","cmd":"heartbeat","data":)") + data + "}");
    EXPECT_EQ(p.code, 1001u);
    EXPECT_EQ(p.seq, "h");
    EXPECT_EQ(p.cmd, "heartbeat");
  }
  EXPECT_EQ(send(R"({"seq":"h","cmd":"heartbeat","data":{"userID":5}})").code, 1001u);
}

TEST_F(DefaultRouter, HeartbeatRefreshesLiveness) {
  const auto timeout = hub_.liveness().heartbeat_timeout;
  ASSERT_EQ(login_code(R"({"userID":"u1","appID":101})"), 200u);  // login at kStart
  ASSERT_EQ(send(R"({"seq":"h","cmd":"heartbeat","data":{}})", kStart + timeout / 2).code, 200u);
  shard().tick(kStart + timeout);
  EXPECT_TRUE(shard().contains(conn_));
  shard().tick(kStart + timeout / 2 + timeout);
  EXPECT_FALSE(shard().contains(conn_));
  EXPECT_EQ(counters_.heartbeat_timeouts.load(), 1u);
}

TEST_F(DefaultRouter, LoginCountsAsAHeartbeat) {
  const auto timeout = hub_.liveness().heartbeat_timeout;
  CommandContext ctx{shard(), conn_, app_ids_, kStart + timeout / 2};
  ASSERT_EQ(
      parse_response(
          router_.handle(ctx, R"({"seq":"1","cmd":"login","data":{"userID":"u","appID":101}})",
                         counters_))
          .code,
      200u);
  shard().tick(kStart + timeout);
  EXPECT_TRUE(shard().contains(conn_));
  shard().tick(kStart + timeout / 2 + timeout);
  EXPECT_FALSE(shard().contains(conn_));
}

TEST_F(DefaultRouter, PingBeforeLoginExactBytes) {
  EXPECT_EQ(
      handle(router_, R"({"seq":"7","cmd":"ping","data":{}})"),
      R"({"seq":"7","cmd":"ping","response":{"code":200,"codeMsg":"Success","data":"pong"}})");
  EXPECT_FALSE(shard().logged_in(conn_));
}

TEST_F(DefaultRouter, PingWithoutDataOrSeq) {
  EXPECT_EQ(handle(router_, R"({"cmd":"ping"})"),
            R"({"seq":"","cmd":"ping","response":{"code":200,"codeMsg":"Success","data":"pong"}})");
}

TEST_F(DefaultRouter, PingAfterLogin) {
  ASSERT_EQ(login_code(R"({"userID":"u1","appID":101})"), 200u);
  Parsed p = send(R"({"seq":"p","cmd":"ping","data":{}})");
  EXPECT_EQ(p.code, 200u);
  EXPECT_EQ(p.data, json::value("pong"));
}

TEST_F(DefaultRouter, UnknownCommandExactBytes) {
  EXPECT_EQ(
      handle(router_, R"({"seq":"8","cmd":"dance","data":{}})"),
      R"({"seq":"8","cmd":"dance","response":{"code":1010,"codeMsg":"路由不存在","data":null}})");
}

TEST_F(DefaultRouter, NotJsonIs1001) {
  EXPECT_EQ(handle(router_, "not json"),
            R"({"seq":"","cmd":"","response":{"code":1001,"codeMsg":"参数不合法","data":null}})");
  EXPECT_EQ(counters_.bad_requests.load(), 1u);
}

TEST_F(DefaultRouter, CommandsOnAnUnlinkedConnectionDoNotResurrectIt) {
  ASSERT_TRUE(shard().unlink(conn_, EndReason::kNetworkError));
  Parsed login = parse_response(handle(
      router_, R"({"seq":"1","cmd":"login","data":{"userID":"u1","appID":101}})", conn_, kStart));
  EXPECT_NE(login.code, 200u);
  EXPECT_EQ(send(R"({"seq":"2","cmd":"heartbeat","data":{}})").code, 1000u);
  EXPECT_EQ(send(R"({"seq":"3","cmd":"ping"})").code, 200u);
  EXPECT_FALSE(shard().contains(conn_));
  EXPECT_EQ(shard().size(), 0u);
  EXPECT_EQ(hub_.directory().user_count(), 0u);
  EXPECT_EQ(hub_.directory().connection_count(), 0u);
  EXPECT_EQ(queues_.pending(), 0u);
}

}  // namespace
}  // namespace imgate
