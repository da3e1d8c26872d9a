// The upstream defect class (spec §5) as tests: whatever the order or duplication of a
// connection's events, and whatever other threads do meanwhile, no registry entry outlives its
// connection, enter/exit come exactly once per first login / last logout and in order, and a
// connection is unlinked (and, on timeout, closed) exactly once.
//
// Part 1 enumerates every order of a small event list for a connection A on shard 0 and a second
// connection B of the same user on shard 1, running the posted tasks at random points in between,
// and compares the registry with an independently computed model after every event.
// Part 2 runs four real shard threads doing seeded random operations on their own connections
// (users collide across threads), with a mid-run checkpoint and full teardown.
#include <gtest/gtest.h>

#include <algorithm>
#include <barrier>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fake_peer.hpp"
#include "protocol/codes.hpp"
#include "protocol/envelope.hpp"
#include "registry/shard.hpp"

namespace imgate {
namespace {

using namespace std::chrono_literals;
using test::FakePeer;
using test::TaskQueues;

const TimePoint kStart{std::chrono::hours(3)};

// Checks that `seq` is enter, exit, enter, exit, ... (presence pushes never overtake each other).
bool alternates(const std::vector<std::string>& seq) {
  for (std::size_t i = 0; i < seq.size(); ++i) {
    if (seq[i] != (i % 2 == 0 ? "enter" : "exit")) return false;
  }
  return true;
}

std::set<std::string> as_set(const std::vector<std::string>& v) {
  return {v.begin(), v.end()};
}

// ---------------------------------------------------------------------------------------------
// Part 1: every order of one user's events on two shards.

enum class Ev : uint8_t {
  kAddB,
  kLoginA,
  kLoginB,
  kHeartbeatA,
  kHeartbeatB,
  kCloseA,
  kCloseB,
  kTimeoutA
};

const char* name(Ev e) {
  switch (e) {
    case Ev::kAddB:
      return "addB";
    case Ev::kLoginA:
      return "loginA";
    case Ev::kLoginB:
      return "loginB";
    case Ev::kHeartbeatA:
      return "heartbeatA";
    case Ev::kHeartbeatB:
      return "heartbeatB";
    case Ev::kCloseA:
      return "closeA";
    case Ev::kCloseB:
      return "closeB";
    case Ev::kTimeoutA:
      return "timeoutA";
  }
  return "?";
}

std::string describe(const std::vector<Ev>& events) {
  std::string s;
  for (Ev e : events) s += std::string(s.empty() ? "" : " ") + name(e);
  return s;
}

// What the test expects of one connection, computed without looking at the registry.
struct ConnModel {
  bool created = false;
  bool alive = false;
  bool logged_in = false;
  bool timed_out = false;
  int true_unlinks = 0;  // unlink() calls that returned true (a timeout counts as one)
};

constexpr auto kOrderTimeout = 2000ms;
constexpr auto kOrderPing = 800ms;
constexpr AppId kOrderApp = 101;

// The registry all orders run against: one hub for the whole enumeration, with an observer user
// on each shard who stays logged in throughout. Reusing it also checks that nothing a scenario
// leaves behind disturbs the next one.
struct Bench {
  Bench() : hub(2, LivenessSettings{kOrderTimeout, kOrderPing}, counters, kStart), queues(2) {
    hub.set_poster(queues.poster());
    hub.set_presence_frames(make_presence_push);
    for (uint32_t s = 0; s < 2; ++s) {
      obs[s] = hub.shard(s).add(obs_peer[s], now);
      EXPECT_EQ(hub.shard(s).login(obs[s], kOrderApp, "obs" + std::to_string(s), now),
                LoginStatus::kOk);
    }
    queues.drain();
  }

