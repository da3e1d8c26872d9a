// Unit tests of room pushes delivered in slices (Hub::drain, Shard::deliver_room(RoomFanout&)):
// other work on the loop runs between slices; per-connection order holds across room pushes and
// a unicast sent after them; a connection unlinked mid-fan-out is skipped (its peer destroyed:
// ASan would see a use); a login mid-fan-out does not get the push, a login before its first
// slice does; pushes queued together reach each recipient in one turn (one write); the answers
// to room pushes wait while too many are in flight.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "shard_fixture.hpp"

namespace imgate {
namespace {

using namespace std::chrono_literals;
using test::FakePeer;

const TimePoint kStart{std::chrono::hours(2)};
constexpr AppId kRoom = 101;
constexpr std::size_t kSlice = 3;

class FanoutSlices : public test::HubFixture {
 protected:
  FanoutSlices() : HubFixture(1, LivenessSettings{10s, 5s}, kStart) {
    hub_.set_presence_policy(PresencePolicy{0, {kRoom}});  // no enter / exit: msg pushes only
    hub_.set_fanout_slice(kSlice);
  }

  Shard& shard() { return hub_.shard(0); }

  // A logged-in member "u<i>" of the room; returns its index in peers_.
  std::size_t join(const std::string& user) {
    ids_.push_back(online(0, kRoom, user).second);
    return peers_.size() - 1;
  }
  void join_many(std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) join("u" + std::to_string(i));
  }

  void push_room(const std::string& text) {
    hub_.push_room(kRoom, "", make_push(text, "msg", text, "sender"));
  }

  // The msg texts a peer received, in order.
  static std::vector<std::string> texts(const FakePeer& peer) {
    std::vector<std::string> out;
    for (const auto& p : peer.pushes()) {
      if (p.cmd == "msg") out.push_back(p.msg);
    }
    return out;
  }
  std::size_t peers_with(const std::string& text) const {
    std::size_t n = 0;
    for (const auto& peer : peers_) {
      if (!peer) continue;
      for (const auto& t : texts(*peer)) n += t == text ? 1 : 0;
    }
    return n;
  }

