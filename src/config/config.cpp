// imgate configuration loading. Every option is declared exactly once, in kOptions below; that
// table drives YAML parsing, IMGATE_* environment parsing, CLI11 flag registration and --help.
// All three sources hand the option's text to the same parser, so a value means the same thing
// wherever it comes from. Precedence (lowest to highest): Config's defaults, YAML, env, flags.
#include "config/config.hpp"

#include "security/access.hpp"
#include "security/limits.hpp"

#include <yaml-cpp/yaml.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <concepts>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <ostream>
#include <string_view>
#include <type_traits>
#include <unordered_set>
#include <utility>

#ifndef IMGATE_VERSION
#define IMGATE_VERSION "0.0.0-unknown"
#endif

namespace imgate {
namespace {

constexpr const char* kDefaultConfigPath = "config/app.yaml";
constexpr const char* kConfigEnv = "IMGATE_CONFIG";
constexpr const char* kEnvPrefix = "IMGATE_";
constexpr unsigned kMaxThreads = 1024;
constexpr double kMaxSeconds = 1e9;  // ~31 years; keeps milliseconds far from overflow
constexpr std::size_t kMinSendQueueBytes = 1024;
constexpr std::size_t kMinMaxMessageBytes = 128;
constexpr double kMaxRate = 1e6;  // per second; a token every microsecond
constexpr uint64_t kMaxBurst = 1'000'000;
constexpr std::size_t kMinIpTableSize = 64;  // one entry per stripe
constexpr std::size_t kMaxIpTableSize = std::size_t{1} << 28;
constexpr std::string_view kLogLevels[] = {"trace", "debug",    "info", "warn",
                                           "error", "critical", "off"};

// Thrown by the value parsers with what was expected; callers add option, source and value.
struct BadValue : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// ---------------------------------------------------------------------------------------------
// Text helpers

std::string_view trim(std::string_view s) {
  const auto is_space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return lower(a) == lower(b);
}

// "heartbeat-timeout" -> "IMGATE_HEARTBEAT_TIMEOUT".
std::string env_name(std::string_view flag) {
  std::string out = kEnvPrefix;
  for (char c : flag) {
    out += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Value parsers: text -> field value, or BadValue. Shared by YAML, environment and flags.

uint64_t parse_uint(std::string_view text, uint64_t max, const std::string& expected) {
  text = trim(text);
  if (!text.empty() && text.front() == '-') throw BadValue("must not be negative");
  uint64_t value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec == std::errc::invalid_argument || ptr != end) {
    throw BadValue("expected " + expected);
  }
  if (ec == std::errc::result_out_of_range || value > max) {
    throw BadValue("out of range; expected " + expected);
  }
  return value;
}

uint16_t parse_port(std::string_view text) {
  return static_cast<uint16_t>(parse_uint(text, 65535, "a port number 0..65535"));
}

int parse_db(std::string_view text) {
  constexpr auto kMax = static_cast<uint64_t>(std::numeric_limits<int>::max());
  return static_cast<int>(parse_uint(text, kMax, "a non-negative database number"));
}

unsigned parse_threads(std::string_view text) {
  return static_cast<unsigned>(
      parse_uint(text, kMaxThreads, "a thread count 0..1024 (0 = hardware threads)"));
}

uint32_t parse_buckets(std::string_view text) {
  return static_cast<uint32_t>(parse_uint(text, 1024, "a bucket count 1..1024"));
}

std::size_t parse_count(std::string_view text) {
  return parse_uint(text, std::numeric_limits<std::size_t>::max(), "a non-negative integer");
}

// Non-negative integer with an optional K, M or G suffix (KiB, MiB, GiB; case-insensitive).
std::size_t parse_bytes(std::string_view text) {
  text = trim(text);
  uint64_t unit = 1;
  if (!text.empty()) {
    switch (std::toupper(static_cast<unsigned char>(text.back()))) {
      case 'K':
        unit = uint64_t{1} << 10;
        break;
      case 'M':
        unit = uint64_t{1} << 20;
        break;
      case 'G':
        unit = uint64_t{1} << 30;
        break;
      default:
        break;
    }
    if (unit != 1) text.remove_suffix(1);
  }
  constexpr uint64_t kMax = std::numeric_limits<std::size_t>::max();
  const uint64_t value =
      parse_uint(text, kMax / unit, "a byte count, optionally with a K, M or G suffix");
  return static_cast<std::size_t>(value * unit);
}

// A number of seconds, fractions allowed ("30", "0.5", "1e3"); rounded to milliseconds.
Millis parse_seconds(std::string_view text) {
  text = trim(text);
  double seconds = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, seconds);
  if (text.empty() || ec != std::errc{} || ptr != end || !std::isfinite(seconds)) {
    throw BadValue("expected a number of seconds, e.g. 30 or 0.5");
  }
  if (seconds < 0) throw BadValue("a duration must not be negative");
  if (seconds > kMaxSeconds) throw BadValue("a duration must be at most 1e9 seconds");
  return Millis{std::llround(seconds * 1000.0)};
}

// Events per second, fractions allowed ("50", "0.5"); 0 = off.
double parse_rate(std::string_view text) {
  text = trim(text);
  double rate = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, rate);
  if (text.empty() || ec != std::errc{} || ptr != end || !std::isfinite(rate)) {
    throw BadValue("expected a number per second, e.g. 50 or 0.5 (0 = off)");
  }
  if (rate < 0) throw BadValue("a rate must not be negative");
  if (rate > kMaxRate) throw BadValue("a rate must be at most 1000000 per second");
  return rate;
}

uint64_t parse_burst(std::string_view text) {
  return parse_uint(text, kMaxBurst, "a burst size 0..1000000");
}

std::vector<uint32_t> parse_app_ids(std::string_view text) {
  const std::string expected = "a comma-separated list of app ids (unsigned 32-bit), e.g. 101,102";
  if (trim(text).empty()) throw BadValue("the app id list must not be empty; expected " + expected);
  constexpr uint64_t kMaxIds = 1'000'000;  // ranges make huge lists easy to type by mistake
  std::vector<uint32_t> ids;
  std::unordered_set<uint32_t> seen;
  const auto max = std::numeric_limits<uint32_t>::max();
  while (true) {
    const std::size_t comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    const std::size_t dash = item.find('-');  // "1000-1999": a range, both ends included
    const uint64_t lo = parse_uint(item.substr(0, dash), max, expected);
    const uint64_t hi = dash == std::string_view::npos ? lo : parse_uint(item.substr(dash + 1), max, expected);
    if (hi < lo || ids.size() + (hi - lo) >= kMaxIds) {
      throw BadValue("app id ranges must be ascending and list at most 1000000 ids");
    }
    for (uint64_t id = lo; id <= hi; ++id) {
      if (seen.insert(static_cast<uint32_t>(id)).second) ids.push_back(static_cast<uint32_t>(id));
    }
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return ids;
}

// Like parse_app_ids, but an empty text is an empty list.
std::vector<uint32_t> parse_app_ids_or_none(std::string_view text) {
  if (trim(text).empty()) return {};
  return parse_app_ids(text);
}

std::string parse_log_level(std::string_view text) {
  std::string level = lower(trim(text));
  if (std::find(std::begin(kLogLevels), std::end(kLogLevels), level) == std::end(kLogLevels)) {
    throw BadValue("expected one of trace, debug, info, warn, error, critical, off");
  }
  return level;
}

std::string parse_text(std::string_view text) {
  return std::string(text);
}

bool parse_bool(std::string_view text) {
  const std::string value = lower(trim(text));
  if (value == "true" || value == "1" || value == "yes" || value == "on") return true;
  if (value == "false" || value == "0" || value == "no" || value == "off") return false;
  throw BadValue("expected true or false");
}

// Items separated by commas (or newlines: repeated flags are joined that way),
// trimmed; empty items are skipped, so "" is an empty list.
std::vector<std::string> split_list(std::string_view text) {
  std::vector<std::string> items;
  while (true) {
    const std::size_t end = text.find_first_of(",\n");
    const std::string_view item = trim(text.substr(0, end));
    if (!item.empty()) items.emplace_back(item);
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  return items;
}

// An API key: visible ASCII without spaces (in a list, commas separate keys).
void check_api_key(std::string_view key) {
  for (const char c : key) {
    if (c <= ' ' || c >= 127) throw BadValue("an API key must be visible ASCII without spaces");
  }
}

std::vector<std::string> parse_api_keys(std::string_view text) {
  std::vector<std::string> keys = split_list(text);
  for (const std::string& key : keys) check_api_key(key);
  return keys;
}

std::vector<std::string> parse_origins(std::string_view text) {
  std::vector<std::string> origins = split_list(text);
  for (const std::string& origin : origins) {
    if (const std::string error = origin_pattern_error(origin); !error.empty()) {
      throw BadValue("\"" + origin + "\": " + error);
    }
  }
  return origins;
}

std::vector<std::string> parse_cidrs(std::string_view text) {
  std::vector<std::string> networks = split_list(text);
  for (const std::string& network : networks) {
    try {
      CidrSet::parse(network);
    } catch (const std::invalid_argument& e) {
      throw BadValue(std::string(e.what()) + "; expected networks such as 10.0.0.0/8 or ::1/128");
    }
  }
  return networks;
}

// ---------------------------------------------------------------------------------------------
// Field values -> text, for --help defaults.

std::string to_text(const std::string& s) {
  return s;
}

template <std::integral T>
std::string to_text(T v) {
  return std::to_string(v);
}

std::string to_text(Millis ms) {
  std::string out = std::to_string(ms.count() / 1000);
  if (const auto frac = ms.count() % 1000; frac != 0) {
    std::string digits = std::to_string(1000 + frac).substr(1);  // zero-padded to 3 digits
    digits.erase(digits.find_last_not_of('0') + 1);
    out += "." + digits;
  }
  return out;
}

std::string to_text(double v) {
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);  // shortest round trip
  return ec == std::errc{} ? std::string(buf, end) : std::to_string(v);
}

std::string to_text(bool v) {
  return v ? "true" : "false";
}

std::string to_text(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ",") + item;
  return out;
}

std::string to_text(const std::vector<uint32_t>& ids) {
  std::string out;
  for (const uint32_t id : ids) out += (out.empty() ? "" : ",") + std::to_string(id);
  return out;
}

// ---------------------------------------------------------------------------------------------
// The option table.

// How an option reaches its Config field: parse text into it, and show its current value.
struct Binding {
  void (*set)(Config&, std::string_view);
  std::string (*show)(const Config&);
  bool is_list;     // YAML accepts a sequence (joined with commas) as well as a scalar
  bool repeatable;  // the flag may be given several times; the values join into one list
  bool is_switch;   // boolean: the flag alone means true (--protect-metrics)
};

template <auto Field, auto Parse>
constexpr Binding bind() {
  using FieldType = std::remove_cvref_t<decltype(std::declval<Config&>().*Field)>;
  return {[](Config& c, std::string_view v) { c.*Field = Parse(v); },
          [](const Config& c) { return to_text(c.*Field); },
          std::is_same_v<FieldType, std::vector<uint32_t>> ||
              std::is_same_v<FieldType, std::vector<std::string>>,
          std::is_same_v<FieldType, std::vector<std::string>>, std::is_same_v<FieldType, bool>};
}

struct OptionSpec {
  const char* yaml;   // "section.key" as in app.yaml; keys match case-insensitively (like viper)
  const char* flag;   // long flag without "--"; the env name is IMGATE_ + its upper snake case
  const char* value;  // value placeholder shown in --help
  const char* doc;    // one line for --help
  Binding field;
};

// clang-format off
constexpr OptionSpec kOptions[] = {
    // Upstream gowebsocket config/app.yaml keys.
    {"app.logFile", "log-file", "FILE", "Log file; empty logs to stderr",
     bind<&Config::log_file, parse_text>()},
    {"app.httpPort", "http-port", "PORT", "HTTP API port (0 = any free port)",
     bind<&Config::http_port, parse_port>()},
    {"app.webSocketPort", "ws-port", "PORT", "WebSocket port (0 = any free port)",
     bind<&Config::ws_port, parse_port>()},
    {"app.rpcPort", "rpc-port", "PORT", "Upstream gRPC port; accepted for compatibility, unused",
     bind<&Config::rpc_port, parse_port>()},
    {"app.httpUrl", "http-url", "URL", "Informational HTTP address (upstream httpUrl)",
     bind<&Config::http_url, parse_text>()},
    {"app.webSocketUrl", "web-socket-url", "URL", "WebSocket address the chat page connects to",
     bind<&Config::web_socket_url, parse_text>()},
    {"redis.addr", "redis-addr", "HOST:PORT", "Redis address; empty = embedded single node",
     bind<&Config::redis_addr, parse_text>()},
    {"redis.password", "redis-password", "TEXT", "Redis password",
     bind<&Config::redis_password, parse_text>()},
    {"redis.DB", "redis-db", "N", "Redis database number",
     bind<&Config::redis_db, parse_db>()},
    {"redis.cluster", "redis-cluster", "HOST:PORT,...",
     "Redis Cluster seed nodes: the cluster mode on a Redis Cluster (instead of redis.addr)",
     bind<&Config::redis_cluster, parse_text>()},
    {"redis.buckets", "redis-buckets", "N",
     "Redis Cluster: buckets one appID's users are spread over, 1..1024 (one Redis server: 1)",
     bind<&Config::redis_buckets, parse_buckets>()},
    // imgate's own keys (`imgate:` section).
    {"imgate.bindAddress", "bind", "ADDR", "Listen address for the HTTP and WebSocket ports",
     bind<&Config::bind_address, parse_text>()},
    {"imgate.wsPath", "ws-path", "PATH", "WebSocket upgrade path",
     bind<&Config::ws_path, parse_text>()},
    {"imgate.threads", "threads", "N", "I/O threads, at most 1024 (0 = hardware threads)",
     bind<&Config::threads, parse_threads>()},
    {"imgate.appIDs", "app-ids", "LIST", "Accepted appIds, comma-separated",
     bind<&Config::app_ids, parse_app_ids>()},
    {"imgate.heartbeatTimeout", "heartbeat-timeout", "SECONDS",
     "Close a connection idle (no message, no pong) this long",
     bind<&Config::heartbeat_timeout, parse_seconds>()},
    {"imgate.pingInterval", "ping-interval", "SECONDS",
     "Send a WebSocket ping to a connection idle this long",
     bind<&Config::ping_interval, parse_seconds>()},
    {"imgate.handshakeTimeout", "handshake-timeout", "SECONDS",
     "Limit from TCP accept to completed WebSocket upgrade",
     bind<&Config::handshake_timeout, parse_seconds>()},
    {"imgate.flushInterval", "flush-interval", "SECONDS",
     "Corked WebSocket writes leave after this delay (0: at the end of the loop pass)",
     bind<&Config::flush_interval, parse_seconds>()},
    {"imgate.closeTimeout", "close-timeout", "SECONDS",
     "Limit for a close handshake or stuck write before a hard close",
     bind<&Config::close_timeout, parse_seconds>()},
    {"imgate.shutdownTimeout", "shutdown-timeout", "SECONDS",
     "Limit from SIGTERM/SIGINT to process exit",
     bind<&Config::shutdown_timeout, parse_seconds>()},
    {"imgate.sendQueueBytes", "send-queue-bytes", "BYTES",
     "Per-connection queued outgoing bytes before an overflow close (K/M/G ok)",
     bind<&Config::send_queue_bytes, parse_bytes>()},
    {"imgate.maxMessageBytes", "max-message-bytes", "BYTES",
     "Largest client message accepted (K/M/G ok)",
     bind<&Config::max_message_bytes, parse_bytes>()},
    {"imgate.maxConnections", "max-connections", "N", "Global connection limit (0 = unlimited)",
     bind<&Config::max_connections, parse_count>()},
    {"imgate.maxHttpConnections", "max-http-connections", "N",
     "HTTP API port connections at most; the longest idle makes room (1..100000)",
     bind<&Config::max_http_connections, parse_count>()},
    {"imgate.logLevel", "log-level", "LEVEL", "trace, debug, info, warn, error, critical or off",
     bind<&Config::log_level, parse_log_level>()},
    {"imgate.readyFile", "ready-file", "FILE", "If set, the bound ports are written here on listen",
     bind<&Config::ready_file, parse_text>()},
    {"imgate.webRoot", "web-root", "DIR",
     "Serve the chat page and client from this directory (empty: the copy compiled in)",
     bind<&Config::web_root, parse_text>()},
    {"imgate.corsOrigin", "cors-origin", "ORIGIN",
     "Access-Control-Allow-Origin sent by the HTTP API (upstream: *)",
     bind<&Config::cors_origin, parse_text>()},
    {"imgate.msgIdTtl", "msg-id-ttl", "SECONDS", "msgID de-duplication window (upstream 12 h)",
     bind<&Config::msg_id_ttl, parse_seconds>()},
    {"imgate.presenceMaxRoom", "presence-max-room", "N",
     "enter/exit pushes only in rooms of at most N users (0 = every room, as upstream)",
     bind<&Config::presence_max_room, parse_count>()},
    {"imgate.quietAppIDs", "quiet-app-ids", "LIST", "appIDs whose rooms get no enter/exit pushes",
     bind<&Config::quiet_app_ids, parse_app_ids_or_none>()},
    {"imgate.nodeTtl", "node-ttl", "SECONDS",
     "Cluster: a node not refreshing its registration this long is dead (users removed)",
     bind<&Config::node_ttl, parse_seconds>()},
    {"imgate.redisPrefix", "redis-prefix", "TEXT", "Cluster: prefix of every Redis key and channel",
     bind<&Config::redis_prefix, parse_text>()},
    {"imgate.msgIdCapacity", "msg-id-capacity", "N",
     "msgIDs remembered at most; the oldest is forgotten early when full",
     bind<&Config::msg_id_capacity, parse_count>()},
    {"imgate.tlsCert", "tls-cert", "FILE",
     "PEM certificate chain: serve wss:// and https:// (with --tls-key; SIGHUP reloads)",
     bind<&Config::tls_cert, parse_text>()},
    {"imgate.tlsKey", "tls-key", "FILE", "PEM private key of --tls-cert",
     bind<&Config::tls_key, parse_text>()},
    {"imgate.tlsTicketKeyFile", "tls-ticket-key-file", "FILE",
     "TLS session ticket keys, one a line (openssl rand -hex 80), the first for new tickets; "
     "the same file on every node resumes anywhere (SIGHUP rereads)",
     bind<&Config::tls_ticket_key_file, parse_text>()},
    {"imgate.apiKeys", "api-key", "KEY",
     "API key required by /user/* (Bearer or X-API-Key); repeatable, or comma-separated",
     bind<&Config::api_keys, parse_api_keys>()},
    {"imgate.apiKeyFile", "api-key-file", "FILE", "File of API keys, one a line (# comments)",
     bind<&Config::api_key_file, parse_text>()},
    {"imgate.protectMetrics", "protect-metrics", "BOOL",
     "With API keys: /system/state and /metrics need a key too",
     bind<&Config::protect_metrics, parse_bool>()},
    {"imgate.allowedOrigins", "allowed-origins", "LIST",
     "WebSocket upgrades only from these Origins (exact or https://*.example.com); empty = any",
     bind<&Config::allowed_origins, parse_origins>()},
    {"imgate.authHmacSecret", "auth-hmac-secret", "SECRET",
     "Login needs a JWT signed with this HMAC secret (HS256/384/512; at least 32 bytes)",
     bind<&Config::auth_hmac_secret, parse_text>()},
    {"imgate.authHmacSecretFile", "auth-hmac-secret-file", "FILE",
     "File holding the HMAC secret of login tokens (instead of --auth-hmac-secret)",
     bind<&Config::auth_hmac_secret_file, parse_text>()},
    {"imgate.authPublicKey", "auth-public-key", "FILE",
     "Login needs a JWT signed by this PEM public key's owner (RSA: RS256, EC P-256: ES256)",
     bind<&Config::auth_public_key, parse_text>()},
    {"imgate.authLeeway", "auth-leeway", "SECONDS", "Clock skew allowed on a token's exp and nbf",
     bind<&Config::auth_leeway, parse_seconds>()},
    {"imgate.maxFailedLogins", "max-failed-logins", "N",
     "Close a connection (1008) after N refused login / refresh commands (0 = no limit)",
     bind<&Config::max_failed_logins, parse_count>()},
    {"imgate.historySize", "history-size", "N",
     "Keep the last N pushes of each room and user for recovery and offline messages (0 = off)",
     bind<&Config::history_size, parse_count>()},
    {"imgate.historyTtl", "history-ttl", "SECONDS", "Kept pushes older than this are dropped (0 = no age limit)",
     bind<&Config::history_ttl, parse_seconds>()},
    {"imgate.historyMaxBytes", "history-max-bytes", "BYTES",
     "Embedded mode: memory for kept pushes, all streams together; the oldest go first (K/M/G ok)",
     bind<&Config::history_max_bytes, parse_bytes>()},
    {"imgate.ipMaxConnections", "ip-max-connections", "N",
     "WebSocket connections per client address; more close with 1008 (0 = unlimited)",
     bind<&Config::ip_max_connections, parse_count>()},
    {"imgate.ipUpgradeRate", "ip-upgrade-rate", "PER_SECOND",
     "WebSocket upgrades per second per client address; more close with 1008 (0 = unlimited)",
     bind<&Config::ip_upgrade_rate, parse_rate>()},
    {"imgate.ipUpgradeBurst", "ip-upgrade-burst", "N",
     "Upgrades per client address allowed at once above --ip-upgrade-rate",
     bind<&Config::ip_upgrade_burst, parse_burst>()},
    {"imgate.messageRate", "message-rate", "PER_SECOND",
     "Client messages per second per connection; more close with 1008 (0 = unlimited)",
     bind<&Config::message_rate, parse_rate>()},
    {"imgate.messageBurst", "message-burst", "N",
     "Client messages per connection allowed at once above --message-rate",
     bind<&Config::message_burst, parse_burst>()},
    {"imgate.ipTableSize", "ip-table-size", "N",
     "Client addresses tracked at most by the per-address limits (64..268435456)",
     bind<&Config::ip_table_size, parse_count>()},
    {"imgate.trustedProxies", "trusted-proxies", "LIST",
     "Networks (CIDR) of proxies whose X-Forwarded-For names the client; empty = none",
     bind<&Config::trusted_proxies, parse_cidrs>()},
};
// clang-format on

// Applies `text` to the option's field; a parse failure becomes a ConfigError naming the option
// as its source spells it (`name`), the source (`where`) and the value.
void set_option(Config& cfg, const OptionSpec& opt, std::string_view text, const std::string& name,
                const std::string& where) {
  try {
    opt.field.set(cfg, text);
  } catch (const BadValue& e) {
    throw ConfigError("config: invalid value \"" + std::string(text) + "\" for " + name + " (" +
                      where + "): " + e.what());
  }
}

// ---------------------------------------------------------------------------------------------
// YAML

const char* yaml_kind(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Sequence:
      return "list";
    case YAML::NodeType::Map:
      return "mapping";
    case YAML::NodeType::Scalar:
      return "scalar";
    default:
      return "null";
  }
}

