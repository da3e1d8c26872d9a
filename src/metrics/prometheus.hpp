// /metrics: the Prometheus text exposition of imgate's counters and gauges.
// Names follow imgate_<subsystem>_<name>_<unit>; labels have fixed, low
// cardinality (close reason, close code, route, status).
//
// The metrics layer reads the Counters and a MetricsSnapshot, nothing of the
// server: the layer that owns the state (net, ServerContext::metrics_snapshot)
// fills the snapshot at each scrape.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "metrics/counters.hpp"

namespace imgate {

// The gauges of one scrape, read from the server at that moment.
struct MetricsSnapshot {
  std::size_t connections = 0;  // WebSocket connections registered (Hub)
  std::size_t ws_sessions = 0;  // TCP sessions on the WebSocket port
  // Set when the HTTP API port has its own session limit (max_http_connections).
  std::optional<std::size_t> http_sessions;
  // Set when the per-client limits track addresses.
  struct ClientAddresses {
    std::size_t addresses = 0;
    std::size_t connections = 0;
  };
  std::optional<ClientAddresses> clients;
  std::size_t users = 0;  // distinct (appID, userID) logged in (Directory)
  std::size_t rooms = 0;  // appIDs with at least one user
  // Set in Redis mode (at least one shard known).
  struct Redis {
    bool healthy = false;
    std::size_t shards = 0;
    std::size_t up = 0;
  };
  std::optional<Redis> redis;
  std::size_t history_streams = 0;
  std::size_t history_pushes = 0;
  std::size_t history_bytes = 0;
  uint64_t msg_id_evictions = 0;
  std::size_t room_pushes_in_flight = 0;  // Hub::room_pushes_in_flight
  std::chrono::duration<double> uptime{0};
};

std::string render_prometheus(const Counters& c, const MetricsSnapshot& snap);

}  // namespace imgate
