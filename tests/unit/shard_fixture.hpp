// The fixture of the registry's unit tests: a Hub whose posted tasks the test runs explicitly
// (TaskQueues), with presence frames and logging silenced, and fake peers owned by the fixture
// so that they outlive their connections.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fake_peer.hpp"
#include "protocol/envelope.hpp"
#include "registry/shard.hpp"

namespace imgate::test {

class HubFixture : public ::testing::Test {
 protected:
  // `shards` shards, created at `start` (the default time of connect and online).
  HubFixture(uint32_t shards, LivenessSettings liveness, TimePoint start)
      : start_(start), hub_(shards, liveness, counters_, start), queues_(shards) {
    hub_.set_poster(queues_.poster());
    hub_.set_presence_frames(make_presence_push);
  }

  Shard& shard(uint32_t i) { return hub_.shard(i); }

  // A new peer and its connection on shard `s`.
  std::pair<FakePeer*, ConnId> connect(uint32_t s, TimePoint now) {
    peers_.push_back(std::make_unique<FakePeer>());
    FakePeer* peer = peers_.back().get();
    return {peer, shard(s).add(*peer, now)};
  }
  std::pair<FakePeer*, ConnId> connect(uint32_t s) { return connect(s, start_); }

  // Connects and logs in (a refused login fails the test); returns the peer and id.
  std::pair<FakePeer*, ConnId> online(uint32_t s, AppId app, std::string user, TimePoint now) {
    auto [peer, id] = connect(s, now);
    EXPECT_EQ(shard(s).login(id, app, user, now), LoginStatus::kOk);
    return {peer, id};
  }
  std::pair<FakePeer*, ConnId> online(uint32_t s, AppId app, std::string user) {
    return online(s, app, std::move(user), start_);
  }

  const TimePoint start_;
  QuietLogs quiet_;
  Counters counters_;
  Hub hub_;
  TaskQueues queues_;
  std::vector<std::unique_ptr<FakePeer>> peers_;
};

}  // namespace imgate::test