const OptionSpec* find_yaml_option(const std::string& path) {
  for (const OptionSpec& opt : kOptions) {
    if (iequals(opt.yaml, path)) return &opt;
  }
  return nullptr;
}

// Upstream gowebsocket app.yaml keys that imgate has no use for: accepted silently.
constexpr std::string_view kUpstreamUnusedKeys[] = {"redis.poolSize", "redis.minIdleConns"};

bool is_upstream_unused_key(const std::string& path) {
  return std::any_of(std::begin(kUpstreamUnusedKeys), std::end(kUpstreamUnusedKeys),
                     [&](std::string_view key) { return iequals(key, path); });
}

bool is_known_section(std::string_view section) {
  const std::string prefix = lower(section) + ".";
  return std::any_of(std::begin(kOptions), std::end(kOptions),
                     [&](const OptionSpec& opt) { return lower(opt.yaml).starts_with(prefix); });
}

[[noreturn]] void fail_yaml_type(const std::string& path, const std::string& where,
                                 const char* expected, const YAML::Node& node) {
  throw ConfigError("config: wrong type for " + path + " (" + where + "): expected " + expected +
                    ", got a " + yaml_kind(node));
}

// The option's value as text: a scalar, or (for list options) a sequence of scalars joined by ','.
std::string yaml_value_text(const YAML::Node& node, const OptionSpec& opt, const std::string& path,
                            const std::string& where) {
  if (node.IsScalar()) return node.Scalar();
  const char* expected = opt.field.is_list ? "a list of scalars" : "a scalar";
  if (!node.IsSequence() || !opt.field.is_list) fail_yaml_type(path, where, expected, node);
  std::string joined;
  for (const YAML::Node& item : node) {
    if (!item.IsScalar()) fail_yaml_type(path, where, expected, item);
    joined += (joined.empty() ? "" : ",") + item.Scalar();
  }
  return joined;
}

