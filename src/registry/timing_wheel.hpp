// A hashed timing wheel of connection ids, one per shard (single-threaded).
//
// Each live connection sits in exactly one slot: the one for its next check.
// Activity never moves an entry (it only updates the connection's last-seen
// time); when a slot comes due, its owner re-checks each id and re-schedules it
// or ends it. So a tick costs O(entries due now), never a scan of every
// connection, and an idle connection is visited about twice per timeout.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include "registry/types.hpp"

namespace imgate {

class TimingWheel {
 public:
  // `tick`: slot width; `span`: the furthest a deadline may lie ahead.
  TimingWheel(std::chrono::milliseconds tick, std::chrono::milliseconds span, TimePoint start)
      : tick_(std::max(tick, std::chrono::milliseconds(1))),
        slots_(static_cast<std::size_t>(span / tick_) + 2),
        origin_(start) {}

  std::chrono::milliseconds tick() const { return tick_; }

  // Schedules `id` for a check at `when` (rounded up to the slot boundary,
  // clamped to [next slot, span]).
  void schedule(ConnId id, TimePoint when) {
    uint64_t slot = slot_of(when);
    slot = std::clamp<uint64_t>(slot, current_ + 1, current_ + slots_.size() - 1);
    slots_[slot % slots_.size()].push_back(id);
    ++size_;
  }

  // Advances to `now`, calling `due(id)` for every entry whose slot has
  // passed. `due` may call schedule() (always for a later slot).
  template <class Fn>
  void advance(TimePoint now, Fn&& due) {
    const uint64_t target = slot_floor(now);
    while (current_ < target) {
      ++current_;
      std::vector<ConnId> batch;
      batch.swap(slots_[current_ % slots_.size()]);
      size_ -= batch.size();
      for (ConnId id : batch) due(id);
    }
  }

  std::size_t size() const { return size_; }

 private:
  // Slot k is due at origin + k * tick: deadlines round up, "now" rounds down.
  uint64_t slot_floor(TimePoint t) const {
    if (t <= origin_) return 0;
    return static_cast<uint64_t>((t - origin_) / tick_);
  }

  uint64_t slot_of(TimePoint t) const {
    if (t <= origin_) return 0;
    const auto elapsed = t - origin_;  // full clock precision: round up, never early
    return static_cast<uint64_t>((elapsed + tick_ - Clock::duration(1)) / tick_);
  }

  std::chrono::milliseconds tick_;
  std::vector<std::vector<ConnId>> slots_;
  TimePoint origin_;
  uint64_t current_ = 0;  // slots up to and including this one have been processed
  std::size_t size_ = 0;
};

}  // namespace imgate
