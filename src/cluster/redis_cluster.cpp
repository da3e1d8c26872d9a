#include "cluster/redis_cluster.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <cstdlib>
#include <future>
#include <random>

#include "cluster/lua_scripts.hpp"
#include "cluster/redis_commands.hpp"
#include "protocol/envelope.hpp"

namespace imgate {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

std::string random_node_id() {
  std::random_device rd;
  std::mt19937_64 rng(rd() ^ static_cast<uint64_t>(Clock::now().time_since_epoch().count()));
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  for (int i = 0; i < 12; ++i) id += kHex[rng() % 16];
  return id;
}

// A failed push: a Redis error reply or a command that never left this node
// did not run; one whose connection broke after it was written may have.
RedisCluster::Sent outcome(bool ok, const RedisReply& r) {
  return !ok && r.may_have_run ? RedisCluster::Sent::kUnknown : RedisCluster::Sent::kNotSent;
}

// The send path's scripts go by SHA1 (EVALSHA; RedisScript). Presence,
// reaping and resync keep EVAL: their order on a connection is what keeps
// presence exact, and a NOSCRIPT resend could pass a later command
// (docs/cluster.md, "EVALSHA").
const RedisScript kUnicastScript{lua::k_unicast};
const RedisScript kPublishOnceScript{lua::k_publish_once};
const RedisScript kHistoryAppendScript{lua::k_history_append};

}  // namespace

using redis_commands::eval;
using redis_commands::evalsha;
using redis_commands::now_ms;

RedisCluster::RedisCluster(const Config& config, Hub& hub, asio::io_context* shared_loop)
    : config_(config),
      hub_(hub),
      prefix_(config.redis_prefix),
      node_id_(random_node_id()),
      sharded_(!config.redis_cluster.empty()),
      buckets_(sharded_ ? config.redis_buckets : 1),
      bases_(make_bases(config.app_ids)),
      own_loop_(shared_loop ? nullptr : std::make_unique<asio::io_context>()),
      loop_(shared_loop ? *shared_loop : *own_loop_),
      refresh_timer_(loop_),
      reap_timer_(loop_),
      count_timer_(loop_) {
  if (!config.redis_cluster.empty()) {
    std::vector<RedisEndpoint> seeds;
    std::string_view list = config.redis_cluster;
    while (!list.empty()) {
      auto comma = list.find(',');
      std::string item(list.substr(0, comma));
      list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
      item.erase(0, item.find_first_not_of(' '));
      item.erase(item.find_last_not_of(' ') + 1);
      if (item.empty()) continue;
      RedisEndpoint ep = RedisEndpoint::parse(item);
      ep.password = config.redis_password;
      seeds.push_back(std::move(ep));
    }
    link_ = std::make_unique<ShardedRedis>(loop_, std::move(seeds), node_id_);
  } else {
    RedisEndpoint ep = RedisEndpoint::parse(config.redis_addr);
    ep.password = config.redis_password;
    ep.db = config.redis_db;
    link_ = std::make_unique<SingleRedis>(loop_, ep, node_id_);
  }
  link_->on_ready = [this](const RedisLink::Owns& owns) { on_link_ready(owns); };
  link_->on_health = [this] { update_health(); };
  link_->on_message = [this](const RedisReply& r) { on_message(r); };
  for (AppId app : config_.app_ids) {
    subs_[app].linger = std::make_unique<asio::steady_timer>(loop_);
    subs_[app].deadline = std::make_unique<asio::steady_timer>(loop_);
    for (auto& channel : app_channels(app)) channel_apps_.emplace(std::move(channel), app);
  }
  link_->on_subscribed = [this](const std::string& channel) {
    if (auto it = channel_apps_.find(channel); it != channel_apps_.end()) {
      check_app(it->second, subs_.at(it->second));
    }
  };
}

RedisCluster::~RedisCluster() {
  if (thread_.joinable()) {
    loop_.stop();
    thread_.join();
  }
}

void RedisCluster::start() {
  spdlog::info("cluster mode: node {} on {} {} (prefix \"{}\", {} buckets per appID)", node_id_,
               sharded_ ? "redis cluster" : "redis",
               sharded_ ? config_.redis_cluster : config_.redis_addr, prefix_, buckets_);
  started_ = true;
  post([this] {
    // One Redis: the node's own channel, always. The channels of an app
    // (app_channels) only while the node holds users of it (want_app).
    if (!sharded_) link_->subscribe({node_channel_prefix(0, 0) + node_id_});
    link_->start();
    refresh_loop();
    reap_loop();
    if (buckets_ > 1 && hub_.presence_policy().max_room > 0) count_loop();
  });
  if (!own_loop_) return;  // the shared loop runs it
  thread_ = std::thread([this] {
    auto guard = asio::make_work_guard(loop_);
    loop_.run();
  });
}

