// Streams of msg pushes with offsets (history on; docs/history.md). A stream is
// a room (appID) or one user of an appID; each push it carries gets the next
// offset (1, 2, 3 ...: a gap is visible) under the stream's epoch, which changes
// whenever the stream's history is lost (a restart in embedded mode, a stream
// that expired), so that an old offset is never taken for a new one.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "registry/types.hpp"

namespace imgate {

struct UserKey;

struct StreamPos {
  std::string epoch;    // "" for a stream that holds nothing
  uint64_t offset = 0;  // the newest push's; 0 when none yet
};

// A read's `since` epoch for the offline messages of a user logging in on a
// node (docs/history.md): everything kept, unless the user is online on
// another node (Redis mode), which had its pushes: then nothing.
inline constexpr std::string_view kSinceLeft = "<";

// What a read of a stream found.
struct StreamRead {
  StreamPos top;          // the stream's position now
  bool complete = true;   // every push after `since` is in `pushes`
  std::vector<std::pair<uint64_t, Frame>> pushes;  // after `since`, oldest first
  std::optional<uint64_t> left;  // user streams: where the user's last connection left it
};

// What the registry tells the history about users leaving, so that a user's
// next login can get what was sent meanwhile (offline messages).
class HistoryHooks {
 public:
  // The user's last connection on the node went away, the node having
  // delivered the user's stream up to `delivered` (nullopt: none of it).
  // Called under the Directory lock, so that a login of the user on another
  // thread reads the mark only after it is recorded: must take no lock but
  // its own innermost ones, and never block.
  virtual void user_left(const UserKey& key, const std::optional<StreamPos>& delivered) = 0;

 protected:
  ~HistoryHooks() = default;
};

}  // namespace imgate
