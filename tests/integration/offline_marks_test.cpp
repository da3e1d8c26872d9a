// Offline messages are replayed once (issue 16, item 1; docs/history.md "Offline
// messages"). Where a user's offline messages start is the user stream position
// the node delivered to the user, known node-wide (registry/directory.hpp) whatever
// thread each of the user's tabs lives on, and recorded with the last-out
// decision. In all three modes (embedded, one Redis, a Redis Cluster), with two
// threads per gateway: a user's two tabs on one node on different threads,
// closed in both orders, after a push delivered live or pushes delivered from
// history at login; and (Redis modes) a second tab on another node. Each time,
// the next login must replay nothing it already had, and exactly what was
// stored after.
//
// Synchronisation: "offline everywhere" is awaited through /user/online; the
// absence of a replay is read from the login reply ("offline") and from the
// first push after it being a fresh marker (replayed pushes go out right after
// the reply, before any live one).
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <memory>

#include "gateway_process.hpp"
#include "redis_cluster_process.hpp"
#include "redis_process.hpp"
#include "stream_helpers.hpp"
#include "ws_client.hpp"

namespace imgate::test {
namespace {

namespace json = boost::json;

enum class Mode { kEmbedded, kRedis, kRedisCluster };

std::string mode_name(const testing::TestParamInfo<Mode>& info) {
  switch (info.param) {
    case Mode::kEmbedded: return "Embedded";
    case Mode::kRedis: return "Redis";
    case Mode::kRedisCluster: return "RedisCluster";
  }
  return "Unknown";
}

class OfflineMarksTest : public testing::TestWithParam<Mode> {
 protected:
  enum Node : std::size_t { A = 0, B = 1 };

  void SetUp() override {
    Flags flags{{"--history-size", "50"}, {"--threads", "2"}, {"--ip-upgrade-rate", "0"}};
    const std::string prefix =
        std::string("om:") + testing::UnitTest::GetInstance()->current_test_info()->name() + ":";
    if (GetParam() == Mode::kRedis) {
      redis_ = std::make_unique<RedisServer>();
      redis_->start();
      flags.emplace("--redis-addr", redis_->addr());
    } else if (GetParam() == Mode::kRedisCluster) {
      cluster_ = std::make_unique<RedisCluster>();
      RedisCluster::Options options;
      options.replicas_per_master = 0;
      cluster_->start(options);
      flags.emplace("--redis-cluster", cluster_->seeds());
    }
    if (GetParam() != Mode::kEmbedded) {
      flags.emplace("--redis-prefix", prefix);
      flags.emplace("--node-ttl", "2");
    }
    nodes_[A].start(flags);
    if (GetParam() != Mode::kEmbedded) {
      nodes_[B].start(flags);
      for (auto& n : nodes_) {
        ASSERT_TRUE(n.wait_for("redis up", [](const State& s) {
          const auto* v = s.find({"imgate", "cluster", "redis"});
          return v && v->is_string() && v->as_string() == "up";
        }, 15s));
      }
    }
  }

  void TearDown() override {
    for (auto& n : nodes_) {
      if (n.pid() > 0 && n.running()) {
        EXPECT_TRUE(n.wait_idle());
      }
    }
  }

  bool clustered() const { return GetParam() != Mode::kEmbedded; }
  // Embedded mode has one node: both names stand for it.
  Gateway& node(Node n) { return nodes_[clustered() ? n : A]; }

  json::object send_to(Node via, std::string_view user, std::string_view message) {
    return api(node(via).http_port(),
               "/user/sendMessage?appID=101&userID=" + pct(user) + "&message=" + pct(message));
  }
  bool online(std::string_view user) {
    return api(node(A).http_port(), "/user/online?appID=101&userID=" + pct(user)).at("online") ==
           true;
  }
  // Logs in on `via` without recover; returns the reply's data.
  json::object log_in(WsClient& c, Node via, std::string_view user) {
    c.connect(node(via).ws_port());
    const json::object r = login(c, user);
    EXPECT_EQ(r.at("code").to_number<int>(), 200) << json::serialize(r);
    return r.at("data").is_object() ? r.at("data").as_object() : json::object{};
  }
  // The node's connections per thread.
  std::vector<int64_t> per_thread(Node n) {
    std::vector<int64_t> out;
    const State s = node(n).state();
    if (const auto* v = s.find({"imgate", "connectionsPerThread"}); v && v->is_array()) {
      for (const auto& c : v->as_array()) out.push_back(c.to_number<int64_t>());
    }
    return out;
  }
  // The text of the next msg push ("" when none comes).
  static std::string next_text(WsClient& c) {
    const auto got = msgs(c, 1);
    return got.empty() ? "" : std::string(push_data(got[0]).at("msg").as_string());
  }
  // A login of `user` on `via` gets no offline replay: nothing counted, and
  // the first push after the reply is a fresh one.
  void expect_no_replay(Node via, std::string_view user, std::string_view marker) {
    WsClient c;
    const json::object data = log_in(c, via, user);
    EXPECT_FALSE(data.contains("offline")) << json::serialize(data);
    send_to(via == A ? B : A, user, marker);
    EXPECT_EQ(next_text(c), marker) << "a push the user already had was replayed";
    c.close();
    ASSERT_TRUE(eventually([&] { return !online(user); }));
  }
  // A push stored while `user` is offline reaches its next login, once.
  void expect_stored_once(std::string_view user, std::string_view text) {
    const json::object stored = send_to(B, user, text);
    EXPECT_EQ(stored.at("stored"), true) << json::serialize(stored);
    WsClient c;
    const json::object data = log_in(c, A, user);
    EXPECT_EQ(data.at("offline"), 1) << json::serialize(data);
    EXPECT_EQ(next_text(c), text);
    send_to(B, user, std::string(text) + "-live");
    EXPECT_EQ(next_text(c), std::string(text) + "-live");
    c.close();
    ASSERT_TRUE(eventually([&] { return !online(user); }));
  }

