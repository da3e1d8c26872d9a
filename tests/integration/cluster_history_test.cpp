// History in cluster mode (issue 10): streams kept in a real redis-server and shared by the
// nodes. A client cut off on one node recovers on another with every missed push once and in
// order; history survives a node restart; an offline user gets its stored messages at another
// node; recoveries under a push rate leave no gap and no duplicate.
#include <atomic>
#include <boost/json.hpp>
#include <thread>

#include "gateway_process.hpp"
#include "stream_helpers.hpp"
#include "redis_process.hpp"
#include "ws_client.hpp"

namespace imgate::test {
namespace {
namespace json = boost::json;

class ClusterHistoryTest : public testing::Test {
 protected:
  void SetUp() override {
    prefix_ = std::string("ith:") +
              testing::UnitTest::GetInstance()->current_test_info()->name() + ":";
    redis.start();
    for (auto& n : nodes) n.start(flags());
    // Both nodes subscribed (a room push published now reaches both).
    ASSERT_TRUE(eventually([&] {
      for (auto& n : nodes) {
        const State state = n.state();  // find() points into it
        const auto* v = state.find({"imgate", "cluster", "redis"});
        if (!v || !v->is_string() || v->as_string() != "up") return false;
      }
      return true;
    }));
  }
  void TearDown() override {
    for (auto& n : nodes) {
      if (n.pid() > 0 && n.running()) {
        EXPECT_TRUE(n.wait_idle());
      }
    }
  }
  Flags flags() const {
    return {{"--redis-addr", redis.addr()}, {"--redis-prefix", prefix_}, {"--node-ttl", "2"},
            {"--history-size", "200"}, {"--ip-upgrade-rate", "0"}};
  }
  json::object send_all(std::size_t node, std::string_view message) {
    return api(nodes[node].http_port(),
               "/user/sendMessageAll?appID=101&userID=backend&message=" + pct(message));
  }