void RedisCluster::stop(std::chrono::milliseconds deadline) {
  if (!own_loop_) return leave_on_shared_loop(deadline);
  if (!thread_.joinable()) return;
  auto left = std::make_shared<std::promise<void>>();
  auto done = left->get_future();
  post([this, left] {
    refresh_timer_.cancel();
    reap_timer_.cancel();
    count_timer_.cancel();
    cancel_resyncs();
    // Runs after every logout queued before it (one connection per shard, in order).
    reap(node_id_, [left](int64_t) { left->set_value(); });
  });
  if (done.wait_for(deadline) != std::future_status::ready) {
    spdlog::warn("cluster: leaving timed out; the other nodes will reap this node");
  }
  post([this] { link_->stop(); });
  loop_.stop();
  thread_.join();
}

// The server's loop has stopped (Server::run): it runs here again, on the
// caller's thread, until this node has left or `deadline` passed.
void RedisCluster::leave_on_shared_loop(std::chrono::milliseconds deadline) {
  if (!started_) return;
  started_ = false;
  loop_.restart();
  auto left = std::make_shared<bool>(false);
  post([this, left] {
    refresh_timer_.cancel();
    reap_timer_.cancel();
    cancel_resyncs();
    reap(node_id_, [left](int64_t) { *left = true; });
  });
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (!*left && loop_.run_one_until(until) > 0) {
  }
  if (!*left) spdlog::warn("cluster: leaving timed out; the other nodes will reap this node");
  link_->stop();
  loop_.poll();  // the callbacks the stop failed
  loop_.stop();
}

void RedisCluster::post(std::function<void()> task) {
  asio::post(loop_, std::move(task));
}

void RedisCluster::dispatch(std::function<void()> task) {
  asio::dispatch(loop_, std::move(task));
}

void RedisCluster::update_health() {
  const bool up = link_->healthy();
  shards_.store(link_->shards(), std::memory_order_relaxed);
  shards_up_.store(link_->shards_up(), std::memory_order_relaxed);
  if (healthy_.exchange(up) != up) {
    spdlog::log(up ? spdlog::level::info : spdlog::level::warn, "cluster: redis {}",
                up ? "available" : "unavailable, running degraded (local only)");
  }
  check_apps();
}

// ---- subscriptions on demand (docs/cluster.md) ----

bool RedisCluster::await_login(const UserKey& key, std::function<void()> ready) {
  if (subs_.find(key.app) == subs_.end()) return true;
  // After the user_online() of the login that calls this (posted before it,
  // from the same thread), if that was the user's first login on this node.
  post([this, key, ready = std::move(ready)]() mutable {
    auto it = logins_pending_.find(key);
    if (it == logins_pending_.end()) return ready();
    it->second.waiters.push_back(std::move(ready));
  });
  return false;
}

void RedisCluster::login_ran(const UserKey& key) {
  auto it = logins_pending_.find(key);
  if (it == logins_pending_.end() || --it->second.scripts != 0) return;
  auto waiters = std::move(it->second.waiters);
  logins_pending_.erase(it);
  for (auto& ready : waiters) ready();
}

void RedisCluster::want_app(AppId app) {
  auto it = subs_.find(app);
  if (it == subs_.end()) return;
  AppSubscription& a = it->second;
  a.linger->cancel();
  if (a.wanted) return;
  a.wanted = true;
  link_->subscribe(app_channels(app));
  check_app(app, a);
}

void RedisCluster::linger_app(AppId app) {
  auto it = subs_.find(app);
  if (it == subs_.end() || !it->second.wanted) return;
  {
    std::lock_guard lock(subs_mu_);
    if (it->second.users != 0) return;
  }
  it->second.linger->expires_after(kUnsubscribeLinger);
  it->second.linger->async_wait([this, app](const boost::system::error_code& ec) {
    if (ec) return;
    AppSubscription& a = subs_.at(app);
    {
      // Under the lock: a login counted after this waits for the next subscribe.
      std::lock_guard lock(subs_mu_);
      if (a.users != 0 || !a.wanted) return;
      a.ready = false;
    }
    a.wanted = false;
    link_->unsubscribe(app_channels(app));
    release_app(a);  // logins whose connection is gone again
  });
}

void RedisCluster::when_heard(AppId app, std::function<void()> task) {
  auto it = subs_.find(app);
  if (it == subs_.end()) return task();
  AppSubscription& a = it->second;
  if (a.held.empty()) {
    bool heard = false;
    {
      std::lock_guard lock(subs_mu_);
      heard = a.ready;
    }
    if (heard || !link_->can_subscribe(app_channels(app))) return task();
    // Not confirmed within the deadline although Redis is reachable (a
    // refused SUBSCRIBE: an ACL, a stale slot map): run them degraded.
    a.deadline->expires_after(kSubscribeDeadline);
    a.deadline->async_wait([this, app](const boost::system::error_code& ec) {
      AppSubscription& late = subs_.at(app);
      if (ec || late.held.empty()) return;
      spdlog::warn("cluster: the channels of app {} are not confirmed subscribed after {} s; "
                   "answering its logins degraded",
                   app, std::chrono::seconds(kSubscribeDeadline).count());
      release_app(late);
    });
  }
  a.held.push_back(std::move(task));
}

void RedisCluster::check_apps() {
  for (auto& [app, a] : subs_) {
    if (a.wanted) check_app(app, a);
  }
}