  // After the last scenario the observers leave too, and nothing at all may remain.
  void close() {
    for (uint32_t s = 0; s < 2; ++s) {
      EXPECT_TRUE(hub.shard(s).unlink(obs[s], EndReason::kClientClose));
    }
    queues.drain();
    EXPECT_EQ(hub.connections(), 0u);
    EXPECT_EQ(hub.directory().user_count(), 0u);
    EXPECT_EQ(hub.directory().connection_count(), 0u);
    EXPECT_EQ(hub.directory().room_count(), 0u);
  }

  Counters counters;
  Hub hub;
  TaskQueues queues;
  TimePoint now = kStart;
  FakePeer obs_peer[2];
  ConnId obs[2] = {0, 0};
};

// One order of events: connection A (shard 0) and B (shard 1), both of user "u".
class OrderRun {
 public:
  OrderRun(Bench& bench, bool add_b_upfront, uint32_t seed)
      : b_(bench),
        rng_(seed),
        closed0_(b_.counters.connections_closed.load()),
        timeouts0_(b_.counters.heartbeat_timeouts.load()),
        logins0_(b_.counters.logins.load()) {
    for (FakePeer& p : b_.obs_peer) p.clear_frames();
    add(0);
    if (add_b_upfront) add(1);
  }

  // Applies one event to the registry and to the model, then checks them against each other.
  void apply(Ev e) {
    switch (e) {
      case Ev::kAddB:
        if (!model_[1].created) add(1);
        break;
      case Ev::kLoginA:
        login(0);
        break;
      case Ev::kLoginB:
        login(1);
        break;
      case Ev::kHeartbeatA:
        heartbeat(0);
        break;
      case Ev::kHeartbeatB:
        heartbeat(1);
        break;
      case Ev::kCloseA:
        close(0, EndReason::kClientClose);
        break;
      case Ev::kCloseB:
        close(1, EndReason::kNetworkError);
        break;
      case Ev::kTimeoutA:
        timeout_a();
        break;
    }
    // Some of the posted presence tasks run now, shards picked at random.
    b_.queues.run_some(rng_,
                       std::uniform_int_distribution<std::size_t>(0, b_.queues.pending())(rng_));
    check();
  }

  // Compares every count and index with the model.
  void check() {
    const Directory& dir = b_.hub.directory();
    EXPECT_EQ(b_.hub.shard(0).size(), 1u + (model_[0].alive ? 1 : 0));
    EXPECT_EQ(b_.hub.shard(1).size(), 1u + (model_[1].alive ? 1 : 0));
    for (int c = 0; c < 2; ++c) {
      if (!model_[c].created) continue;
      EXPECT_EQ(shard_of(c).contains(id_[c]), model_[c].alive) << "conn " << c;
      EXPECT_EQ(shard_of(c).logged_in(id_[c]), model_[c].alive && model_[c].logged_in)
          << "conn " << c;
    }
    const bool u_online = user_connections_ > 0;
    EXPECT_EQ(dir.user_count(), 2u + (u_online ? 1 : 0));
    EXPECT_EQ(dir.connection_count(), 2u + static_cast<std::size_t>(user_connections_));
    EXPECT_EQ(dir.room_count(), 1u);
    static const std::vector<std::string> kWithU{"obs0", "obs1", "u"};
    static const std::vector<std::string> kWithoutU{"obs0", "obs1"};
    std::vector<std::string> users = dir.users_of(kOrderApp);
    std::sort(users.begin(), users.end());
    EXPECT_EQ(users, u_online ? kWithU : kWithoutU);
    EXPECT_EQ(dir.online(kOrderApp, "u"), u_online);
    std::vector<uint32_t> shards = dir.shards_of({kOrderApp, "u"});
    std::sort(shards.begin(), shards.end());
    std::vector<uint32_t> expected_shards;
    for (uint32_t c = 0; c < 2; ++c) {
      if (model_[c].alive && model_[c].logged_in) expected_shards.push_back(c);
    }
    EXPECT_EQ(shards, expected_shards);
    EXPECT_EQ(b_.counters.connections_closed.load() - closed0_,
              static_cast<uint64_t>(model_[0].true_unlinks + model_[1].true_unlinks));
    EXPECT_EQ(b_.counters.heartbeat_timeouts.load() - timeouts0_, model_[0].timed_out ? 1u : 0u);
    EXPECT_EQ(b_.counters.logins.load() - logins0_, logins_);
  }

