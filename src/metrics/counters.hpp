// Process-wide event counters: relaxed atomics, bumped on the hot path,
// read by /system/state (and /metrics later). Counts only; current sizes
// (connections, users, rooms) are derived from the registry itself.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

namespace imgate {

struct Counters {
  using Counter = std::atomic<uint64_t>;

  Counter connections_opened{0};   // WebSocket upgrades completed
  Counter connections_closed{0};   // registered connections unlinked
  Counter logins{0};
  Counter heartbeat_timeouts{0};
  Counter send_queue_overflows{0};
  Counter handshake_failures{0};   // TCP sessions that never became WebSocket
  Counter rejected_connections{0}; // refused by max_connections
  Counter messages_in{0};
  Counter messages_out{0};
  Counter bytes_in{0};
  Counter bytes_out{0};
  Counter bad_requests{0};         // answered 1001 / 1010

  // Close codes 1000..1015 sent or received, indexed by code - 1000; the last
  // slot counts any other code.
  static constexpr std::size_t kCloseSlots = 17;
  std::array<Counter, kCloseSlots> closes_by_code{};

  void count_close(uint16_t code) {
    std::size_t slot = (code >= 1000 && code < 1000 + kCloseSlots - 1) ? code - 1000 : kCloseSlots - 1;
    closes_by_code[slot].fetch_add(1, std::memory_order_relaxed);
  }

  static void bump(Counter& c, uint64_t n = 1) { c.fetch_add(n, std::memory_order_relaxed); }
};

}  // namespace imgate