void RedisCluster::check_app(AppId app, AppSubscription& a) {
  if (!a.wanted) return;
  const auto channels = app_channels(app);
  const bool heard = link_->subscribed(channels);
  {
    std::lock_guard lock(subs_mu_);
    a.ready = heard;
  }
  // Heard: the waiting logins are answered. Not subscribable (Redis
  // unreachable): they are answered degraded, as every login is then.
  if (heard || !link_->can_subscribe(channels)) release_app(a);
}

void RedisCluster::release_app(AppSubscription& a) {
  a.deadline->cancel();
  auto held = std::move(a.held);
  a.held.clear();
  for (auto& task : held) task();
}

void RedisCluster::refresh_loop() {
  refresh_timer_.expires_after(config_.node_ttl / 3);
  refresh_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    if (link_->reachable(nodes_key())) {
      register_node(!registered_, [this](bool ok, bool rejoined, const std::string&) {
        if (!ok) return;
        // Absent or expired on a live connection: we were (or are being)
        // reaped after a stall and the others announced our users' exit, so
        // announce them again.
        if (rejoined) {
          spdlog::warn("cluster: node {} had been reaped (stalled?); rejoining", node_id_);
          resync_rooms(true);
        }
        // How many nodes a resync waits for should Redis lose the nodes key.
        link_->command(nodes_key(), {"ZCOUNT", nodes_key(), std::to_string(now_ms()), "+inf"},
                       [this](bool ok2, const RedisReply& live) {
                         if (ok2 && !live.is_error()) live_seen_.store(live.integer);
                       });
        // And how many hear each room this node hears.
        sample_subscribers();
      });
    }
    refresh_loop();
  });
}

void RedisCluster::register_node(
    bool strict, std::function<void(bool ok, bool rejoined, std::string conflict)> done) {
  const std::string schema = "2:" + std::to_string(buckets_);
  link_->command(
      nodes_key(),
      eval(lua::k_register, {nodes_key(), schema_key()},
           {std::to_string(now_ms()), std::to_string(expiry_ms()), node_id_, schema,
            strict ? "1" : "0", sharded_ ? "1" : "0"}),
      [this, strict, schema, done = std::move(done)](bool ok, const RedisReply& r) {
        if (!ok || r.is_error() || r.elements.size() != 2) {
          if (r.is_error()) spdlog::error("cluster: register script: {}", r.str);
          return done(false, false, "");
        }
        std::string conflict;
        for (const auto& e : r.elements[1].elements) {
          const auto eq = e.str.find('=');
          const std::string theirs = e.str.substr(eq + 1);
          conflict += (conflict.empty() ? "" : ", ") + e.str.substr(0, eq) +
                      (theirs.empty() ? " (no schema entry: an imgate of the one-slot schema)"
                                      : " (schema " + theirs + ")");
        }
        if (!conflict.empty()) {
          conflict = "live node(s) of another key schema than this node's " + schema +
                     " (version:buckets): " + conflict +
                     "; messages between them would be lost. Stop every old node (or give the "
                     "new ones another --redis-prefix) and run one --redis-buckets everywhere "
                     "(docs/cluster.md, \"Upgrading from the one-slot schema\")";
        }
        on_schema_check(conflict);
        if (strict && !conflict.empty()) {
          spdlog::critical("cluster: refusing to run: {}", conflict);
          if (on_fatal) on_fatal(2);
          return done(false, false, conflict);
        }
        if (!conflict.empty()) spdlog::error("cluster: {}", conflict);
        registered_ = true;
        done(true, r.elements[0].integer == 1, conflict);
      });
}

void RedisCluster::on_schema_check(const std::string& conflict) {
  std::lock_guard lock(conflict_mutex_);
  conflict_ = conflict;
}

std::string RedisCluster::schema_conflict() const {
  std::lock_guard lock(conflict_mutex_);
  return conflict_;
}

void RedisCluster::reap_loop() {
  reap_timer_.expires_after(
      std::min<std::chrono::milliseconds>(config_.node_ttl / 4, std::chrono::seconds(2)));
  reap_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    if (link_->reachable(nodes_key())) {
      reap("", [](int64_t exits) {
        if (exits > 0) spdlog::info("cluster: reaped a dead node, {} users left", exits);
      });
    }
    reap_loop();
  });
}

