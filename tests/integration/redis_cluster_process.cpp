#include "redis_cluster_process.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <tuple>

namespace imgate::test {
namespace {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;

constexpr const char* kServer = "/usr/bin/redis-server";
constexpr const char* kCli = "/usr/bin/redis-cli";
constexpr int kSlots = 16384;
constexpr uint16_t kBusOffset = 10000;
constexpr uint16_t kFirstPort = 12000;  // ports and bus ports stay below 32768
constexpr uint16_t kPortSpan = 10000;
constexpr Millis kPollInterval{50};

std::string addr(uint16_t port) {
  return "127.0.0.1:" + std::to_string(port);
}

// The argv array of `args` (pointers into `args`, which must outlive it).
std::vector<char*> argv_of(std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  return argv;
}

// In a forked child before exec: die with the parent (the test process), even
// when it is SIGKILLed. Only async-signal-safe calls here.
void die_with_parent(pid_t parent) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(127);  // the parent is already gone
}

struct Run {
  int status = 0;  // exit code, or -signal
  std::string output;
};

// Runs `args` (args[0] an absolute path) with stdout and stderr captured and
// waits for it to exit, at most `timeout` (then SIGKILL and throw).
Run run(std::vector<std::string> args, Millis timeout) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
  }
  std::vector<char*> argv = argv_of(args);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    die_with_parent(parent);
    const int null = ::open("/dev/null", O_RDONLY);
    ::dup2(null, STDIN_FILENO);
    ::dup2(fds[1], STDOUT_FILENO);
    ::dup2(fds[1], STDERR_FILENO);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  Run result;
  const auto deadline = Clock::now() + timeout;
  bool timed_out = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;  // the deadline is checked above
    char chunk[4096];
    const ssize_t n = ::read(fds[0], chunk, sizeof chunk);
    if (n > 0) {
      result.output.append(chunk, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;  // EOF: the child closed its output (exited)
    }
  }
  ::close(fds[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    throw std::runtime_error(args[0] + " did not finish within " + std::to_string(timeout.count()) +
                             " ms; output:\n" + result.output);
  }
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  return result;
}

std::string tail(const std::string& path, std::size_t lines) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  const std::string text = s.str();
  std::size_t pos = text.size();
  if (pos > 0 && text[pos - 1] == '\n') --pos;
  for (std::size_t n = 0; n < lines && pos != std::string::npos && pos > 0; ++n) {
    pos = text.rfind('\n', pos - 1);
  }
  return pos == std::string::npos ? text : text.substr(pos + (pos > 0 ? 1 : 0));
}

// "field:value" of an INFO-style answer ("\r\n"-separated lines), or "".
std::string info_field(const std::string& info, std::string_view field) {
  std::istringstream in(info);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.size() > field.size() && line.compare(0, field.size(), field) == 0 &&
        line[field.size()] == ':') {
      return line.substr(field.size() + 1);
    }
  }
  return "";
}

std::vector<ClusterNodeView> parse_nodes(const std::string& text) {
  std::vector<ClusterNodeView> out;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream in(line);
    std::string address, ping_sent, pong_recv, epoch, link;
    ClusterNodeView v;
    if (!(in >> v.id >> address >> v.flags >> v.master_id >> ping_sent >> pong_recv >> epoch >>
          link)) {
      continue;
    }
    // ip:port@cport[,hostname]
    const auto colon = address.rfind(':', address.find('@'));
    if (colon != std::string::npos) {
      v.port = static_cast<uint16_t>(std::stoi(address.substr(colon + 1)));
    }
    v.connected = link == "connected";
    std::string slot;
    while (in >> slot) {
      if (slot.front() == '[') continue;  // a slot being migrated or imported
      const auto dash = slot.find('-');
      const int first = std::stoi(slot.substr(0, dash));
      const int last = dash == std::string::npos ? first : std::stoi(slot.substr(dash + 1));
      v.slots.emplace_back(first, last);
    }
    out.push_back(std::move(v));
  }
  return out;
}

// Slot range -> owner port, sorted; the "agree on the slot map" comparison.
using SlotMap = std::vector<std::tuple<int, int, uint16_t>>;

SlotMap slot_map(const std::vector<ClusterNodeView>& view) {
  SlotMap map;
  for (const auto& n : view) {
    if (!n.master()) continue;
    for (const auto& [first, last] : n.slots) map.emplace_back(first, last, n.port);
  }
  std::sort(map.begin(), map.end());
  return map;
}