  // Runs every posted task and checks the observers' view; then ends what is still open (the
  // second end of an already ended connection must be refused) and checks that only the
  // observers remain.
  void finish() {
    b_.queues.drain();
    check_presence_and_peers();
    close(0, EndReason::kShutdown);
    close(1, EndReason::kShutdown);
    b_.queues.drain();
    check();
    check_presence_and_peers();
    for (const ConnModel& m : model_) {
      if (m.created) {  // exactly once per connection
        EXPECT_EQ(m.true_unlinks, 1);
      }
    }
    EXPECT_EQ(enters_, exits_);
    // Shard 0 was ticked past A's deadline: only the observer's entry (and at most one lapsing
    // one) is left in its wheel, so ended connections do not accumulate there.
    EXPECT_LE(b_.hub.shard(0).wheel_entries(), 2u);
  }

 private:
  Shard& shard_of(int c) { return b_.hub.shard(static_cast<uint32_t>(c)); }

  void add(int c) {
    id_[c] = shard_of(c).add(peer_[c], b_.now);
    model_[c].created = true;
    model_[c].alive = true;
  }

  void login(int c) {
    if (!model_[c].created) return;  // no id to name yet
    LoginStatus status = shard_of(c).login(id_[c], kOrderApp, "u", b_.now);
    ConnModel& m = model_[c];
    if (!m.alive) {
      EXPECT_EQ(status, LoginStatus::kUnknownConnection) << "conn " << c;
    } else if (m.logged_in) {
      EXPECT_EQ(status, LoginStatus::kAlreadyLoggedIn) << "conn " << c;
    } else {
      EXPECT_EQ(status, LoginStatus::kOk) << "conn " << c;
      m.logged_in = true;
      ++logins_;
      if (user_connections_++ == 0) ++enters_;
    }
  }

  void heartbeat(int c) {
    if (!model_[c].created) return;
    EXPECT_EQ(shard_of(c).heartbeat(id_[c], b_.now), model_[c].alive && model_[c].logged_in)
        << "conn " << c;
  }

  void ended(int c) {
    ConnModel& m = model_[c];
    m.alive = false;
    ++m.true_unlinks;
    if (m.logged_in && --user_connections_ == 0) ++exits_;
  }

  void close(int c, EndReason reason) {
    if (!model_[c].created) return;
    const bool expected = model_[c].alive;
    EXPECT_EQ(shard_of(c).unlink(id_[c], reason), expected) << "conn " << c;
    if (expected) ended(c);
  }

  // Time passes beyond heartbeat_timeout on shard 0; only the observer there stays active.
  void timeout_a() {
    b_.now += kOrderTimeout;
    b_.hub.shard(0).touch(b_.obs[0], b_.now);
    b_.hub.shard(0).tick(b_.now);
    if (model_[0].alive) {
      model_[0].timed_out = true;
      ended(0);
    }
    EXPECT_TRUE(b_.hub.shard(0).contains(b_.obs[0]));
  }

  void check_presence_and_peers() {
    std::vector<std::string> expected;
    for (int i = 0; i < enters_ + exits_; ++i) expected.push_back(i % 2 == 0 ? "enter" : "exit");
    for (int o = 0; o < 2; ++o) {
      EXPECT_EQ(b_.obs_peer[o].presence_of("u"), expected) << "observer " << o;
    }
    for (int c = 0; c < 2; ++c) {
      EXPECT_TRUE(peer_[c].presence_of("u").empty()) << "conn " << c << " got its own presence";
      EXPECT_EQ(peer_[c].pings, 0);
    }
    // The registry closes a socket only on timeout (or shutdown via close_all), once.
    ASSERT_EQ(peer_[0].closes.size(), model_[0].timed_out ? 1u : 0u);
    if (model_[0].timed_out) {
      EXPECT_EQ(peer_[0].closes[0].first, close_code::kGoingAway);
    }
    EXPECT_TRUE(peer_[1].closes.empty());
  }

