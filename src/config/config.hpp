// imgate configuration: one struct, filled from (lowest to highest precedence)
// built-in defaults, the YAML file (upstream gowebsocket's config/app.yaml keys
// plus imgate's own `imgate:` section), IMGATE_* environment variables, and
// command-line flags. Every option is declared once, in config.cpp's option
// table, which also produces --help and docs/configuration.md's content.
#pragma once

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace imgate {

using Millis = std::chrono::milliseconds;

struct Config {
  // --- upstream app.yaml (`app:` and `redis:` sections) ---
  std::string log_file;          // app.logFile: "" = log to stderr
  uint16_t http_port = 8080;     // app.httpPort: 0 = pick a free port
  uint16_t ws_port = 8089;       // app.webSocketPort: 0 = pick a free port
  uint16_t rpc_port = 9001;      // app.rpcPort: read for compatibility, unused
  std::string http_url;          // app.httpUrl: informational
  std::string web_socket_url;    // app.webSocketUrl: URL the chat page connects to
  std::string redis_addr;        // redis.addr: "" = embedded single node
  std::string redis_password;    // redis.password
  int redis_db = 0;              // redis.DB
  std::string redis_cluster;     // redis.cluster: Redis Cluster seed nodes "host:port,..."
  uint32_t redis_buckets = 16;   // redis.buckets: Redis Cluster buckets per appID (1..1024)

  // --- imgate's own (`imgate:` section) ---
  std::string bind_address = "0.0.0.0";
  std::string ws_path = "/acc";
  unsigned threads = 0;                       // 0 = hardware threads
  std::vector<uint32_t> app_ids{101, 102, 103, 104};
  Millis heartbeat_timeout{360'000};          // idle time after which a connection is closed
  Millis ping_interval{30'000};               // server WebSocket ping to idle connections
  Millis handshake_timeout{10'000};           // TCP accept -> WebSocket upgrade complete
  Millis flush_interval{0};                   // corked writes wait this long (0: end of the loop pass)
  Millis close_timeout{5'000};                // close handshake / stuck write before hard close
  Millis shutdown_timeout{10'000};            // SIGTERM -> exit, at the latest
  std::size_t send_queue_bytes = 1 << 20;     // per-connection queued bytes before overflow close
  std::size_t max_message_bytes = 64 << 10;   // largest client message accepted
  std::size_t max_connections = 1'000'000;    // global; 0 = unlimited
  std::size_t max_http_connections = 128;     // HTTP API port sessions (1..100000)
  std::string log_level = "info";             // trace, debug, info, warn, error, critical, off
  std::string ready_file;                     // if set, written with the bound ports once listening
  std::string web_root;                       // chat page directory; "" = the page compiled in
  std::string cors_origin = "*";              // Access-Control-Allow-Origin of API responses
  Millis msg_id_ttl{12 * 3600 * 1000};        // msgID de-duplication window (upstream: 12 h)
  std::size_t msg_id_capacity = 200'000;      // msgIDs remembered at most (embedded mode)
  std::size_t presence_max_room = 0;          // enter/exit only in rooms up to this size; 0 = all
  std::vector<uint32_t> quiet_app_ids;        // rooms without enter/exit pushes
  Millis node_ttl{10'000};                    // cluster: a silent node counts as dead after this
  std::string redis_prefix = "imgate:";       // cluster: prefix of every Redis key and channel
  std::string tls_cert;                       // PEM certificate chain; set with tls_key: wss / https
  std::string tls_key;                        // PEM private key of tls_cert
  std::string tls_ticket_key_file;            // session ticket keys (empty: generated, per process)
  // Access control (docs/security.md). Empty api_keys: the HTTP API is open (upstream).
  std::vector<std::string> api_keys;          // /user/* needs one of these (Bearer or X-API-Key)
  std::string api_key_file;                   // one key a line; its keys join api_keys at load
  bool protect_metrics = false;               // /system/state and /metrics need a key too
  std::vector<std::string> allowed_origins;   // upgrade Origin allow-list; empty = any origin
  // Login tokens (docs/security.md). All empty: login is not authenticated (upstream).
  std::string auth_hmac_secret;               // HS256/384/512 secret (at least 32 bytes)
  std::string auth_hmac_secret_file;          // file holding the secret (trailing newline dropped)
  std::string auth_public_key;                // PEM file: RSA (RS256) or EC P-256 (ES256) public key
  Millis auth_leeway{30'000};                 // clock skew allowed on exp / nbf
  std::size_t max_failed_logins = 5;          // failed login / refresh commands before close 1008; 0 = no limit
  // History (docs/history.md). history_size 0: off (upstream: pushes are never kept).
  std::size_t history_size = 0;               // pushes kept per stream (room or user)
  Millis history_ttl{3'600'000};              // none older than this; 0 = no age limit
  std::size_t history_max_bytes = 64u << 20;  // embedded: all streams together
  // Per-client limits (docs/security.md); 0 turns each one off. Crossing one closes with 1008.
  std::size_t ip_max_connections = 1000;      // upgraded connections per client address
  double ip_upgrade_rate = 50;                // upgrades per second per client address...
  std::size_t ip_upgrade_burst = 100;         // ...of which this many at once
  double message_rate = 100;                  // client messages per second per connection...
  std::size_t message_burst = 200;            // ...of which this many at once
  std::size_t ip_table_size = 1 << 20;        // client addresses tracked at most
  std::vector<std::string> trusted_proxies;   // networks whose X-Forwarded-For is believed

  // Not an option: what loading found worth a warning (unknown YAML keys),
  // logged at start-up.
  std::vector<std::string> warnings;
};

struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Builds the configuration from argv, the environment and the YAML file
// (--config, default "config/app.yaml" when it exists). Returns nullopt when
// --help or --version was handled (text written to `out`). Throws ConfigError
// with a readable message on any invalid value.
std::optional<Config> load_config(int argc, const char* const* argv, std::ostream& out);

// Parses YAML text into `cfg` (used by load_config and by tests). An unknown
// key or section is ignored with a line in cfg.warnings, except upstream's
// redis.poolSize and redis.minIdleConns.
void apply_yaml(Config& cfg, const std::string& yaml_text);

// Reads cfg.api_key_file (one key a line; blank lines and # comments skipped) and
// appends its keys to cfg.api_keys. Throws ConfigError when it cannot be read or
// holds no key. load_config calls it; a no-op when api_key_file is empty.
void load_api_key_file(Config& cfg);

// Checks cross-field constraints; throws ConfigError.
void validate(const Config& cfg);

}  // namespace imgate