  std::unique_ptr<RedisServer> redis_;
  std::unique_ptr<RedisCluster> cluster_;
  Gateway nodes_[2];
};

// Two tabs of a user on node B, one per thread (the WebSocket listener hands
// connections to the threads in turn), closed with a close handshake in both
// orders: the tab that got the user's push closes first or last.
TEST_P(OfflineMarksTest, APushDeliveredLiveIsNotReplayedWhicheverTabClosesLast) {
  for (const bool first_closes_first : {true, false}) {
    SCOPED_TRACE(first_closes_first ? "tab 1 closes first" : "tab 2 closes first");
    const std::string user = first_closes_first ? "lily1" : "lily2";
    WsClient tab1, tab2;
    log_in(tab1, B, user);
    // Delivered live to tab 1 only: tab 2 is not there yet.
    EXPECT_EQ(send_to(A, user, "p1").at("sendResults"), true);
    EXPECT_EQ(next_text(tab1), "p1");
    log_in(tab2, B, user);
    const auto threads = per_thread(B);
    ASSERT_EQ(threads, (std::vector<int64_t>{1, 1})) << "the tabs share a thread";
    (first_closes_first ? tab1 : tab2).close();
    (first_closes_first ? tab2 : tab1).close();
    ASSERT_TRUE(eventually([&] { return !online(user); }));
    expect_no_replay(A, user, "marker");
    expect_stored_once(user, "s1");
  }
}

TEST_P(OfflineMarksTest, PushesDeliveredAtLoginAreNotReplayedWhicheverTabClosesLast) {
  for (const bool first_closes_first : {true, false}) {
    SCOPED_TRACE(first_closes_first ? "tab 1 closes first" : "tab 2 closes first");
    const std::string user = first_closes_first ? "rose1" : "rose2";
    // Stored while the user has no connection, then delivered at tab 1's login.
    for (const char* text : {"o1", "o2"}) EXPECT_EQ(send_to(A, user, text).at("stored"), true);
    WsClient tab1, tab2;
    EXPECT_EQ(log_in(tab1, B, user).at("offline"), 2);
    EXPECT_EQ(next_text(tab1), "o1");
    EXPECT_EQ(next_text(tab1), "o2");
    log_in(tab2, B, user);
    ASSERT_EQ(per_thread(B), (std::vector<int64_t>{1, 1})) << "the tabs share a thread";
    (first_closes_first ? tab1 : tab2).close();
    (first_closes_first ? tab2 : tab1).close();
    ASSERT_TRUE(eventually([&] { return !online(user); }));
    expect_no_replay(A, user, "marker");
    expect_stored_once(user, "s1");
  }
}

// Redis modes: a user online on node A opens a tab on node B. It is not
// offline, so B replays nothing (A's tab had the pushes); whichever node's
// tab closes last records where the user's offline messages start.
TEST_P(OfflineMarksTest, ASecondTabOnAnotherNodeGetsNoReplayAndLeavesNoneBehind) {
  if (!clustered()) GTEST_SKIP() << "one node in embedded mode";
  for (const bool a_closes_first : {true, false}) {
    SCOPED_TRACE(a_closes_first ? "node A's tab closes first" : "node B's tab closes first");
    const std::string user = a_closes_first ? "iris1" : "iris2";
    EXPECT_EQ(send_to(A, user, "o1").at("stored"), true);
    WsClient on_a, on_b;
    EXPECT_EQ(log_in(on_a, A, user).at("offline"), 1);
    EXPECT_EQ(next_text(on_a), "o1");
    EXPECT_EQ(send_to(B, user, "p1").at("sendResults"), true);
    EXPECT_EQ(next_text(on_a), "p1");
    const json::object data = log_in(on_b, B, user);
    EXPECT_FALSE(data.contains("offline")) << json::serialize(data);
    send_to(A, user, "p2");
    EXPECT_EQ(next_text(on_b), "p2") << "the second tab got a replay";
    EXPECT_EQ(next_text(on_a), "p2");
    (a_closes_first ? on_a : on_b).close();
    (a_closes_first ? on_b : on_a).close();
    ASSERT_TRUE(eventually([&] { return !online(user); }));
    expect_no_replay(A, user, "marker");
    expect_stored_once(user, "s1");
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, OfflineMarksTest,
                         testing::Values(Mode::kEmbedded, Mode::kRedis, Mode::kRedisCluster),
                         mode_name);

}  // namespace
}  // namespace imgate::test