  Bench& b_;
  std::minstd_rand rng_;
  const uint64_t closed0_, timeouts0_, logins0_;
  FakePeer peer_[2];
  ConnId id_[2] = {0, 0};
  ConnModel model_[2];
  int user_connections_ = 0;  // alive, logged-in connections of "u"
  int enters_ = 0;
  int exits_ = 0;
  uint64_t logins_ = 0;
};

// Runs `events` in every distinct order; returns the number of orders.
std::size_t run_every_order(std::vector<Ev> events, bool add_b_upfront) {
  std::sort(events.begin(), events.end());
  Bench bench;
  std::size_t orders = 0;
  do {
    {
      OrderRun run(bench, add_b_upfront, static_cast<uint32_t>(orders));
      for (Ev e : events) run.apply(e);
      run.finish();
    }
    ++orders;
    if (::testing::Test::HasFailure()) {  // one failing order is enough to read
      ADD_FAILURE() << "failing order #" << orders << ": " << describe(events);
      return orders;
    }
  } while (std::next_permutation(events.begin(), events.end()));
  bench.close();
  return orders;
}

TEST(RegistryInterleave, EveryOrderOfLoginHeartbeatCloseTimeoutAndDuplicateClose) {
  test::QuietLogs quiet;
  std::size_t orders = run_every_order({Ev::kLoginA, Ev::kLoginB, Ev::kHeartbeatA, Ev::kCloseA,
                                        Ev::kCloseA, Ev::kTimeoutA, Ev::kCloseB, Ev::kCloseB},
                                       /*add_b_upfront=*/true);
  if (!HasFailure()) {  // 8! / (2! 2!)
    EXPECT_EQ(orders, 10080u);
  }
}

TEST(RegistryInterleave, EveryOrderWithTheSecondConnectionArrivingLate) {
  // Events of B before addB cannot be expressed (no id yet) and are skipped; a second loginB is a
  // relogin attempt. Duplicate closes happen in finish().
  test::QuietLogs quiet;
  std::size_t orders = run_every_order(
      {Ev::kAddB, Ev::kLoginA, Ev::kLoginB, Ev::kLoginB, Ev::kCloseA, Ev::kTimeoutA, Ev::kCloseB},
      /*add_b_upfront=*/false);
  if (!HasFailure()) {
    EXPECT_EQ(orders, 2520u);  // 7! / 2!
  }
}

TEST(RegistryInterleave, EveryOrderWithReloginAndHeartbeatOnTheOtherShard) {
  test::QuietLogs quiet;
  std::size_t orders = run_every_order({Ev::kLoginA, Ev::kLoginA, Ev::kLoginB, Ev::kHeartbeatB,
                                        Ev::kCloseA, Ev::kTimeoutA, Ev::kCloseB},
                                       /*add_b_upfront=*/true);
  if (!HasFailure()) {
    EXPECT_EQ(orders, 2520u);
  }
}

// ---------------------------------------------------------------------------------------------
// Part 2: four shard threads at once.

// The task queue of one shard thread: other threads post into it, the owner runs it.
class ShardQueue {
 public:
  void post(Hub::Task task) {
    std::lock_guard lock(mu_);
    tasks_.push_back(std::move(task));
  }
  // Runs what is queued now (tasks run outside the lock); returns how many ran.
  std::size_t run_pending() {
    std::deque<Hub::Task> batch;
    {
      std::lock_guard lock(mu_);
      batch.swap(tasks_);
    }
    for (auto& task : batch) task();
    return batch.size();
  }
  // Runs until the queue is empty. Only complete once nobody posts any more.
  void drain() {
    while (run_pending() > 0) {
    }
  }

