// RedisCluster: a real Redis Cluster for integration tests. N masters and N*R
// replicas (3 + 3 by default), each a `redis-server` child process (Debian
// package) on a free loopback port, without persistence, in its own directory
// under one temporary folder; joined with `redis-cli --cluster create`.
//
// Ports: chosen from [12000, 22000) so that a node's port and its cluster bus
// port (port + 10000) are both below the kernel's ephemeral range (32768 and
// up): no outgoing connection takes them while a node is down between kill()
// and restart(). Both are checked free by binding before a node starts.
//
// Readiness ("healthy"): every running node answers, reports cluster_state:ok
// and knows every node; each sees every running node connected and not failing;
// all of them agree on one slot map that covers the 16384 slots with running
// masters only, and on each running node's role (master, or replica of which
// master) as that node states it; every running replica's link to its master
// is up and its master streams writes to it (state=online: after a diskless
// sync the master holds writes back until the replica's first REPLCONF ACK,
// up to 1 s later). start(), wait_for_failover() and restart() poll for it
// with a deadline and throw std::runtime_error naming what was still missing,
// with the tail of every node's log.
//
// Lifetime: the destructor SIGKILLs every node and removes the folder, also
// after a failed test (it prints the logs' tail then). The nodes are started
// with PR_SET_PDEATHSIG, so they die with the test process even when it is
// killed (a ctest timeout) before the destructor runs.
//
// Thread safety: a RedisCluster is used from the test thread only.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cluster/redis_link.hpp"  // imgate::redis_key_slot, the gateway's own (tested against CLUSTER KEYSLOT)
#include "redis_process.hpp"

namespace imgate::test {

// One line of CLUSTER NODES: a node as another node (or itself) sees it.
struct ClusterNodeView {
  std::string id;
  uint16_t port = 0;
  std::string flags;                       // "myself,master", "slave", "master,fail", ...
  std::string master_id;                   // the master's id for a replica, "-" for a master
  bool connected = false;                  // link-state "connected"
  std::vector<std::pair<int, int>> slots;  // ranges owned, first..last inclusive

  bool has_flag(std::string_view flag) const;
  bool master() const { return has_flag("master"); }
  // Flagged "fail" or "fail?" (suspected).
  bool failing() const { return has_flag("fail") || has_flag("fail?"); }
};

class RedisCluster {
 public:
  using Millis = std::chrono::milliseconds;

  struct Options {
    // At least 3: redis-cli refuses to create a cluster of fewer masters.
    int masters = 3;
    int replicas_per_master = 1;
    // cluster-node-timeout. 1 s (the default is 15 s): a killed master is
    // replaced about 2-3 s after the kill.
    Millis node_timeout = Millis(1000);
    // Start-up to healthy (each redis-server also gets up to 10 s to answer,
    // beyond this if need be); generous for a loaded 2-core CI machine (a healthy
    // start takes about 2 s: masters report cluster_state:fail for their
    // first 2 s, CLUSTER_WRITABLE_DELAY in cluster.c).
    Millis ready_timeout = Millis(30000);
  };

  RedisCluster() = default;
  RedisCluster(const RedisCluster&) = delete;
  RedisCluster& operator=(const RedisCluster&) = delete;
  ~RedisCluster();

  // Starts the nodes, creates the cluster and waits until it is healthy (see
  // above) with `masters` masters of `replicas_per_master` replicas each.
  // Once per object. Throws std::runtime_error on failure.
  void start(const Options& options);
  void start() { start(Options{}); }

  // "127.0.0.1:p1,127.0.0.1:p2,..." of every node in start order (a seed
  // list: any node leads a cluster client to the others).
  std::string seeds() const;
  // Every node's port in start order, running or not.
  std::vector<uint16_t> ports() const;

  // Masters that own slots, ordered by their first slot (index 0 owns slot
  // 0), as the first running node sees the cluster now.
  std::vector<uint16_t> master_ports() const;
  // Replicas not flagged failing, in port order, from the same view.
  std::vector<uint16_t> replica_ports() const;
  // The replicas of the master on `master_port`, in port order.
  std::vector<uint16_t> replicas_of(uint16_t master_port) const;
  // The master owning `slot` / the slot of `key`.
  uint16_t master_for_slot(uint16_t slot) const;
  uint16_t master_for_key(std::string_view key) const {
    return master_for_slot(redis_key_slot(key));
  }

  // CLUSTER NODES of the node on `port`, parsed.
  std::vector<ClusterNodeView> nodes(uint16_t port) const;

  // One command to the node on `port` (RESP, no redirection: a key of another
  // master answers "-MOVED ..."). Throws on connection errors and timeouts.
  RespValue command(uint16_t port, const std::vector<std::string>& args,
                    Millis timeout = Millis(3000)) const;
  // Commands sent together on one connection to the node on `port`, their
  // replies in order: {{"SET", k, v}, {"WAIT", "1", "5000"}} waits for that
  // SET to reach a replica (WAIT on a connection of its own waits for nothing).
  std::vector<RespValue> pipeline(uint16_t port, const std::vector<std::vector<std::string>>& cmds,
                                  Millis timeout = Millis(3000)) const;
  // `redis-cli -h 127.0.0.1 -p <port> <args...>`: its stdout and stderr, as
  // redis-cli prints when not on a terminal (an error reply is "ERR ..." with
  // exit code 0). Throws when redis-cli exits non-zero (no connection) or
  // runs longer than `timeout`.
  std::string cli(uint16_t port, const std::vector<std::string>& args,
                  Millis timeout = Millis(10000)) const;

  bool running(uint16_t port);
  // SIGKILL and reap the node on `port` (no-op when it is not running).
  void kill(uint16_t port);
  // kill() of master_ports()[index]; returns its port.
  uint16_t kill_master(std::size_t index);
  // After kill() of a master: waits until the cluster is healthy again (its
  // slots served by a promoted replica) and returns the master that now owns
  // the killed master's slots. Throws when that does not happen in `timeout`.
  uint16_t wait_for_failover(uint16_t killed_master, Millis timeout = Millis(15000));
  // Starts a killed node again on its port with its nodes.conf (a former
  // master comes back as a replica of its successor) and waits until the
  // cluster is healthy with it. Throws on failure.
  void restart(uint16_t port, Millis timeout = Millis(15000));

  // The last `lines` lines of every node's log, each under a header.
  std::string logs_tail(std::size_t lines = 25) const;
  const std::string& dir() const { return dir_; }

 private:
  struct Node {
    uint16_t port = 0;
    std::string dir;
    std::string id;  // CLUSTER MYID, once the cluster is created
    pid_t pid = -1;
    // Slots the node owned when kill() stopped it (for wait_for_failover).
    std::vector<std::pair<int, int>> slots_when_killed;
  };

  std::size_t index_of(uint16_t port) const;  // throws for a port not ours
  Node& node(uint16_t port) { return nodes_[index_of(port)]; }
  std::vector<std::string> node_args(const Node& n) const;
  void spawn(Node& n);
  void wait_answers(Node& n, Millis timeout);
  void start_node(Node& n, Millis timeout);
  bool reap(Node& n, bool block);
  std::vector<ClusterNodeView> view() const;
  // nullopt when healthy, else what is missing.
  std::optional<std::string> health();
  void wait_healthy(std::string_view what, Millis timeout);
  [[noreturn]] void fail(const std::string& message);

  Options options_;
  std::string dir_;
  std::vector<Node> nodes_;
  bool logs_reported_ = false;
};

}  // namespace imgate::test
