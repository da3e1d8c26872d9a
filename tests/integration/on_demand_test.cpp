// Subscriptions on demand (issue 18 item 4, docs/cluster.md "Subscriptions on
// demand"): a node hears an app's channels only while it holds users of it,
// on one Redis (SUBSCRIBE) and on a Redis Cluster of 3 masters (SSUBSCRIBE on
// the room's master). Two imgate nodes, A and B. Each test runs in both Redis
// modes and shows: a node without users of a room is not subscribed to it,
// is subscribed once the first login there is answered, and unsubscribes
// after the last user left plus the linger; a push sent right after the login
// reply of the first user on a node reaches it, round after round while the
// subscription flips; enter / exit, unicasts and history recovery stay exact
// across the flips.
//
// Synchronisation: subscriptions are read from Redis (PUBSUB NUMSUB /
// SHARDNUMSUB) and polled with a deadline; the login reply itself is the
// point after which a push must arrive, so the tests push right after it.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <boost/json.hpp>
#include <memory>

#include "cluster/buckets.hpp"
#include "cluster/redis_link.hpp"
#include "cluster_fixture.hpp"
#include "gateway_process.hpp"
#include "redis_cluster_process.hpp"
#include "redis_process.hpp"
#include "stream_helpers.hpp"
#include "tcp_proxy.hpp"
#include "ws_client.hpp"

namespace imgate::test {
namespace {

namespace json = boost::json;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kApp = 102;
constexpr auto kLinger = 2s;  // RedisCluster::kUnsubscribeLinger
constexpr auto kFlipBound = kLinger + 3s;

// GetParam(): true on a Redis Cluster, false on one Redis.
std::string mode_name(const testing::TestParamInfo<bool>& mode) {
  return mode.param ? "RedisCluster" : "OneRedis";
}

class OnDemandTest : public testing::TestWithParam<bool> {
 protected:
  enum Node : std::size_t { A = 0, B = 1 };

  void SetUp() override {
    std::string name = testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(name.begin(), name.end(), '/', '-');
    prefix_ = "od:" + name + ":";
    Flags flags{{"--node-ttl", "2"}, {"--redis-prefix", prefix_}};
    if (GetParam()) {
      cluster_.start(RedisCluster::Options{3, 0});
      flags["--redis-cluster"] = cluster_.seeds();
    } else {
      single_.start();
      flags["--redis-addr"] = single_.addr();
    }
    for (auto& [k, v] : extra_flags()) flags[k] = v;
    for (auto& n : nodes) n.start(flags);
    for (std::size_t i : {A, B}) {
      ASSERT_TRUE(redis_up_on(nodes[i])) << "node " << i << " never saw Redis up";
    }
  }

  void TearDown() override {
    for (std::size_t i : {A, B}) {
      if (nodes[i].running()) {
        EXPECT_TRUE(nodes[i].wait_idle()) << "node " << i;
      }
    }
  }

  virtual Flags extra_flags() const { return {}; }

  std::string cluster_field(std::size_t node, std::string_view field) const {
    return cluster_status(nodes[node], field);
  }
  uint16_t http(std::size_t node) const { return nodes[node].http_port(); }

  // The room channel of `app` (Redis Cluster: bucket `bucket`'s; bucket 0
  // carries the room's pushes, docs/cluster.md "Key schema").
  std::string room_channel(uint32_t app, uint32_t bucket = 0) const {
    return GetParam() ? "{" + bucket_tag(prefix_, app, bucket, kBuckets) + "}:ch:room"
                      : prefix_ + "ch:room:" + std::to_string(app);
  }
  // Every room channel of `app` a node hears while it holds users of it, sorted.
  std::vector<std::string> room_channels(uint32_t app) const {
    std::vector<std::string> out;
    for (uint32_t k = 0; k < (GetParam() ? kBuckets : 1); ++k) out.push_back(room_channel(app, k));
    std::sort(out.begin(), out.end());
    return out;
  }
  static constexpr uint32_t kBuckets = 16;  // --redis-buckets' default
  // How many connections are subscribed to the room channel of `app` (imgate
  // nodes: each subscribes once).
  int64_t room_subscribers(uint32_t app) {
    const std::string channel = room_channel(app);
    const RespValue r =
        GetParam() ? cluster_.command(cluster_.master_for_key(channel),
                                      {"PUBSUB", "SHARDNUMSUB", channel})
                   : single_.command({"PUBSUB", "NUMSUB", channel});
    EXPECT_EQ(r.elements.size(), 2u) << r.dump();
    return r.elements.size() == 2 ? r.elements[1].integer : -1;
  }
  // The room channels of this test's prefix subscribed anywhere.
  std::vector<std::string> subscribed_rooms() {
    std::vector<std::string> out;
    auto keep = [&](const RespValue& list) {
      for (const auto& c : list.elements) {
        if (c.str.find("ch:room") != std::string::npos) out.push_back(c.str);
      }
    };
    if (GetParam()) {
      for (uint16_t port : cluster_.master_ports()) {
        keep(cluster_.command(port, {"PUBSUB", "SHARDCHANNELS", "{" + prefix_ + "*"}));
      }
    } else {
      keep(single_.command({"PUBSUB", "CHANNELS", prefix_ + "*"}));
    }
    std::sort(out.begin(), out.end());
    return out;
  }
  testing::AssertionResult subscribers_become(uint32_t app, int64_t want,
                                              Millis timeout = kFlipBound) {
    int64_t last = -1;
    if (eventually([&] { return (last = room_subscribers(app)) == want; }, timeout)) {
      return testing::AssertionSuccess();
    }
    return testing::AssertionFailure()
           << "room " << app << " has " << last << " subscribers, expected " << want;
  }

