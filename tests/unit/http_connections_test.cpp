// security/http_connections: the bound on HTTP API sessions, the longest idle
// session making room for a new one, and evictions called off by a request
// that arrives first.
#include "security/http_connections.hpp"

#include <gtest/gtest.h>

#include <array>
#include <vector>

namespace imgate {
namespace {

using Admission = HttpConnections::Admission;

// Slots that record which of them were asked to close.
struct Sessions {
  explicit Sessions(std::size_t n) : slots(n) {
    for (std::size_t i = 0; i < n; ++i) slots[i].evict = [this, i] { asked.push_back(i); };
  }
  std::vector<HttpConnections::Slot> slots;
  std::vector<std::size_t> asked;
};

TEST(HttpConnectionsTest, AdmitsUpToTheBoundThenRefusesWhenNoneIsIdle) {
  HttpConnections table(3);
  Sessions s(3);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(table.admit(), Admission::kAdmitted);
  EXPECT_EQ(table.open(), 3u);
  EXPECT_EQ(table.admit(), Admission::kFull);  // all busy
  EXPECT_EQ(table.open(), 3u);
  table.leave(s.slots[0]);
  EXPECT_EQ(table.admit(), Admission::kAdmitted);
  EXPECT_TRUE(s.asked.empty());
}

TEST(HttpConnectionsTest, AtTheBoundTheLongestIdleMakesRoom) {
  HttpConnections table(3);
  Sessions s(4);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(table.admit(), Admission::kAdmitted);
  table.idle(s.slots[1]);
  table.idle(s.slots[0]);
  table.idle(s.slots[2]);
  table.idle(s.slots[1]);  // idle already: keeps its place (the oldest)
  EXPECT_EQ(table.idle_count(), 3u);

  EXPECT_EQ(table.admit(), Admission::kReplacing);
  EXPECT_EQ(s.asked, (std::vector<std::size_t>{1}));
  EXPECT_EQ(table.open(), 4u);  // until the evicted one is gone
  EXPECT_EQ(table.idle_count(), 2u);
  EXPECT_TRUE(table.evicted(s.slots[1]));
  table.busy(s.slots[1]);  // its read ends (cancelled)
  table.leave(s.slots[1]);
  EXPECT_EQ(table.open(), 3u);

  // Next in line: 0, then 2; a session that was busy and idle again goes last.
  table.busy(s.slots[0]);
  table.idle(s.slots[0]);
  EXPECT_EQ(table.admit(), Admission::kReplacing);
  EXPECT_EQ(table.admit(), Admission::kReplacing);
  EXPECT_EQ(s.asked, (std::vector<std::size_t>{1, 2, 0}));
  EXPECT_EQ(table.open(), 5u);
  EXPECT_EQ(table.admit(), Admission::kFull);  // nobody idle left
}

TEST(HttpConnectionsTest, ARequestArrivingFirstCallsTheEvictionOff) {
  HttpConnections table(1);
  Sessions s(1);
  ASSERT_EQ(table.admit(), Admission::kAdmitted);
  table.idle(s.slots[0]);
  ASSERT_EQ(table.admit(), Admission::kReplacing);
  table.busy(s.slots[0]);                    // a request got there before the close
  EXPECT_FALSE(table.evicted(s.slots[0]));   // so it is served, not closed
  EXPECT_EQ(table.open(), 2u);
  // Over the bound with nobody evicting: the next new connection needs an idle one.
  EXPECT_EQ(table.admit(), Admission::kFull);
  table.idle(s.slots[0]);
  EXPECT_EQ(table.admit(), Admission::kReplacing);
  EXPECT_TRUE(table.evicted(s.slots[0]));
}

TEST(HttpConnectionsTest, ClosesUnderWayAreBounded) {
  constexpr std::size_t kMax = 2 * HttpConnections::kMaxEvicting;
  HttpConnections table(kMax);
  Sessions s(kMax);
  for (std::size_t i = 0; i < kMax; ++i) {
    ASSERT_EQ(table.admit(), Admission::kAdmitted);
    table.idle(s.slots[i]);
  }
  for (std::size_t i = 0; i < HttpConnections::kMaxEvicting; ++i) {
    EXPECT_EQ(table.admit(), Admission::kReplacing);
  }
  // Idle sessions are left, but as many closes as allowed are under way.
  EXPECT_EQ(table.admit(), Admission::kWait);
  EXPECT_EQ(table.open(), kMax + HttpConnections::kMaxEvicting);
  table.leave(s.slots[0]);  // one close done
  EXPECT_EQ(table.admit(), Admission::kReplacing);
}

TEST(HttpConnectionsTest, LeavingFromAnyStateGivesThePlaceBack) {
  HttpConnections table(3);
  Sessions s(3);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(table.admit(), Admission::kAdmitted);
  table.idle(s.slots[1]);
  table.idle(s.slots[2]);
  ASSERT_EQ(table.admit(), Admission::kReplacing);  // 1 is being closed
  table.leave(s.slots[0]);                          // busy
  table.leave(s.slots[1]);                          // being closed
  table.leave(s.slots[2]);                          // idle
  EXPECT_EQ(table.open(), 1u);                      // the newcomer
  EXPECT_EQ(table.idle_count(), 0u);
  EXPECT_EQ(table.admit(), Admission::kAdmitted);
  EXPECT_EQ(table.admit(), Admission::kAdmitted);
  EXPECT_EQ(table.admit(), Admission::kFull);
}

}  // namespace
}  // namespace imgate
