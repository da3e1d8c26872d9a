// Unit tests for src/registry/timing_wheel.hpp: entries fire not before their time and at most one
// tick after it, deadlines are clamped to the span, advancing over many ticks at once works, a
// callback may reschedule, size() is exact, and a tick only visits the entries due.
#include "registry/timing_wheel.hpp"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <vector>

namespace imgate {
namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;

const TimePoint kOrigin{std::chrono::hours(5)};

TEST(TimingWheel, TickIsAtLeastOneMillisecond) {
  TimingWheel wheel(0ms, 100ms, kOrigin);
  EXPECT_EQ(wheel.tick(), 1ms);
  TimingWheel wheel2(50ms, 1000ms, kOrigin);
  EXPECT_EQ(wheel2.tick(), 50ms);
}

TEST(TimingWheel, FiresNotBeforeItsTimeAndWithinOneTickAfter) {
  const milliseconds tick = 10ms;
  TimingWheel wheel(tick, 1000ms, kOrigin);
  // Deadlines on and between slot boundaries.
  std::map<ConnId, TimePoint> deadline;
  ConnId next = 1;
  for (milliseconds d : {1ms, 9ms, 10ms, 11ms, 19ms, 20ms, 55ms, 100ms, 999ms, 1000ms}) {
    deadline[next] = kOrigin + d;
    wheel.schedule(next, kOrigin + d);
    ++next;
  }
  ASSERT_EQ(wheel.size(), deadline.size());
  std::map<ConnId, TimePoint> fired;
  // Advance one millisecond at a time so "when" is known to the millisecond.
  for (TimePoint now = kOrigin; now <= kOrigin + 1100ms; now += 1ms) {
    wheel.advance(now, [&](ConnId id) {
      EXPECT_FALSE(fired.contains(id)) << "fired twice: " << id;
      fired[id] = now;
    });
  }
  ASSERT_EQ(fired.size(), deadline.size());
  for (const auto& [id, when] : deadline) {
    SCOPED_TRACE(id);
    EXPECT_GE(fired[id], when);
    EXPECT_LE(fired[id], when + tick);
  }
  EXPECT_EQ(wheel.size(), 0u);
}

TEST(TimingWheel, SubMillisecondDeadlinesDoNotFireEarly) {
  // steady_clock has nanosecond resolution; a deadline 0.5 ms past a slot boundary must not be
  // placed in that boundary's slot.
  TimingWheel wheel(10ms, 1000ms, kOrigin);
  const TimePoint when = kOrigin + 10ms + 500us;
  wheel.schedule(1, when);
  int calls = 0;
  wheel.advance(kOrigin + 10ms, [&](ConnId) { ++calls; });
  EXPECT_EQ(calls, 0) << "fired before its deadline";
  wheel.advance(when, [&](ConnId) { ++calls; });
  wheel.advance(kOrigin + 20ms, [&](ConnId) { ++calls; });
  EXPECT_EQ(calls, 1);
}

TEST(TimingWheel, PastAndPresentDeadlinesFireOnTheNextTick) {
  TimingWheel wheel(10ms, 100ms, kOrigin);
  wheel.advance(kOrigin + 50ms, [](ConnId) { FAIL(); });
  wheel.schedule(1, kOrigin);         // long past
  wheel.schedule(2, kOrigin + 50ms);  // now
  wheel.schedule(3, kOrigin - 1h);    // before the origin
  std::vector<ConnId> fired;
  wheel.advance(kOrigin + 59ms, [&](ConnId id) { fired.push_back(id); });
  EXPECT_TRUE(fired.empty());  // never in the current (already processed) slot
  wheel.advance(kOrigin + 60ms, [&](ConnId id) { fired.push_back(id); });
  EXPECT_EQ(fired.size(), 3u);
}

TEST(TimingWheel, DeadlinesBeyondTheSpanAreClamped) {
  const milliseconds tick = 10ms, span = 100ms;
  TimingWheel wheel(tick, span, kOrigin);
  wheel.schedule(1, kOrigin + 1h);
  wheel.schedule(2, kOrigin + span + 5 * tick);
  EXPECT_EQ(wheel.size(), 2u);
  std::vector<std::pair<ConnId, TimePoint>> fired;
  for (TimePoint now = kOrigin; now <= kOrigin + 3 * span; now += 1ms) {
    wheel.advance(now, [&](ConnId id) { fired.emplace_back(id, now); });
  }
  ASSERT_EQ(fired.size(), 2u);
  for (const auto& [id, when] : fired) {
    // Clamped to about the span ahead (not wrapped around to an earlier slot).
    EXPECT_GE(when, kOrigin + span) << id;
    EXPECT_LE(when, kOrigin + span + 2 * tick) << id;
  }
}

TEST(TimingWheel, ClampedEntryDoesNotCollideWithTheCurrentSlot) {
  // After advancing, the clamp must still leave the entry a full span ahead, not in a slot that
  // comes due right away because of the modulo.
  const milliseconds tick = 10ms, span = 100ms;
  TimingWheel wheel(tick, span, kOrigin);
  for (int round = 0; round < 25; ++round) {
    // Each round starts past the previous one's last advance, at a varying phase within a tick.
    const TimePoint now = kOrigin + round * (span + 3 * tick + 7ms);
    wheel.advance(now, [](ConnId) {});
    wheel.schedule(7, now + 10h);
    int calls = 0;
    wheel.advance(now + span - tick, [&](ConnId) { ++calls; });
    EXPECT_EQ(calls, 0) << round;
    wheel.advance(now + span + 2 * tick, [&](ConnId) { ++calls; });
    EXPECT_EQ(calls, 1) << round;
  }
}

TEST(TimingWheel, AdvanceOverManyTicksAtOnce) {
  TimingWheel wheel(10ms, 1000ms, kOrigin);
  for (ConnId id = 0; id < 100; ++id) wheel.schedule(id, kOrigin + (id + 1) * 10ms);
  std::vector<ConnId> fired;
  wheel.advance(kOrigin + 500ms, [&](ConnId id) { fired.push_back(id); });
  EXPECT_EQ(fired.size(), 50u);  // deadlines 10..500 ms
  // In deadline order, since slots are visited in order.
  for (std::size_t i = 0; i < fired.size(); ++i) EXPECT_EQ(fired[i], i);
  EXPECT_EQ(wheel.size(), 50u);
  // A jump far beyond the span (many wheel revolutions) fires the rest exactly once.
  wheel.advance(kOrigin + 1h, [&](ConnId id) { fired.push_back(id); });
  EXPECT_EQ(fired.size(), 100u);
  EXPECT_EQ(wheel.size(), 0u);
  // Time going backwards, or standing still, does nothing.
  wheel.schedule(1000, kOrigin + 1h + 10ms);
  wheel.advance(kOrigin, [&](ConnId) { FAIL(); });
  wheel.advance(kOrigin + 1h, [&](ConnId) { FAIL(); });
  EXPECT_EQ(wheel.size(), 1u);
}

TEST(TimingWheel, RescheduleFromInsideTheCallback) {
  const milliseconds tick = 10ms;
  // One advance covering every re-schedule: each visit re-schedules 30 ms after the previous
  // deadline, five visits in all.
  {
    TimingWheel wheel(tick, 200ms, kOrigin);
    wheel.schedule(1, kOrigin + 30ms);
    int visits = 0;
    wheel.advance(kOrigin + 1s, [&](ConnId id) {
      EXPECT_EQ(id, 1u);
      ++visits;
      if (visits < 5) wheel.schedule(id, kOrigin + (visits + 1) * 30ms);
    });
    EXPECT_EQ(visits, 5);
    EXPECT_EQ(wheel.size(), 0u);
  }
  // Tick by tick: each re-scheduled visit happens at its own deadline.
  {
    TimingWheel wheel(tick, 200ms, kOrigin);
    wheel.schedule(1, kOrigin + 30ms);
    std::vector<TimePoint> visits;
    for (TimePoint now = kOrigin; now <= kOrigin + 1s; now += tick) {
      wheel.advance(now, [&](ConnId id) {
        visits.push_back(now);
        if (visits.size() < 5) wheel.schedule(id, now + 30ms);
      });
    }
    ASSERT_EQ(visits.size(), 5u);
    for (std::size_t i = 0; i < visits.size(); ++i) {
      EXPECT_EQ(visits[i], kOrigin + static_cast<int>(i + 1) * 30ms) << i;
    }
  }
}

TEST(TimingWheel, RescheduleInsideCallbackForTheSameSlotGoesToALaterTick) {
  TimingWheel wheel(10ms, 200ms, kOrigin);
  wheel.schedule(1, kOrigin + 10ms);
  int calls = 0;
  // Rescheduling "now" from inside a callback must not loop in the same slot forever.
  wheel.advance(kOrigin + 10ms, [&](ConnId id) {
    ++calls;
    wheel.schedule(id, kOrigin + 10ms);
  });
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(wheel.size(), 1u);
  wheel.advance(kOrigin + 20ms, [&](ConnId) { ++calls; });
  EXPECT_EQ(calls, 2);
}

TEST(TimingWheel, SizeCountsEntriesIncludingDuplicates) {
  TimingWheel wheel(10ms, 100ms, kOrigin);
  EXPECT_EQ(wheel.size(), 0u);
  wheel.schedule(1, kOrigin + 20ms);
  wheel.schedule(1, kOrigin + 20ms);
  wheel.schedule(2, kOrigin + 50ms);
  EXPECT_EQ(wheel.size(), 3u);
  int calls = 0;
  wheel.advance(kOrigin + 20ms, [&](ConnId) { ++calls; });
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(wheel.size(), 1u);
}

TEST(TimingWheel, LargeCountsEachFireExactlyOnce) {
  const milliseconds tick = 10ms, span = 10s;
  TimingWheel wheel(tick, span, kOrigin);
  constexpr ConnId kEntries = 100'000;
  std::mt19937 rng(42);
  std::uniform_int_distribution<int> ms(0, static_cast<int>(span.count()));
  std::vector<TimePoint> deadline(kEntries);
  for (ConnId id = 0; id < kEntries; ++id) {
    deadline[id] = kOrigin + milliseconds(ms(rng));
    wheel.schedule(id, deadline[id]);
  }
  ASSERT_EQ(wheel.size(), kEntries);
  std::vector<uint8_t> fired(kEntries, 0);
  std::size_t total = 0, early = 0, late = 0;
  std::size_t max_per_tick = 0;
  for (TimePoint now = kOrigin; now <= kOrigin + span + 2 * tick; now += tick) {
    std::size_t this_tick = 0;
    wheel.advance(now, [&](ConnId id) {
      ++fired[id];
      ++total;
      ++this_tick;
      early += now < deadline[id];
      late += now > deadline[id] + tick;
    });
    max_per_tick = std::max(max_per_tick, this_tick);
  }
  EXPECT_EQ(total, kEntries);
  EXPECT_EQ(early, 0u);
  EXPECT_EQ(late, 0u);
  EXPECT_EQ(wheel.size(), 0u);
  for (ConnId id = 0; id < kEntries; ++id) ASSERT_EQ(fired[id], 1) << id;
  // One tick visits one slot: about kEntries / (span / tick) entries, nowhere near all of them.
  EXPECT_LT(max_per_tick, kEntries / 100);
}

}  // namespace
}  // namespace imgate
