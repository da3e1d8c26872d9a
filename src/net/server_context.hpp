// What every network session needs from the server: configuration, the
// registry, the command router, counters, and the per-thread event loops.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <functional>
#include <memory>
#include <vector>

#include "backend/dedup.hpp"
#include "config/config.hpp"
#include "http/web_assets.hpp"
#include "metrics/counters.hpp"
#include "metrics/prometheus.hpp"
#include "protocol/router.hpp"
#include "registry/shard.hpp"
#include "security/http_connections.hpp"
#include "security/limits.hpp"

namespace imgate {

class Backend;
class RedisCluster;
class TlsContext;
class TokenVerifier;
struct LoopIo;

struct ServerContext {
  const Config& config;
  Counters& counters;
  Hub& hub;
  const Router& router;
  std::vector<std::unique_ptr<boost::asio::io_context>>& loops;  // loops[i] runs shard i
  TimePoint started;
  // TCP sessions accepted on a WebSocket-serving listener and not yet gone
  // (handshaking or upgraded); bounded by config.max_connections.
  std::atomic<std::size_t> ws_sessions{0};
  // Upgraded WebSocket sessions alive (registered or still closing); what a
  // shutdown waits for. Sessions still in their HTTP handshake are just cut.
  std::atomic<std::size_t> ws_upgraded{0};
  std::atomic<bool> stopping{false};
  uint16_t ws_port = 0;               // bound WebSocket port, set by Server
  std::vector<AppId> sorted_app_ids;  // config.app_ids, sorted for login's lookup
  std::unique_ptr<MsgIdDedup> dedup;  // set by Server
  WebAssets web;                      // set by Server
  Backend* backend = nullptr;         // what depends on the mode (set by Server; backend/backend.hpp)
  RedisCluster* cluster = nullptr;    // cluster mode only: the Redis side, for Server's lifecycle
  std::vector<LoopIo*> loop_io;       // loop_io[i]: loop i's WebSocket transport state
  TlsContext* tls = nullptr;          // set: both ports speak TLS (--tls-cert / --tls-key)
  const TokenVerifier* tokens = nullptr;  // set: login needs a signed token (--auth-*)
  // Per-client limits (docs/security.md): connections and upgrades per client
  // address (set by Server), and the proxies whose X-Forwarded-For is believed.
  std::unique_ptr<ClientTable> clients;
  CidrSet trusted_proxies;
  // Sessions of the HTTP API port, when it is not the WebSocket port
  // (--max-http-connections; set by Server).
  std::unique_ptr<HttpConnections> http_connections;

  // Collects every shard's connection ids by visiting the shards in turn on
  // their own threads, then calls `done` on the last shard's thread.
  void collect_connection_ids(std::function<void(std::vector<ConnId>)> done);

  // The gauges /metrics shows, read now (any thread).
  MetricsSnapshot metrics_snapshot() const;
};

}  // namespace imgate
