// MemoryTrim's decisions (net/memory_trim.hpp): when it gives memory back.
#include <gtest/gtest.h>

#include "net/memory_trim.hpp"

namespace imgate::test {
namespace {

TEST(MemoryTrimTest, TrimsOnceAWaveOfNewConnectionsIsOverNotWhileItRuns) {
  MemoryTrim trim(1000);
  EXPECT_FALSE(trim.check(0, 0));
  EXPECT_FALSE(trim.check(600, 600));    // a wave under way
  EXPECT_FALSE(trim.check(1500, 1500));  // still coming in
  EXPECT_TRUE(trim.check(1500, 1520));   // calm: 20 in the last second
  EXPECT_FALSE(trim.check(1500, 1520));  // once
  EXPECT_FALSE(trim.check(1500, 1600));  // a trickle is no wave
  EXPECT_FALSE(trim.check(1500, 1600));
}

TEST(MemoryTrimTest, ASteadyStreamOfNewConnectionsNeverTrims) {
  MemoryTrim trim(1000);
  uint64_t opened = 0;
  for (int second = 0; second < 100; ++second) {
    opened += 150;  // 150/s for 100 s, connections steady at 5,000
    EXPECT_FALSE(trim.check(5000, opened)) << "second " << second;
  }
}

TEST(MemoryTrimTest, TrimsWhenManyConnectionsWentAway) {
  MemoryTrim trim(1000);
  EXPECT_FALSE(trim.check(8000, 0));
  EXPECT_FALSE(trim.check(7500, 0));  // 500 fewer: below min_drop
  EXPECT_TRUE(trim.check(5000, 0));   // 3,000 fewer: a quarter and more
  EXPECT_FALSE(trim.check(5000, 0));
}

}  // namespace
}  // namespace imgate::test