void apply_yaml_section(Config& cfg, const std::string& section, const YAML::Node& node,
                        const std::string& where) {
  if (node.IsNull()) return;
  if (!node.IsMap()) fail_yaml_type(section, where, "a mapping", node);
  for (const auto& entry : node) {
    const std::string path = section + "." + entry.first.Scalar();
    const OptionSpec* opt = find_yaml_option(path);
    if (opt == nullptr) {  // ignored; a typo (httpPrt) would silently keep the default
      if (!is_upstream_unused_key(path)) {
        cfg.warnings.push_back("config: unknown key " + path + " (" + where + ") ignored");
      }
      continue;
    }
    if (entry.second.IsNull()) continue;
    set_option(cfg, *opt, yaml_value_text(entry.second, *opt, path, where), path, where);
  }
}

void apply_yaml_from(Config& cfg, const std::string& text, const std::string& where) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw ConfigError("config: malformed YAML (" + where + "): " + e.what());
  }
  if (root.IsNull()) return;
  if (!root.IsMap()) fail_yaml_type("the top level", where, "a mapping of sections", root);
  for (const auto& section : root) {
    const std::string& name = section.first.Scalar();
    if (is_known_section(name)) {
      apply_yaml_section(cfg, name, section.second, where);
    } else {
      cfg.warnings.push_back("config: unknown section " + name + " (" + where + ") ignored");
    }
  }
}

