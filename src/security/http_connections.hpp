// HttpConnections: the bound on TCP sessions of the HTTP API port
// (--max-http-connections, docs/security.md "Descriptors"). A session that
// waits for its next request (a fresh connection, a keep-alive one between
// requests, one still sending its request) is idle; a new connection that
// finds the bound reached takes the place of the session idle the longest,
// which is asked to close on its own loop. With no idle session the new
// connection is refused (the listener answers 503).
//
// Thread safety: every member function may be called from any thread (one
// mutex; sessions live on every loop, the listener admits on loop 0). The
// number of sessions is small (the bound), so a lock per request is cheap.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>

namespace imgate {

class HttpConnections {
 public:
  // Closes still under way after an eviction, at most: a flood of new
  // connections cannot push the count further above the bound than this.
  static constexpr std::size_t kMaxEvicting = 16;
  // How long the listener holds a connection that found kMaxEvicting closes
  // under way (kWait) before refusing it; a close takes microseconds.
  static constexpr int kWaitMillis = 100;

  // One session's place, owned by the session (its address must not change
  // while counted). Admitted sessions start busy.
  class Slot {
   public:
    // Set by the session before it first goes idle: called by the table, under
    // its lock and from any thread, when the session is picked for eviction.
    // It must not block nor call back into the table: it posts the close to
    // the session's loop, which then calls evicted().
    std::function<void()> evict;

   private:
    friend class HttpConnections;
    enum class State : uint8_t { kBusy, kIdle, kEvicting };
    State state_ = State::kBusy;
    Slot* prev_ = nullptr;  // idle list, oldest first
    Slot* next_ = nullptr;
  };

  enum class Admission : uint8_t {
    kAdmitted,   // below the bound: counted
    kReplacing,  // at the bound: counted, and the longest idle session asked to close
    kWait,       // at the bound, kMaxEvicting closes under way: ask again shortly; not counted
    kFull,       // at the bound with no idle session: not counted
  };

  // max: sessions at most (at least 1).
  explicit HttpConnections(std::size_t max) : max_(max == 0 ? 1 : max) {}
  HttpConnections(const HttpConnections&) = delete;
  HttpConnections& operator=(const HttpConnections&) = delete;

  // A new connection; each one admitted (kAdmitted, kReplacing) is given a Slot
  // that leave()s exactly once.
  Admission admit();
  // The session waits for a request: it may be evicted, oldest idle first.
  // Idle already: keeps its place in the order.
  void idle(Slot& slot);
  // A request arrived: not evictable until idle() again. An eviction picked but
  // not yet carried out (evicted() not yet called) is called off.
  void busy(Slot& slot);
  // On the session's loop, when its eviction arrives: true when the session
  // must close now (false: a request arrived meanwhile).
  bool evicted(Slot& slot);
  // The session is gone (every ending, evicted or not).
  void leave(Slot& slot);

  std::size_t max() const { return max_; }
  std::size_t open() const;  // sessions counted now (may exceed max() by closes under way)
  std::size_t idle_count() const;

 private:
  void unlink_idle(Slot& slot);
  void busy_locked(Slot& slot);  // busy() with mutex_ held

  const std::size_t max_;
  mutable std::mutex mutex_;
  std::size_t open_ = 0;
  std::size_t evicting_ = 0;  // picked for eviction, not yet gone nor called off
  std::size_t idle_ = 0;
  Slot* oldest_ = nullptr;  // idle list head
  Slot* newest_ = nullptr;  // idle list tail
};

}  // namespace imgate
