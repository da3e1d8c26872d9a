// Unit tests for the token-mode commands (src/protocol/commands.cpp): login with a token,
// refresh, the failed-login limit, expiry through Shard::tick, publish and users, against a real
// Hub/Shard with a fake CommandServices.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <string>
#include <vector>

#include "../common/jwt_sign.hpp"
#include "fake_peer.hpp"
#include "protocol/envelope.hpp"
#include "protocol/router.hpp"
#include "security/token.hpp"

namespace imgate {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;
using test::FakePeer;
using test::TaskQueues;

const TimePoint kStart{std::chrono::hours(1)};
const int64_t kUnixNow = 1'800'000'000;  // the fake wall clock

class FakeServices final : public CommandServices {
 public:
  const TokenVerifier* tokens() const override { return verifier; }
  int64_t unix_now() const override { return now; }
  void publish_room(AppId app, std::string from, std::string msg_id, std::string message,
                    std::function<void(Reply)> done) override {
    published.push_back({app, std::move(from), std::move(msg_id), std::move(message)});
    done(Reply{Code::kOk, json::object{{"sendResults", true}}});
  }
  void send_later(ConnId conn, std::string text) override { later.emplace_back(conn, std::move(text)); }
  void list_room_users(AppId app,
                       std::function<void(bool, std::vector<std::string>)> done) override {
    listed.push_back(app);
    done(presence_up, room_users);
  }

  struct Published {
    AppId app;
    std::string from, msg_id, message;
  };
  const TokenVerifier* verifier = nullptr;
  int64_t now = kUnixNow;
  std::vector<Published> published;
  std::vector<std::pair<ConnId, std::string>> later;
  std::vector<AppId> listed;  // rooms list_room_users was asked for
  std::vector<std::string> room_users;
  bool presence_up = true;
};

struct Answer {
  uint32_t code = 0;
  json::value data;
};

Answer answer_of(const std::string& text) {
  const json::value v = json::parse(text);
  const auto& r = v.at("response").as_object();
  return {static_cast<uint32_t>(r.at("code").to_number<uint64_t>()), r.at("data")};
}

class TokenCommands : public ::testing::Test {
 protected:
  TokenCommands()
      : verifier_(test::kTestSecret, "", 0s),
        hub_(1, LivenessSettings{3600s, 3600s}, counters_, kStart),
        queues_(1),
        router_(make_default_router()) {
    hub_.set_poster(queues_.poster());
    hub_.set_presence_frames(make_presence_push);
    services_.verifier = &verifier_;
    conn_ = shard().add(peer_, kStart);
  }

  Shard& shard() { return hub_.shard(0); }

  // Sends one request; `close_code` receives what the handler asked for.
  Answer send(const json::object& request, uint16_t* close_code = nullptr) {
    CommandContext ctx{shard(), conn_, app_ids_, kStart};
    ctx.services = &services_;
    ctx.max_failed_logins = services_.verifier ? 5 : 0;
    const std::string text = router_.handle(ctx, json::serialize(request), counters_);
    if (close_code) *close_code = ctx.close_code;
    if (text.empty()) return {};
    return answer_of(text);
  }

  Answer login(std::string_view token, std::string_view user = "alice", AppId app = 101,
               uint16_t* close_code = nullptr) {
    return send({{"seq", "1"}, {"cmd", "login"},
                 {"data", {{"serviceToken", token}, {"appID", app}, {"userID", user}}}},
                close_code);
  }

  std::string token(std::string_view sub, int64_t ttl, json::object extra = {}) {
    json::object claims{{"sub", sub}, {"exp", kUnixNow + ttl}};
    for (const auto& kv : extra) claims[kv.key()] = kv.value();
    return test::mint("HS256", claims);
  }