// Reads the file; nullopt when it does not exist and is not required.
std::optional<std::string> read_config_file(const std::string& path, bool required) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) {
    if (!required) return std::nullopt;
    throw ConfigError("config: config file \"" + path + "\" does not exist");
  }
  if (std::filesystem::is_directory(status)) {
    throw ConfigError("config: config file \"" + path + "\" is a directory");
  }
  std::ifstream in(path, std::ios::binary);
  std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (!in.is_open() || in.bad()) {
    throw ConfigError("config: cannot read config file \"" + path + "\"");
  }
  return text;
}

// ---------------------------------------------------------------------------------------------
// Environment and command line

void apply_env(Config& cfg) {
  for (const OptionSpec& opt : kOptions) {
    const std::string name = env_name(opt.flag);
    if (const char* value = std::getenv(name.c_str())) {
      set_option(cfg, opt, value, name, "environment variable");
    }
  }
}

// Raw flag values, captured as text so flags go through the same parsers as YAML and env.
struct CommandLine {
  std::optional<std::string> config_path;
  std::vector<std::optional<std::string>> values{std::size(kOptions)};
};

std::string option_help(const OptionSpec& opt) {
  return std::string(opt.doc) + "\nenv " + env_name(opt.flag) + ", yaml " + opt.yaml;
}

