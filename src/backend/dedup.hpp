// msgID de-duplication of pushes (upstream: Redis SETNX with a 12 h TTL), a
// backend concern: the embedded backend keeps the ids here, in memory, and so
// does the Redis one while Redis is down. Bounded: at most
// `capacity` ids are remembered; when full, the oldest id is forgotten early
// (a duplicate of an id that old would then be delivered again) and the
// eviction is counted. Thread-safe (one short mutex).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_set>

#include "registry/types.hpp"

namespace imgate {

class MsgIdDedup {
 public:
  MsgIdDedup(std::chrono::milliseconds ttl, std::size_t capacity);

  // True the first time `id` is seen within the TTL (and remembers it);
  // false for a duplicate.
  bool first_seen(std::string_view id, TimePoint now);

  std::size_t size() const;
  uint64_t evicted() const;

 private:
  void expire(TimePoint now);

  const std::chrono::milliseconds ttl_;
  const std::size_t capacity_;
  mutable std::mutex mu_;
  std::unordered_set<std::string> ids_;
  // Insertion order is expiry order (one TTL for all): front expires first.
  std::deque<std::pair<TimePoint, const std::string*>> order_;
  uint64_t evicted_ = 0;
};

}  // namespace imgate
