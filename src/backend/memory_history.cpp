#include "backend/memory_history.hpp"

#include <algorithm>
#include <random>

namespace imgate {

namespace {
// What one stored push costs beyond its frame: the entry, its age record,
// their allocations and its share of the stream, counted against max_bytes.
// Calibrated with `imgate-bench fill` (bench/README.md): 100,000 kept pushes
// of ~300 B frames took 530 B of RSS each.
constexpr std::size_t kEntryOverhead = 224;

std::string random_hex(int digits) {
  std::random_device rd;
  std::mt19937_64 rng((uint64_t{rd()} << 32) ^ rd() ^
                      static_cast<uint64_t>(Clock::now().time_since_epoch().count()));
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < digits; ++i) out += kHex[rng() % 16];
  return out;
}
}  // namespace

MemoryHistory::MemoryHistory(HistoryLimits limits, Counters& counters)
    : limits_(limits), counters_(counters), epoch_base_(random_hex(8)) {}

std::size_t MemoryHistory::cost(const UserKey& stream, const Frame& frame) {
  return frame->size() + stream.user.size() + kEntryOverhead;
}

std::string MemoryHistory::new_epoch() { return epoch_base_ + "-" + std::to_string(++epochs_); }

StreamPos MemoryHistory::append(const UserKey& key, TimePoint now, std::string_view except,
                                const std::function<Frame(const StreamMark&)>& build,
                                const std::function<void(const Frame&, const StreamMark&)>& deliver) {
  std::lock_guard lock(mu_);
  expire(now);
  auto [it, created] = streams_.try_emplace(key);
  Stream& s = it->second;
  if (created) s.epoch = new_epoch();
  const uint64_t offset = ++s.top;
  const StreamMark mark{key.user.empty() ? "room" : "user", s.epoch, offset};
  Frame frame = build(mark);
  const std::size_t bytes = cost(key, frame) + except.size();
  s.entries.push_back(Entry{offset, now, frame, std::string(except)});
  aged_.push_back(Aged{key, offset, now, bytes});
  bytes_ += bytes;
  ++pushes_;
  while (s.entries.size() > limits_.per_stream) trim_front(s, key);
  deliver(frame, mark);
  StreamPos pos{s.epoch, offset};
  expire(now);  // max_bytes: this push may push out the oldest ones (never itself: it is newest)
  return pos;
}

void MemoryHistory::trim_front(Stream& s, const UserKey& key) {
  bytes_ -= cost(key, s.entries.front().frame) + s.entries.front().except.size();
  --pushes_;
  s.entries.pop_front();
}

void MemoryHistory::expire(TimePoint now) {
  const bool aged_limit = limits_.ttl.count() > 0;
  while (!aged_.empty()) {
    Aged& a = aged_.front();
    auto it = streams_.find(a.stream);
    const bool live = it != streams_.end() && !it->second.entries.empty() &&
                      it->second.entries.front().offset == a.offset;
    if (live) {
      const bool too_old = aged_limit && now - a.at > limits_.ttl;
      const bool too_big = bytes_ > limits_.max_bytes && pushes_ > 1;
      if (!too_old && !too_big) break;
      if (too_big && !too_old) Counters::bump(counters_.history_evictions);
      trim_front(it->second, a.stream);
      if (it->second.entries.empty()) forget(it);
    }
    aged_.pop_front();
  }
  // Age records of pushes trimmed by the per-stream limit wait behind older
  // live ones; compact when they outnumber the live ones (amortised O(1)).
  if (aged_.size() > 2 * pushes_ + 1024) {
    std::deque<Aged> kept;
    for (Aged& a : aged_) {
      auto it = streams_.find(a.stream);
      if (it == streams_.end()) continue;
      const auto& entries = it->second.entries;
      if (!entries.empty() && a.offset >= entries.front().offset) kept.push_back(std::move(a));
    }
    aged_.swap(kept);
  }
  // Marks recorded for streams forgotten meanwhile (a logout racing with the
  // stream's last push leaving): compacted when they outnumber the streams.
  std::lock_guard marks_lock(marks_mu_);
  if (marks_.size() > 2 * streams_.size() + 1024) {
    std::erase_if(marks_, [&](const auto& m) {
      auto it = streams_.find(m.first);
      return it == streams_.end() || it->second.epoch != m.second.epoch;
    });
  }
}

