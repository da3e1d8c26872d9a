// imgate-bench command line: one struct, filled by CLI11 in main.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bench {

// A process whose CPU is reported beside the gateway's in every phase (a
// second gateway node, redis-server): --cpu-pid NAME=PID.
struct WatchedProcess {
  std::string name;  // JSON keys <name>_cpu_seconds, <name>_cores, <name>_cpu_us_per_<unit>
  int pid = 0;
};

enum class Mode { kHold, kFanout, kUnicast, kChurn, kRecovery, kFill, kMembers, kPush, kOffline };

struct Options {
  Mode mode = Mode::kHold;
  std::string mode_name = "hold";

  // Gateway.
  std::string host = "127.0.0.1";
  uint16_t ws_port = 8089;
  uint16_t http_port = 8080;
  std::string ws_path = "/acc";
  int gateway_pid = 0;  // 0: no server-side memory figures
  std::vector<WatchedProcess> cpu_pids;

  // TLS (wss:// and https://, both ports of a gateway started with --tls-cert).
  bool tls = false;
  std::string tls_ca;         // trust this CA file (PEM); the certificate must name --host
  bool tls_insecure = false;  // no verification (test certificates)
  bool tls_resume = false;    // each worker offers the session of an earlier connection

  // Client.
  unsigned threads = 0;         // 0: one per hardware thread
  uint32_t connections = 1000;  // members (hold / fanout / unicast)
  uint32_t per_source = 20000;  // connections per loopback source address (<= 22000)
  bool kernel_ports = false;    // let connect() pick source ports (slow search) instead
  uint32_t first_source = 2;    // 127.0.0.<first_source> is the first source address
  uint32_t inflight = 512;      // connection setups in flight per thread
  double connect_rate = 0;      // setups started per second; 0: as fast as possible
  double setup_timeout = 15;    // seconds from connect to login reply
  uint32_t max_failures = 0;    // stop setting up after this many failures; 0: 1% + 10

  // Rooms and users.
  uint32_t app_base = 101;  // appIDs app_base .. app_base + apps - 1
  uint32_t apps = 1;        // members spread round-robin over this many rooms
  std::string user_prefix = "b";
  uint32_t conns_per_user = 1;  // connection i logs in as user i / conns_per_user

  // Time.
  double duration = 10;            // hold: holding time; unicast/fanout/churn: sending time
  double heartbeat_interval = 25;  // each held connection sends heartbeat this often
  double settle_timeout = 120;     // fanout: wait for the login (enter) traffic to stop
  double drain_timeout = 10;       // wait for outstanding deliveries / /system/state baseline
  double close_timeout = 30;       // teardown bound

  // Messages (fanout / unicast).
  double rate = 100;      // messages per second
  uint64_t messages = 0;  // 0: rate * duration
  uint32_t http_connections = 4;
  bool msg_ids = true;  // send msgID (de-duplication on the gateway)
  std::string sender = "bench-sender";
  bool allow_loss = false;     // exit 0 even when deliveries are missing
  double send_for = 0;         // stop issuing pushes this many seconds after the first; 0: send all
  uint32_t message_bytes = 0;  // pad each push's text to this many bytes; 0: no padding
  double api_probe = 0;        // fanout / unicast: API requests per second while sending; 0: none

  // Recovery (history on): pushes sent while every member is away.
  uint64_t missed = 100;
  uint16_t reconnect_ws_port = 0;  // the reconnects go to this WebSocket port; 0: --ws-port

  // Several nodes (members, push, offline; bench/run cluster). Node j's users
  // are <user_prefix><j>-<k>, k < node_users: its members process runs with
  // --user-prefix <user_prefix><j>-.
  std::vector<uint16_t> node_http_ports;  // push: node j's HTTP port; offline: checked at the end
  uint32_t node_users = 0;                // push --cross-node: users per node
  bool cross_node = false;                // push: unicasts to another node's users, not the room
  int kill_pid = 0;                       // offline: SIGKILL this process first; 0: kill nothing
  double poll_interval = 0.1;             // offline: seconds between /user/list polls

  // Churn.
  double abrupt = 0.5;  // fraction of churn connections dropped without a close frame
  uint32_t churn_inflight = 256;

  // Teardown of held connections: graceful close frames, or just close sockets.
  bool abrupt_teardown = false;
  // hold: sample the gateway's RSS once a second for this many seconds after
  // the last held connection closed (does memory go back?); 0: no samples.
  double rss_after_teardown = 0;

  std::string json_out;  // also write the JSON line to this file
  bool quiet = false;    // no progress lines on stderr
};

}  // namespace bench