// One Redis server: reap.lua, at most kReapBatch users a call, again while
// some are left; the node leaves the nodes key with its last user. Redis
// Cluster: the expired nodes from the nodes key's slot, then each bucket of
// each room in batches (reap_room.lua in the bucket's slot), then ZREM. In
// both, SPOP hands each user to one reaper and HDEL decides whether it was
// the user's last node, so concurrent reapers never double an exit.
void RedisCluster::reap(std::string node, std::function<void(int64_t)> done) {
  if (!sharded_) {
    const bool expired = node.empty();  // one reap of the expired nodes at a time
    if (expired && !reaping_.insert(node).second) return done(0);
    const std::string seq =
        expired ? node_id_ + "-" + std::to_string(++exit_seq_) : node_id_ + "-bye";
    return reap_single(std::move(node), seq, 0, 0,
                       [this, expired, done = std::move(done)](int64_t exits) {
                         if (expired) reaping_.erase("");
                         done(exits);
                       });
  }
  if (!node.empty()) return reap_buckets(node, std::move(done));
  link_->command(nodes_key(), {"ZRANGEBYSCORE", nodes_key(), "-inf", std::to_string(now_ms())},
                 [this, done](bool ok, const RedisReply& r) {
                   std::vector<std::string> dead;
                   if (ok && !r.is_error()) {
                     for (const auto& e : r.elements) {
                       if (!reaping_.contains(e.str)) dead.push_back(e.str);
                     }
                   }
                   if (dead.empty()) return done(0);
                   auto total = std::make_shared<int64_t>(0);
                   auto left = std::make_shared<std::size_t>(dead.size());
                   for (const auto& dead_node : dead) {
                     reap_buckets(dead_node, [total, left, done](int64_t exits) {
                       *total += exits;
                       if (--*left == 0) done(*total);
                     });
                   }
                 });
}

void RedisCluster::reap_single(std::string node, std::string seq, int batch, int64_t exits,
                               std::function<void(int64_t)> done) {
  link_->command(
      nodes_key(),
      eval(lua::k_reap, {nodes_key(), schema_key()},
           {std::to_string(now_ms()), prefix_, std::string(kExitText),
            seq + "-" + std::to_string(batch), node, max_room(0, 0), quiet_list(),
            std::to_string(kReapBatch)}),
      [this, node, seq, batch, exits, done = std::move(done)](bool ok, const RedisReply& r) mutable {
        if (!ok || r.is_error() || r.elements.size() != 2) {
          if (r.is_error()) spdlog::error("cluster: reap script: {}", r.str);
          return done(exits);
        }
        exits += r.elements[0].integer;
        if (r.elements[1].integer == 0) return done(exits);
        reap_single(std::move(node), std::move(seq), batch + 1, exits, std::move(done));
      });
}

void RedisCluster::reap_buckets(const std::string& node, std::function<void(int64_t)> done) {
  struct Pending {
    std::size_t left;
    int64_t exits = 0;
    bool failed = false;
  };
  reaping_.insert(node);
  auto pending = std::make_shared<Pending>(Pending{config_.app_ids.size() * buckets_});
  const std::string seq =
      node_id_ + (node == node_id_ ? "-bye" : "-" + std::to_string(++exit_seq_));
  for (AppId app : config_.app_ids) {
    for (uint32_t k = 0; k < buckets_; ++k) {
      reap_bucket(
          node, app, k, seq + "-" + std::to_string(app) + "-" + std::to_string(k), 0, 0,
          [this, node, pending, done](bool ok, int64_t exits) {
            pending->exits += exits;
            pending->failed = pending->failed || !ok;
            if (--pending->left != 0) return;
            reaping_.erase(node);
            // A bucket that failed (or a node that came back) keeps the node
            // registered, so that a later reaper finds it again and goes on.
            if (pending->failed) return done(pending->exits);
            link_->command(nodes_key(), {"HDEL", schema_key(), node});
            link_->command(nodes_key(), {"ZREM", nodes_key(), node},
                           [pending, done](bool, const RedisReply&) { done(pending->exits); });
          });
    }
  }
}

void RedisCluster::reap_bucket(const std::string& node, AppId app, uint32_t bucket,
                               std::string seq, int batch, int64_t exits,
                               std::function<void(bool, int64_t)> done) {
  link_->command(
      room_set(app, bucket),
      eval(lua::k_reap_room, {node_users(app, bucket, node), room_set(app, bucket)},
           {node, bucket_base(app, bucket), std::string(kExitText),
            seq + "-" + std::to_string(batch), max_room(app, bucket),
            announced_in(app) ? "0" : "1", room_channel(app, bucket), std::to_string(app),
            std::to_string(kReapBatch)}),
      [this, node, app, bucket, seq, batch, exits, done = std::move(done)](
          bool ok, const RedisReply& r) mutable {
        if (!ok || r.is_error() || r.elements.size() != 2) {
          if (r.is_error()) spdlog::error("cluster: reap script: {}", r.str);
          return done(false, exits);
        }
        exits += r.elements[0].integer;
        if (r.elements[1].integer == 0) return done(true, exits);
        auto next = [this, node, app, bucket, seq, batch, exits, done]() mutable {
          reap_bucket(node, app, bucket, std::move(seq), batch + 1, exits, std::move(done));
        };
        if (node == node_id_ || batch % kReapCheckEvery != kReapCheckEvery - 1) return next();
        // A node that registered again meanwhile (it had stalled) keeps the
        // rest: it publishes its users again itself. Asked every few batches.
        link_->command(nodes_key(), {"ZSCORE", nodes_key(), node},
                       [this, next, done, exits](bool ok2, const RedisReply& score) mutable {
                         if (!ok2 || score.is_error()) return done(false, exits);
                         if (score.type == RedisReply::Type::kString &&
                             std::strtoll(score.str.c_str(), nullptr, 10) > now_ms()) {
                           return done(false, exits);
                         }
                         next();
                       });
      });
}