  test::QuietLogs quiet_;
  TokenVerifier verifier_;
  Counters counters_;
  Hub hub_;
  TaskQueues queues_;
  Router router_;
  FakeServices services_;
  FakePeer peer_;
  ConnId conn_ = 0;
  std::vector<AppId> app_ids_{101, 102, 103, 104};
};

TEST_F(TokenCommands, LoginWithAValidTokenAnswersItsExpiry) {
  const Answer a = login(token("alice", 600));
  EXPECT_EQ(a.code, 200u);
  EXPECT_EQ(a.data.at("exp").to_number<int64_t>(), kUnixNow + 600);
  EXPECT_TRUE(shard().logged_in(conn_));
  EXPECT_EQ(shard().token_deadline(conn_), kStart + 600s);
}

TEST_F(TokenCommands, LoginRefusalsSay1003WithTheReasonAndLeaveTheConnectionOut) {
  struct Case {
    std::string token, user;
    AppId app;
    std::string error;
  };
  const Case cases[] = {
      {"", "alice", 101, "token required"},
      {token("bob", 600), "alice", 101, "token sub does not match userID"},
      {token("alice", 600, {{"appIDs", json::array{102}}}), "alice", 101,
       "appID not granted by the token"},
      {token("alice", -1), "alice", 101, "token expired"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.error);
    // Each on a fresh connection: the failed-login limit is per connection.
    conn_ = shard().add(peer_, kStart);
    const Answer a = login(c.token, c.user, c.app);
    EXPECT_EQ(a.code, 1003u);
    EXPECT_EQ(a.data.at("error").as_string(), c.error);
    EXPECT_FALSE(shard().logged_in(conn_));
  }
  EXPECT_EQ(counters_.token_rejections.load(), 4u);
  EXPECT_EQ(login(token("alice", 600, {{"appIDs", json::array{101}}})).code, 200u);
}

TEST_F(TokenCommands, AnUnconfiguredAppIdIsRefusedWithAReasonAsAFailedLogin) {
  uint16_t close_code = 0;
  for (const AppId app : {999u, 0u, 105u, 4294967295u}) {
    SCOPED_TRACE(app);
    const Answer a = login(token("alice", 600), "alice", app, &close_code);
    EXPECT_EQ(a.code, 1003u);
    ASSERT_TRUE(a.data.is_object());
    EXPECT_EQ(a.data.at("error").as_string(), "appID is not configured");
    EXPECT_EQ(close_code, 0);
  }
  EXPECT_FALSE(shard().logged_in(conn_));
  EXPECT_EQ(counters_.token_rejections.load(), 0u);  // the token was not looked at
  // Failed logins all the same: the fifth asks for the policy close.
  EXPECT_EQ(login(token("alice", 600), "alice", 999, &close_code).code, 1003u);
  EXPECT_EQ(close_code, close_code::kPolicyViolation);
}

TEST_F(TokenCommands, DefaultModeAnswersAnUnconfiguredAppIdWithNullDataAsUpstream) {
  services_.verifier = nullptr;
  const Answer a = login("", "alice", 999);
  EXPECT_EQ(a.code, 1003u);
  EXPECT_TRUE(a.data.is_null());
}

TEST_F(TokenCommands, TheFifthRefusedLoginAsksForAPolicyClose) {
  uint16_t close_code = 0;
  for (int i = 1; i <= 4; ++i) {
    EXPECT_EQ(login("garbage", "alice", 101, &close_code).code, 1003u);
    EXPECT_EQ(close_code, 0) << i;
  }
  // Other refusals (a bad userID) count too.
  EXPECT_EQ(login(token("alice", 600), "", 101, &close_code).code, 1002u);
  EXPECT_EQ(close_code, close_code::kPolicyViolation);
  EXPECT_EQ(counters_.limit_closes[static_cast<std::size_t>(Limit::kFailedLogins)].load(), 1u);
}

TEST_F(TokenCommands, DefaultModeIgnoresTheTokenAndNeverCountsRefusals) {
  services_.verifier = nullptr;
  uint16_t close_code = 0;
  for (int i = 0; i < 10; ++i) EXPECT_EQ(login("x", "", 101, &close_code).code, 1002u);
  EXPECT_EQ(close_code, 0);
  const Answer a = login("not-a-token");
  EXPECT_EQ(a.code, 200u);
  EXPECT_TRUE(a.data.is_null());  // upstream's reply
  EXPECT_EQ(shard().token_deadline(conn_), std::nullopt);
  EXPECT_EQ(send({{"seq", "2"}, {"cmd", "refresh"}, {"data", {{"serviceToken", "x"}}}}).code, 1010u);
}

TEST_F(TokenCommands, ExpiredConnectionsAreClosedWith4001AtTheirDeadline) {
  ASSERT_EQ(login(token("alice", 10)).code, 200u);
  shard().tick(kStart + 9s);
  EXPECT_TRUE(peer_.closes.empty());
  shard().tick(kStart + 10s);
  ASSERT_EQ(peer_.closes.size(), 1u);
  EXPECT_EQ(peer_.closes[0].first, close_code::kTokenExpired);
  EXPECT_FALSE(shard().contains(conn_));
  EXPECT_EQ(counters_.closed_by_reason[static_cast<std::size_t>(EndReason::kExpired)].load(), 1u);
}

TEST_F(TokenCommands, RefreshBeforeTheDeadlineMovesIt) {
  ASSERT_EQ(login(token("alice", 10)).code, 200u);
  const Answer r = send({{"seq", "2"}, {"cmd", "refresh"},
                         {"data", {{"serviceToken", token("alice", 100)}}}});
  EXPECT_EQ(r.code, 200u);
  EXPECT_EQ(r.data.at("exp").to_number<int64_t>(), kUnixNow + 100);
  shard().tick(kStart + 50s);
  EXPECT_TRUE(peer_.closes.empty());
  shard().tick(kStart + 100s);
  ASSERT_EQ(peer_.closes.size(), 1u);
  EXPECT_EQ(peer_.closes[0].first, close_code::kTokenExpired);
  EXPECT_EQ(counters_.token_refreshes.load(), 1u);
}

TEST_F(TokenCommands, RefreshRefusalsKeepTheOldDeadline) {
  EXPECT_EQ(send({{"seq", "2"}, {"cmd", "refresh"}, {"data", {{"serviceToken", token("alice", 100)}}}})
                .code,
            1000u);  // not logged in
  ASSERT_EQ(login(token("alice", 10)).code, 200u);
  const std::pair<std::string, std::string> refusals[] = {
      {token("bob", 100), "token sub does not match userID"},
      {token("alice", 100, {{"appIDs", json::array{102}}}), "appID not granted by the token"},
      {token("alice", -5), "token expired"},
      {"a.b.c", "token header is not base64url JSON"},
  };
  for (const auto& [t, error] : refusals) {
    const Answer r = send({{"seq", "3"}, {"cmd", "refresh"}, {"data", {{"serviceToken", t}}}});
    EXPECT_EQ(r.code, 1003u);
    EXPECT_EQ(r.data.at("error").as_string(), error);
  }
  EXPECT_EQ(shard().token_deadline(conn_), kStart + 10s);
  shard().tick(kStart + 10s);
  ASSERT_EQ(peer_.closes.size(), 1u);
}

TEST_F(TokenCommands, UnlinkDropsTheDeadline) {
  ASSERT_EQ(login(token("alice", 10)).code, 200u);
  ASSERT_TRUE(shard().unlink(conn_, EndReason::kClientClose));
  EXPECT_EQ(shard().token_deadline(conn_), std::nullopt);
  shard().tick(kStart + 20s);  // nothing left to expire
  EXPECT_TRUE(peer_.closes.empty());
}

TEST_F(TokenCommands, PublishGoesToTheOwnRoomAndAnswersLater) {
  const json::object publish{{"seq", "9"}, {"cmd", "publish"},
                             {"data", {{"message", "hi all"}, {"msgID", "m-1"}}}};
  EXPECT_EQ(send(publish).code, 1000u);  // not logged in
  ASSERT_EQ(login(token("alice", 600, {{"appIDs", json::array{103}}}), "alice", 103).code, 200u);
  EXPECT_EQ(send({{"seq", "8"}, {"cmd", "publish"}, {"data", {{"message", ""}}}}).code, 1001u);
  EXPECT_EQ(send({{"seq", "8"}, {"cmd", "publish"}, {"data", {{"message", 5}}}}).code, 1001u);
  EXPECT_EQ(send(publish).code, 0u);  // no immediate answer
  ASSERT_EQ(services_.published.size(), 1u);
  EXPECT_EQ(services_.published[0].app, 103u);
  EXPECT_EQ(services_.published[0].from, "alice");
  EXPECT_EQ(services_.published[0].msg_id, "m-1");
  EXPECT_EQ(services_.published[0].message, "hi all");
  ASSERT_EQ(services_.later.size(), 1u);
  EXPECT_EQ(services_.later[0].first, conn_);
  const json::value reply = json::parse(services_.later[0].second);
  EXPECT_EQ(reply.at("seq").as_string(), "9");
  EXPECT_EQ(reply.at("cmd").as_string(), "publish");
  EXPECT_EQ(reply.at("response").at("code").to_number<int>(), 200);
}

TEST_F(TokenCommands, UsersListsTheOwnRoomOnlyAndAnswersLater) {
  const json::object users{{"seq", "5"}, {"cmd", "users"}, {"data", json::object{}}};
  EXPECT_EQ(send(users).code, 1000u);  // not logged in
  EXPECT_TRUE(services_.listed.empty());
  ASSERT_EQ(login(token("alice", 600, {{"appIDs", json::array{103, 104}}}), "alice", 103).code, 200u);
  services_.room_users = {"carol", "alice", "bob"};
  // Another room, even one the token grants, is refused; so is malformed data.
  const Answer other = send({{"seq", "6"}, {"cmd", "users"}, {"data", {{"appID", 104}}}});
  EXPECT_EQ(other.code, 1003u);
  EXPECT_EQ(other.data.at("error").as_string(), "only the connection's own room");
  EXPECT_EQ(send({{"seq", "6"}, {"cmd", "users"}, {"data", {{"appID", "103"}}}}).code, 1001u);
  EXPECT_EQ(send({{"seq", "6"}, {"cmd", "users"}, {"data", "x"}}).code, 1001u);
  EXPECT_TRUE(services_.listed.empty());

  EXPECT_EQ(send(users).code, 0u);  // no immediate answer
  EXPECT_EQ(send({{"seq", "7"}, {"cmd", "users"}, {"data", {{"appID", 103}}}}).code, 0u);
  EXPECT_EQ(send({{"seq", "8"}, {"cmd", "users"}}).code, 0u);  // data absent
  EXPECT_EQ(services_.listed, (std::vector<AppId>{103, 103, 103}));
  ASSERT_EQ(services_.later.size(), 3u);
  EXPECT_EQ(services_.later[0].first, conn_);
  const json::value reply = json::parse(services_.later[0].second);
  EXPECT_EQ(reply.at("seq").as_string(), "5");
  EXPECT_EQ(reply.at("cmd").as_string(), "users");
  EXPECT_EQ(reply.at("response").at("code").to_number<int>(), 200);
  EXPECT_EQ(reply.at("response").at("codeMsg").as_string(), "Success");
  EXPECT_EQ(reply.at("response").at("data"),
            json::parse(R"({"userCount":3,"userList":["alice","bob","carol"]})"));
}

TEST_F(TokenCommands, UsersListsAtMostTheCapAndSaysTruncated) {
  ASSERT_EQ(login(token("alice", 600)).code, 200u);
  for (std::size_t i = kMaxUsersListed + 500; i-- > 0;) services_.room_users.push_back("u" + std::to_string(100000 + i));
  EXPECT_EQ(send({{"seq", "5"}, {"cmd", "users"}, {"data", nullptr}}).code, 0u);
  ASSERT_EQ(services_.later.size(), 1u);
  const json::value data = json::parse(services_.later[0].second).at("response").at("data");
  EXPECT_EQ(data.at("userCount").to_number<std::size_t>(), kMaxUsersListed + 500);
  EXPECT_EQ(data.at("truncated"), json::value(true));
  const json::array& list = data.at("userList").as_array();
  ASSERT_EQ(list.size(), kMaxUsersListed);
  EXPECT_EQ(list.front().as_string(), "u100000");  // the first in byte order
  EXPECT_EQ(list.back().as_string(), "u" + std::to_string(100000 + kMaxUsersListed - 1));
}

TEST_F(TokenCommands, UsersAnswers1004WhenPresenceIsUnavailable) {
  ASSERT_EQ(login(token("alice", 600)).code, 200u);
  services_.presence_up = false;
  EXPECT_EQ(send({{"seq", "5"}, {"cmd", "users"}, {"data", json::object{}}}).code, 0u);
  ASSERT_EQ(services_.later.size(), 1u);
  const json::value r = json::parse(services_.later[0].second).at("response");
  EXPECT_EQ(r.at("code").to_number<int>(), 1004);
  EXPECT_EQ(r.at("data").at("error").as_string(), "redis unavailable");
}

// Every order of a token connection's events: refresh, the old deadline passing, the new deadline
// passing, a client close, a duplicate close. Whatever the order the connection is unlinked
// exactly once, closed with 4001 only when a deadline passed while it was still open (and the
// refresh had not moved it yet), and nothing is left in the deadline index.
TEST(TokenInterleave, EveryOrderOfRefreshExpiryAndCloseEndsOnce) {
  enum Ev { kRefresh, kOldDeadline, kNewDeadline, kClose, kCloseAgain };
  std::vector<Ev> order{kRefresh, kOldDeadline, kNewDeadline, kClose, kCloseAgain};
  test::QuietLogs quiet;
  TokenVerifier verifier(test::kTestSecret, "", 0s);
  int orders = 0;
  do {
    SCOPED_TRACE(::testing::PrintToString(order));
    Counters counters;
    Hub hub(1, LivenessSettings{3600s, 3600s}, counters, kStart);
    TaskQueues queues(1);
    hub.set_poster(queues.poster());
    hub.set_presence_frames(make_presence_push);
    FakeServices services;
    services.verifier = &verifier;
    FakePeer peer;
    Shard& shard = hub.shard(0);
    const ConnId conn = shard.add(peer, kStart);
    const Router router = make_default_router();
    TimePoint now = kStart;
    auto run = [&](const json::object& request) {
      CommandContext ctx{shard, conn, std::vector<AppId>{101}, now};
      ctx.services = &services;
      ctx.max_failed_logins = 5;
      return router.handle(ctx, json::serialize(request), counters);
    };
    auto mint_for = [&](int64_t ttl) {
      return test::mint("HS256", {{"sub", "u"}, {"exp", kUnixNow + ttl}});
    };
    ASSERT_NE(run({{"seq", "1"}, {"cmd", "login"},
                   {"data", {{"serviceToken", mint_for(10)}, {"appID", 101}, {"userID", "u"}}}})
                  .find("\"code\":200"),
              std::string::npos);
    bool open = true, refreshed = false, expired = false;
    int true_unlinks = 0;
    for (Ev e : order) {
      switch (e) {
        case kRefresh: {
          const std::string text = run({{"seq", "2"}, {"cmd", "refresh"},
                                        {"data", {{"serviceToken", mint_for(100)}}}});
          // An ended connection is no longer logged in: 1000, and nothing changes.
          EXPECT_NE(text.find(open ? "\"code\":200" : "\"code\":1000"), std::string::npos) << text;
          if (open) refreshed = true;
          break;
        }
        case kOldDeadline:
        case kNewDeadline: {
          const TimePoint at = kStart + (e == kOldDeadline ? 10s : 100s);
          now = std::max(now, at);
          services.now = kUnixNow + (now - kStart) / 1s;
          shard.tick(now);
          const bool due = open && (e == kNewDeadline || !refreshed || now >= kStart + 100s);
          if (due) {
            open = false;
            expired = true;
            ++true_unlinks;
          }
          break;
        }
        case kClose:
        case kCloseAgain:
          if (shard.unlink(conn, EndReason::kClientClose)) ++true_unlinks;
          if (open) open = false;
          break;
      }
      EXPECT_EQ(shard.contains(conn), open);
      EXPECT_EQ(shard.token_deadlines(), open ? 1u : 0u);
    }
    EXPECT_EQ(true_unlinks, 1);
    EXPECT_EQ(peer.closes.size(), expired ? 1u : 0u);
    if (expired) {
      EXPECT_EQ(peer.closes[0].first, close_code::kTokenExpired);
    }
    EXPECT_EQ(counters.connections_closed.load(), 1u);
    queues.drain();
    EXPECT_EQ(hub.directory().user_count(), 0u);
    ++orders;
  } while (std::next_permutation(order.begin(), order.end()));
  EXPECT_EQ(orders, 120);
}

}  // namespace
}  // namespace imgate