  std::unique_ptr<WsClient> join(std::size_t node, uint32_t app, std::string_view user) {
    return joined(nodes[node], app, user);
  }

  RedisServer single_;
  RedisCluster cluster_;  // both declared first: destroyed after the nodes
  std::array<Gateway, 2> nodes;
  std::string prefix_;
};

// A node subscribes to a room at its first login there, before answering it,
// and unsubscribes the linger after its last user left.
TEST_P(OnDemandTest, ANodeHearsARoomOnlyWhileItHoldsUsersOfIt) {
  EXPECT_EQ(subscribed_rooms(), std::vector<std::string>{}) << "subscribed with nobody logged in";
  auto alice = join(A, kApp, "alice");
  // Confirmed before the reply: no polling needed.
  EXPECT_EQ(room_subscribers(kApp), 1) << "A answered alice's login before hearing the room";
  EXPECT_EQ(subscribed_rooms(), room_channels(kApp));
  auto alice2 = join(A, kApp, "alice2");
  auto bob = join(B, kApp, "bob");
  EXPECT_EQ(room_subscribers(kApp), 2);
  EXPECT_EQ(room_subscribers(101), 0);

  // A's last user of the room leaves: A unsubscribes, after the linger.
  alice->close();
  alice2->close();
  const auto closed = Clock::now();
  ASSERT_TRUE(subscribers_become(kApp, 1));
  EXPECT_GE(Clock::now() - closed, kLinger) << "unsubscribed before the linger";
  EXPECT_EQ(subscribed_rooms(), room_channels(kApp));  // B's
  bob->close();
  ASSERT_TRUE(subscribers_become(kApp, 0));
  EXPECT_EQ(subscribed_rooms(), std::vector<std::string>{});
}

// The race of the feature: the first user of a room on a node logs in while
// the node is not subscribed; whatever is pushed once the login is answered
// (a room push, a unicast, the enter / exit of others) reaches it, and the
// node's other users see its enter / exit. Round after round, each starting
// unsubscribed; within a round the user also comes back during the linger.
TEST_P(OnDemandTest, APushSentRightAfterTheFirstLoginReplyReachesTheUser) {
  auto bob = join(B, kApp, "bob");
  constexpr int kRounds = 5;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    ASSERT_TRUE(subscribers_become(kApp, 1)) << "A still hears the room with nobody on it";
    for (int again = 0; again < 2; ++again) {  // again: within the linger (still subscribed)
      const std::string tag = std::to_string(round) + "." + std::to_string(again);
      auto alice = join(A, kApp, "alice");
      // Right after the reply, through the other node.
      EXPECT_EQ(send(http(B), "/user/sendMessageAll", kApp, "zed", "r-" + tag, "room " + tag),
                kSent);
      EXPECT_EQ(send(http(B), "/user/sendMessage", kApp, "alice", "u-" + tag, "uni " + tag),
                kSent);
      EXPECT_TRUE(got(*alice, "msg", "room " + tag));
      EXPECT_TRUE(got(*alice, "msg", "uni " + tag));
      EXPECT_TRUE(got(*bob, "enter", "alice"));
      auto carol = join(B, kApp, "carol");
      EXPECT_TRUE(got(*alice, "enter", "carol"));
      carol->close();
      EXPECT_TRUE(got(*alice, "exit", "carol"));
      alice->close();
      EXPECT_TRUE(got(*bob, "exit", "alice"));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(OneRedisAndRedisCluster, OnDemandTest, testing::Values(false, true),
                         mode_name);

class OnDemandHistoryTest : public OnDemandTest {
 protected:
  Flags extra_flags() const override { return {{"--history-size", "100"}}; }
};

// History on: a client that left, whose node then unsubscribed from the room,
// recovers what was pushed meanwhile at its next login there, and gets the
// push sent right after that login's reply live, once and in order.
TEST_P(OnDemandHistoryTest, RecoveryAcrossAnUnsubscribeIsExact) {
  auto bob = join(B, kApp, "bob");
  auto alice = join(A, kApp, "alice");
  const json::object first = api(http(B), "/user/sendMessageAll?appID=" + std::to_string(kApp) +
                                               "&userID=zed&msgID=h1&message=h1");
  const auto at = stored_at(first);
  ASSERT_TRUE(at.has_value()) << json::serialize(first);
  EXPECT_TRUE(got(*alice, "msg", "h1"));
  alice->close();
  ASSERT_TRUE(subscribers_become(kApp, 1));  // A no longer hears the room

  api(http(B), "/user/sendMessageAll?appID=" + std::to_string(kApp) +
                   "&userID=zed&msgID=h2&message=h2");
  alice = std::make_unique<WsClient>();
  alice->connect(nodes[A].ws_port());
  const json::object reply = alice->request(
      "login", json::serialize(json::object{
                   {"appID", kApp},
                   {"userID", "alice"},
                   {"recover", {{"room", {{"epoch", at->first}, {"offset", at->second}}}}}}));
  ASSERT_EQ(code_of(reply), 200) << json::serialize(reply);
  EXPECT_EQ(data_of(reply).at("recovered"), json::value(true)) << json::serialize(reply);
  api(http(B), "/user/sendMessageAll?appID=" + std::to_string(kApp) +
                   "&userID=zed&msgID=h3&message=h3");
  std::vector<std::string> texts;
  EXPECT_TRUE(eventually([&] {
    while (auto p = alice->next_push("msg", 50ms)) texts.push_back(field_of(*p, "msg"));
    return texts.size() >= 2;
  }));
  EXPECT_EQ(texts, (std::vector<std::string>{"h2", "h3"}));
  for (const auto& p : alice->take_pushes()) {
    EXPECT_NE(cmd_of(p), "msg") << "a push twice: " << json::serialize(p);
  }
}

INSTANTIATE_TEST_SUITE_P(OneRedisAndRedisCluster, OnDemandHistoryTest,
                         testing::Values(false, true),
                         mode_name);

// Node 0 on Redis through `proxy` (a relay that can hold its writes), node 1
// straight on it; both with Redis up.
void start_relayed_pair(std::array<Gateway, 2>& nodes, const TcpProxy& proxy,
                        const RedisServer& redis, const std::string& prefix) {
  nodes[0].start({{"--redis-addr", proxy.addr()}, {"--redis-prefix", prefix}});
  nodes[1].start({{"--redis-addr", redis.addr()}, {"--redis-prefix", prefix}});
  for (auto& node : nodes) ASSERT_TRUE(redis_up_on(node));
}

// Sends `user`'s login on `client`, whose node's relay holds (its `holds`-th
// hold) the write the login waits for: no answer while held, 200 once released.
void expect_login_answered_after_release(WsClient& client, TcpProxy& proxy, int holds,
                                         const std::string& user, std::string_view waits_for) {
  ASSERT_FALSE(client.send_text(
      make_request("l-" + user, "login", R"({"appID":102,"userID":")" + user + "\"}")));
  ASSERT_TRUE(eventually([&] { return proxy.holds() == holds; })) << "never sent " << waits_for;
  EXPECT_FALSE(client.read_json(500ms).has_value()) << "answered before " << waits_for;
  proxy.release_held();
  const auto reply = client.read_json(5s);
  ASSERT_TRUE(reply.has_value()) << "never answered";
  EXPECT_EQ(code_of(*reply), 200) << json::serialize(*reply);
}

// The race made slow, on one Redis: node A reaches Redis through a proxy that
// holds A's SUBSCRIBE of the room. The first login there is not answered
// while the subscription is not confirmed; once it is, the push sent right
// after the reply reaches the user. (Answering at once, the reply would come
// first and the push would be lost: A is not subscribed yet.) Then the same
// with A's UNSUBSCRIBE held: a login during the unsubscribe waits for the
// subscribe after it.
TEST(OnDemandRaceTest, TheFirstLoginOfARoomIsAnsweredOnlyOnceTheNodeHearsIt) {
  RedisServer redis;
  redis.start();
  TcpProxy proxy(redis.port());
  std::array<Gateway, 2> nodes;
  const std::string prefix = "od:race:";
  ASSERT_NO_FATAL_FAILURE(start_relayed_pair(nodes, proxy, redis, prefix));
  const std::string room = prefix + "ch:room:" + std::to_string(kApp);

  // A's SUBSCRIBE of the room (RESP), when it comes.
  proxy.hold_writes_with("SUBSCRIBE\r\n$" + std::to_string(room.size()) + "\r\n" + room);
  WsClient alice;
  alice.connect(nodes[0].ws_port());
  ASSERT_NO_FATAL_FAILURE(
      expect_login_answered_after_release(alice, proxy, 1, "alice", "A hears the room"));
  EXPECT_EQ(send(nodes[1].http_port(), "/user/sendMessageAll", kApp, "zed", "r-1", "after"), kSent);
  EXPECT_TRUE(got(alice, "msg", "after"));

  // A login while A's UNSUBSCRIBE (after the linger) is on its way waits for
  // the SUBSCRIBE that follows it, not for the answer to an earlier one.
  proxy.hold_writes_with("UNSUBSCRIBE\r\n$" + std::to_string(room.size()) + "\r\n" + room);
  alice.close();
  ASSERT_TRUE(eventually([&] { return proxy.holds() == 2; }, kFlipBound)) << "never unsubscribed";
  WsClient again;
  again.connect(nodes[0].ws_port());
  ASSERT_NO_FATAL_FAILURE(expect_login_answered_after_release(
      again, proxy, 2, "alice", "the UNSUBSCRIBE and the SUBSCRIBE after it"));
  EXPECT_EQ(send(nodes[1].http_port(), "/user/sendMessageAll", kApp, "zed", "r-2", "again"), kSent);
  EXPECT_TRUE(got(again, "msg", "again"));
  again.close();
  for (auto& n : nodes) EXPECT_TRUE(n.wait_idle());
}

// On a node that hears the room already, a login is answered only once its
// login.lua ran: before that Redis does not route the user's unicasts here,
// and one sent through another node right after the reply was lost.
TEST(OnDemandRaceTest, ALoginIsAnsweredOnlyOnceRedisRoutesTheUsersPushesHere) {
  RedisServer redis;
  redis.start();
  TcpProxy proxy(redis.port());
  std::array<Gateway, 2> nodes;
  ASSERT_NO_FATAL_FAILURE(start_relayed_pair(nodes, proxy, redis, "od:routed:"));
  // bob keeps A subscribed to the room: alice's login waits for no subscription.
  WsClient bob;
  bob.connect(nodes[0].ws_port());
  ASSERT_EQ(bob.login(kApp, "bob"), 200);

  // A's login.lua for alice7 (its arguments name her), when it comes.
  proxy.hold_writes_with("$6\r\nalice7\r\n");
  WsClient alice;
  alice.connect(nodes[0].ws_port());
  ASSERT_NO_FATAL_FAILURE(expect_login_answered_after_release(
      alice, proxy, 1, "alice7", "A's login.lua for alice7 ran (Redis routes her to A)"));
  // Right after the reply, through the other node.
  EXPECT_EQ(send(nodes[1].http_port(), "/user/sendMessage", kApp, "alice7", "u-1", "routed"),
            kSent);
  EXPECT_TRUE(got(alice, "msg", "routed"));
  alice.close();
  bob.close();
  for (auto& n : nodes) EXPECT_TRUE(n.wait_idle());
}

// A subscription Redis never confirms although it is reachable (here held by
// the relay for good): the login is answered, degraded, after the deadline
// (RedisCluster::kSubscribeDeadline, 5 s) with a warning, instead of never.
TEST(OnDemandRaceTest, ALoginWhoseSubscriptionIsNeverConfirmedIsAnsweredAtTheDeadline) {
  RedisServer redis;
  redis.start();
  TcpProxy proxy(redis.port());
  Gateway node;
  const std::string prefix = "od:deadline:";
  node.start({{"--redis-addr", proxy.addr()}, {"--redis-prefix", prefix}});
  ASSERT_TRUE(redis_up_on(node));
  const std::string room = prefix + "ch:room:" + std::to_string(kApp);
  proxy.hold_writes_with("SUBSCRIBE\r\n$" + std::to_string(room.size()) + "\r\n" + room);
  WsClient alice;
  alice.connect(node.ws_port());
  const auto sent = Clock::now();
  ASSERT_FALSE(alice.send_text(make_request("l-1", "login", R"({"appID":102,"userID":"alice"})")));
  const auto reply = alice.read_json(15s);
  ASSERT_TRUE(reply.has_value()) << "never answered";
  EXPECT_EQ(code_of(*reply), 200) << json::serialize(*reply);
  EXPECT_GE(Clock::now() - sent, 5s) << "answered before the deadline";
  EXPECT_NE(node.log().find("are not confirmed subscribed after 5 s"), std::string::npos)
      << node.log();
  proxy.release_held();
  alice.close();
  EXPECT_TRUE(node.wait_idle());
}

}  // namespace
}  // namespace imgate::test