std::string RedisCluster::max_room(AppId app, uint32_t bucket) const {
  const std::size_t max = hub_.presence_policy().max_room;
  if (max == 0 || buckets_ == 1) return std::to_string(max);
  int64_t others = 0;
  if (auto it = room_counts_.find(app); it != room_counts_.end()) {
    for (uint32_t k = 0; k < it->second.size(); ++k) {
      if (k != bucket) others += it->second[k];
    }
  }
  const int64_t budget = static_cast<int64_t>(max) - others;
  return budget <= 0 ? "-1" : std::to_string(budget);
}

void RedisCluster::count_loop() {
  count_timer_.expires_after(std::chrono::seconds(1));
  count_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    auto left = std::make_shared<std::size_t>(config_.app_ids.size());
    for (AppId app : config_.app_ids) {
      count_room(app, [this, left] {
        if (--*left == 0) room_count_rounds_.fetch_add(1, std::memory_order_relaxed);
      });
    }
    count_loop();
  });
}

// SCARD of every bucket of the room, in parallel; the sizes replace the
// previous ones when all answered.
void RedisCluster::count_room(AppId app, std::function<void()> done) {
  struct Pending {
    std::vector<int64_t> sizes;
    std::size_t left;
    bool ok = true;
  };
  auto pending = std::make_shared<Pending>(Pending{std::vector<int64_t>(buckets_), buckets_});
  for (uint32_t k = 0; k < buckets_; ++k) {
    const std::string set = room_set(app, k);
    link_->command(set, {"SCARD", set}, [this, app, k, pending, done](bool ok, const RedisReply& r) {
      pending->ok = pending->ok && ok && !r.is_error();
      pending->sizes[k] = r.integer;
      if (--pending->left != 0) return;
      if (pending->ok) room_counts_[app] = std::move(pending->sizes);
      done();
    });
  }
}

std::string RedisCluster::quiet_list() const {
  std::string list = ",";
  for (AppId app : hub_.presence_policy().quiet) list += std::to_string(app) + ",";
  return list;
}

int64_t RedisCluster::expiry_ms() const {
  return now_ms() + config_.node_ttl.count();
}

std::map<AppId, std::vector<std::string>> RedisCluster::make_bases(
    const std::vector<AppId>& apps) const {
  std::map<AppId, std::vector<std::string>> bases;
  for (AppId app : apps) {
    auto& of_app = bases[app];
    for (uint32_t k = 0; k < buckets_; ++k) {
      of_app.push_back(sharded_ ? "{" + bucket_tag(prefix_, app, k, buckets_) + "}:" : prefix_);
    }
  }
  return bases;
}

std::string RedisCluster::bucket_base(AppId app, uint32_t bucket) const {
  if (auto it = bases_.find(app); it != bases_.end()) return it->second[bucket];
  // An appID that is not configured (the HTTP API takes any): computed, not
  // kept, so that no request can grow the table.
  return sharded_ ? "{" + bucket_tag(prefix_, app, bucket, buckets_) + "}:" : prefix_;
}

std::vector<std::string> RedisCluster::app_channels(AppId app) const {
  if (!sharded_) return {room_channel(app, 0)};
  std::vector<std::string> channels;
  for (uint32_t k = 0; k < buckets_; ++k) {
    channels.push_back(room_channel(app, k));
    channels.push_back(node_channel_prefix(app, k) + node_id_);
  }
  return channels;
}

std::string RedisCluster::member(const UserKey& key) const {
  return sharded_ ? key.user : std::to_string(key.app) + ":" + key.user;
}

std::string RedisCluster::user_hash(const UserKey& key) const {
  return sharded_ ? bucket_base(key.app, bucket_of(key.user)) + "user:" + key.user
                  : prefix_ + "user:" + std::to_string(key.app) + ":" + key.user;
}

std::string RedisCluster::room_set(AppId app, uint32_t bucket) const {
  return sharded_ ? bucket_base(app, bucket) + "room" : prefix_ + "room:" + std::to_string(app);
}

std::string RedisCluster::node_users(AppId app, uint32_t bucket, const std::string& node) const {
  return bucket_base(app, bucket) + "node:" + node + ":users";
}

std::string RedisCluster::room_channel(AppId app, uint32_t bucket) const {
  return sharded_ ? bucket_base(app, bucket) + "ch:room"
                  : prefix_ + "ch:room:" + std::to_string(app);
}

std::string RedisCluster::node_channel_prefix(AppId app, uint32_t bucket) const {
  return bucket_base(app, bucket) + "ch:node:";
}

std::string RedisCluster::payload(const PushMessage& msg, AppId app,
                                  std::string_view except_or_user, bool room,
                                  bool skip_self) const {
  json::object o{
      {"cmd", msg.cmd}, {"seq", msg.seq}, {"msg", msg.msg}, {"from", msg.from}, {"app", app}};
  o[room ? "except" : "user"] = except_or_user;
  if (skip_self) o["skip"] = node_id_;
  return json::serialize(o);
}