  RedisServer redis;  // first: destroyed after the nodes
  std::string prefix_;
  Gateway nodes[2];
};

TEST_F(ClusterHistoryTest, ACutOffClientRecoversOnAnotherNodeOnceAndInOrder) {
  WsClient a;
  a.connect(nodes[0].ws_port());
  ASSERT_EQ(login(a, "bob").at("code").to_number<int>(), 200);
  const json::object first = send_all(1, "r1");
  EXPECT_EQ(first.at("offset").to_number<int>(), 1);
  auto seen = msgs(a, 1);
  ASSERT_EQ(seen.size(), 1u);
  const std::string epoch = epoch_of(seen[0]);
  EXPECT_EQ(offset_of(seen[0]), 1u);
  a.drop();
  ASSERT_TRUE(nodes[0].wait_for("bob gone", [](const State& s) { return s.users_len() == 0; }));
  for (int i = 2; i <= 4; ++i) send_all(i % 2, "r" + std::to_string(i));
  WsClient b;
  b.connect(nodes[1].ws_port());
  const json::object r = login(b, "bob", json::object{{"room", pos(epoch, 1)}});
  ASSERT_EQ(r.at("code").to_number<int>(), 200);
  EXPECT_EQ(r.at("data").at("recovered").as_bool(), true);
  EXPECT_EQ(r.at("data").at("room").at("offset").to_number<int>(), 4);
  auto missed = msgs(b, 3);
  ASSERT_EQ(missed.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(offset_of(missed[i]), static_cast<uint64_t>(i + 2));
    EXPECT_EQ(push_data(missed[i]).at("msg").as_string(), "r" + std::to_string(i + 2));
    EXPECT_EQ(epoch_of(missed[i]), epoch);
  }
  send_all(0, "r5");
  auto live = msgs(b, 1);
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(offset_of(live[0]), 5u);
  EXPECT_EQ(msg_count(b.take_pushes()), 0u);
}

TEST_F(ClusterHistoryTest, HistorySurvivesANodeRestart) {
  for (int i = 1; i <= 3; ++i) send_all(0, "m" + std::to_string(i));
  const json::object before = api(nodes[0].http_port(), "/user/history?appID=101");
  ASSERT_EQ(before.at("messages").as_array().size(), 3u);
  ASSERT_EQ(nodes[0].terminate(), 0);
  Gateway again;
  again.start(flags());
  ASSERT_TRUE(again.wait_for("redis up", [](const State& s) {
    const auto* v = s.find({"imgate", "cluster", "redis"});
    return v && v->is_string() && v->as_string() == "up";
  }));
  const json::object after = api(again.http_port(), "/user/history?appID=101");
  EXPECT_EQ(after.at("epoch"), before.at("epoch"));
  ASSERT_EQ(after.at("messages").as_array().size(), 3u);
  EXPECT_EQ(after.at("messages").as_array()[2].at("msg").as_string(), "m3");
  WsClient c;
  c.connect(again.ws_port());
  const json::object r =
      login(c, "late", json::object{{"room", pos(std::string(before.at("epoch").as_string()), 1)}});
  EXPECT_EQ(r.at("data").at("recovered").as_bool(), true);
  auto got = msgs(c, 2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(offset_of(got[0]), 2u);
  c.close();
  EXPECT_TRUE(again.wait_idle());
  again.terminate();
}

TEST_F(ClusterHistoryTest, AnOfflineUserGetsItsStoredMessagesAtAnyNode) {
  const json::object stored = api(nodes[0].http_port(),
                                  "/user/sendMessage?appID=101&userID=olga&message=stored");
  EXPECT_EQ(stored.at("sendResults").as_bool(), false);
  EXPECT_EQ(stored.at("stored").as_bool(), true);
  {
    WsClient c;
    c.connect(nodes[1].ws_port());
    const json::object r = login(c, "olga");
    EXPECT_EQ(r.at("data").at("offline").to_number<int>(), 1);
    auto got = msgs(c, 1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(push_data(got[0]).at("msg").as_string(), "stored");
    // Delivered live once she is online (on whichever node she is).
    api(nodes[0].http_port(), "/user/sendMessage?appID=101&userID=olga&message=live");
    EXPECT_EQ(msgs(c, 1).size(), 1u);
    c.close();
  }
  ASSERT_TRUE(eventually([&] {
    return api(nodes[0].http_port(), "/user/online?appID=101&userID=olga").at("online") == false;
  }));
  api(nodes[1].http_port(), "/user/sendMessage?appID=101&userID=olga&message=second");
  WsClient c;
  c.connect(nodes[0].ws_port());
  const json::object r = login(c, "olga");
  EXPECT_EQ(r.at("data").at("offline").to_number<int>(), 1);  // only what came since she left
  auto got = msgs(c, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(push_data(got[0]).at("msg").as_string(), "second");
}

TEST_F(ClusterHistoryTest, RecoveriesUnderAPushRateLeaveNoGapAndNoDuplicate) {
  constexpr int kClients = 30;
  constexpr int kPushes = 400;
  std::vector<std::unique_ptr<WsClient>> first(kClients);
  for (int i = 0; i < kClients; ++i) {
    first[i] = std::make_unique<WsClient>();
    first[i]->connect(nodes[i % 2].ws_port());
    ASSERT_EQ(login(*first[i], "u" + std::to_string(i)).at("code").to_number<int>(), 200);
  }
  send_all(0, "p0");
  std::string epoch;
  for (auto& c : first) {
    auto got = msgs(*c, 1);
    ASSERT_EQ(got.size(), 1u);
    epoch = epoch_of(got[0]);
    c->drop();
  }
  first.clear();
  for (auto& n : nodes) {
    ASSERT_TRUE(n.wait_for("all gone", [](const State& s) { return s.users_len() == 0; }));
  }
  std::thread pusher([&] {
    for (int i = 1; i <= kPushes; ++i) send_all(i % 2, "p" + std::to_string(i));
  });
  std::vector<std::unique_ptr<WsClient>> back(kClients);
  for (int i = 0; i < kClients; ++i) {
    back[i] = std::make_unique<WsClient>();
    back[i]->connect(nodes[(i + 1) % 2].ws_port());  // the other node
    const json::object r = login(*back[i], "u" + std::to_string(i), json::object{{"room", pos(epoch, 1)}});
    EXPECT_EQ(r.at("data").at("recovered").as_bool(), true) << i;
  }
  pusher.join();
  for (int i = 0; i < kClients; ++i) {
    SCOPED_TRACE("client " + std::to_string(i));
    auto got = msgs(*back[i], kPushes, 10s);
    ASSERT_EQ(got.size(), static_cast<std::size_t>(kPushes));
    for (std::size_t k = 0; k < got.size(); ++k) ASSERT_EQ(offset_of(got[k]), 2 + k);
    EXPECT_EQ(msg_count(back[i]->take_pushes()), 0u);
  }
}

}  // namespace
}  // namespace imgate::test