 private:
  std::mutex mu_;
  std::deque<Hub::Task> tasks_;
};

struct LiveConn {
  FakePeer* peer = nullptr;
  ConnId id = 0;
  bool alive = true;
  bool logged_in = false;
  bool timed_out = false;
  UserKey key;
  TimePoint last_seen;
  int true_unlinks = 0;
};

constexpr uint32_t kThreads = 4;
constexpr auto kMtTimeout = 1000ms;
constexpr auto kMtPing = 400ms;
constexpr auto kMtTick = 50ms;  // min(1000, 400) / 8

// Everything one shard thread knows about its own connections.
struct ThreadModel {
  std::vector<std::unique_ptr<FakePeer>> peers;
  std::vector<LiveConn> conns;
  FakePeer observer;
  ConnId observer_id = 0;
  uint64_t logins = 0;
  uint64_t timeouts = 0;
  std::set<std::string> users_logged_in_to_101;  // pool users this thread ever logged in
};

const std::vector<UserKey>& user_pool() {
  static const std::vector<UserKey> pool = {{101, "p0"}, {101, "p1"}, {101, "p2"}, {101, "p3"},
                                            {101, "p4"}, {101, "p5"}, {102, "q0"}, {102, "q1"}};
  return pool;
}

class MultiThreadRun {
 public:
  MultiThreadRun(uint32_t seed, int ops)
      : seed_(seed),
        ops_(ops),
        hub_(kThreads, LivenessSettings{kMtTimeout, kMtPing}, counters_, kStart),
        queues_(kThreads),
        models_(kThreads),
        checkpoint_(kThreads, Checkpoint{this}),
        sync_(kThreads) {
    hub_.set_poster([this](uint32_t i, Hub::Task task) { queues_[i].post(std::move(task)); });
    hub_.set_presence_frames(make_presence_push);
  }

  void run() {
    std::vector<std::thread> threads;
    for (uint32_t t = 0; t < kThreads; ++t) threads.emplace_back([this, t] { thread_main(t); });
    for (auto& th : threads) th.join();
    verify();
  }

 private:
  // Completion step of the mid-run barrier: every thread is paused between two operations, so the
  // directory must equal the union of what the threads' models say is logged in.
  struct Checkpoint {
    MultiThreadRun* run;
    void operator()() noexcept { run->check_directory_matches_models(); }
  };

  void check_directory_matches_models() {
    std::multiset<std::string> logged;  // "<app>_<user>" per logged-in connection
    std::set<AppId> rooms;
    for (uint32_t t = 0; t < kThreads; ++t) {
      std::size_t alive = 1;  // the observer
      logged.insert("101_obs" + std::to_string(t));
      rooms.insert(101);
      for (const LiveConn& c : models_[t].conns) {
        if (!c.alive) continue;
        ++alive;
        if (c.logged_in) {
          logged.insert(std::to_string(c.key.app) + "_" + c.key.user);
          rooms.insert(c.key.app);
        }
      }
      EXPECT_EQ(hub_.shard(t).size(), alive) << "shard " << t;
    }
    const Directory& dir = hub_.directory();
    std::set<std::string> users(logged.begin(), logged.end());
    EXPECT_EQ(as_set(dir.user_keys()), users);
    EXPECT_EQ(dir.user_count(), users.size());
    EXPECT_EQ(dir.connection_count(), logged.size());
    EXPECT_EQ(dir.room_count(), rooms.size());
    ++checkpoints_;
  }