void RedisCluster::user_online(const UserKey& key) {
  if (auto it = subs_.find(key.app); it != subs_.end()) {
    std::lock_guard lock(subs_mu_);
    ++it->second.users;
  }
  post([this, key] {
    unannounced_.insert(key);  // until login.lua has run
    ++logins_pending_[key].scripts;
    want_app(key.app);
    // login.lua makes Redis route the user's pushes here: not before the
    // node hears them.
    when_heard(key.app, [this, key] { presence_script(key, true, true); });
  });
}

void RedisCluster::user_offline(const UserKey& key, const std::optional<StreamPos>& delivered) {
  if (auto it = subs_.find(key.app); it != subs_.end()) {
    std::lock_guard lock(subs_mu_);
    --it->second.users;
  }
  post([this, key, delivered] {
    unannounced_.erase(key);
    // After the user's login.lua, should that still be held.
    when_heard(key.app, [this, key, delivered] { presence_script(key, false, true, delivered); });
    linger_app(key.app);
  });
}

bool RedisCluster::announced_in(AppId app) const {
  const auto& quiet = hub_.presence_policy().quiet;
  return std::find(quiet.begin(), quiet.end(), app) == quiet.end();
}

void RedisCluster::presence_script(const UserKey& key, bool online, bool announce,
                                   const std::optional<StreamPos>& delivered) {
  const std::string cmd = online ? "enter" : "exit";
  PushMessage msg{cmd, std::to_string(hub_.next_push_seq()),
                  std::string(online ? kEnterText : kExitText), key.user};
  const bool quiet = !announced_in(key.app);
  if (quiet && announce) Counters::bump(hub_.counters().presence_suppressed);
  announce = announce && !quiet;
  auto local_fallback = [this, key, msg, announce] {
    if (!announce) return;
    hub_.push_room(key.app, key.user, make_push(msg.seq, msg.cmd, msg.msg, msg.from));
  };
  const std::string hash = user_hash(key);
  if (!link_->reachable(hash)) {
    local_fallback();
    if (online) login_ran(key);  // answered degraded
    return;
  }
  const uint32_t bucket = bucket_of(key.user);
  std::vector<std::string> keys{hash, room_set(key.app, bucket),
                                node_users(key.app, bucket, node_id_)};
  std::vector<std::string> args{node_id_,
                                member(key),
                                key.user,
                                room_channel(key.app, bucket),
                                payload(msg, key.app, key.user, true),
                                announce ? "1" : "0",
                                max_room(key.app, bucket),
                                publish_verb()};
  if (!online && config_.history_size > 0) {
    // The offline start goes with the last-out decision, in one script: a
    // login elsewhere can never come between them.
    keys.push_back(stream_key(key, "meta"));
    args.push_back(delivered ? delivered->epoch : std::string());
    args.push_back(std::to_string(delivered ? delivered->offset : 0));
  }
  link_->command(hash,
                 eval(online ? lua::k_login : lua::k_logout, std::move(keys), std::move(args)),
                 [this, key, online, local_fallback](bool ok, const RedisReply& r) {
                   const bool done = ok && !r.is_error();
                   // A login that did not reach Redis is announced by the resync.
                   if (online && done) unannounced_.erase(key);
                   if (online && !done && hub_.directory().online(key.app, key.user)) {
                     unannounced_.insert(key);
                   }
                   if (!done) {
                     if (r.is_error()) spdlog::error("cluster: presence script: {}", r.str);
                     local_fallback();
                   }
                   if (online) login_ran(key);
                 });
}

void RedisCluster::on_message(const RedisReply& reply) {
  // ["message" or "smessage", channel, payload]; subscribe confirmations are ignored.
  if (reply.type != RedisReply::Type::kArray || reply.elements.size() != 3 ||
      (reply.elements[0].str != "message" && reply.elements[0].str != "smessage")) {
    return;
  }
  json::error_code ec;
  json::value v = json::parse(reply.elements[2].str, ec);
  if (ec || !v.is_object()) {
    spdlog::warn("cluster: malformed message on {}", reply.elements[1].str);
    return;
  }
  const json::object& o = v.get_object();
  auto text = [&](std::string_view name) -> std::string {
    const json::value* f = o.if_contains(name);
    return f && f->is_string() ? std::string(f->get_string()) : std::string();
  };
  const json::value* app_field = o.if_contains("app");
  AppId app = app_field && app_field->is_number() ? app_field->to_number<AppId>() : 0;
  if (text("skip") == node_id_) return;  // this node already told its own clients
  if (const json::value* exits = o.if_contains("exits"); exits != nullptr && exits->is_array()) {
    // reap_room.lua: the exits of one reap call, "<seq>-<n>" each.
    std::size_t n = 0;
    for (const json::value& user : exits->get_array()) {
      if (!user.is_string()) continue;
      const std::string from(user.get_string());
      ++n;
      if (hub_.directory().online(app, from)) continue;  // as below: reaped during a stall
      hub_.push_room(app, from,
                     make_push(text("seq") + "-" + std::to_string(n), "exit", text("msg"), from));
    }
    return;
  }
  // An exit about a user still connected here (we were reaped during a
  // stall) is wrong for our clients: the user did not leave.
  if (text("cmd") == "exit" && hub_.directory().online(app, text("from"))) return;
  const bool room = o.contains("except");
  // History on: the script that stored the push added its stream position.
  uint64_t offset = 0;
  if (const json::value* off = o.if_contains("offset"); off && off->is_number()) {
    offset = off->to_number<uint64_t>();
  }
  const std::string epoch = text("epoch");
  const StreamMark mark{room ? "room" : "user", epoch, offset};
  Frame frame =
      make_push(text("seq"), text("cmd"), text("msg"), text("from"), offset != 0 ? &mark : nullptr);
  if (room) {
    hub_.push_room(app, text("except"), frame, offset);
  } else {
    hub_.push_user(UserKey{app, text("user")}, frame, offset, epoch);
  }
}

