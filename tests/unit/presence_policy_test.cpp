// PresencePolicy: enter / exit only in rooms up to a size, never in quiet rooms.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "shard_fixture.hpp"

namespace imgate {
namespace {

using namespace std::chrono_literals;
using test::FakePeer;

const TimePoint kStart{std::chrono::hours(1)};

class Presence : public test::HubFixture {
 protected:
  Presence() : HubFixture(1, LivenessSettings{10s, 5s}, kStart) {}

  // A logged-in connection of `user` in `app`; returns its peer.
  FakePeer* join(AppId app, const std::string& user) {
    auto [peer, id] = online(0, app, user);
    ids_.push_back(id);
    queues_.drain();
    return peer;
  }

  std::vector<ConnId> ids_;
};

TEST(PresencePolicy, AnnouncesUpToMaxRoomAndNeverInQuietRooms) {
  PresencePolicy all;
  EXPECT_TRUE(all.announces(101, 1'000'000));
  PresencePolicy capped{3, {104}};
  EXPECT_TRUE(capped.announces(101, 3));
  EXPECT_FALSE(capped.announces(101, 4));
  EXPECT_FALSE(capped.announces(104, 1));
}

TEST_F(Presence, EnterStopsAboveTheRoomSizeAndExitResumesBelowIt) {
  hub_.set_presence_policy(PresencePolicy{2, {}});
  FakePeer* a = join(101, "a");
  join(101, "b");  // room of 2: announced
  EXPECT_EQ(a->count("enter", "b"), 1u);
  join(101, "c");  // room of 3: above the cap
  EXPECT_EQ(a->count("enter", "c"), 0u);
  EXPECT_EQ(counters_.presence_suppressed.load(), 1u);
  // c leaves a room of 3 (no exit), then b leaves a room of 2 (exit).
  EXPECT_TRUE(hub_.shard(0).unlink(ids_[2], EndReason::kClientClose));
  EXPECT_TRUE(hub_.shard(0).unlink(ids_[1], EndReason::kClientClose));
  queues_.drain();
  EXPECT_EQ(a->count("exit", "c"), 0u);
  EXPECT_EQ(a->count("exit", "b"), 1u);
  EXPECT_EQ(counters_.presence_suppressed.load(), 2u);
}

TEST_F(Presence, QuietRoomsGetNoEnterOrExitButOtherRoomsDo) {
  hub_.set_presence_policy(PresencePolicy{0, {102}});
  FakePeer* quiet_a = join(102, "a");
  join(102, "b");
  FakePeer* loud_a = join(101, "a");
  join(101, "b");
  EXPECT_EQ(quiet_a->count("enter", "b"), 0u);
  EXPECT_EQ(loud_a->count("enter", "b"), 1u);
  // Pushes still reach the quiet room.
  hub_.push_room(102, "b", make_frame(R"({"seq":"1","cmd":"msg"})"));
  queues_.drain();
  EXPECT_EQ(quiet_a->pushes().size(), 1u);
  EXPECT_EQ(hub_.directory().user_count(), 4u);
}

}  // namespace
}  // namespace imgate