void register_flags(CLI::App& app, std::vector<std::string>& raw, std::string& config_raw,
                    std::vector<CLI::Option*>& flags) {
  const Config defaults;
  flags.push_back(app.add_option("--config", config_raw,
                                 std::string("YAML config file; default ") + kDefaultConfigPath +
                                     " if it exists; \"\" = none\nenv " + kConfigEnv)
                      ->type_name("PATH"));
  for (CLI::Option* flag : flags) flag->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  for (std::size_t i = 0; i < std::size(kOptions); ++i) {
    const OptionSpec& opt = kOptions[i];
    CLI::Option* flag = app.add_option(std::string("--") + opt.flag, raw[i], option_help(opt))
                            ->type_name(opt.value);
    // A switch shows no default: CLI11 would hand it in as the value of a bare flag.
    if (!opt.field.is_switch) flag->default_str(opt.field.show(defaults));
    // Repeated list flags join (with newlines, which the list parsers split on); others:
    // the last one wins.
    flag->multi_option_policy(opt.field.repeatable ? CLI::MultiOptionPolicy::Join
                                                   : CLI::MultiOptionPolicy::TakeLast);
    if (opt.field.is_switch) flag->expected(0, 1);
    flags.push_back(flag);
  }
  app.set_version_flag("--version", std::string("imgate ") + IMGATE_VERSION);
  app.footer(
      "Precedence, lowest to highest: built-in defaults, YAML file, IMGATE_* environment\n"
      "variables, flags. Durations are seconds (fractions allowed); byte sizes accept K, M, G.");
}