  std::vector<ConnId> ids_;
};

TEST_F(FanoutSlices, OtherWorkOnTheLoopRunsBetweenSlices) {
  join_many(10);
  push_room("a");
  std::size_t had_it = 99;
  // Posted after the push, as an HTTP request or a WebSocket read would be.
  queues_.poster()(0, [&] { had_it = peers_with("a"); });
  queues_.drain();
  EXPECT_EQ(had_it, kSlice) << "the other work waited for the whole fan-out";
  EXPECT_EQ(peers_with("a"), 10u);
  EXPECT_GE(counters_.fanout_slices.load(), 3u);  // 10 members, 3 per turn: 4 turns
  EXPECT_EQ(hub_.room_pushes_in_flight(), 0u);
}

TEST_F(FanoutSlices, PushesToAConnectionKeepTheirOrderAcrossSlicesAndAUnicast) {
  join_many(10);
  push_room("a");
  push_room("b");
  // The unicast goes to every member (sent after the room pushes, as the API answered them).
  for (std::size_t i = 0; i < 10; ++i) {
    ASSERT_TRUE(hub_.push_user(UserKey{kRoom, "u" + std::to_string(i)},
                               make_push("c", "msg", "c", "sender")));
  }
  // Step turn by turn: no member ever holds a later push before an earlier one.
  std::size_t turns = 0;
  while (queues_.run_one(0)) {
    ++turns;
    for (const auto& peer : peers_) {
      const auto got = texts(*peer);
      const std::vector<std::string> order{"a", "b", "c"};
      ASSERT_LE(got.size(), 3u);
      for (std::size_t k = 0; k < got.size(); ++k) ASSERT_EQ(got[k], order[k]) << "turn " << turns;
    }
  }
  for (const auto& peer : peers_) EXPECT_EQ(texts(*peer), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_GE(turns, 8u);  // 30 deliveries, about 3 per turn
}

TEST_F(FanoutSlices, AConnectionUnlinkedMidFanoutIsSkipped) {
  join_many(10);
  push_room("a");
  ASSERT_TRUE(queues_.run_one(0));  // the first slice of "a"
  ASSERT_EQ(peers_with("a"), kSlice);
  push_room("b");
  // Unlink one member that got "a" already and one that did not; destroy their peers, so
  // that a delivery to either would be a use after free.
  std::size_t had = peers_.size(), lacked = peers_.size();
  for (std::size_t i = 0; i < peers_.size(); ++i) {
    (texts(*peers_[i]).empty() ? lacked : had) = i;
  }
  ASSERT_LT(had, peers_.size());
  ASSERT_LT(lacked, peers_.size());
  for (std::size_t i : {had, lacked}) {
    ASSERT_TRUE(shard().unlink(ids_[i], EndReason::kClientClose));
    peers_[i].reset();
  }
  queues_.drain();
  for (std::size_t i = 0; i < peers_.size(); ++i) {
    if (!peers_[i]) continue;
    EXPECT_EQ(texts(*peers_[i]), (std::vector<std::string>{"a", "b"})) << "member " << i;
  }
  EXPECT_EQ(peers_with("a"), 8u);
  EXPECT_EQ(peers_with("b"), 8u);
  EXPECT_EQ(hub_.room_pushes_in_flight(), 0u);
}

TEST_F(FanoutSlices, ALoginMidFanoutGetsOnlyTheNextPush) {
  join_many(10);
  push_room("a");
  // Before the first slice: a member when "a" starts on the shard, so it gets it.
  const std::size_t early = join("early");
  ASSERT_TRUE(queues_.run_one(0));
  ASSERT_EQ(peers_with("a"), kSlice);
  // Mid-fan-out: many logins (the room index grows and rehashes under the fan-out).
  std::vector<std::size_t> late;
  for (int i = 0; i < 200; ++i) late.push_back(join("late" + std::to_string(i)));
  push_room("b");
  queues_.drain();
  EXPECT_EQ(texts(*peers_[early]), (std::vector<std::string>{"a", "b"}));
  for (std::size_t i : late) {
    EXPECT_EQ(texts(*peers_[i]), std::vector<std::string>{"b"}) << "member " << i;
  }
  EXPECT_EQ(peers_with("a"), 11u);
  EXPECT_EQ(peers_with("b"), 211u);
}

TEST_F(FanoutSlices, RoomPushAnswersWaitWhileTooManyAreInFlight) {
  join_many(10);
  for (std::size_t i = 0; i < Hub::kRoomPushesInFlight; ++i) push_room("p" + std::to_string(i));
  bool answered = false;
  hub_.after_room_backlog([&] { answered = true; });
  EXPECT_TRUE(answered) << "at the bound: answered at once";
  push_room("over");
  EXPECT_EQ(hub_.room_pushes_in_flight(), Hub::kRoomPushesInFlight + 1);
  bool waited = false;
  hub_.after_room_backlog([&] { waited = true; });
  EXPECT_FALSE(waited);
  // The first push done brings the count back to the bound.
  while (!waited && queues_.run_one(0)) {
  }
  EXPECT_TRUE(waited);
  EXPECT_EQ(peers_with("p0"), 10u);
  EXPECT_LT(peers_with("over"), 10u);
  queues_.drain();
  EXPECT_EQ(hub_.room_pushes_in_flight(), 0u);
  EXPECT_EQ(peers_with("over"), 10u);
}

TEST_F(FanoutSlices, ARoomThatFitsTheSliceGoesOutInOneTurn) {
  join_many(kSlice);
  push_room("a");
  ASSERT_TRUE(queues_.run_one(0));
  EXPECT_EQ(peers_with("a"), kSlice);
  push_room("b");
  queues_.drain();
  EXPECT_EQ(peers_with("b"), kSlice);
}

TEST_F(FanoutSlices, PushesQueuedTogetherReachEachRecipientInOneTurn) {
  join_many(10);
  hub_.set_fanout_slice(4);  // two recipients per turn, both pushes each
  push_room("a");
  push_room("b");
  ASSERT_TRUE(queues_.run_one(0));
  EXPECT_EQ(peers_with("a"), 2u);
  EXPECT_EQ(peers_with("b"), 2u);
  for (const auto& peer : peers_) {
    const auto got = texts(*peer);
    EXPECT_TRUE(got.empty() || got == (std::vector<std::string>{"a", "b"}));
  }
  queues_.drain();
  EXPECT_EQ(peers_with("a"), 10u);
  EXPECT_EQ(peers_with("b"), 10u);
}

}  // namespace
}  // namespace imgate