std::string describe(const SlotMap& map) {
  std::string out;
  for (const auto& [first, last, port] : map) {
    out += (out.empty() ? "" : " ") + std::to_string(first) + "-" + std::to_string(last) + "@" +
           std::to_string(port);
  }
  return out;
}

}  // namespace

bool ClusterNodeView::has_flag(std::string_view flag) const {
  std::string_view rest = flags;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    if (rest.substr(0, comma) == flag) return true;
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return false;
}

// ---- lifetime -------------------------------------------------------------------

RedisCluster::~RedisCluster() {
  if (!dir_.empty() && testing::Test::HasFailure() && !logs_reported_) {
    std::cerr << "---- redis cluster logs (tails) ----\n"
              << logs_tail() << "---- end of redis cluster logs ----\n";
  }
  for (auto& n : nodes_) {
    if (n.pid > 0) ::kill(n.pid, SIGKILL);
  }
  for (auto& n : nodes_) reap(n, true);
  if (dir_.empty()) return;
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

void RedisCluster::start(const Options& options) {
  if (!dir_.empty()) throw std::runtime_error("RedisCluster::start: already started");
  if (options.masters < 3) throw std::runtime_error("RedisCluster: at least 3 masters");
  options_ = options;
  std::string tmpl = (fs::temp_directory_path() / "imgate-redis-cluster-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
  }
  dir_ = tmpl;

  const auto deadline = Clock::now() + options.ready_timeout;
  const auto left = [&] {
    return std::max(Millis(1), std::chrono::duration_cast<Millis>(deadline - Clock::now()));
  };
  const int total = options.masters * (1 + options.replicas_per_master);
  std::random_device rd;
  std::set<uint16_t> taken;
  for (int i = 0; i < total; ++i) {
    // Another process may take a port between the check and the bind: a node
    // that exits before answering is retried on other ports.
    for (int attempt = 1;; ++attempt) {
      Node n;
      for (int pick = 0; n.port == 0; ++pick) {
        if (pick == 500) throw std::runtime_error("RedisCluster: no free port pair");
        const auto port = static_cast<uint16_t>(kFirstPort + rd() % kPortSpan);
        if (taken.count(port)) continue;  // (bus ports, 22000 and up, never collide with ports)
        if (loopback_port_free(port) && loopback_port_free(port + kBusOffset)) n.port = port;
      }
      n.dir = dir_ + "/node-" + std::to_string(n.port);
      fs::create_directory(n.dir);
      try {
        // Each node gets its own 10 s, whatever is left of ready_timeout: on
        // a loaded machine a start can take seconds, and a start that fails
        // is no answer to "did the cluster come up in time" (the failure
        // then comes from the steps below, with every node's log).
        start_node(n, Millis(10000));
        taken.insert(n.port);
        nodes_.push_back(std::move(n));
        break;
      } catch (const std::exception& e) {
        if (n.pid > 0) ::kill(n.pid, SIGKILL);
        reap(n, true);
        if (attempt == 3) {
          logs_reported_ = true;
          throw std::runtime_error(std::string("RedisCluster: a node did not start: ") + e.what());
        }
      }
    }
  }

  std::vector<std::string> create{kCli, "--cluster", "create"};
  for (const auto& n : nodes_) create.push_back(addr(n.port));
  create.insert(create.end(), {"--cluster-replicas", std::to_string(options.replicas_per_master),
                               "--cluster-yes"});
  Run created;
  try {
    created = run(create, left());
  } catch (const std::exception& e) {
    fail(std::string("redis-cli --cluster create: ") + e.what());
  }
  if (created.status != 0) {
    fail("redis-cli --cluster create exited with " + std::to_string(created.status) + ":\n" +
         created.output);
  }
  for (auto& n : nodes_) n.id = command(n.port, {"CLUSTER", "MYID"}).str;
  wait_healthy("the new cluster", left());

  const auto masters = master_ports();
  std::string shape;
  for (const auto m : masters) {
    if (replicas_of(m).size() != static_cast<std::size_t>(options.replicas_per_master)) {
      shape += " master " + std::to_string(m) + " has " + std::to_string(replicas_of(m).size()) +
               " replicas;";
    }
  }
  if (masters.size() != static_cast<std::size_t>(options.masters) || !shape.empty()) {
    fail("unexpected cluster shape: " + std::to_string(masters.size()) + " masters;" + shape);
  }
}

void RedisCluster::start_node(Node& n, Millis timeout) {
  spawn(n);
  wait_answers(n, timeout);
}

std::vector<std::string> RedisCluster::node_args(const Node& n) const {
  // Flag and value pairs.
  // clang-format off
  return {kServer,
          "--port", std::to_string(n.port),
          "--bind", "127.0.0.1",
          "--cluster-enabled", "yes",
          "--cluster-config-file", n.dir + "/nodes-" + std::to_string(n.port) + ".conf",
          "--cluster-node-timeout", std::to_string(options_.node_timeout.count()),
          "--save", "",
          "--appendonly", "no",
          // A master waits 5 s (the default) for more replicas before a sync.
          "--repl-diskless-sync-delay", "0",
          "--daemonize", "no",
          "--dir", n.dir,
          "--logfile", ""};  // to stdout, which is <dir>/redis.log
  // clang-format on
}

void RedisCluster::spawn(Node& n) {
  std::vector<std::string> args = node_args(n);
  std::vector<char*> argv = argv_of(args);
  const std::string log_path = n.dir + "/redis.log";
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    die_with_parent(parent);
    const int null = ::open("/dev/null", O_RDONLY);
    const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (null < 0 || log < 0) ::_exit(127);
    ::dup2(null, STDIN_FILENO);
    ::dup2(log, STDOUT_FILENO);
    ::dup2(log, STDERR_FILENO);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  n.pid = pid;
}

// Until the node answers INFO with its own pid (not another server that took
// the port first).
void RedisCluster::wait_answers(Node& n, Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (reap(n, false)) {
      throw std::runtime_error("redis-server on port " + std::to_string(n.port) +
                               " exited before answering; log:\n" + tail(n.dir + "/redis.log", 25));
    }
    try {
      const RespValue info = command(n.port, {"INFO", "server"}, Millis(500));
      if (info_field(info.str, "process_id") == std::to_string(n.pid)) return;
    } catch (const std::exception&) {
      // not listening yet
    }
    if (Clock::now() > deadline) {
      throw std::runtime_error("redis-server on port " + std::to_string(n.port) +
                               " did not answer in time; log:\n" + tail(n.dir + "/redis.log", 25));
    }
    std::this_thread::sleep_for(Millis(10));  // polling interval, bounded by the deadline
  }
}