std::string RedisCluster::stream_key(const UserKey& stream, std::string_view part) const {
  if (sharded_) {
    // A user's stream in the user's bucket, the room's in bucket 0.
    return bucket_base(stream.app, stream.user.empty() ? 0 : bucket_of(stream.user)) + "hist:" +
           (stream.user.empty() ? std::string("room") : "user:" + stream.user) + ":" +
           std::string(part);
  }
  const std::string id =
      stream.user.empty() ? "room:" + std::to_string(stream.app) : "user:" + member(stream);
  return prefix_ + "hist:" + id + ":" + std::string(part);
}

void RedisCluster::send_stored(UserKey stream, std::string except, PushMessage msg,
                               std::function<void(Sent, StreamPos, int64_t)> done) {
  dispatch([this, stream = std::move(stream), except = std::move(except), msg = std::move(msg),
            done = std::move(done)] {
    const bool room = stream.user.empty();
    const std::string entry = json::serialize(
        json::object{{"s", msg.seq}, {"m", msg.msg}, {"f", msg.from}, {"x", except}});
    const std::string meta = stream_key(stream, "meta");
    // KEYS[3] is read for user streams only; for a room any key of its slot.
    // The server's incarnation goes last (ARGV[9]): a new epoch if it changed.
    link_->command_stamped(
        meta,
        evalsha(kHistoryAppendScript,
             {meta, stream_key(stream, "log"),
              room ? (sharded_ ? room_set(stream.app, 0) : prefix_ + "user:-") : user_hash(stream)},
             {random_node_id(), std::to_string(config_.history_size),
              std::to_string(config_.history_ttl.count()), entry,
              payload(msg, stream.app, room ? except : stream.user, room), room ? "room" : "user",
              room ? room_channel(stream.app, 0)
                   : node_channel_prefix(stream.app, bucket_of(stream.user)),
              publish_verb()}),
        [done](bool ok, const RedisReply& r) {
          if (!ok || r.is_error() || r.elements.size() != 3) {
            if (r.is_error()) spdlog::error("cluster: history script: {}", r.str);
            return done(outcome(ok, r), {}, 0);
          }
          done(Sent::kDone,
               StreamPos{r.elements[0].str, static_cast<uint64_t>(r.elements[1].integer)},
               r.elements[2].integer);
        });
  });
}

void RedisCluster::read_stored(UserKey stream, int64_t after, bool offline,
                               std::function<void(bool, StoredStream)> done) {
  post([this, stream = std::move(stream), after, offline, done = std::move(done)] {
    const std::string meta_key = stream_key(stream, "meta");
    // ARGV[3] the epoch the stream takes if the server's incarnation
    // (appended by command_stamped: ARGV[5]) is not the one that last wrote
    // it; ARGV[4] this node, for an offline read (KEYS[3] the user hash).
    std::vector<std::string> keys{meta_key, stream_key(stream, "log")};
    std::vector<std::string> args{std::to_string(after),
                                  std::to_string(config_.history_ttl.count()),
                                  random_node_id(), node_id_};
    if (offline && !stream.user.empty()) keys.push_back(user_hash(stream));
    link_->command_stamped(
        meta_key, eval(lua::k_history_read, std::move(keys), std::move(args)),
        [done](bool ok, const RedisReply& r) {
          if (!ok || r.is_error() || r.elements.size() != 3 || r.elements[0].elements.size() != 3) {
            return done(false, {});
          }
          StoredStream out;
          const auto& meta = r.elements[0].elements;
          auto number = [](const RedisReply& v) -> std::optional<uint64_t> {
            if (v.type != RedisReply::Type::kString) return std::nullopt;
            return std::strtoull(v.str.c_str(), nullptr, 10);
          };
          if (meta[0].type == RedisReply::Type::kString) out.top.epoch = meta[0].str;
          out.top.offset = number(meta[1]).value_or(0);
          out.left = number(meta[2]);
          out.first = static_cast<uint64_t>(std::max<int64_t>(r.elements[2].integer, 1));
          for (const auto& e : r.elements[1].elements) out.entries.push_back(e.str);
          done(true, std::move(out));
        });
  });
}