void MemoryHistory::forget(std::unordered_map<UserKey, Stream, UserKeyHash>::iterator it) {
  if (!it->first.user.empty()) {
    std::lock_guard marks_lock(marks_mu_);
    marks_.erase(it->first);
  }
  streams_.erase(it);
}

StreamPos MemoryHistory::position(const UserKey& key) {
  std::lock_guard lock(mu_);
  auto it = streams_.find(key);
  if (it == streams_.end()) return {};
  return StreamPos{it->second.epoch, it->second.top};
}

StreamRead MemoryHistory::read(const UserKey& key, const std::optional<StreamPos>& since,
                               TimePoint now, std::size_t limit, std::string_view reader) {
  std::lock_guard lock(mu_);
  expire(now);
  StreamRead out;
  auto it = streams_.find(key);
  if (it == streams_.end()) {
    // Nothing kept. Complete only for a client that has seen nothing either.
    out.complete = !since || (since->epoch.empty() && since->offset == 0);
    return out;
  }
  const Stream& s = it->second;
  out.top = StreamPos{s.epoch, s.top};
  uint64_t after = 0;
  if (since && since->epoch == "*") {
    after = since->offset;  // whatever the epoch (the HTTP API without epoch=)
  } else if (since) {
    if (since->epoch != s.epoch) {
      // Another epoch: its offsets mean nothing here. (A client that has seen
      // nothing of a stream sends an empty epoch and offset 0.)
      if (!since->epoch.empty() || since->offset != 0) {
        out.complete = false;
        return out;
      }
    } else {
      after = since->offset;
    }
  }
  const uint64_t first = s.entries.empty() ? s.top + 1 : s.entries.front().offset;
  out.complete = after + 1 >= first || (since && after >= s.top);
  if (!since) out.complete = true;  // "all that is kept" is what was asked
  for (const Entry& e : s.entries) {
    if (e.offset <= after) continue;
    if (!reader.empty() && e.except == reader) continue;
    if (limit != 0 && out.pushes.size() >= limit) break;
    out.pushes.emplace_back(e.offset, e.frame);
  }
  return out;
}

std::optional<StreamPos> MemoryHistory::user_left_at(const UserKey& key) {
  std::lock_guard lock(mu_);
  auto it = streams_.find(key);
  if (it == streams_.end()) return std::nullopt;
  std::lock_guard marks_lock(marks_mu_);
  auto mark = marks_.find(key);
  // A mark of another epoch: the user saw nothing of this history.
  if (mark == marks_.end() || mark->second.epoch != it->second.epoch) return std::nullopt;
  return StreamPos{mark->second.epoch, std::min(mark->second.offset, it->second.top)};
}

void MemoryHistory::user_left(const UserKey& key, const std::optional<StreamPos>& delivered) {
  // Nothing delivered: the previous mark (if any) still says where the user's
  // offline messages start; a user who never got a push of its stream has
  // all of it as news at its next login.
  if (!delivered || delivered->offset == 0) return;
  std::lock_guard marks_lock(marks_mu_);
  auto [mark, added] = marks_.try_emplace(key, *delivered);
  if (!added && (mark->second.epoch != delivered->epoch || mark->second.offset < delivered->offset)) {
    mark->second = *delivered;
  }
}

std::size_t MemoryHistory::bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

std::size_t MemoryHistory::pushes() const {
  std::lock_guard lock(mu_);
  return pushes_;
}

std::size_t MemoryHistory::streams() const {
  std::lock_guard lock(mu_);
  return streams_.size();
}

}  // namespace imgate