// Reaps the node if it has exited (or, with `block`, once it exits). True
// when it is not running (any more).
bool RedisCluster::reap(Node& n, bool block) {
  if (n.pid <= 0) return true;
  int status = 0;
  if (::waitpid(n.pid, &status, block ? 0 : WNOHANG) != n.pid) return false;
  n.pid = -1;
  return true;
}

// ---- nodes ----------------------------------------------------------------------

std::size_t RedisCluster::index_of(uint16_t port) const {
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].port == port) return i;
  }
  throw std::runtime_error("RedisCluster: no node on port " + std::to_string(port));
}

std::string RedisCluster::seeds() const {
  std::string out;
  for (const auto& n : nodes_) out += (out.empty() ? "" : ",") + addr(n.port);
  return out;
}

std::vector<uint16_t> RedisCluster::ports() const {
  std::vector<uint16_t> out;
  for (const auto& n : nodes_) out.push_back(n.port);
  return out;
}

bool RedisCluster::running(uint16_t port) {
  return !reap(node(port), false);
}

RespValue RedisCluster::command(uint16_t port, const std::vector<std::string>& args,
                                Millis timeout) const {
  return redis_command(port, args, timeout);
}

std::vector<RespValue> RedisCluster::pipeline(uint16_t port,
                                              const std::vector<std::vector<std::string>>& cmds,
                                              Millis timeout) const {
  return redis_pipeline(port, cmds, timeout);
}

std::string RedisCluster::cli(uint16_t port, const std::vector<std::string>& args,
                              Millis timeout) const {
  std::vector<std::string> argv{kCli, "-h", "127.0.0.1", "-p", std::to_string(port)};
  argv.insert(argv.end(), args.begin(), args.end());
  const Run r = run(argv, timeout);
  if (r.status != 0) {
    throw std::runtime_error("redis-cli -p " + std::to_string(port) + " exited with " +
                             std::to_string(r.status) + ": " + r.output);
  }
  return r.output;
}

std::vector<ClusterNodeView> RedisCluster::nodes(uint16_t port) const {
  const RespValue r = command(port, {"CLUSTER", "NODES"});
  if (r.type != '$') throw std::runtime_error("CLUSTER NODES on " + addr(port) + ": " + r.dump());
  return parse_nodes(r.str);
}