// Parses argv; nullopt when --help or --version was printed to `out`.
std::optional<CommandLine> parse_command_line(int argc, const char* const* argv,
                                              std::ostream& out) {
  CLI::App app("imgate: WebSocket IM gateway compatible with gowebsocket", "imgate");
  app.get_formatter()->column_width(34);
  std::vector<std::string> raw(std::size(kOptions));
  std::string config_raw;
  std::vector<CLI::Option*> flags;
  register_flags(app, raw, config_raw, flags);
  try {
    if (argc > 0) {
      app.parse(argc, argv);
    } else {
      app.parse(std::vector<std::string>{});
    }
  } catch (const CLI::CallForHelp&) {
    out << app.help();
    return std::nullopt;
  } catch (const CLI::CallForVersion& e) {
    out << e.what() << "\n";
    return std::nullopt;
  } catch (const CLI::ParseError& e) {
    throw ConfigError(std::string("config: command line: ") + e.what() + " (see --help)");
  }
  CommandLine cl;
  if (flags[0]->count() > 0) cl.config_path = config_raw;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (flags[i + 1]->count() > 0) {
      // A switch given without a value (--protect-metrics) means true.
      const bool bare = kOptions[i].field.is_switch && trim(raw[i]).empty();
      cl.values[i] = bare ? std::string("true") : raw[i];
    }
  }
  return cl;
}

