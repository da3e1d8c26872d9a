// enter/exit pushes, users with several connections, and cleanup of the user
// index whatever way connections end (spec §2 Pushes, §4, §5).
#include <algorithm>
#include <map>
#include <memory>

#include "gateway_process.hpp"
#include "ws_client.hpp"

namespace imgate::test {
namespace {
namespace json = boost::json;

class PresenceTest : public GatewayTest {
 protected:
  void SetUp() override { gw.start(); }

  // A connected client, optionally logged in (app, user).
  std::unique_ptr<WsClient> join(uint32_t app = 0, std::string_view user = "") {
    auto c = std::make_unique<WsClient>();
    c->connect(gw.ws_port());
    if (app != 0) {
      EXPECT_EQ(c->login(app, user), 200) << user;
    }
    return c;
  }
};

// A push as in samples.md: opaque non-empty seq, code 200 "Ok", fixed data.
void expect_presence_push(const std::optional<json::object>& push, std::string_view cmd,
                          std::string_view from) {
  ASSERT_TRUE(push.has_value()) << "no " << cmd << " push from " << from;
  SCOPED_TRACE(json::serialize(*push));
  EXPECT_EQ(cmd_of(*push), cmd);
  EXPECT_NE(seq_of(*push), "<missing>");
  EXPECT_FALSE(seq_of(*push).empty());
  EXPECT_EQ(code_of(*push), 200);
  EXPECT_EQ(code_msg_of(*push), "Ok");
  const json::object expected_data{{"target", ""},
                                   {"type", "text"},
                                   {"msg", cmd == "enter" ? "哈喽~" : "用户已经离开~"},
                                   {"from", from}};
  EXPECT_EQ(data_of(*push), json::value(expected_data));
}

// Every push of `cmd` in `pushes`, as the list of their `from` users.
std::vector<std::string> senders(const std::vector<json::object>& pushes, std::string_view cmd) {
  std::vector<std::string> out;
  for (const auto& p : pushes) {
    if (cmd_of(p) != cmd) continue;
    const json::value data = data_of(p);
    const json::value* from = data.is_object() ? data.get_object().if_contains("from") : nullptr;
    out.emplace_back(from != nullptr && from->is_string() ? from->get_string().c_str() : "?");
  }
  return out;
}

using Users = std::vector<std::string>;

TEST_F(PresenceTest, EnterIsPushedToOtherUsersOfTheSameAppOnly) {
  auto bob = join(101, "bob");
  auto other_app = join(102, "carol");
  auto anonymous = join();
  auto ma = join(101, "马远");

  expect_presence_push(bob->next_push("enter"), "enter", "马远");
  EXPECT_EQ(senders(bob->take_pushes(), "enter"), Users{}) << "exactly one enter";
  EXPECT_TRUE(ma->take_pushes().empty()) << "no enter to the user itself";
  EXPECT_TRUE(other_app->take_pushes().empty()) << "enter crossed into another app";
  EXPECT_TRUE(anonymous->take_pushes().empty()) << "a connection that is not logged in got a push";
}

TEST_F(PresenceTest, ExitIsPushedWhenTheUserClosesGracefully) {
  auto bob = join(101, "bob");
  auto other_app = join(102, "carol");
  auto ma = join(101, "马远");
  expect_presence_push(bob->next_push("enter"), "enter", "马远");

  ASSERT_FALSE(ma->close(1000));
  expect_presence_push(bob->next_push("exit"), "exit", "马远");
  EXPECT_TRUE(gw.wait_for(
      "one user left", [](const State& s) { return s.clients_len() == 2 && s.users_len() == 2; }));
  EXPECT_TRUE(bob->take_pushes().empty());
  EXPECT_TRUE(other_app->take_pushes().empty()) << "exit crossed into another app";
}

TEST_F(PresenceTest, AbruptDropOfLoggedInUserSendsExitAndCleansUp) {
  auto bob = join(101, "bob");
  auto ma = join(101, "马远");
  expect_presence_push(bob->next_push("enter"), "enter", "马远");

  ma->drop();
  expect_presence_push(bob->next_push("exit"), "exit", "马远");
  EXPECT_TRUE(gw.wait_for(
      "only bob left",
      [](const State& s) {
        return s.clients_len() == 1 && s.users_len() == 1 && s.sessions() == 1 &&
               s.users() == Users{"101_bob"};
      },
      5s, true));
  bob->drop();
  EXPECT_TRUE(gw.wait_idle());
}

TEST_F(PresenceTest, UserWithTwoConnectionsIsAnnouncedOnceAndLeavesOnce) {
  auto bob = join(101, "bob");
  auto a1 = join(101, "alice");
  expect_presence_push(bob->next_push("enter"), "enter", "alice");
  auto a2 = join(101, "alice");

  ASSERT_TRUE(gw.wait_for(
      "alice twice, bob once",
      [](const State& s) {
        return s.clients_len() == 3 && s.users_len() == 2 && s.users().size() == 2;
      },
      5s, true));
  EXPECT_EQ(senders(bob->take_pushes(), "enter"), Users{}) << "second connection announced again";
  EXPECT_TRUE(a1->take_pushes().empty()) << "alice got her own enter";
  EXPECT_TRUE(a2->take_pushes().empty()) << "alice got her own enter";

  // Closing one of alice's connections: she is still there.
  a1->drop();
  ASSERT_TRUE(gw.wait_for("alice's first connection gone", [](const State& s) {
    return s.clients_len() == 2 && s.users_len() == 2;
  }));
  EXPECT_EQ(senders(bob->take_pushes(), "exit"), Users{}) << "exit while alice is still connected";
  a2->expect_pong();

  // Closing the last one: exactly one exit.
  ASSERT_FALSE(a2->close(1000));
  expect_presence_push(bob->next_push("exit"), "exit", "alice");
  EXPECT_EQ(senders(bob->take_pushes(), "exit"), Users{});
  EXPECT_TRUE(gw.wait_for(
      "only bob left", [](const State& s) { return s.clients_len() == 1 && s.users_len() == 1; }));
}

TEST_F(PresenceTest, UserReturningAfterLeavingIsAnnouncedAgain) {
  auto bob = join(101, "bob");
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    auto alice = join(101, "alice");
    expect_presence_push(bob->next_push("enter"), "enter", "alice");
    alice->drop();
    expect_presence_push(bob->next_push("exit"), "exit", "alice");
  }
  EXPECT_TRUE(bob->take_pushes().empty());
}

TEST_F(PresenceTest, FailedLoginsAnnounceNobody) {
  auto bob = join(101, "bob");
  auto x = join();
  EXPECT_EQ(x->login(999, "x"), 1003);
  EXPECT_EQ(x->login(101, ""), 1002);
  EXPECT_EQ(code_of(x->request("login", R"({"appID":"101","userID":"x"})")), 1001);
  EXPECT_EQ(x->login(101, "x"), 200);
  EXPECT_EQ(x->login(101, "y"), 1009);
  expect_presence_push(bob->next_push("enter"), "enter", "x");
  EXPECT_TRUE(bob->take_pushes().empty()) << "a failed login was announced";
  const State s = gw.state(true);
  EXPECT_EQ(s.users_len(), 2) << s.dump();
}

TEST_F(PresenceTest, SameUserIdInDifferentAppsIsTwoUsers) {
  auto watcher101 = join(101, "w1");
  auto watcher102 = join(102, "w2");
  auto u101 = join(101, "u");
  auto u102 = join(102, "u");
  expect_presence_push(watcher101->next_push("enter"), "enter", "u");
  expect_presence_push(watcher102->next_push("enter"), "enter", "u");
  ASSERT_TRUE(gw.wait_for("four users", [](const State& s) { return s.users_len() == 4; }));
  auto users = gw.state(true).users();
  std::sort(users.begin(), users.end());
  EXPECT_EQ(users, (Users{"101_u", "101_w1", "102_u", "102_w2"}));

  u101->drop();
  expect_presence_push(watcher101->next_push("exit"), "exit", "u");
  EXPECT_EQ(senders(watcher102->take_pushes(), "exit"), Users{}) << "u left app 101 only";
  u102->expect_pong();
}

TEST_F(PresenceTest, MassDisconnectSendsOneExitPerUserAndLeavesNoStaleEntries) {
  constexpr int kUsers = 30;
  auto observer = join(101, "observer");
  std::vector<std::unique_ptr<WsClient>> users;
  for (int i = 0; i < kUsers; ++i) users.push_back(join(101, "user" + std::to_string(i)));
  ASSERT_TRUE(gw.wait_for("all logged in", [&](const State& s) {
    return s.users_len() == kUsers + 1 && s.clients_len() == kUsers + 1;
  }));
  EXPECT_EQ(senders(observer->take_pushes(), "enter").size(), static_cast<std::size_t>(kUsers));

  for (auto& u : users) u->drop();  // all at once, no close frames
  std::map<std::string, int> exits;
  for (int i = 0; i < kUsers; ++i) {
    auto push = observer->next_push("exit", 5s);
    ASSERT_TRUE(push) << "only " << i << " exits arrived";
    ++exits[senders({*push}, "exit").front()];
  }
  EXPECT_EQ(exits.size(), static_cast<std::size_t>(kUsers));
  EXPECT_TRUE(gw.wait_for("only the observer left", [](const State& s) {
    return s.clients_len() == 1 && s.users_len() == 1 && s.sessions() == 1;
  }));
  EXPECT_EQ(senders(observer->take_pushes(), "exit"), Users{}) << "duplicate exits";
  // The survivors of other users leaving keep being served.
  auto late = join(101, "late");
  expect_presence_push(observer->next_push("enter"), "enter", "late");
}

TEST_F(PresenceTest, LoginImmediatelyFollowedByDisconnectLeavesNothingBehind) {
  // Connect, login and drop without waiting for anything: whatever order the
  // server sees these in, every announced enter gets its exit and the indexes
  // end empty (spec §5 causes 1 and 4).
  constexpr int kRounds = 40;
  auto observer = join(101, "observer");
  for (int i = 0; i < kRounds; ++i) {
    WsClient c;
    c.connect(gw.ws_port());
    ASSERT_FALSE(c.send_text(make_request(
        "l", "login", R"({"appID":101,"userID":"churn)" + std::to_string(i) + R"("})")));
    if (i % 2 == 0) c.drop();
  }  // odd rounds: the destructor drops
  ASSERT_TRUE(gw.wait_for(
      "only the observer left",
      [](const State& s) {
        return s.clients_len() == 1 && s.users_len() == 1 && s.sessions() == 1;
      },
      10s));
  std::map<std::string, int> balance;  // enters minus exits per user
  for (const auto& push : observer->take_pushes()) {
    for (const auto& from : senders({push}, "enter")) ++balance[from];
    for (const auto& from : senders({push}, "exit")) {
      EXPECT_EQ(balance[from], 1) << from << ": exit without a preceding enter";
      --balance[from];
    }
  }
  // An exit may still be on its way to the observer; wait for each missing one.
  const auto outstanding = [&] {
    return std::count_if(balance.begin(), balance.end(), [](const auto& kv) {
      EXPECT_LE(kv.second, 1) << kv.first << " announced more than once";
      return kv.second != 0;
    });
  };
  while (outstanding() > 0) {
    const auto push = observer->next_push("exit", 3s);
    ASSERT_TRUE(push) << outstanding() << " user(s) entered and never left";
    const auto from = senders({*push}, "exit").front();
    ASSERT_EQ(balance[from], 1) << from << ": unexpected exit";
    balance[from] = 0;
  }
  EXPECT_EQ(gw.state(true).users(), Users{"101_observer"});
}

}  // namespace
}  // namespace imgate::test