// The cluster as the first node that answers sees it.
std::vector<ClusterNodeView> RedisCluster::view() const {
  std::string errors;
  for (const auto& n : nodes_) {
    if (n.pid <= 0) continue;
    try {
      return nodes(n.port);
    } catch (const std::exception& e) {
      errors += std::string("\n  ") + e.what();
    }
  }
  throw std::runtime_error("RedisCluster: no node answers CLUSTER NODES" + errors);
}

std::vector<uint16_t> RedisCluster::master_ports() const {
  std::vector<std::pair<int, uint16_t>> masters;  // first slot, port
  for (const auto& v : view()) {
    if (!v.master() || v.failing() || v.slots.empty()) continue;
    masters.emplace_back(std::min_element(v.slots.begin(), v.slots.end())->first, v.port);
  }
  std::sort(masters.begin(), masters.end());
  std::vector<uint16_t> out;
  for (const auto& m : masters) out.push_back(m.second);
  return out;
}

std::vector<uint16_t> RedisCluster::replica_ports() const {
  std::vector<uint16_t> out;
  for (const auto& v : view()) {
    if (v.has_flag("slave") && !v.failing()) out.push_back(v.port);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<uint16_t> RedisCluster::replicas_of(uint16_t master_port) const {
  const auto all = view();
  std::string master_id;
  for (const auto& v : all) {
    if (v.port == master_port) master_id = v.id;
  }
  std::vector<uint16_t> out;
  for (const auto& v : all) {
    if (!master_id.empty() && v.master_id == master_id) out.push_back(v.port);
  }
  std::sort(out.begin(), out.end());
  return out;
}

uint16_t RedisCluster::master_for_slot(uint16_t slot) const {
  for (const auto& v : view()) {
    if (!v.master()) continue;
    for (const auto& [first, last] : v.slots) {
      if (first <= slot && slot <= last) return v.port;
    }
  }
  throw std::runtime_error("RedisCluster: no master owns slot " + std::to_string(slot));
}

// ---- failures -------------------------------------------------------------------

void RedisCluster::kill(uint16_t port) {
  Node& n = node(port);
  if (reap(n, false)) return;
  n.slots_when_killed.clear();
  std::vector<ClusterNodeView> seen;
  try {
    seen = nodes(port);
  } catch (const std::exception&) {
    seen = view();  // it does not answer (stopped?): as another node sees it
  }
  for (const auto& v : seen) {
    if (v.port == port && v.master()) n.slots_when_killed = v.slots;
  }
  ::kill(n.pid, SIGKILL);
  reap(n, true);
}

uint16_t RedisCluster::kill_master(std::size_t index) {
  const auto masters = master_ports();
  if (index >= masters.size()) {
    throw std::runtime_error("RedisCluster::kill_master: no master #" + std::to_string(index));
  }
  kill(masters[index]);
  return masters[index];
}

uint16_t RedisCluster::wait_for_failover(uint16_t killed_master, Millis timeout) {
  Node& n = node(killed_master);
  if (!reap(n, false)) throw std::runtime_error("wait_for_failover: the node still runs");
  if (n.slots_when_killed.empty()) {
    throw std::runtime_error("wait_for_failover: the node owned no slots when killed");
  }
  // Healthy means every slot is served by a running master, so by then the
  // killed master's slots have moved.
  wait_healthy("failover of " + addr(killed_master), timeout);
  const int slot = n.slots_when_killed.front().first;
  const uint16_t successor = master_for_slot(static_cast<uint16_t>(slot));
  for (const auto& [first, last] : n.slots_when_killed) {
    if (master_for_slot(static_cast<uint16_t>(first)) != successor) {
      fail("the slots of " + addr(killed_master) + " went to several masters");
    }
  }
  return successor;
}

void RedisCluster::restart(uint16_t port, Millis timeout) {
  Node& n = node(port);
  if (!reap(n, false)) throw std::runtime_error("RedisCluster::restart: the node still runs");
  const auto deadline = Clock::now() + timeout;
  try {
    start_node(n, timeout);
  } catch (const std::exception& e) {
    fail(std::string("restart of ") + addr(port) + ": " + e.what());
  }
  n.slots_when_killed.clear();
  wait_healthy("restart of " + addr(port),
               std::max(Millis(1), std::chrono::duration_cast<Millis>(deadline - Clock::now())));
}

// ---- health ---------------------------------------------------------------------

std::optional<std::string> RedisCluster::health() {
  std::map<std::string, uint16_t> live;  // id -> port of the running nodes
  for (auto& n : nodes_) {
    if (n.pid > 0 && reap(n, false)) fail("redis-server on " + addr(n.port) + " exited by itself");
    if (n.pid > 0) live.emplace(n.id, n.port);
  }
  const auto role = [&](const ClusterNodeView& v) {
    if (v.master()) return std::string("master");
    const auto m = live.find(v.master_id);
    return "replica of " + (m != live.end() ? addr(m->second) : v.master_id);
  };

  // Each running node on its own: state, links, slot coverage, replication.
  std::vector<std::pair<uint16_t, std::vector<ClusterNodeView>>> views;
  std::map<std::string, std::string> own_role;  // id -> role as the node itself says
  for (const auto& [id, port] : live) {
    const std::string who = addr(port) + ": ";
    try {
      const std::string info = command(port, {"CLUSTER", "INFO"}, Millis(1000)).str;
      if (info_field(info, "cluster_state") != "ok") return who + "cluster_state not ok";
      if (info_field(info, "cluster_known_nodes") != std::to_string(nodes_.size())) {
        return who + "knows " + info_field(info, "cluster_known_nodes") + " nodes";
      }
      auto seen = nodes(port);
      std::size_t seen_live = 0;
      for (const auto& v : seen) {
        if (!live.count(v.id)) continue;
        ++seen_live;
        if (v.failing() || v.has_flag("handshake") || v.has_flag("noaddr")) {
          return who + "sees " + addr(v.port) + " as " + v.flags;
        }
        if (!v.has_flag("myself") && !v.connected) return who + "not connected to " + addr(v.port);
        if (v.has_flag("myself")) own_role[v.id] = role(v);
      }
      if (seen_live != live.size()) return who + "does not see every running node";
      int covered = 0;
      for (const auto& [first, last, owner] : slot_map(seen)) {
        covered += last - first + 1;
        if (std::none_of(live.begin(), live.end(),
                         [&](const auto& l) { return l.second == owner; })) {
          return who + "slots " + std::to_string(first) + "-" + std::to_string(last) +
                 " on the stopped " + addr(owner);
        }
      }
      if (covered != kSlots) return who + std::to_string(covered) + " slots covered";
      const std::string repl = command(port, {"INFO", "replication"}, Millis(1000)).str;
      if (info_field(repl, "role") == "slave" && info_field(repl, "master_link_status") != "up") {
        return who + "replica whose master link is " + info_field(repl, "master_link_status");
      }
      const int replicas = std::stoi("0" + info_field(repl, "connected_slaves"));
      for (int i = 0; i < replicas; ++i) {
        // slave0:ip=127.0.0.1,port=...,state=online,offset=...,lag=...
        const std::string line = info_field(repl, "slave" + std::to_string(i));
        if (line.find(",state=online,") == std::string::npos) return who + "replica " + line;
      }
      views.emplace_back(port, std::move(seen));
    } catch (const std::exception& e) {
      return who + e.what();
    }
  }

  // All of them agree: one slot map, and each node's role as it says itself
  // (a restarted master turns replica; the others learn it by gossip).
  for (const auto& [port, seen] : views) {
    const std::string who = addr(port) + ": ";
    if (slot_map(seen) != slot_map(views.front().second)) {
      return who + "slot map " + describe(slot_map(seen)) + " differs from that of " +
             addr(views.front().first) + ": " + describe(slot_map(views.front().second));
    }
    for (const auto& v : seen) {
      if (live.count(v.id) && role(v) != own_role[v.id]) {
        return who + "sees " + addr(v.port) + " as " + role(v) + ", it is " + own_role[v.id];
      }
    }
  }
  return std::nullopt;
}

void RedisCluster::wait_healthy(std::string_view what, Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const auto problem = health();
    if (!problem) return;
    if (Clock::now() > deadline) {
      fail(std::string(what) + ": not healthy within " + std::to_string(timeout.count()) +
           " ms; last seen: " + *problem);
    }
    std::this_thread::sleep_for(kPollInterval);  // polling interval, bounded by the deadline
  }
}

void RedisCluster::fail(const std::string& message) {
  logs_reported_ = true;
  throw std::runtime_error("RedisCluster: " + message + "\n" + logs_tail());
}

std::string RedisCluster::logs_tail(std::size_t lines) const {
  std::string out;
  for (const auto& n : nodes_) {
    out += "-- " + addr(n.port) + (n.pid > 0 ? "" : " (not running)") + ", " + n.dir +
           "/redis.log:\n" + tail(n.dir + "/redis.log", lines);
  }
  return out;
}

}  // namespace imgate::test
