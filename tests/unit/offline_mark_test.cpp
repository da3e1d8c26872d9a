// Where a user's offline messages start (issue 16, item 1; docs/history.md): the user stream
// position the node delivered to the user, known node-wide. Every order of one user's logins on
// two shards, three user pushes routed to it and its two closes, with the shards' tasks run at
// every point in between (no task, one shard's, all): each time the user goes offline on the
// node, the mark handed to the history is the highest push routed to the user while it was
// online, whichever shard's connection closed last and whether its deliveries ran or not. Also:
// a mark only moves forward within an epoch, another epoch replaces it, and pushes sent from
// history at a login count.
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "fake_peer.hpp"
#include "protocol/envelope.hpp"
#include "registry/shard.hpp"

namespace imgate {
namespace {

using test::FakePeer;
using test::TaskQueues;

const TimePoint kStart{std::chrono::hours(3)};
constexpr AppId kApp = 101;

class RecordingHooks final : public HistoryHooks {
 public:
  void user_left(const UserKey&, const std::optional<StreamPos>& delivered) override {
    marks.push_back(delivered);
  }
  std::vector<std::optional<StreamPos>> marks;
};

enum class Ev { kLoginA, kLoginB, kPush1, kPush2, kPush3, kCloseA, kCloseB };

struct Scenario {
  Counters counters;
  Hub hub{2, LivenessSettings{}, counters, kStart};
  TaskQueues queues{2};
  RecordingHooks hooks;
  FakePeer peer[2];
  ConnId conn[2] = {0, 0};

  Scenario() {
    hub.set_poster(queues.poster());
    hub.set_presence_frames(make_presence_push);
    hub.set_history_hooks(&hooks);
    for (uint32_t s = 0; s < 2; ++s) conn[s] = hub.shard(s).add(peer[s], kStart);
  }
  ~Scenario() { hub.set_history_hooks(nullptr); }
};

// Runs `order`, draining tasks per `drains` (bit i: after event i, 0 = none, 1 = shard 0's,
// 2 = all), and compares the marks handed to the history with the model's.
void run(const std::vector<Ev>& order, const std::vector<int>& drains) {
  Scenario t;
  // The model: who is logged in, the highest offset routed while online, marks expected.
  bool in[2] = {false, false};
  bool closed[2] = {false, false};
  std::optional<uint64_t> routed;
  std::vector<std::optional<uint64_t>> want;
  std::string trace;
  for (std::size_t i = 0; i < order.size(); ++i) {
    const Ev e = order[i];
    switch (e) {
      case Ev::kLoginA:
      case Ev::kLoginB: {
        const int s = e == Ev::kLoginA ? 0 : 1;
        trace += s == 0 ? " loginA" : " loginB";
        const bool ok = t.hub.shard(s).login(t.conn[s], kApp, "u", kStart) == LoginStatus::kOk;
        EXPECT_EQ(ok, !closed[s]);
        if (ok) in[s] = true;
        break;
      }
      case Ev::kPush1:
      case Ev::kPush2:
      case Ev::kPush3: {
        const uint64_t offset = static_cast<uint64_t>(e) - static_cast<uint64_t>(Ev::kPush1) + 1;
        trace += " push" + std::to_string(offset);
        const StreamMark mark{"user", "e1", offset};
        t.hub.push_user(UserKey{kApp, "u"}, make_push("s", "msg", "m", "u", &mark), offset, "e1");
        if (in[0] || in[1]) routed = std::max(routed.value_or(0), offset);
        break;
      }
      case Ev::kCloseA:
      case Ev::kCloseB: {
        const int s = e == Ev::kCloseA ? 0 : 1;
        trace += s == 0 ? " closeA" : " closeB";
        t.hub.shard(s).unlink(t.conn[s], EndReason::kClientClose);
        closed[s] = true;
        if (in[s]) {
          in[s] = false;
          if (!in[0] && !in[1]) {
            want.push_back(routed);
            routed.reset();
          }
        }
        break;
      }
    }
    if (drains[i] == 1) t.queues.run_all(0);
    if (drains[i] == 2) t.queues.drain();
    trace += "/" + std::to_string(drains[i]);
  }
  t.queues.drain();
  ASSERT_EQ(t.hooks.marks.size(), want.size()) << trace;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const auto& got = t.hooks.marks[i];
    ASSERT_EQ(got.has_value(), want[i].has_value()) << trace;
    if (got) {
      EXPECT_EQ(got->offset, *want[i]) << trace;
      EXPECT_EQ(got->epoch, "e1") << trace;
    }
  }
  EXPECT_EQ(t.hub.directory().user_count(), 0u) << trace;
}

TEST(OfflineMark, EveryOrderOfTwoTabsOnTwoShardsThreePushesAndTwoClosesGivesTheHighestRouted) {
  test::QuietLogs quiet;
  std::vector<Ev> order{Ev::kLoginA, Ev::kLoginB, Ev::kPush1, Ev::kPush2,
                        Ev::kPush3,  Ev::kCloseA, Ev::kCloseB};
  std::sort(order.begin(), order.end());
  std::size_t orders = 0;
  do {
    // Pushes keep their offset order (a stream's pushes are routed in order).
    std::vector<Ev> pushes;
    for (Ev e : order) {
      if (e == Ev::kPush1 || e == Ev::kPush2 || e == Ev::kPush3) pushes.push_back(e);
    }
    if (!std::is_sorted(pushes.begin(), pushes.end())) continue;
    ++orders;
    // Three drain patterns per order: never until the end, shard 0 after each event, all.
    for (int pattern : {0, 1, 2}) run(order, std::vector<int>(order.size(), pattern));
  } while (std::next_permutation(order.begin(), order.end()));
  EXPECT_EQ(orders, 840u);  // 7! / 3!
}

TEST(OfflineMark, AMarkMovesForwardWithinAnEpochAndAnotherEpochReplacesIt) {
  test::QuietLogs quiet;
  Scenario t;
  const UserKey u{kApp, "u"};
  ASSERT_EQ(t.hub.shard(0).login(t.conn[0], kApp, "u", kStart), LoginStatus::kOk);
  t.hub.shard(0).note_delivered(t.conn[0], StreamPos{"e1", 7});  // offline messages at login
  EXPECT_EQ(t.hub.directory().delivered(u)->offset, 7u);
  t.hub.push_user(u, make_push("s", "msg", "m", "u"), 5, "e1");  // an older one cannot lower it
  EXPECT_EQ(t.hub.directory().delivered(u)->offset, 7u);
  t.hub.push_user(u, make_push("s", "msg", "m", "u"), 2, "e2");  // a new history
  EXPECT_EQ(t.hub.directory().delivered(u)->epoch, "e2");
  EXPECT_EQ(t.hub.directory().delivered(u)->offset, 2u);
  t.hub.push_user(u, make_push("s", "msg", "m", "u"));  // not a stream push: no mark
  EXPECT_EQ(t.hub.directory().delivered(u)->offset, 2u);
  t.hub.shard(0).unlink(t.conn[0], EndReason::kClientClose);
  t.queues.drain();
  ASSERT_EQ(t.hooks.marks.size(), 1u);
  EXPECT_EQ(t.hooks.marks[0]->epoch, "e2");
  EXPECT_EQ(t.hooks.marks[0]->offset, 2u);
  EXPECT_FALSE(t.hub.directory().delivered(u)) << "forgotten with the user";
}

}  // namespace
}  // namespace imgate
