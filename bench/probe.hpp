// What the generator reads about the machine and the gateway: process memory
// from /proc/<pid>/status, kernel TCP memory from /proc/net/sockstat, and the
// gateway's own counts from GET /system/state and GET /metrics.
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "options.hpp"

namespace bench {

struct ProcMemory {
  int64_t rss_kb = -1;  // VmRSS
  int64_t hwm_kb = -1;  // VmHWM (peak RSS)
};
ProcMemory proc_memory(int pid);  // pid 0: this process

// User + system CPU seconds consumed so far by process `pid` (0: this one), -1 if unknown.
double cpu_seconds(int pid);

// /proc/net/sockstat "TCP: ... mem N": pages of socket buffers (all sockets of
// the machine), -1 when unreadable.
int64_t tcp_mem_pages();

// /proc/meminfo "Slab:" in kB (kernel objects: sockets, inodes, epoll items), -1 when unreadable.
int64_t slab_kb();

// /proc/loadavg, first field (other work on the machine skews every figure).
double load_average();

// The counts of GET /system/state that must return to their baseline.
struct GatewayState {
  int64_t clients = 0;           // managerInfo.clientsLen
  int64_t users = 0;             // managerInfo.usersLen
  int64_t rooms = 0;             // imgate.roomsLen
  int64_t sessions = 0;          // imgate.sessions (TCP sessions on the WebSocket port)
  boost::json::object counters;  // imgate.counters
  bool operator==(const GatewayState& o) const {
    return clients == o.clients && users == o.users && rooms == o.rooms && sessions == o.sessions;
  }
};
std::optional<GatewayState> gateway_state(const Options& opts, std::string& error);

// GET /metrics (Prometheus text); nullopt with `error` on failure.
std::optional<std::string> gateway_metrics(const Options& opts, std::string& error);
// The value of the unlabelled sample `name` in a /metrics body; -1 when absent.
double metric_value(std::string_view metrics, std::string_view name);
boost::json::object state_json(const GatewayState& s);

}  // namespace bench
