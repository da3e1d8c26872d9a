// Process-wide event counters: relaxed atomics, bumped on the hot path,
// read by /system/state (and /metrics later). Counts only; current sizes
// (connections, users, rooms) are derived from the registry itself.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>

namespace imgate {

// A fixed-bucket latency histogram (Prometheus style, cumulative on export).
class LatencyHistogram {
 public:
  static constexpr std::array<uint64_t, 14> kBoundsMicros{
      50, 100, 250, 500, 1'000, 2'500, 5'000, 10'000, 25'000, 50'000, 100'000, 250'000, 500'000,
      1'000'000};

  void observe(uint64_t micros) {
    std::size_t i = 0;
    while (i < kBoundsMicros.size() && micros > kBoundsMicros[i]) ++i;
    buckets_[i].fetch_add(1, std::memory_order_relaxed);
    sum_micros_.fetch_add(micros, std::memory_order_relaxed);
  }
  // Non-cumulative count of bucket i (i == kBoundsMicros.size(): above the last bound).
  uint64_t bucket(std::size_t i) const { return buckets_[i].load(std::memory_order_relaxed); }
  uint64_t sum_micros() const { return sum_micros_.load(std::memory_order_relaxed); }

 private:
  std::array<std::atomic<uint64_t>, kBoundsMicros.size() + 1> buckets_{};
  std::atomic<uint64_t> sum_micros_{0};
};

// HTTP routes and status classes counted by /metrics (low, fixed cardinality).
enum class HttpRoute : uint8_t {
  kUserList, kUserOnline, kSendMessage, kSendMessageAll, kSystemState, kHomeIndex, kStatic,
  kMetrics, kHealthz, kOther, kUserHistory, kCount
};
// Per-client limits (docs/security.md): each crossing closes the connection with 1008 and
// is counted in Counters::limit_closes[limit].
enum class Limit : uint8_t { kIpConnections, kIpUpgradeRate, kMessageRate, kFailedLogins, kCount };
inline constexpr std::size_t kLimits = static_cast<std::size_t>(Limit::kCount);
// Label values in /metrics (imgate_limit_closes_total{limit=..}) and keys in /system/state.
inline constexpr std::array<const char*, kLimits> kLimitMetricNames{
    "ip_connections", "ip_upgrade_rate", "message_rate", "failed_logins"};
inline constexpr std::array<const char*, kLimits> kLimitStateNames{
    "ipConnections", "ipUpgradeRate", "messageRate", "failedLogins"};

inline constexpr std::array<uint16_t, 7> kHttpStatuses{200, 204, 400, 404, 413, 503, 0};  // 0: other

struct Counters {
  using Counter = std::atomic<uint64_t>;

  Counter connections_opened{0};   // WebSocket upgrades completed
  Counter connections_closed{0};   // registered connections unlinked
  Counter logins{0};
  Counter heartbeat_timeouts{0};
  Counter send_queue_overflows{0};
  Counter handshake_failures{0};   // TCP sessions that never became WebSocket
  Counter rejected_connections{0}; // WebSocket port: refused (503) by max_connections
  Counter http_rejected_connections{0};  // HTTP API port: refused (503), bound reached, none idle
  Counter http_idle_closes{0};     // HTTP API port: idle sessions closed to make room
  Counter descriptor_refusals{0};  // accepted on the spare descriptor (EMFILE), refused (503)
  Counter origin_rejections{0};    // upgrades refused (403): Origin not in allowed_origins
  Counter api_key_rejections{0};   // HTTP requests refused (401): missing or wrong API key
  Counter token_rejections{0};     // login / refresh refused (1003) for a bad or missing token
  Counter token_refreshes{0};      // refresh commands accepted
  Counter messages_in{0};
  Counter messages_out{0};
  Counter bytes_in{0};
  Counter bytes_out{0};
  Counter ws_writes{0};            // write system calls (sendmsg / SSL_write) of the transport
  Counter bad_requests{0};         // answered 1001 / 1010
  std::array<Counter, kLimits> limit_closes{};  // connections closed (1008) by a per-client limit

  // Close codes 1000..1015 sent or received, indexed by code - 1000; the last
  // slot counts any other code.
  static constexpr std::size_t kCloseSlots = 17;
  std::array<Counter, kCloseSlots> closes_by_code{};

  // Unlinks by EndReason (index = enum value, registry/types.hpp). The names are
  // the reason labels in /metrics and what to_string(EndReason) returns.
  static constexpr std::size_t kEndReasons = 8;
  static constexpr std::array<std::string_view, kEndReasons> kEndReasonNames{
      "client close", "network error", "heartbeat timeout", "send queue overflow",
      "protocol error", "shutdown", "token expired", "limit crossed"};
  std::array<Counter, kEndReasons> closed_by_reason{};

  Counter msg_id_duplicates{0};    // pushes refused as duplicate msgID
  Counter presence_suppressed{0};  // enter / exit not pushed (PresencePolicy)
  Counter pushes{0};               // push requests accepted (msg, enter, exit)
  Counter fanout_slices{0};        // a shard's pushes went on in a later turn (Hub::drain)
  Counter history_evictions{0};    // kept pushes dropped early: history_max_bytes reached
  Counter push_outcome_unknown{0}; // cluster: Redis connection lost after a push was sent
  LatencyHistogram push_latency;   // push created -> queued on a recipient's connection

  std::array<std::array<Counter, kHttpStatuses.size()>, static_cast<std::size_t>(HttpRoute::kCount)>
      http_requests{};

  void count_http(HttpRoute route, unsigned status) {
    std::size_t s = kHttpStatuses.size() - 1;
    for (std::size_t i = 0; i + 1 < kHttpStatuses.size(); ++i) {
      if (kHttpStatuses[i] == status) s = i;
    }
    http_requests[static_cast<std::size_t>(route)][s].fetch_add(1, std::memory_order_relaxed);
  }

  void count_close(uint16_t code) {
    std::size_t slot = (code >= 1000 && code < 1000 + kCloseSlots - 1) ? code - 1000 : kCloseSlots - 1;
    closes_by_code[slot].fetch_add(1, std::memory_order_relaxed);
  }

  void count_limit(Limit limit) { bump(limit_closes[static_cast<std::size_t>(limit)]); }

  static void bump(Counter& c, uint64_t n = 1) { c.fetch_add(n, std::memory_order_relaxed); }
};

}  // namespace imgate
