// imgate-bench: load generator for imgate (and any gowebsocket-compatible
// gateway). See bench/README.md.
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "modes.hpp"
#include "options.hpp"
#include "tls.hpp"

namespace {

// --cpu-pid NAME=PID; nullopt when it is not that.
std::optional<bench::WatchedProcess> parse_watched(const std::string& v) {
  const auto eq = v.find('=');
  if (eq == 0 || eq == std::string::npos || eq + 1 == v.size() ||
      v.find_first_not_of("0123456789", eq + 1) != std::string::npos) {
    return std::nullopt;
  }
  return bench::WatchedProcess{v.substr(0, eq), std::stoi(v.substr(eq + 1))};
}

// Every connection is a descriptor: take all the hard limit allows, and say
// when that is fewer than the run needs.
void raise_fd_limit(uint64_t needed) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  lim.rlim_cur = lim.rlim_max;
  setrlimit(RLIMIT_NOFILE, &lim);
  getrlimit(RLIMIT_NOFILE, &lim);
  if (lim.rlim_cur < needed + 64) {
    std::fprintf(
        stderr,
        "imgate-bench: RLIMIT_NOFILE is %llu (hard limit), fewer than the %llu connections "
        "asked for: setups beyond it fail as client_fds\n",
        static_cast<unsigned long long>(lim.rlim_cur), static_cast<unsigned long long>(needed));
  }
}

}  // namespace