  void thread_main(uint32_t t) {
    SCOPED_TRACE("seed " + std::to_string(seed_) + " thread " + std::to_string(t));
    Shard& shard = hub_.shard(t);
    ThreadModel& m = models_[t];
    std::mt19937 rng(seed_ * 7919u + t);
    TimePoint now = kStart;
    auto pick = [&](std::size_t n) {
      return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
    };

    m.observer_id = shard.add(m.observer, now);
    EXPECT_EQ(shard.login(m.observer_id, 101, "obs" + std::to_string(t), now), LoginStatus::kOk);
    ++m.logins;
    sync_.arrive_and_wait();  // every observer is in the room before any pool user logs in

    for (int op = 0; op < ops_; ++op) {
      if (op == ops_ / 2) {
        queues_[t].run_pending();
        checkpoint_.arrive_and_wait();
      }
      queues_[t].run_pending();
      const std::size_t alive = static_cast<std::size_t>(
          std::count_if(m.conns.begin(), m.conns.end(), [](const LiveConn& c) { return c.alive; }));
      const int roll = static_cast<int>(pick(100));
      if (roll < 12 || alive == 0) {
        if (alive >= 10) continue;
        m.peers.push_back(std::make_unique<FakePeer>());
        LiveConn c;
        c.peer = m.peers.back().get();
        c.id = shard.add(*c.peer, now);
        c.last_seen = now;
        m.conns.push_back(c);
        continue;
      }
      // Mostly a live connection; sometimes any, so events also arrive after a connection ended.
      LiveConn* chosen = &m.conns[pick(m.conns.size())];
      while (!chosen->alive && pick(5) != 0) chosen = &m.conns[pick(m.conns.size())];
      LiveConn& c = *chosen;
      if (roll < 40) {
        const UserKey& key = user_pool()[pick(user_pool().size())];
        LoginStatus status = shard.login(c.id, key.app, key.user, now);
        if (!c.alive) {
          EXPECT_EQ(status, LoginStatus::kUnknownConnection);
        } else if (c.logged_in) {
          EXPECT_EQ(status, LoginStatus::kAlreadyLoggedIn);
        } else {
          EXPECT_EQ(status, LoginStatus::kOk);
          c.logged_in = true;
          c.key = key;
          c.last_seen = now;
          ++m.logins;
          if (key.app == 101) m.users_logged_in_to_101.insert(key.user);
        }
      } else if (roll < 52) {
        EXPECT_EQ(shard.heartbeat(c.id, now), c.alive && c.logged_in);
        if (c.alive && c.logged_in) c.last_seen = now;
      } else if (roll < 64) {
        shard.touch(c.id, now);
        if (c.alive) c.last_seen = now;
      } else if (roll < 80) {
        static constexpr EndReason kReasons[] = {EndReason::kClientClose, EndReason::kNetworkError,
                                                 EndReason::kOverflow, EndReason::kProtocol};
        const bool expected = c.alive;
        EXPECT_EQ(shard.unlink(c.id, kReasons[pick(4)]), expected);
        if (expected) {
          c.alive = false;
          ++c.true_unlinks;
        }
      } else {
        now += std::chrono::milliseconds(pick(120));
        shard.touch(m.observer_id, now);
        shard.tick(now);
        for (LiveConn& x : m.conns) {
          if (!x.alive) continue;
          const auto idle = now - x.last_seen;
          if (shard.contains(x.id)) {
            // Detected no later than one wheel tick after the deadline.
            EXPECT_LT(idle, kMtTimeout + kMtTick);
            continue;
          }
          EXPECT_GE(idle, kMtTimeout);  // never before the deadline
          x.alive = false;
          x.timed_out = true;
          ++x.true_unlinks;
          ++m.timeouts;
          EXPECT_EQ(x.peer->closes.size(), 1u);
        }
        EXPECT_TRUE(shard.contains(m.observer_id));
      }
    }

    // Teardown: every connection ends (some twice), then nobody posts any more.
    for (LiveConn& c : m.conns) {
      const bool expected = c.alive;
      EXPECT_EQ(shard.unlink(c.id, EndReason::kNetworkError), expected);
      EXPECT_FALSE(shard.unlink(c.id, EndReason::kClientClose));
      if (expected) {
        c.alive = false;
        ++c.true_unlinks;
      }
    }
    sync_.arrive_and_wait();
    queues_[t].drain();
    sync_.arrive_and_wait();
  }

