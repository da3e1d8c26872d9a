// Unit tests for src/registry (Hub, Shard, Directory) with posted tasks run explicitly by the test
// and fake peers: the lifecycle contract of shard.hpp (add → login → heartbeats → unlink, unlink
// idempotent and complete), enter/exit on a user's first/last connection, liveness through the
// timing wheel, shutdown, delivery and the directory's queries.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "protocol/codes.hpp"
#include "protocol/envelope.hpp"
#include "registry/directory.hpp"
#include "registry/shard.hpp"
#include "shard_fixture.hpp"

namespace imgate {
namespace {

using namespace std::chrono_literals;
using test::FakePeer;

const TimePoint kStart{std::chrono::hours(2)};
constexpr auto kTimeout = 2000ms;
constexpr auto kPing = 800ms;  // wheel tick: min(2000, 800) / 8 = 100 ms

std::set<std::string> as_set(const std::vector<std::string>& v) {
  return {v.begin(), v.end()};
}

class Registry : public test::HubFixture {
 protected:
  Registry() : HubFixture(2, LivenessSettings{kTimeout, kPing}, kStart) {}

  Directory& dir() { return hub_.directory(); }
};

// --- add / login / unlink ---

TEST_F(Registry, AddCreatesUniqueIdsCarryingTheShardIndex) {
  std::set<ConnId> ids;
  for (uint32_t s = 0; s < 2; ++s) {
    for (int i = 0; i < 5; ++i) {
      auto [peer, id] = connect(s);
      EXPECT_TRUE(ids.insert(id).second);
      EXPECT_EQ(id >> 54, s);  // top 10 bits
      EXPECT_TRUE(shard(s).contains(id));
      EXPECT_FALSE(shard(1 - s).contains(id));
    }
  }
  EXPECT_EQ(shard(0).size(), 5u);
  EXPECT_EQ(shard(1).size(), 5u);
  EXPECT_EQ(hub_.connections(), 10u);
  EXPECT_EQ(hub_.connections_per_shard(), (std::vector<std::size_t>{5, 5}));
  // Ids are never reused, even after the connection is gone.
  for (ConnId id : shard(0).ids()) ASSERT_TRUE(shard(0).unlink(id, EndReason::kClientClose));
  auto [peer, again] = connect(0);
  EXPECT_FALSE(ids.contains(again));
  EXPECT_EQ(dir().user_count(), 0u);  // a connection is not a user until it logs in
  EXPECT_EQ(dir().connection_count(), 0u);
}

TEST_F(Registry, LoginIndexesTheConnectionEverywhere) {
  auto [peer, id] = connect(0);
  EXPECT_FALSE(shard(0).logged_in(id));
  ASSERT_EQ(shard(0).login(id, 101, "u1", kStart), LoginStatus::kOk);
  EXPECT_TRUE(shard(0).logged_in(id));
  EXPECT_TRUE(dir().online(101, "u1"));
  EXPECT_TRUE(dir().online(0, "u1"));
  EXPECT_FALSE(dir().online(102, "u1"));
  EXPECT_EQ(dir().users_of(101), std::vector<std::string>{"u1"});
  EXPECT_EQ(dir().user_keys(), std::vector<std::string>{"101_u1"});
  EXPECT_EQ(dir().shards_of({101, "u1"}), std::vector<uint32_t>{0});
  EXPECT_EQ(dir().user_count(), 1u);
  EXPECT_EQ(dir().room_count(), 1u);
  EXPECT_EQ(dir().connection_count(), 1u);
  EXPECT_EQ(counters_.logins.load(), 1u);
}

TEST_F(Registry, LoginTwiceIsRefusedAndChangesNothing) {
  auto [peer, id] = online(0, 101, "u1");
  queues_.drain();
  EXPECT_EQ(shard(0).login(id, 101, "u1", kStart), LoginStatus::kAlreadyLoggedIn);
  EXPECT_EQ(shard(0).login(id, 102, "u2", kStart), LoginStatus::kAlreadyLoggedIn);
  EXPECT_EQ(queues_.pending(), 0u);  // no second enter
  EXPECT_FALSE(dir().online(0, "u2"));
  EXPECT_EQ(dir().connection_count(), 1u);
  EXPECT_EQ(counters_.logins.load(), 1u);
}

TEST_F(Registry, LoginOfAnUnknownConnection) {
  EXPECT_EQ(shard(0).login(12345, 101, "u1", kStart), LoginStatus::kUnknownConnection);
  auto [peer, id] = connect(1);
  // The id of a connection of shard 1 means nothing to shard 0.
  EXPECT_EQ(shard(0).login(id, 101, "u1", kStart), LoginStatus::kUnknownConnection);
  EXPECT_EQ(dir().user_count(), 0u);
  EXPECT_EQ(queues_.pending(), 0u);
}

TEST_F(Registry, UnlinkRemovesFromEveryIndex) {
  auto [peer, id] = online(0, 101, "u1");
  ASSERT_TRUE(shard(0).unlink(id, EndReason::kClientClose));
  EXPECT_FALSE(shard(0).contains(id));
  EXPECT_FALSE(shard(0).logged_in(id));
  EXPECT_EQ(shard(0).size(), 0u);
  EXPECT_FALSE(dir().online(0, "u1"));
  EXPECT_TRUE(dir().users_of(101).empty());
  EXPECT_TRUE(dir().shards_of({101, "u1"}).empty());
  EXPECT_EQ(dir().user_count(), 0u);
  EXPECT_EQ(dir().room_count(), 0u);
  EXPECT_EQ(dir().connection_count(), 0u);
  EXPECT_EQ(counters_.connections_closed.load(), 1u);
  // Room delivery finds nobody.
  EXPECT_EQ(shard(0).deliver_room(101, "", make_frame("x")), 0u);
  EXPECT_EQ(shard(0).deliver_user({101, "u1"}, make_frame("x")), 0u);
  EXPECT_TRUE(peer->closes.empty());  // unlink alone never closes the socket
}

TEST_F(Registry, UnlinkIsIdempotent) {
  auto [observer, obs_id] = online(1, 101, "obs");
  auto [peer, id] = online(0, 101, "u1");
  queues_.drain();
  ASSERT_TRUE(shard(0).unlink(id, EndReason::kNetworkError));
  const std::size_t pending = queues_.pending();
  EXPECT_EQ(pending, 2u);  // one exit task per shard
  for (EndReason again : {EndReason::kClientClose, EndReason::kNetworkError, EndReason::kTimeout,
                          EndReason::kOverflow, EndReason::kProtocol, EndReason::kShutdown}) {
    EXPECT_FALSE(shard(0).unlink(id, again));
  }
  EXPECT_EQ(queues_.pending(), pending);  // no second exit
  EXPECT_EQ(counters_.connections_closed.load(), 1u);
  EXPECT_EQ(counters_.heartbeat_timeouts.load(), 0u);  // a late kTimeout is not counted
  EXPECT_EQ(dir().connection_count(), 1u);
  queues_.drain();
  EXPECT_EQ(observer->count("exit", "u1"), 1u);
  EXPECT_FALSE(shard(0).unlink(999, EndReason::kClientClose));  // never existed
}

TEST_F(Registry, EventsAfterUnlinkAreNoOps) {
  auto [peer, id] = connect(0);
  ASSERT_TRUE(shard(0).unlink(id, EndReason::kClientClose));
  EXPECT_EQ(shard(0).login(id, 101, "u1", kStart), LoginStatus::kUnknownConnection);
  EXPECT_FALSE(shard(0).heartbeat(id, kStart + 1s));
  shard(0).touch(id, kStart + 1s);
  EXPECT_FALSE(shard(0).contains(id));
  EXPECT_FALSE(shard(0).logged_in(id));
  EXPECT_EQ(shard(0).size(), 0u);
  EXPECT_EQ(dir().user_count(), 0u);
  EXPECT_EQ(queues_.pending(), 0u);
  // Its wheel entry lapses without touching the (gone) peer.
  shard(0).tick(kStart + 10 * kTimeout);
  EXPECT_EQ(peer->pings, 0);
  EXPECT_TRUE(peer->closes.empty());
  EXPECT_EQ(shard(0).wheel_entries(), 0u);
  EXPECT_EQ(counters_.heartbeat_timeouts.load(), 0u);
  EXPECT_EQ(counters_.connections_closed.load(), 1u);
}

TEST_F(Registry, HeartbeatNeedsALoggedInConnection) {
  auto [peer, id] = connect(0);
  EXPECT_FALSE(shard(0).heartbeat(id, kStart));
  ASSERT_EQ(shard(0).login(id, 101, "u", kStart), LoginStatus::kOk);
  EXPECT_TRUE(shard(0).heartbeat(id, kStart));
}

// --- enter / exit ---

TEST_F(Registry, EnterOnFirstConnectionExitOnLastNeverToTheUserItself) {
  auto [obs0, o0] = online(0, 101, "obs0");
  auto [obs1, o1] = online(1, 101, "obs1");
  queues_.drain();
  obs0->clear_frames();
  obs1->clear_frames();

  auto [a, ida] = online(0, 101, "u");  // first connection of u: enter
  queues_.drain();
  EXPECT_EQ(obs0->presence_of("u"), std::vector<std::string>{"enter"});
  EXPECT_EQ(obs1->presence_of("u"), std::vector<std::string>{"enter"});

  auto [b, idb] = online(1, 101, "u");  // second, on the other shard: nothing
  auto [c, idc] = online(0, 101, "u");  // third, on the first shard again: nothing
  EXPECT_EQ(queues_.pending(), 0u);
  EXPECT_EQ(dir().user_count(), 3u);
  EXPECT_EQ(dir().connection_count(), 5u);
  EXPECT_EQ(as_set(dir().users_of(101)), (std::set<std::string>{"obs0", "obs1", "u"}));
  std::vector<uint32_t> shards = dir().shards_of({101, "u"});
  std::sort(shards.begin(), shards.end());
  EXPECT_EQ(shards, (std::vector<uint32_t>{0, 1}));

  ASSERT_TRUE(shard(0).unlink(ida, EndReason::kClientClose));
  ASSERT_TRUE(shard(1).unlink(idb, EndReason::kNetworkError));
  EXPECT_EQ(queues_.pending(), 0u);  // not the last: no exit
  EXPECT_TRUE(dir().online(101, "u"));
  ASSERT_TRUE(shard(0).unlink(idc, EndReason::kClientClose));
  queues_.drain();
  EXPECT_FALSE(dir().online(101, "u"));
  EXPECT_EQ(obs0->presence_of("u"), (std::vector<std::string>{"enter", "exit"}));
  EXPECT_EQ(obs1->presence_of("u"), (std::vector<std::string>{"enter", "exit"}));
  // No connection of u is ever told about u.
  for (FakePeer* p : {a, b, c}) {
    EXPECT_TRUE(p->presence_of("u").empty());
  }

  // Comes back: a new first connection, a new enter.
  auto [d, idd] = online(1, 101, "u");
  queues_.drain();
  EXPECT_EQ(obs0->presence_of("u"), (std::vector<std::string>{"enter", "exit", "enter"}));
  EXPECT_TRUE(d->presence_of("u").empty());
}

TEST_F(Registry, PresencePushesCarryTheUpstreamTexts) {
  auto [obs, o] = online(1, 101, "obs");
  queues_.drain();
  obs->clear_frames();
  auto [a, ida] = online(0, 101, "马远");
  shard(0).unlink(ida, EndReason::kClientClose);
  queues_.drain();
  std::vector<test::Push> pushes = obs->pushes();
  ASSERT_EQ(pushes.size(), 2u);
  EXPECT_EQ(pushes[0].cmd, "enter");
  EXPECT_EQ(pushes[0].msg, "哈喽~");
  EXPECT_EQ(pushes[1].cmd, "exit");
  EXPECT_EQ(pushes[1].msg, "用户已经离开~");
  for (const auto& p : pushes) {
    EXPECT_EQ(p.from, "马远");
    EXPECT_EQ(p.code, 200u);
    EXPECT_EQ(p.code_msg, "Ok");
    EXPECT_FALSE(p.seq.empty());
    EXPECT_TRUE(std::all_of(p.seq.begin(), p.seq.end(), [](char ch) {
      return ch >= '0' && ch <= '9';
    })) << p.seq;
  }
  EXPECT_NE(pushes[0].seq, pushes[1].seq);
}

TEST_F(Registry, PresenceStaysInsideTheApp) {
  auto [other_app, o] = online(0, 102, "x");
  queues_.drain();
  auto [a, ida] = online(1, 101, "u");
  shard(1).unlink(ida, EndReason::kClientClose);
  queues_.drain();
  EXPECT_TRUE(other_app->frames.empty());
}

TEST_F(Registry, SameUserNameInTwoAppsIsTwoUsers) {
  auto [obs, o] = online(0, 101, "obs");
  queues_.drain();
  auto [a, ida] = online(0, 101, "u");
  online(1, 102, "u");
  EXPECT_EQ(dir().user_count(), 3u);
  EXPECT_EQ(dir().room_count(), 2u);
  shard(0).unlink(ida, EndReason::kClientClose);  // u leaves 101, still online in 102
  queues_.drain();
  EXPECT_EQ(obs->presence_of("u"), (std::vector<std::string>{"enter", "exit"}));
  EXPECT_FALSE(dir().online(101, "u"));
  EXPECT_TRUE(dir().online(102, "u"));
  EXPECT_TRUE(dir().online(0, "u"));
}

// --- delivery ---

TEST_F(Registry, DeliverRoomExcludesTheGivenUser) {
  auto [a1, ida1] = online(0, 101, "a");
  auto [a2, ida2] = online(0, 101, "a");
  auto [b, idb] = online(0, 101, "b");
  auto [c, idc] = online(0, 102, "c");
  auto [n, idn] = connect(0);  // not logged in: in no room
  queues_.drain();
  for (auto& p : peers_) p->clear_frames();

  Frame frame = make_frame("hello");
  EXPECT_EQ(shard(0).deliver_room(101, "a", frame), 1u);
  EXPECT_TRUE(a1->frames.empty());
  EXPECT_TRUE(a2->frames.empty());
  ASSERT_EQ(b->frames.size(), 1u);
  EXPECT_EQ(b->frames[0], frame);  // the same shared frame, not a copy
  EXPECT_TRUE(c->frames.empty());
  EXPECT_TRUE(n->frames.empty());

  EXPECT_EQ(shard(0).deliver_room(101, "", frame), 3u);
  EXPECT_EQ(shard(0).deliver_room(103, "", frame), 0u);
}

TEST_F(Registry, PushRoomReachesEveryShardOnce) {
  auto [a, ida] = online(0, 101, "a");
  auto [b, idb] = online(1, 101, "b");
  auto [c, idc] = online(1, 101, "c");
  queues_.drain();
  for (auto& p : peers_) p->clear_frames();
  hub_.push_room(101, "c", make_frame("m"));
  EXPECT_EQ(queues_.pending(0), 1u);
  EXPECT_EQ(queues_.pending(1), 1u);
  EXPECT_TRUE(a->frames.empty());  // posted, never run inline
  queues_.drain();
  EXPECT_EQ(a->frames.size(), 1u);
  EXPECT_EQ(b->frames.size(), 1u);
  EXPECT_TRUE(c->frames.empty());
}

TEST_F(Registry, PushUserReachesEveryConnectionOnEveryShard) {
  auto [a0, id0] = online(0, 101, "u");
  auto [a1, id1] = online(0, 101, "u");
  auto [b0, id2] = online(1, 101, "u");
  auto [other, id3] = online(1, 101, "v");
  queues_.drain();
  for (auto& p : peers_) p->clear_frames();

  EXPECT_TRUE(hub_.push_user({101, "u"}, make_frame("to-u")));
  EXPECT_EQ(queues_.pending(0), 1u);
  EXPECT_EQ(queues_.pending(1), 1u);
  queues_.drain();
  for (FakePeer* p : {a0, a1, b0}) {
    ASSERT_EQ(p->frames.size(), 1u);
    EXPECT_EQ(p->frames[0]->payload(), "to-u");
  }
  EXPECT_TRUE(other->frames.empty());

  EXPECT_FALSE(hub_.push_user({101, "nobody"}, make_frame("x")));
  EXPECT_FALSE(hub_.push_user({102, "u"}, make_frame("x")));  // wrong app
  EXPECT_EQ(queues_.pending(), 0u);

  // After the shard-1 connection is gone, only shard 0 is posted to.
  shard(1).unlink(id2, EndReason::kClientClose);
  queues_.drain();
  EXPECT_TRUE(hub_.push_user({101, "u"}, make_frame("again")));
  EXPECT_EQ(queues_.pending(0), 1u);
  EXPECT_EQ(queues_.pending(1), 0u);
  queues_.drain();
  EXPECT_EQ(a0->frames.size(), 2u);
  EXPECT_EQ(a1->frames.size(), 2u);
  EXPECT_EQ(b0->frames.size(), 1u);
}

TEST_F(Registry, DeliverUserCountsConnections) {
  auto [a, ida] = online(0, 101, "u");
  online(0, 101, "u");
  EXPECT_EQ(shard(0).deliver_user({101, "u"}, make_frame("x")), 2u);
  EXPECT_EQ(shard(1).deliver_user({101, "u"}, make_frame("x")), 0u);
  shard(0).unlink(ida, EndReason::kClientClose);
  EXPECT_EQ(shard(0).deliver_user({101, "u"}, make_frame("x")), 1u);
}

// --- liveness ---

TEST_F(Registry, TickPingsAnIdleConnectionAfterThePingInterval) {
  auto [peer, id] = connect(0);
  shard(0).tick(kStart + kPing - 1ms);
  EXPECT_EQ(peer->pings, 0);
  shard(0).tick(kStart + kPing);
  EXPECT_EQ(peer->pings, 1);
  shard(0).tick(kStart + kPing + 1ms);
  EXPECT_EQ(peer->pings, 1);  // not again until another interval has passed
  shard(0).tick(kStart + 2 * kPing);
  EXPECT_EQ(peer->pings, 2);
  EXPECT_TRUE(shard(0).contains(id));
  EXPECT_TRUE(peer->closes.empty());
}

TEST_F(Registry, ActiveConnectionIsNotPinged) {
  auto [peer, id] = connect(0);
  for (auto t = 100ms; t <= 5 * kTimeout; t += 100ms) {
    shard(0).touch(id, kStart + t);
    shard(0).tick(kStart + t);
  }
  EXPECT_EQ(peer->pings, 0);
  EXPECT_TRUE(shard(0).contains(id));
  EXPECT_EQ(shard(0).wheel_entries(), 1u);  // one entry per live connection, whatever the ticks
}

TEST_F(Registry, TimesOutAfterHeartbeatTimeoutExactlyOnce) {
  auto [obs, o] = online(1, 101, "obs");
  auto [peer, id] = online(0, 101, "u");
  queues_.drain();
  shard(0).tick(kStart + kTimeout - 1ms);
  EXPECT_TRUE(shard(0).contains(id));
  EXPECT_TRUE(peer->closes.empty());
  EXPECT_EQ(counters_.heartbeat_timeouts.load(), 0u);

  shard(0).tick(kStart + kTimeout);
  EXPECT_FALSE(shard(0).contains(id));
  EXPECT_EQ(counters_.heartbeat_timeouts.load(), 1u);
  EXPECT_EQ(counters_.connections_closed.load(), 1u);
  ASSERT_EQ(peer->closes.size(), 1u);
  EXPECT_EQ(peer->closes[0].first, close_code::kGoingAway);
  EXPECT_FALSE(dir().online(0, "u"));
  EXPECT_EQ(dir().connection_count(), 1u);

  // The session's read loop ending afterwards, and later ticks: nothing more.
  EXPECT_FALSE(shard(0).unlink(id, EndReason::kNetworkError));
  for (int k = 1; k <= 20; ++k) shard(0).tick(kStart + kTimeout + k * kTimeout);
  EXPECT_EQ(peer->closes.size(), 1u);
  EXPECT_EQ(counters_.heartbeat_timeouts.load(), 1u);
  EXPECT_EQ(counters_.connections_closed.load(), 1u);
  queues_.drain();
  EXPECT_EQ(obs->presence_of("u"), (std::vector<std::string>{"enter", "exit"}));
}

TEST_F(Registry, TimeoutIsDetectedWithinOneTickWhenTicksAreSparse) {
  auto [peer, id] = connect(0);
  // A single late tick far past the deadline still times out (once).
  shard(0).tick(kStart + 10 * kTimeout);
  EXPECT_FALSE(shard(0).contains(id));
  EXPECT_EQ(peer->closes.size(), 1u);
  EXPECT_EQ(counters_.heartbeat_timeouts.load(), 1u);
}

TEST_F(Registry, TouchPostponesTheTimeout) {
  auto [peer, id] = connect(0);
  shard(0).touch(id, kStart + 1500ms);
  shard(0).tick(kStart + kTimeout);
  EXPECT_TRUE(shard(0).contains(id));
  shard(0).tick(kStart + 1500ms + kTimeout - 1ms);
  EXPECT_TRUE(shard(0).contains(id));
  shard(0).tick(kStart + 1500ms + kTimeout);
  EXPECT_FALSE(shard(0).contains(id));
  EXPECT_EQ(peer->closes.size(), 1u);
}

TEST_F(Registry, HeartbeatPostponesTheTimeout) {
  auto [peer, id] = online(0, 101, "u");
  ASSERT_TRUE(shard(0).heartbeat(id, kStart + 1000ms));
  shard(0).tick(kStart + kTimeout + 500ms);
  EXPECT_TRUE(shard(0).contains(id));
  shard(0).tick(kStart + 1000ms + kTimeout);
  EXPECT_FALSE(shard(0).contains(id));
}

TEST_F(Registry, TickOnlyAffectsItsOwnShard) {
  auto [p0, id0] = connect(0);
  auto [p1, id1] = connect(1);
  shard(0).tick(kStart + 10 * kTimeout);
  EXPECT_FALSE(shard(0).contains(id0));
  EXPECT_TRUE(shard(1).contains(id1));
  EXPECT_TRUE(p1->closes.empty());
  EXPECT_EQ(p1->pings, 0);
}

TEST_F(Registry, ManyIdleConnectionsTimeOutTogether) {
  std::vector<std::pair<FakePeer*, ConnId>> conns;
  for (int i = 0; i < 50; ++i) conns.push_back(online(i % 2, 101, "u" + std::to_string(i % 7)));
  EXPECT_EQ(dir().user_count(), 7u);
  shard(0).tick(kStart + kTimeout);
  shard(1).tick(kStart + kTimeout);
  for (auto [peer, id] : conns) EXPECT_EQ(peer->closes.size(), 1u);
  EXPECT_EQ(counters_.heartbeat_timeouts.load(), 50u);
  EXPECT_EQ(hub_.connections(), 0u);
  EXPECT_EQ(dir().user_count(), 0u);
  EXPECT_EQ(dir().connection_count(), 0u);
  EXPECT_EQ(dir().room_count(), 0u);
}

// --- shutdown ---

TEST_F(Registry, CloseAllUnlinksEveryConnectionAndClosesEachPeerOnce) {
  auto [obs, o] = online(1, 101, "obs");
  auto [a, ida] = online(0, 101, "a");
  auto [a2, ida2] = online(0, 101, "a");
  auto [b, idb] = online(0, 101, "b");
  auto [n, idn] = connect(0);
  auto [c, idc] = online(1, 101, "c");  // on the other shard: untouched
  queues_.drain();
  shard(0).close_all(close_code::kGoingAway, "shutdown");
  EXPECT_EQ(shard(0).size(), 0u);
  EXPECT_EQ(shard(1).size(), 2u);
  for (FakePeer* p : {a, a2, b, n}) {
    ASSERT_EQ(p->closes.size(), 1u);
    EXPECT_EQ(p->closes[0].first, close_code::kGoingAway);
  }
  EXPECT_TRUE(obs->closes.empty());
  EXPECT_TRUE(c->closes.empty());
  EXPECT_EQ(counters_.connections_closed.load(), 4u);
  EXPECT_EQ(counters_.heartbeat_timeouts.load(), 0u);
  EXPECT_EQ(as_set(dir().users_of(101)), (std::set<std::string>{"obs", "c"}));
  EXPECT_EQ(dir().connection_count(), 2u);
  queues_.drain();
  EXPECT_EQ(obs->presence_of("a"), (std::vector<std::string>{"enter", "exit"}));
  EXPECT_EQ(obs->presence_of("b"), (std::vector<std::string>{"enter", "exit"}));

  // A second close_all, and the sessions' own late unlinks, change nothing.
  shard(0).close_all(close_code::kGoingAway, "shutdown");
  for (ConnId id : {ida, ida2, idb, idn}) EXPECT_FALSE(shard(0).unlink(id, EndReason::kShutdown));
  for (FakePeer* p : {a, a2, b, n}) EXPECT_EQ(p->closes.size(), 1u);
  EXPECT_EQ(counters_.connections_closed.load(), 4u);

  shard(1).close_all(close_code::kGoingAway, "shutdown");
  queues_.drain();
  EXPECT_EQ(hub_.connections(), 0u);
  EXPECT_EQ(dir().user_count(), 0u);
  EXPECT_EQ(dir().room_count(), 0u);
  EXPECT_EQ(dir().connection_count(), 0u);
}

// --- directory ---

TEST_F(Registry, DirectoryQueries) {
  online(0, 101, "a");
  online(1, 101, "a");
  online(1, 101, "b");
  online(0, 102, "a");
  online(0, 103, "z");
  EXPECT_EQ(as_set(dir().users_of(101)), (std::set<std::string>{"a", "b"}));
  EXPECT_EQ(dir().users_of(102), std::vector<std::string>{"a"});
  EXPECT_TRUE(dir().users_of(104).empty());
  EXPECT_TRUE(dir().online(0, "z"));
  EXPECT_TRUE(dir().online(103, "z"));
  EXPECT_FALSE(dir().online(101, "z"));
  EXPECT_FALSE(dir().online(0, "nobody"));
  EXPECT_EQ(dir().user_count(), 4u);  // 101_a 101_b 102_a 103_z
  EXPECT_EQ(dir().room_count(), 3u);
  EXPECT_EQ(dir().connection_count(), 5u);
  EXPECT_EQ(as_set(dir().user_keys()), (std::set<std::string>{"101_a", "101_b", "102_a", "103_z"}));
}

TEST(Directory, AddAndRemoveAreIdempotentAndCallFirstLastOnce) {
  Directory dir;
  int first = 0, last = 0;
  auto on_first = [&] { ++first; };
  auto on_last = [&] { ++last; };
  const UserKey u{101, "u"};
  EXPECT_TRUE(dir.add(u, 1, 0, on_first));
  EXPECT_FALSE(dir.add(u, 1, 0, on_first));  // same connection again
  EXPECT_FALSE(dir.add(u, 2, 1, on_first));  // second connection
  EXPECT_EQ(first, 1);
  EXPECT_EQ(dir.connection_count(), 2u);
  EXPECT_FALSE(dir.remove(u, 99, on_last));  // unknown connection
  EXPECT_FALSE(dir.remove({102, "u"}, 1, on_last));
  EXPECT_FALSE(dir.remove(u, 1, on_last));
  EXPECT_FALSE(dir.remove(u, 1, on_last));  // again
  EXPECT_EQ(dir.connection_count(), 1u);
  EXPECT_EQ(last, 0);
  EXPECT_TRUE(dir.remove(u, 2, on_last));
  EXPECT_EQ(last, 1);
  EXPECT_FALSE(dir.remove(u, 2, on_last));
  EXPECT_EQ(last, 1);
  EXPECT_EQ(dir.user_count(), 0u);
  EXPECT_EQ(dir.room_count(), 0u);
  EXPECT_EQ(dir.connection_count(), 0u);
  // Null callbacks are allowed.
  EXPECT_TRUE(dir.add(u, 3, 0, nullptr));
  EXPECT_TRUE(dir.remove(u, 3, nullptr));
}

TEST_F(Registry, PresenceFrameSeqsAreFreshDecimalIds) {
  std::set<std::string> seqs;
  for (int i = 0; i < 100; ++i) {
    test::Push p = test::parse_push(hub_.presence_frame(i % 2 ? "enter" : "exit", "u"));
    EXPECT_TRUE(seqs.insert(p.seq).second) << p.seq;
    EXPECT_EQ(p.msg, i % 2 ? "哈喽~" : "用户已经离开~");
  }
}

}  // namespace
}  // namespace imgate