void apply_flags(Config& cfg, const CommandLine& cl) {
  for (std::size_t i = 0; i < std::size(kOptions); ++i) {
    if (cl.values[i]) {
      const OptionSpec& opt = kOptions[i];
      set_option(cfg, opt, *cl.values[i], std::string("--") + opt.flag, "command-line flag");
    }
  }
}

void apply_config_file(Config& cfg, const CommandLine& cl) {
  std::string path = kDefaultConfigPath;
  std::string from = "default";
  if (cl.config_path) {
    path = *cl.config_path;
    from = "--config";
  } else if (const char* env = std::getenv(kConfigEnv)) {
    path = env;
    from = kConfigEnv;
  }
  if (path.empty()) return;  // explicitly disabled
  const auto text = read_config_file(path, from != "default");
  const std::string where = "config file " + path + (from == "default" ? "" : " given by " + from);
  if (text) apply_yaml_from(cfg, *text, where);
}

// ---------------------------------------------------------------------------------------------
// Validation

// `key` is the option's YAML path; the message also names its flag.
void check(bool ok, std::string_view key, const std::string& problem) {
  if (ok) return;
  for (const OptionSpec& opt : kOptions) {
    if (opt.yaml == key) {
      throw ConfigError("config: " + std::string(key) + " (--" + opt.flag + ") " + problem);
    }
  }
  throw ConfigError("config: " + std::string(key) + " " + problem);
}

std::string got(const std::string& value) {
  return ", got \"" + value + "\"";
}

void check_positive(Millis value, std::string_view key) {
  check(value.count() > 0, key, "must be greater than 0 (at least 0.001 s)" + got(to_text(value)));
}

}  // namespace

void apply_yaml(Config& cfg, const std::string& yaml_text) {
  apply_yaml_from(cfg, yaml_text, "YAML text");
}