void RedisCluster::list_users(AppId app, std::function<void(bool, std::vector<std::string>)> done) {
  post([this, app, done = std::move(done)] {
    // Every bucket's set in parallel (a user is in one bucket: no duplicates).
    struct Pending {
      std::size_t left;
      bool ok = true;
      std::vector<std::string> users;
    };
    auto pending = std::make_shared<Pending>(Pending{buckets_});
    for (uint32_t k = 0; k < buckets_; ++k) {
      const std::string set = room_set(app, k);
      link_->command(set, {"SMEMBERS", set}, [pending, done](bool ok, const RedisReply& r) {
        pending->ok = pending->ok && ok && !r.is_error();
        for (const auto& e : r.elements) pending->users.push_back(e.str);
        if (--pending->left == 0) done(pending->ok, std::move(pending->users));
      });
    }
  });
}

void RedisCluster::online(AppId app, std::string user, std::function<void(bool, bool)> done) {
  post([this, app, user = std::move(user), done = std::move(done)] {
    auto reply = [done](bool ok, const RedisReply& r) {
      done(ok && !r.is_error(), r.integer == 1);
    };
    if (app != 0) {
      const std::string hash = user_hash(UserKey{app, user});
      link_->command(hash, {"EXISTS", hash}, reply);
      return;
    }
    if (sharded_) {
      // One EXISTS per app (each room is its own slot), answered when all are in.
      struct Pending {
        std::size_t left;
        bool ok = true;
        bool online = false;
      };
      auto pending = std::make_shared<Pending>(Pending{config_.app_ids.size()});
      for (AppId a : config_.app_ids) {
        const std::string hash = user_hash(UserKey{a, user});
        link_->command(hash, {"EXISTS", hash}, [pending, done](bool ok, const RedisReply& r) {
          pending->ok = pending->ok && ok && !r.is_error();
          pending->online = pending->online || r.integer == 1;
          if (--pending->left == 0) done(pending->ok || pending->online, pending->online);
        });
      }
      return;
    }
    std::vector<std::string> args{prefix_, user};
    for (AppId a : config_.app_ids) args.push_back(std::to_string(a));
    link_->command("", eval(lua::k_online_any, {}, std::move(args)), reply);
  });
}

std::string RedisCluster::msg_id_key(AppId app, uint32_t bucket, std::string_view id) const {
  return (sharded_ ? bucket_base(app, bucket) : prefix_) + "msgid:" + std::string(id);
}

void RedisCluster::first_msg_id(AppId app, std::string_view user, std::string id,
                                std::function<void(bool, bool)> done) {
  const uint32_t bucket = user.empty() ? 0 : bucket_of(user);
  dispatch([this, app, bucket, id = std::move(id), done = std::move(done)] {
    const std::string key = msg_id_key(app, bucket, id);
    link_->command(key, {"SET", key, "1", "NX", "PX", std::to_string(config_.msg_id_ttl.count())},
                   [done](bool ok, const RedisReply& r) {
                     done(ok && !r.is_error(), r.type == RedisReply::Type::kStatus);
                   });
  });
}

void RedisCluster::send_user(UserKey key, PushMessage msg, std::string msg_id,
                             std::function<void(Sent, bool)> done) {
  dispatch([this, key = std::move(key), msg = std::move(msg), msg_id = std::move(msg_id),
            done = std::move(done)] {
    const std::string hash = user_hash(key);
    std::vector<std::string> keys{hash};
    std::vector<std::string> args{node_channel_prefix(key.app, bucket_of(key.user)),
                                  payload(msg, key.app, key.user, false), publish_verb()};
    if (!msg_id.empty()) {
      keys.push_back(msg_id_key(key.app, bucket_of(key.user), msg_id));
      args.push_back(std::to_string(config_.msg_id_ttl.count()));
    }
    link_->command(hash, evalsha(kUnicastScript, std::move(keys), std::move(args)),
                   [done](bool ok, const RedisReply& r) {
                     if (!ok || r.is_error()) return done(outcome(ok, r), false);
                     done(r.integer < 0 ? Sent::kDuplicate : Sent::kDone, r.integer > 0);
                   });
  });
}

void RedisCluster::send_room(AppId app, std::string except, PushMessage msg, std::string msg_id,
                             std::function<void(Sent)> done) {
  dispatch([this, app, except = std::move(except), msg = std::move(msg),
            msg_id = std::move(msg_id), done = std::move(done)] {
    const std::string channel = room_channel(app, 0);
    auto reply = [done](bool ok, const RedisReply& r) {
      if (!ok || r.is_error()) return done(outcome(ok, r));
      done(r.integer < 0 ? Sent::kDuplicate : Sent::kDone);
    };
    if (msg_id.empty()) {
      link_->command(channel, {publish_verb(), channel, payload(msg, app, except, true)}, reply);
      return;
    }
    const std::string key = msg_id_key(app, 0, msg_id);
    link_->command(key,
                   evalsha(kPublishOnceScript, {key},
                           {std::to_string(config_.msg_id_ttl.count()), channel,
                            payload(msg, app, except, true), publish_verb()}),
                   reply);
  });
}

}  // namespace imgate
