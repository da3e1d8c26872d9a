#include "metrics/prometheus.hpp"

#include <fmt/format.h>

namespace imgate {

namespace {


std::string_view route_name(HttpRoute route) {
  switch (route) {
    case HttpRoute::kUserList: return "/user/list";
    case HttpRoute::kUserOnline: return "/user/online";
    case HttpRoute::kSendMessage: return "/user/sendMessage";
    case HttpRoute::kSendMessageAll: return "/user/sendMessageAll";
    case HttpRoute::kSystemState: return "/system/state";
    case HttpRoute::kHomeIndex: return "/home/index";
    case HttpRoute::kStatic: return "/web";
    case HttpRoute::kMetrics: return "/metrics";
    case HttpRoute::kHealthz: return "/healthz";
    case HttpRoute::kUserHistory: return "/user/history";
    default: return "other";
  }
}

class Writer {
 public:
  void header(std::string_view name, std::string_view type, std::string_view help) {
    fmt::format_to(std::back_inserter(out_), "# HELP {} {}\n# TYPE {} {}\n", name, help, name,
                   type);
  }
  void value(std::string_view name, std::string_view labels, double v) {
    if (labels.empty()) {
      fmt::format_to(std::back_inserter(out_), "{} {}\n", name, v);
    } else {
      fmt::format_to(std::back_inserter(out_), "{}{{{}}} {}\n", name, labels, v);
    }
  }
  void simple(std::string_view name, std::string_view type, std::string_view help, double v) {
    header(name, type, help);
    value(name, "", v);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

double load(const Counters::Counter& c) {
  return static_cast<double>(c.load(std::memory_order_relaxed));
}

}  // namespace

std::string render_prometheus(const Counters& c, const MetricsSnapshot& snap) {
  Writer w;
  w.simple("imgate_connections_open", "gauge", "WebSocket connections registered now.",
           static_cast<double>(snap.connections));
  w.simple("imgate_sessions_open", "gauge", "TCP sessions on the WebSocket port (incl. handshaking).",
           static_cast<double>(snap.ws_sessions));
  if (snap.http_sessions) {
    w.simple("imgate_http_sessions_open", "gauge",
             "TCP sessions on the HTTP API port (bounded by max_http_connections).",
             static_cast<double>(*snap.http_sessions));
  }
  if (snap.clients) {
    w.simple("imgate_client_addresses", "gauge",
             "Client addresses tracked by the per-address limits.",
             static_cast<double>(snap.clients->addresses));
    w.simple("imgate_client_address_connections", "gauge",
             "WebSocket connections counted by the per-address limits.",
             static_cast<double>(snap.clients->connections));
  }
  w.simple("imgate_connections_opened_total", "counter", "WebSocket upgrades completed.",
           load(c.connections_opened));
  w.header("imgate_connections_closed_total", "counter", "Connections ended, by reason.");
  for (std::size_t i = 0; i < Counters::kEndReasons; ++i) {
    w.value("imgate_connections_closed_total",
            fmt::format("reason=\"{}\"", Counters::kEndReasonNames[i]),
            load(c.closed_by_reason[i]));
  }
  w.header("imgate_ws_close_codes_total", "counter", "WebSocket close codes sent or received.");
  for (std::size_t i = 0; i < Counters::kCloseSlots; ++i) {
    if (c.closes_by_code[i].load() == 0) continue;
    w.value("imgate_ws_close_codes_total",
            i + 1 == Counters::kCloseSlots ? "code=\"other\""
                                           : fmt::format("code=\"{}\"", 1000 + i),
            load(c.closes_by_code[i]));
  }
  w.simple("imgate_connections_rejected_total", "counter",
           "WebSocket port connections refused (503) by max_connections.",
           load(c.rejected_connections));
  w.simple("imgate_http_connections_rejected_total", "counter",
           "HTTP API port connections refused (503): max_http_connections reached, none idle.",
           load(c.http_rejected_connections));
  w.simple("imgate_http_idle_closes_total", "counter",
           "Idle HTTP API connections closed to make room for a new one.",
           load(c.http_idle_closes));
  w.simple("imgate_descriptor_refusals_total", "counter",
           "Connections accepted on the spare descriptor when none was left, refused (503).",
           load(c.descriptor_refusals));
  w.simple("imgate_origin_rejections_total", "counter",
           "WebSocket upgrades refused (403) because their Origin is not allowed.",
           load(c.origin_rejections));
  w.simple("imgate_api_key_rejections_total", "counter",
           "HTTP requests refused (401) for a missing or wrong API key.",
           load(c.api_key_rejections));
  w.simple("imgate_token_rejections_total", "counter",
           "login / refresh commands refused (1003) for a missing or invalid token.",
           load(c.token_rejections));
  w.simple("imgate_token_refreshes_total", "counter", "refresh commands accepted.",
           load(c.token_refreshes));
  w.header("imgate_limit_closes_total", "counter",
           "Connections closed (1008) for crossing a per-client limit, by limit.");
  for (std::size_t i = 0; i < kLimits; ++i) {
    w.value("imgate_limit_closes_total", fmt::format("limit=\"{}\"", kLimitMetricNames[i]),
            load(c.limit_closes[i]));
  }
  w.simple("imgate_handshake_failures_total", "counter", "TCP sessions that never upgraded.",
           load(c.handshake_failures));
  w.simple("imgate_heartbeat_timeouts_total", "counter", "Connections closed for idleness.",
           load(c.heartbeat_timeouts));
  w.simple("imgate_send_queue_overflows_total", "counter",
           "Slow consumers closed (1008) for overflowing their send queue.",
           load(c.send_queue_overflows));
  w.simple("imgate_logins_total", "counter", "Successful logins.", load(c.logins));
  w.simple("imgate_users", "gauge", "Distinct (appID, userID) logged in.",
           static_cast<double>(snap.users));
  w.simple("imgate_rooms", "gauge", "appIDs with at least one user.",
           static_cast<double>(snap.rooms));
  w.simple("imgate_messages_in_total", "counter", "WebSocket messages received.",
           load(c.messages_in));
  w.simple("imgate_messages_out_total", "counter", "WebSocket messages written.",
           load(c.messages_out));
  w.simple("imgate_bytes_in_total", "counter", "WebSocket payload bytes received.",
           load(c.bytes_in));
  w.simple("imgate_bytes_out_total", "counter", "WebSocket bytes written.", load(c.bytes_out));
  w.simple("imgate_ws_writes_total", "counter",
           "Write system calls of the WebSocket transport (each carries every frame queued).",
           load(c.ws_writes));
  w.simple("imgate_bad_requests_total", "counter", "Client requests answered 1001 or 1010.",
           load(c.bad_requests));
  w.simple("imgate_pushes_total", "counter", "Pushes accepted (msg, enter, exit).",
           load(c.pushes));
  w.simple("imgate_fanout_slices_total", "counter",
           "Times a shard's loop turned to other work with pushes left to deliver.",
           load(c.fanout_slices));
  w.simple("imgate_room_pushes_in_flight", "gauge",
           "Room pushes not yet delivered on every thread.",
           static_cast<double>(snap.room_pushes_in_flight));
  w.simple("imgate_presence_suppressed_total", "counter",
           "enter/exit not pushed: quiet room or room above presence_max_room.",
           load(c.presence_suppressed));
  w.simple("imgate_msgid_duplicates_total", "counter", "Pushes refused as duplicate msgID.",
           load(c.msg_id_duplicates));
  if (snap.redis) {
    w.simple("imgate_push_outcome_unknown_total", "counter",
             "Pushes whose Redis connection broke after they were sent (answered "
             "sendResultsErr: outcome unknown; not delivered again).",
             load(c.push_outcome_unknown));
    w.simple("imgate_redis_up", "gauge",
             "1 while every Redis shard (server or Redis Cluster master) is reachable "
             "and subscribed, else 0 (degraded).",
             snap.redis->healthy ? 1 : 0);
    w.simple("imgate_redis_shards", "gauge", "Redis shards known (1: one server; masters).",
             static_cast<double>(snap.redis->shards));
    w.simple("imgate_redis_shards_up", "gauge", "Redis shards reachable (command and subscriber).",
             static_cast<double>(snap.redis->up));
  }
  w.simple("imgate_history_streams", "gauge", "Streams (rooms, users) with kept pushes.",
           static_cast<double>(snap.history_streams));
  w.simple("imgate_history_pushes", "gauge", "Pushes kept for recovery and offline delivery.",
           static_cast<double>(snap.history_pushes));
  w.simple("imgate_history_bytes", "gauge", "Memory counted for kept pushes (embedded mode).",
           static_cast<double>(snap.history_bytes));
  w.simple("imgate_history_evictions_total", "counter",
           "Kept pushes dropped early because history_max_bytes was reached.",
           load(c.history_evictions));
  w.simple("imgate_msgid_evictions_total", "counter",
           "msgIDs forgotten before their TTL because the set was full.",
           static_cast<double>(snap.msg_id_evictions));

  w.header("imgate_http_requests_total", "counter", "HTTP API requests by route and status.");
  for (std::size_t r = 0; r < static_cast<std::size_t>(HttpRoute::kCount); ++r) {
    for (std::size_t s = 0; s < kHttpStatuses.size(); ++s) {
      double n = load(c.http_requests[r][s]);
      if (n == 0) continue;
      std::string status = kHttpStatuses[s] ? std::to_string(kHttpStatuses[s]) : "other";
      w.value("imgate_http_requests_total",
              fmt::format("route=\"{}\",status=\"{}\"", route_name(static_cast<HttpRoute>(r)),
                          status),
              n);
    }
  }

  w.header("imgate_push_latency_seconds", "histogram",
           "Push created to queued on the recipients' connections, per delivering thread.");
  uint64_t cumulative = 0;
  const auto& h = c.push_latency;
  for (std::size_t i = 0; i < LatencyHistogram::kBoundsMicros.size(); ++i) {
    cumulative += h.bucket(i);
    w.value("imgate_push_latency_seconds_bucket",
            fmt::format("le=\"{}\"", LatencyHistogram::kBoundsMicros[i] / 1e6),
            static_cast<double>(cumulative));
  }
  cumulative += h.bucket(LatencyHistogram::kBoundsMicros.size());
  w.value("imgate_push_latency_seconds_bucket", "le=\"+Inf\"", static_cast<double>(cumulative));
  w.value("imgate_push_latency_seconds_sum", "", h.sum_micros() / 1e6);
  w.value("imgate_push_latency_seconds_count", "", static_cast<double>(cumulative));

  w.simple("imgate_uptime_seconds", "gauge", "Seconds since start.",
           snap.uptime.count());
  w.header("imgate_build_info", "gauge", "Version.");
  w.value("imgate_build_info", fmt::format("version=\"{}\"", IMGATE_VERSION), 1);
  return w.take();
}

}  // namespace imgate