  void verify() {
    EXPECT_EQ(checkpoints_, 1);
    uint64_t logins = 0, timeouts = 0, conns = 0;
    std::set<std::string> ever_online;
    for (const ThreadModel& m : models_) {
      logins += m.logins;
      timeouts += m.timeouts;
      conns += m.conns.size();
      ever_online.insert(m.users_logged_in_to_101.begin(), m.users_logged_in_to_101.end());
      for (const LiveConn& c : m.conns) {
        EXPECT_EQ(c.true_unlinks, 1);
        EXPECT_LE(c.peer->closes.size(), 1u);
        EXPECT_EQ(c.peer->closes.size(), c.timed_out ? 1u : 0u);
        // Nobody is told about themselves (a connection's own user never appears as `from`).
        if (!c.key.user.empty()) {
          EXPECT_TRUE(c.peer->presence_of(c.key.user).empty());
        }
      }
    }
    EXPECT_EQ(counters_.logins.load(), logins);
    EXPECT_EQ(counters_.heartbeat_timeouts.load(), timeouts);
    EXPECT_EQ(counters_.connections_closed.load(), conns);  // observers are still open

    // Only the observers are left.
    for (uint32_t t = 0; t < kThreads; ++t) EXPECT_EQ(hub_.shard(t).size(), 1u);
    EXPECT_EQ(hub_.directory().connection_count(), kThreads);
    EXPECT_EQ(hub_.directory().user_count(), kThreads);
    EXPECT_EQ(hub_.directory().room_count(), 1u);

    // Every observer saw, for every pool user of its room, the same strictly alternating
    // enter/exit sequence, balanced because every user that came online went offline.
    std::size_t enters = 0, exits = 0;
    for (const auto& key : user_pool()) {
      if (key.app != 101) continue;
      const std::vector<std::string> first = models_[0].observer.presence_of(key.user);
      EXPECT_TRUE(alternates(first)) << key.user;
      EXPECT_EQ(first.size() % 2, 0u) << key.user;
      EXPECT_EQ(!first.empty(), ever_online.contains(key.user)) << key.user;
      for (uint32_t t = 1; t < kThreads; ++t) {
        EXPECT_EQ(models_[t].observer.presence_of(key.user), first) << key.user << " obs" << t;
      }
      for (const auto& cmd : first) (cmd == "enter" ? enters : exits)++;
    }
    EXPECT_EQ(enters, exits);
    // The random mix really exercised logins, presence, explicit ends and timeouts.
    EXPECT_GT(enters, 20u);
    EXPECT_GT(logins, 100u);
    EXPECT_GT(timeouts, 50u);
    EXPECT_GT(conns - timeouts, 50u);
    for (const ThreadModel& m : models_) {
      for (const auto& key : user_pool()) {
        if (key.app == 102) {
          EXPECT_TRUE(m.observer.presence_of(key.user).empty());
        }
      }
    }

    // The observers leave; now everything is zero.
    for (uint32_t t = 0; t < kThreads; ++t) {
      EXPECT_TRUE(hub_.shard(t).unlink(models_[t].observer_id, EndReason::kClientClose));
    }
    for (auto& q : queues_) q.drain();
    EXPECT_EQ(hub_.connections(), 0u);
    EXPECT_EQ(hub_.directory().user_count(), 0u);
    EXPECT_EQ(hub_.directory().connection_count(), 0u);
    EXPECT_EQ(hub_.directory().room_count(), 0u);
    EXPECT_TRUE(hub_.directory().user_keys().empty());
  }

  const uint32_t seed_;
  const int ops_;
  Counters counters_;
  Hub hub_;
  std::vector<ShardQueue> queues_;
  std::vector<ThreadModel> models_;
  std::barrier<Checkpoint> checkpoint_;
  std::barrier<> sync_;
  int checkpoints_ = 0;
};

TEST(RegistryInterleave, RandomisedFourShardThreads) {
  test::QuietLogs quiet;
  for (uint32_t seed : {1u, 2u, 3u, 42u, 1234u}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    MultiThreadRun(seed, 3000).run();
    if (HasFailure()) break;
  }
}

}  // namespace
}  // namespace imgate