void validate(const Config& cfg) {
  check(cfg.threads <= kMaxThreads, "imgate.threads",
        "must be at most 1024" + got(to_text(cfg.threads)));
  check(!cfg.app_ids.empty(), "imgate.appIDs", "must list at least one app id");
  check(cfg.ws_path.starts_with('/'), "imgate.wsPath", "must start with '/'" + got(cfg.ws_path));
  check(!cfg.bind_address.empty(), "imgate.bindAddress", "must not be empty");
  check_positive(cfg.heartbeat_timeout, "imgate.heartbeatTimeout");
  check_positive(cfg.ping_interval, "imgate.pingInterval");
  check_positive(cfg.handshake_timeout, "imgate.handshakeTimeout");
  check_positive(cfg.close_timeout, "imgate.closeTimeout");
  check(cfg.flush_interval <= Millis(1000), "imgate.flushInterval",
        "must be at most 1 second" + got(std::to_string(cfg.flush_interval.count()) + " ms"));
  check_positive(cfg.shutdown_timeout, "imgate.shutdownTimeout");
  check(cfg.send_queue_bytes >= kMinSendQueueBytes, "imgate.sendQueueBytes",
        "must be at least 1024" + got(to_text(cfg.send_queue_bytes)));
  check(cfg.max_message_bytes >= kMinMaxMessageBytes, "imgate.maxMessageBytes",
        "must be at least 128" + got(to_text(cfg.max_message_bytes)));
  check(std::find(std::begin(kLogLevels), std::end(kLogLevels), cfg.log_level) !=
            std::end(kLogLevels),
        "imgate.logLevel",
        "must be one of trace, debug, info, warn, error, critical, off" + got(cfg.log_level));
  check(!cfg.protect_metrics || !cfg.api_keys.empty(), "imgate.protectMetrics",
        "needs an API key (--api-key or --api-key-file)");
  check(cfg.ip_upgrade_rate == 0 || cfg.ip_upgrade_burst >= 1, "imgate.ipUpgradeBurst",
        "must be at least 1 when ipUpgradeRate is set" + got(to_text(cfg.ip_upgrade_burst)));
  check(cfg.message_rate == 0 || cfg.message_burst >= 1, "imgate.messageBurst",
        "must be at least 1 when messageRate is set" + got(to_text(cfg.message_burst)));
  check(cfg.max_http_connections >= 1 && cfg.max_http_connections <= 100'000,
        "imgate.maxHttpConnections",
        "must be between 1 and 100000" + got(to_text(cfg.max_http_connections)));
  check(cfg.ip_table_size >= kMinIpTableSize && cfg.ip_table_size <= kMaxIpTableSize,
        "imgate.ipTableSize", "must be between 64 and 268435456" + got(to_text(cfg.ip_table_size)));
  check(cfg.tls_cert.empty() == cfg.tls_key.empty(),
        cfg.tls_cert.empty() ? "imgate.tlsCert" : "imgate.tlsKey",
        "must be set too: TLS needs both a certificate and a key");
  check(cfg.tls_ticket_key_file.empty() || !cfg.tls_cert.empty(), "imgate.tlsTicketKeyFile",
        "needs imgate.tlsCert and imgate.tlsKey: tickets are for TLS sessions");
  check(cfg.auth_hmac_secret.empty() || cfg.auth_hmac_secret_file.empty(), "imgate.authHmacSecret",
        "and imgate.authHmacSecretFile are exclusive: give the secret one way");
  check(cfg.auth_leeway <= Millis(3'600'000), "imgate.authLeeway",
        "must be at most 3600 seconds" + got(to_text(cfg.auth_leeway)));
  check(cfg.max_failed_logins <= 1000, "imgate.maxFailedLogins",
        "must be at most 1000" + got(to_text(cfg.max_failed_logins)));
  check(cfg.redis_addr.empty() || cfg.redis_cluster.empty(), "redis.cluster",
        "and redis.addr are exclusive: one Redis server or one Redis Cluster");
  check(cfg.redis_cluster.empty() || cfg.redis_db == 0, "redis.DB",
        "must be 0 on a Redis Cluster (it has only database 0)" + got(to_text(cfg.redis_db)));
  check(cfg.redis_buckets >= 1 && cfg.redis_buckets <= 1024, "redis.buckets",
        "must be 1..1024" + got(to_text(cfg.redis_buckets)));
  check(cfg.redis_cluster.empty() || cfg.redis_cluster.find_first_not_of(", ") != std::string::npos,
        "redis.cluster", "must list at least one host:port" + got(cfg.redis_cluster));
  check(cfg.history_size <= 100'000, "imgate.historySize",
        "must be at most 100000" + got(to_text(cfg.history_size)));
  check(cfg.history_size == 0 || cfg.history_max_bytes >= (1u << 20), "imgate.historyMaxBytes",
        "must be at least 1M" + got(to_text(cfg.history_max_bytes)));
}

void load_api_key_file(Config& cfg) {
  if (cfg.api_key_file.empty()) return;
  const std::string& path = cfg.api_key_file;
  std::ifstream in(path, std::ios::binary);
  if (!in.is_open() || std::filesystem::is_directory(path)) {
    throw ConfigError("config: cannot read API key file \"" + path + "\" (--api-key-file)");
  }
  std::size_t found = 0;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const std::string_view key = trim(line);
    if (key.empty() || key.front() == '#') continue;
    try {
      check_api_key(key);
    } catch (const BadValue& e) {
      throw ConfigError("config: API key file \"" + path + "\" line " + std::to_string(number) +
                        ": " + e.what());
    }
    cfg.api_keys.emplace_back(key);
    ++found;
  }
  if (in.bad()) throw ConfigError("config: cannot read API key file \"" + path + "\"");
  if (found == 0) {
    throw ConfigError("config: API key file \"" + path + "\" holds no key (--api-key-file)");
  }
}

std::optional<Config> load_config(int argc, const char* const* argv, std::ostream& out) {
  const std::optional<CommandLine> cl = parse_command_line(argc, argv, out);
  if (!cl) return std::nullopt;
  Config cfg;
  apply_config_file(cfg, *cl);
  apply_env(cfg);
  apply_flags(cfg, *cl);
  load_api_key_file(cfg);
  validate(cfg);
  return cfg;
}

}  // namespace imgate
