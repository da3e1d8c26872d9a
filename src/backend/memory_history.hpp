// MemoryHistory: the embedded backend's streams (registry/stream.hpp), in
// memory. Each stream keeps its last `per_stream` pushes, none older than
// `ttl`; all streams together hold at most `max_bytes` (the globally oldest
// pushes go first, counted as evictions). A stream whose last push went is
// forgotten (its next push starts a new epoch at offset 1).
//
// A push is stored as its frame, the very bytes its recipients get (built once,
// with its offset), so history costs one frame per push, not per recipient.
//
// Thread-safe: one mutex for the streams. append() calls `deliver` under it,
// so that the deliveries of a stream are posted in offset order (the recovery
// merge relies on that, docs/history.md); `deliver` takes the Directory lock
// (Hub::push_user). The users' offline marks have their own innermost mutex:
// user_left() records them under the Directory lock, so that a login on
// another thread can only read a mark after it is recorded, and the order
// streams -> Directory -> marks never runs backwards.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "metrics/counters.hpp"
#include "protocol/envelope.hpp"
#include "registry/directory.hpp"
#include "registry/stream.hpp"

namespace imgate {

struct HistoryLimits {
  std::size_t per_stream = 0;          // pushes kept per stream; 0: history off
  std::chrono::milliseconds ttl{0};    // 0: no age limit
  std::size_t max_bytes = 64u << 20;   // all streams together
};

class MemoryHistory final : public HistoryHooks {
 public:
  MemoryHistory(HistoryLimits limits, Counters& counters);

  // Appends a push to stream (app, user; "" = the room): `build` makes its
  // frame from its mark, `deliver` hands it on (called under the lock).
  // Returns the push's position.
  // `except`: a room push's sender, whose own connections did not get it.
  StreamPos append(const UserKey& stream, TimePoint now, std::string_view except,
                   const std::function<Frame(const StreamMark&)>& build,
                   const std::function<void(const Frame&, const StreamMark&)>& deliver);

  // The pushes after `since` (all that is kept when absent), at most `limit`
  // (0: all), leaving out those `reader` did not get live (its own room
  // pushes). With another epoch than the stream's, none and incomplete.
  StreamRead read(const UserKey& stream, const std::optional<StreamPos>& since, TimePoint now,
                  std::size_t limit = 0, std::string_view reader = {});
  StreamPos position(const UserKey& stream);

  // Where the user stream stood when the user's last connection went away;
  // nullopt when not recorded (or the stream was forgotten since).
  std::optional<StreamPos> user_left_at(const UserKey& key);

  // HistoryHooks (under the Directory lock: takes marks_mu_ only).
  void user_left(const UserKey& key, const std::optional<StreamPos>& delivered) override;

  std::size_t bytes() const;
  std::size_t pushes() const;
  std::size_t streams() const;

 private:
  struct Entry {
    uint64_t offset;
    TimePoint at;
    Frame frame;
    std::string except;
  };
  struct Stream {
    std::string epoch;
    uint64_t top = 0;
    std::deque<Entry> entries;
  };
  // Every stored push in append order (= age order), for the global limits.
  struct Aged {
    UserKey stream;
    uint64_t offset;
    TimePoint at;
    std::size_t bytes;
  };

  static std::size_t cost(const UserKey& stream, const Frame& frame);
  void expire(TimePoint now);                 // ttl and max_bytes, oldest first
  void trim_front(Stream& s, const UserKey& key);  // drops s.entries.front()
  void forget(std::unordered_map<UserKey, Stream, UserKeyHash>::iterator it);  // and its mark
  std::string new_epoch();

  const HistoryLimits limits_;
  Counters& counters_;
  mutable std::mutex mu_;
  std::unordered_map<UserKey, Stream, UserKeyHash> streams_;
  std::deque<Aged> aged_;
  std::size_t bytes_ = 0;
  std::size_t pushes_ = 0;
  // User streams: where the user's last connection left it (epoch, offset);
  // erased with the stream. A mark of an epoch the stream no longer has means
  // nothing and is ignored (and compacted away).
  mutable std::mutex marks_mu_;  // innermost: nothing is locked under it
  std::unordered_map<UserKey, StreamPos, UserKeyHash> marks_;
  std::string epoch_base_;
  uint64_t epochs_ = 0;
};

}  // namespace imgate