int main(int argc, char** argv) {
  bench::Options o;
  CLI::App app(
      "imgate-bench: WebSocket load generator for imgate (hold, fanout, unicast, churn, recovery, "
      "fill; members, push, offline for many nodes)",
      "imgate-bench");
  const std::map<std::string, bench::Mode> modes{
      {"hold", bench::Mode::kHold},         {"fanout", bench::Mode::kFanout},
      {"unicast", bench::Mode::kUnicast},   {"churn", bench::Mode::kChurn},
      {"recovery", bench::Mode::kRecovery}, {"fill", bench::Mode::kFill},
      {"members", bench::Mode::kMembers},   {"push", bench::Mode::kPush},
      {"offline", bench::Mode::kOffline}};
  app.add_option("mode", o.mode_name,
                 "hold | fanout | unicast | churn | recovery | fill | members | push | offline")
      ->required()
      ->check(CLI::IsMember({"hold", "fanout", "unicast", "churn", "recovery", "fill", "members",
                             "push", "offline"}));
  app.add_option("--host", o.host, "gateway address (IPv4)")->capture_default_str();
  app.add_option("--ws-port", o.ws_port, "gateway WebSocket port")->capture_default_str();
  app.add_option("--http-port", o.http_port, "gateway HTTP API port")->capture_default_str();
  app.add_option("--ws-path", o.ws_path, "WebSocket path")->capture_default_str();
  app.add_option("--pid", o.gateway_pid, "gateway pid, for its RSS (/proc/<pid>/status)");
  std::vector<std::string> cpu_pids;
  app.add_option("--cpu-pid", cpu_pids,
                 "NAME=PID: also report this process's CPU (/proc/PID/stat) in every phase and per "
                 "unit of work, as NAME (another gateway node, redis-server); repeatable")
      ->check(CLI::Validator(
          [](std::string& v) { return parse_watched(v) ? std::string() : "expected NAME=PID"; },
          "NAME=PID"));
  app.add_flag("--tls", o.tls,
               "wss:// and https://: TLS 1.2+ on the WebSocket and the HTTP port (a gateway "
               "started with --tls-cert); needs --tls-ca or --tls-insecure");
  app.add_option("--tls-ca", o.tls_ca,
                 "--tls: trust this CA or self-signed certificate (PEM); it must name --host");
  app.add_flag("--tls-insecure", o.tls_insecure, "--tls: do not verify the gateway's certificate");
  app.add_flag("--tls-resume", o.tls_resume,
               "--tls: every connection but each thread's first offers the session (ticket) of "
               "an earlier one of that thread; the summary counts resumed and full handshakes");
  app.add_option("--threads", o.threads, "client threads (0: one per core)")->capture_default_str();
  app.add_option("-n,--connections", o.connections, "connections (members) to set up")
      ->capture_default_str();
  app.add_option("--per-source", o.per_source, "connections per source address 127.0.0.x")
      ->capture_default_str()
      ->check(CLI::Range(1u, 22000u));
  app.add_flag("--kernel-ports", o.kernel_ports,
               "let connect() choose source ports (IP_BIND_ADDRESS_NO_PORT) instead of 10000 + i % "
               "per-source");
  app.add_option("--first-source", o.first_source, "first source address is 127.0.0.<this>")
      ->capture_default_str();
  app.add_option("--inflight", o.inflight, "connection setups in flight per thread")
      ->capture_default_str();
  app.add_option("--connect-rate", o.connect_rate, "setups started per second (0: unlimited)")
      ->capture_default_str();
  app.add_option("--setup-timeout", o.setup_timeout, "seconds from connect to login reply")
      ->capture_default_str();
  app.add_option("--max-failures", o.max_failures,
                 "stop setting up after this many failures (0: 1%+10)")
      ->capture_default_str();
  app.add_option("--app-base", o.app_base, "first appID (room)")->capture_default_str();
  app.add_option("--apps", o.apps,
                 "spread members (fill: pushes) over this many appIDs (hold, unicast, churn, fill)")
      ->capture_default_str();
  app.add_option("--user-prefix", o.user_prefix, "userID = prefix + connection number")
      ->capture_default_str();
  app.add_option("--conns-per-user", o.conns_per_user,
                 "connections per user: connection i logs in as user i / this (enter is pushed "
                 "once per user)")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1000000u));
  app.add_option("-d,--duration", o.duration,
                 "seconds: hold time (hold), sending time (fanout, unicast), churn time (churn)")
      ->capture_default_str();
  app.add_option("--heartbeat", o.heartbeat_interval, "heartbeat interval of held connections (s)")
      ->capture_default_str();
  app.add_option("--settle-timeout", o.settle_timeout,
                 "fanout: bound on waiting for enter pushes to stop")
      ->capture_default_str();
  app.add_option("--drain-timeout", o.drain_timeout,
                 "give up on outstanding deliveries after this long without one; bound on waiting "
                 "for the /system/state baseline")
      ->capture_default_str();
  app.add_option("--close-timeout", o.close_timeout, "bound on teardown (s)")
      ->capture_default_str();
  app.add_option("-r,--rate", o.rate,
                 "messages per second (fanout, unicast); connections per second (churn)")
      ->capture_default_str();
  app.add_option("-m,--messages", o.messages,
                 "messages to send (0: rate * duration; fill: 100 per room)")
      ->capture_default_str();
  app.add_option("--http-connections", o.http_connections, "keep-alive HTTP connections for pushes")
      ->capture_default_str();
  app.add_flag("!--no-msg-id", o.msg_ids, "send pushes without msgID (no de-duplication)");
  app.add_option("--sender", o.sender, "userID given to the push API (not a member)")
      ->capture_default_str();
  app.add_flag("--allow-loss", o.allow_loss, "exit 0 even when deliveries are missing");
  app.add_option("--send-for", o.send_for,
                 "fanout, unicast: stop issuing pushes this many seconds after the first, even "
                 "when the API fell behind the schedule (the rest are reported as skipped); 0: "
                 "send every message")
      ->capture_default_str();
  app.add_option("--api-probe", o.api_probe,
                 "fanout, unicast: while sending, this many API requests per second on their own "
                 "connection, GET /system/state and POST /user/sendMessage in turn (to a user "
                 "who is not online, so that the delivery counts stay exact): their latency; "
                 "0: none")
      ->capture_default_str();
  app.add_option("--message-bytes", o.message_bytes,
                 "pad each push's text with 'x' to this many bytes (0: no padding)")
      ->capture_default_str();
  app.add_option("--missed", o.missed,
                 "recovery: room pushes sent while every member is away (needs history on)")
      ->capture_default_str();
  app.add_option("--reconnect-ws-port", o.reconnect_ws_port,
                 "recovery: the clients come back on this WebSocket port of --host (another "
                 "node of the cluster); 0: --ws-port")
      ->capture_default_str();
  app.add_option("--node-http-ports", o.node_http_ports,
                 "push: the nodes' HTTP ports, comma-separated (one sender per node; node j's "
                 "users are <user-prefix><j>-<k>); offline: the nodes asked once more at the end")
      ->delimiter(',');
  app.add_option("--node-users", o.node_users, "push --cross-node: users per node")
      ->capture_default_str();
  app.add_flag("--cross-node", o.cross_node,
               "push: /user/sendMessage to a random user of another node than the sender's, "
               "instead of /user/sendMessageAll to room --app-base");
  app.add_option("--kill-pid", o.kill_pid,
                 "offline: SIGKILL this process, then poll until its users are unlisted");
  app.add_option("--poll-interval", o.poll_interval, "offline: seconds between /user/list polls")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 60.0));
  app.add_option("--abrupt", o.abrupt, "churn: fraction dropped without a close frame")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--churn-inflight", o.churn_inflight, "churn: setups in flight per thread")
      ->capture_default_str();
  app.add_flag("--abrupt-teardown", o.abrupt_teardown, "end held connections without close frames");
  app.add_option("--rss-after-teardown", o.rss_after_teardown,
                 "hold: sample the gateway's RSS once a second for this many seconds after the "
                 "last connection closed (needs --pid)")
      ->capture_default_str();
  app.add_option("--json-out", o.json_out, "also append the JSON line to this file");
  app.add_flag("-q,--quiet", o.quiet, "no progress lines on stderr");
  CLI11_PARSE(app, argc, argv);
  o.mode = modes.at(o.mode_name);
  if (o.tls && o.tls_ca.empty() == !o.tls_insecure) {
    std::fprintf(stderr,
                 "imgate-bench: --tls needs exactly one of --tls-ca FILE and --tls-insecure\n");
    return 2;
  }
  if (!o.tls && (!o.tls_ca.empty() || o.tls_insecure || o.tls_resume)) {
    std::fprintf(stderr, "imgate-bench: --tls-ca, --tls-insecure and --tls-resume need --tls\n");
    return 2;
  }
  if (o.tls) {
    std::string error;
    if (!bench::make_client_ctx(o, error)) {
      std::fprintf(stderr, "imgate-bench: %s\n", error.c_str());
      return 2;
    }
  }
  for (const std::string& v : cpu_pids) o.cpu_pids.push_back(*parse_watched(v));

  std::signal(SIGPIPE, SIG_IGN);
  const bool few_sockets = o.mode == bench::Mode::kChurn || o.mode == bench::Mode::kFill ||
                           o.mode == bench::Mode::kPush || o.mode == bench::Mode::kOffline;
  raise_fd_limit(few_sockets ? 1024 : o.connections);
  switch (o.mode) {
    case bench::Mode::kHold:
      return bench::run_hold(o);
    case bench::Mode::kFanout:
      return bench::run_fanout(o);
    case bench::Mode::kUnicast:
      return bench::run_unicast(o);
    case bench::Mode::kChurn:
      return bench::run_churn(o);
    case bench::Mode::kRecovery:
      return bench::run_recovery(o);
    case bench::Mode::kFill:
      return bench::run_fill(o);
    case bench::Mode::kMembers:
      return bench::run_members(o);
    case bench::Mode::kPush:
      return bench::run_push(o);
    case bench::Mode::kOffline:
      return bench::run_offline(o);
  }
  return 2;
}
