// Self-test of the Redis Cluster harness (redis_cluster_process.hpp): a 3 + 3
// cluster comes up with every slot served, keys live on the master the
// harness names, and a killed master is replaced by its replica (keeping a
// write that WAIT saw replicated) within kFailoverBound, after which the old
// master comes back as a replica of its successor; a cluster that does not
// come up is reported with its logs and leaves nothing running. Each test
// starts its own cluster (about 2 s).
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "redis_cluster_process.hpp"

namespace imgate::test {
namespace {
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Ports = std::vector<uint16_t>;

// With cluster-node-timeout 1 s a failover takes about 2-3 s: the master is
// suspected after 1 s, failed once a majority agrees, and its replica waits
// 500-1000 ms (plus 1 s per rank) before asking for votes.
constexpr auto kFailoverBound = 15s;

std::string addr(uint16_t port) {
  return "127.0.0.1:" + std::to_string(port);
}

// The INFO-style field `name` of `text`, or "".
std::string field(const std::string& text, const std::string& name) {
  const auto at = text.find(name + ":");
  if (at == std::string::npos) return "";
  const auto begin = at + name.size() + 1;
  return text.substr(begin, text.find_first_of("\r\n", begin) - begin);
}

// A key whose slot `master` owns ("k<n>" for the first n that fits).
std::string key_on(const RedisCluster& cluster, uint16_t master) {
  for (int n = 0; n < 10000; ++n) {
    const std::string key = "k" + std::to_string(n);
    if (cluster.master_for_key(key) == master) return key;
  }
  ADD_FAILURE() << "no key found on " << addr(master);
  return "";
}

TEST(RedisClusterHarness, StartsThreeMastersWithOneReplicaEach) {
  RedisCluster cluster;
  cluster.start();

  const Ports masters = cluster.master_ports();
  const Ports replicas = cluster.replica_ports();
  ASSERT_EQ(masters.size(), 3u);
  ASSERT_EQ(replicas.size(), 3u);
  std::set<uint16_t> roles(masters.begin(), masters.end());
  roles.insert(replicas.begin(), replicas.end());
  const Ports all = cluster.ports();
  EXPECT_EQ(roles, std::set<uint16_t>(all.begin(), all.end())) << "each node is one of them";
  std::set<uint16_t> replicated;
  for (const uint16_t m : masters) {
    const Ports of = cluster.replicas_of(m);
    ASSERT_EQ(of.size(), 1u) << addr(m);
    replicated.insert(of.front());
  }
  EXPECT_EQ(replicated.size(), 3u) << "a replica serves one master";

  std::string seeds;
  for (const uint16_t p : all) {
    seeds += (seeds.empty() ? "" : ",") + addr(p);
    EXPECT_LT(p + 10000, 65536) << "the cluster bus port fits";
    // Through redis-cli, as a test would inspect a node.
    const std::string info = cluster.cli(p, {"CLUSTER", "INFO"});
    EXPECT_EQ(field(info, "cluster_state"), "ok") << addr(p) << "\n" << info;
    EXPECT_EQ(field(info, "cluster_slots_ok"), "16384") << addr(p);
    EXPECT_EQ(field(info, "cluster_size"), "3") << addr(p);
    EXPECT_EQ(field(info, "cluster_known_nodes"), "6") << addr(p);
  }
  EXPECT_EQ(cluster.seeds(), seeds);

  // Each node's own view: the three masters own 16384 slots between them.
  for (const uint16_t p : all) {
    int owned = 0;
    for (const auto& v : cluster.nodes(p)) {
      if (!v.master()) continue;
      for (const auto& [first, last] : v.slots) owned += last - first + 1;
    }
    EXPECT_EQ(owned, 16384) << addr(p);
  }
  EXPECT_EQ(cluster.master_for_slot(0), masters.front());
  EXPECT_EQ(cluster.master_for_slot(16383), masters.back());
}

TEST(RedisClusterHarness, KeysLiveOnTheMasterItNames) {
  RedisCluster cluster;
  cluster.start();
  const Ports masters = cluster.master_ports();
  ASSERT_EQ(masters.size(), 3u);

  // redis_key_slot agrees with the server, hash tags included.
  for (const std::string key : {"", "a", "foo", "imgate:presence:1", "{user:7}.rooms", "x{user:7}y",
                                "{}key", "{key", "a{b}{c}"}) {
    EXPECT_EQ(cluster.command(masters[0], {"CLUSTER", "KEYSLOT", key}).integer, redis_key_slot(key))
        << "'" << key << "'";
  }
  EXPECT_EQ(redis_key_slot("{user:7}.rooms"), redis_key_slot("user:7"));

  for (const uint16_t m : masters) {
    const std::string key = key_on(cluster, m);
    SCOPED_TRACE(key + " on " + addr(m));
    EXPECT_EQ(cluster.command(m, {"SET", key, "v-" + key}).str, "OK");
    const RespValue got = cluster.command(m, {"GET", key});
    EXPECT_EQ(got.type, '$');
    EXPECT_EQ(got.str, "v-" + key);
    // Another master redirects to the one the harness named.
    const uint16_t other = m == masters[0] ? masters[1] : masters[0];
    const RespValue moved = cluster.command(other, {"GET", key});
    EXPECT_EQ(moved.type, '-');
    EXPECT_EQ(moved.str, "MOVED " + std::to_string(redis_key_slot(key)) + " " + addr(m));
  }
}

TEST(RedisClusterHarness, KilledMasterIsReplacedByItsReplica) {
  RedisCluster cluster;
  cluster.start();
  const Ports masters = cluster.master_ports();
  ASSERT_EQ(masters.size(), 3u);
  const uint16_t victim = masters[1];
  const Ports replicas = cluster.replicas_of(victim);
  ASSERT_EQ(replicas.size(), 1u);
  const std::string key = key_on(cluster, victim);
  // WAIT numreplicas timeout-ms, on the SET's connection: the write has
  // reached the replica.
  const auto replies = cluster.pipeline(victim, {{"SET", key, "kept"}, {"WAIT", "1", "5000"}}, 6s);
  ASSERT_EQ(replies.at(0).str, "OK");
  ASSERT_EQ(replies.at(1).integer, 1) << replies.at(1).dump();

  ASSERT_EQ(cluster.kill_master(1), victim);
  EXPECT_FALSE(cluster.running(victim));
  const auto t0 = Clock::now();
  const uint16_t successor = cluster.wait_for_failover(victim, kFailoverBound);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
  std::cout << "failover took " << took.count() << " ms\n";
  RecordProperty("failover_ms", std::to_string(took.count()));

  EXPECT_EQ(successor, replicas.front()) << "its replica was promoted";
  EXPECT_LT(took.count(), std::chrono::milliseconds(kFailoverBound).count());
  const Ports now = cluster.master_ports();
  EXPECT_EQ(now.size(), 3u);
  EXPECT_EQ(std::count(now.begin(), now.end(), victim), 0);
  EXPECT_EQ(cluster.master_for_key(key), successor);
  EXPECT_EQ(cluster.command(successor, {"GET", key}).str, "kept");
  EXPECT_EQ(field(cluster.cli(successor, {"INFO", "replication"}), "role"), "master");

  cluster.restart(victim);
  EXPECT_TRUE(cluster.running(victim));
  EXPECT_EQ(cluster.replicas_of(successor), Ports{victim}) << "back as its successor's replica";
  const std::string repl = cluster.cli(victim, {"INFO", "replication"});
  EXPECT_EQ(field(repl, "role"), "slave");
  EXPECT_EQ(field(repl, "master_port"), std::to_string(successor));
  EXPECT_EQ(cluster.master_ports(), now) << "the restart moved no slots";
}

// Masters report cluster_state:fail for their first 2 s, so a cluster cannot
// be healthy 1.5 s after start() began.
TEST(RedisClusterHarness, SaysWhyTheClusterDidNotComeUpAndStopsItsNodes) {
  Ports ports;
  std::string dir;
  {
    RedisCluster cluster;
    RedisCluster::Options options;
    options.ready_timeout = 1500ms;
    std::string message;
    try {
      cluster.start(options);
    } catch (const std::runtime_error& e) {
      message = e.what();
    }
    ASSERT_FALSE(message.empty()) << "start() succeeded";
    EXPECT_NE(message.find("RedisCluster: "), std::string::npos) << message;
    EXPECT_NE(message.find("/redis.log:\n"), std::string::npos) << "the logs' tail:\n" << message;
    EXPECT_NE(message.find("Ready to accept connections"), std::string::npos) << message;
    ports = cluster.ports();
    dir = cluster.dir();
    EXPECT_EQ(ports.size(), 6u);
  }
  for (const uint16_t p : ports) {
    EXPECT_THROW(redis_command(p, {"PING"}, 1s), std::runtime_error) << addr(p) << " still answers";
  }
  EXPECT_FALSE(std::filesystem::exists(dir)) << dir;
}

}  // namespace
}  // namespace imgate::test
