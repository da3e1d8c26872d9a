// RedisCluster's resync (docs/cluster.md, "Redis loss"): what a node does
// after a Redis server or Redis Cluster master became ready (first connect,
// reconnect, failover) or after it found itself reaped. The steps, in order:
//   register     ZADD the node in the nodes key (the nodes key's shard)
//   publish      login.lua, without `enter`, for the node's users Redis knew
//                of (all of them, with `enter`, when the node had been reaped)
//   subscribers  wait (at most node_ttl) until this node hears the rooms it
//                holds users of, and each room channel has as many
//                subscribers as nodes hold users of the room (or heard it at
//                the last heartbeat): pub/sub keeps nothing
//   announce     login.lua for the users who logged in while Redis was
//                unreachable: `enter` for those new cluster-wide
//   reconcile    sync.lua / sync_room.lua: users who left meanwhile go, `exit`
// A step that fails (a command that could not run, or an error reply) is
// retried after a back-off until it succeeds; the steps are idempotent.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "cluster/lua_scripts.hpp"
#include "cluster/redis_cluster.hpp"
#include "cluster/redis_commands.hpp"
#include "protocol/envelope.hpp"

namespace imgate {

namespace asio = boost::asio;
using redis_commands::eval;
using redis_commands::now_ms;

namespace {

constexpr auto kFirstBackoff = std::chrono::milliseconds(100);
constexpr auto kMaxBackoff = std::chrono::milliseconds(2000);
constexpr auto kSubscriberPoll = std::chrono::milliseconds(200);
// Members of a room whose user hashes room_nodes.lua reads per poll, at most:
// a bounded script; a random sample of a big room finds its nodes.
constexpr int kRoomSample = 1000;

enum class ResyncStep { kRegister, kPublish, kSubscribers, kAnnounce, kReconcile, kDone };

const char* step_name(ResyncStep step) {
  switch (step) {
    case ResyncStep::kRegister:
      return "register";
    case ResyncStep::kPublish:
      return "publish";
    case ResyncStep::kSubscribers:
      return "wait for subscribers";
    case ResyncStep::kAnnounce:
      return "announce";
    case ResyncStep::kReconcile:
      return "reconcile";
    case ResyncStep::kDone:
      break;
  }
  return "done";
}

// Why a command did not succeed, for the log.
std::string failure(bool ok, const RedisReply& reply) {
  return ok ? "error reply: " + reply.str : "no answer (Redis unreachable or connection lost)";
}

bool covers(const std::vector<AppId>& apps, AppId app) {
  return std::find(apps.begin(), apps.end(), app) != apps.end();
}

}  // namespace

struct RedisCluster::Resync {
  explicit Resync(asio::io_context& loop) : timer(loop) {}
  int64_t scope = 0;
  std::vector<AppId> apps;    // the rooms it covers; none for kResyncRegister
  int64_t bucket = -1;        // Redis Cluster: the bucket of apps.front(); -1: every bucket
  bool announce_all = false;  // the node had been reaped: `enter` for every user
  ResyncStep step = ResyncStep::kRegister;
  TimePoint subscribers_deadline{};
  std::chrono::milliseconds backoff = kFirstBackoff;
  asio::steady_timer timer;  // back-off or subscriber poll
};

// A Redis server, or a Redis Cluster master, is (again) reachable: state kept
// for the routes it owns may be missing. On a Redis Cluster the nodes key and
// each bucket of each room may live on different masters, so each is
// resynced on its own.
void RedisCluster::on_link_ready(const RedisLink::Owns& owns) {
  if (!sharded_) return start_resync(kResyncAll, config_.app_ids, -1, true, false);
  if (owns(nodes_key())) start_resync(kResyncRegister, {}, -1, true, false);
  for (AppId app : config_.app_ids) {
    for (uint32_t k = 0; k < buckets_; ++k) {
      if (owns(room_set(app, k))) start_resync(bucket_scope(app, k), {app}, k, false, false);
    }
  }
}

void RedisCluster::resync_rooms(bool announce_all) {
  if (!sharded_) return start_resync(kResyncAll, config_.app_ids, -1, false, announce_all);
  for (AppId app : config_.app_ids) {
    for (uint32_t k = 0; k < buckets_; ++k) {
      start_resync(bucket_scope(app, k), {app}, k, false, announce_all);
    }
  }
}

void RedisCluster::start_resync(int64_t scope, std::vector<AppId> apps, int64_t bucket,
                                bool register_first, bool announce_all) {
  if (stopping_) return;
  if (auto it = resyncs_.find(scope); it != resyncs_.end()) {
    // Superseded before it finished: the new one also does what it still had to.
    register_first = register_first || it->second->step == ResyncStep::kRegister;
    announce_all = announce_all || it->second->announce_all;
    it->second->timer.cancel();
  }
  auto r = std::make_shared<Resync>(loop_);
  r->scope = scope;
  r->apps = std::move(apps);
  r->bucket = bucket;
  r->announce_all = announce_all;
  r->step = register_first ? ResyncStep::kRegister : ResyncStep::kPublish;
  resyncs_[scope] = r;
  resyncs_pending_.store(resyncs_.size());
  run_resync(r);
}

bool RedisCluster::resync_current(const std::shared_ptr<Resync>& r) const {
  auto it = resyncs_.find(r->scope);
  return it != resyncs_.end() && it->second == r;
}

void RedisCluster::cancel_resyncs() {
  stopping_ = true;
  for (auto& [scope, r] : resyncs_) r->timer.cancel();
  resyncs_.clear();
  resyncs_pending_.store(0);
}

void RedisCluster::run_resync(const std::shared_ptr<Resync>& r) {
  auto in_bucket = [this](int64_t bucket, const UserKey& key) {
    return bucket < 0 || bucket_of(key.user) == static_cast<uint32_t>(bucket);
  };
  switch (r->step) {
    case ResyncStep::kRegister:
      return resync_register(r);
    case ResyncStep::kPublish: {
      std::vector<UserKey> users;
      for (auto& key : hub_.directory().users()) {
        if (!covers(r->apps, key.app) || !in_bucket(r->bucket, key)) continue;
        if (!r->announce_all && unannounced_.contains(key)) continue;  // the announce step's
        users.push_back(std::move(key));
      }
      return resync_publish(r, std::move(users), r->announce_all);
    }
    case ResyncStep::kSubscribers:
      return resync_wait_subscribers(r);
    case ResyncStep::kAnnounce: {
      std::vector<UserKey> users;
      for (auto it = unannounced_.begin(); it != unannounced_.end();) {
        if (!hub_.directory().online(it->app, it->user)) {
          it = unannounced_.erase(it);  // gone again: nothing to announce
          continue;
        }
        if (covers(r->apps, it->app) && in_bucket(r->bucket, *it)) users.push_back(*it);
        ++it;
      }
      return resync_publish(r, std::move(users), true);
    }
    case ResyncStep::kReconcile:
      return resync_reconcile(r);
    case ResyncStep::kDone:
      return;
  }
}

void RedisCluster::resync_advance(const std::shared_ptr<Resync>& r) {
  r->backoff = kFirstBackoff;
  r->step = static_cast<ResyncStep>(static_cast<int>(r->step) + 1);
  if (r->step == ResyncStep::kSubscribers)
    r->subscribers_deadline = Clock::now() + config_.node_ttl;
  if (r->step == ResyncStep::kDone) {
    resyncs_.erase(r->scope);
    resyncs_pending_.store(resyncs_.size());
    return;
  }
  run_resync(r);
}

void RedisCluster::resync_retry(const std::shared_ptr<Resync>& r, std::string reason) {
  const std::string scope = r->scope == kResyncAll        ? std::string("node")
                            : r->scope == kResyncRegister ? std::string("registration")
                                                          : "room " + std::to_string(r->apps.front());
  spdlog::warn("cluster: resync of the {} failed at step {}: {}; retrying in {} ms{}", scope,
               step_name(r->step), reason, r->backoff.count(),
               r->bucket < 0 ? std::string() : " (bucket " + std::to_string(r->bucket) + ")");
  r->timer.expires_after(r->backoff);
  r->backoff = std::min<std::chrono::milliseconds>(r->backoff * 2, kMaxBackoff);
  r->timer.async_wait([this, r](const boost::system::error_code& ec) {
    if (!ec && resync_current(r)) run_resync(r);
  });
}

void RedisCluster::resync_register(const std::shared_ptr<Resync>& r) {
  const bool strict = !registered_;
  register_node(strict, [this, r, strict](bool ok, bool rejoined, const std::string& conflict) {
    if (!resync_current(r)) return;
    if (strict && !conflict.empty()) return;  // refused: the node stops
    if (!ok) return resync_retry(r, "register script failed");
    if (r->scope != kResyncRegister) return resync_advance(r);
    resyncs_.erase(r->scope);
    resyncs_pending_.store(resyncs_.size());
    // A Redis Cluster master that lost our registration (a failover before
    // it was replicated) may have had us reaped.
    if (rejoined) resync_rooms(true);
  });
}

// login.lua for `users`, all of them before the step counts as done.
void RedisCluster::resync_publish(const std::shared_ptr<Resync>& r, std::vector<UserKey> users,
                                  bool announce) {
  if (users.empty()) {
    if (r->step == ResyncStep::kPublish) {
      spdlog::info("cluster: node {} registered, 0 users published", node_id_);
    }
    return resync_advance(r);
  }
  struct Pending {
    std::size_t left;
    std::size_t failed = 0;
    std::size_t first = 0;  // new cluster-wide
  };
  auto pending = std::make_shared<Pending>(Pending{users.size()});
  const std::size_t total = users.size();
  for (const auto& key : users) {
    register_user(key, announce, [this, r, pending, total, key, announce](bool ok, bool first) {
      if (ok && announce) unannounced_.erase(key);
      if (!ok) ++pending->failed;
      if (first) ++pending->first;
      if (--pending->left != 0 || !resync_current(r)) return;
      if (pending->failed != 0) {
        return resync_retry(r, std::to_string(pending->failed) + " of " + std::to_string(total) +
                                   " login scripts failed");
      }
      if (r->step == ResyncStep::kPublish) {
        spdlog::info("cluster: node {} registered, {} users published", node_id_, total);
      } else {
        spdlog::info("cluster: {} users who logged in meanwhile published, {} new in the cluster",
                     total, pending->first);
      }
      resync_advance(r);
    });
  }
}

// The exits of stale users go out on the room channels, and pub/sub keeps
// nothing: after a Redis restart the nodes resubscribe at different moments,
// so wait (at most node_ttl) until the nodes that hear each room hear it
// again. Nodes subscribe to a room only while they hold users of it
// (subscriptions on demand), so the count to reach is not the live nodes but
// the larger of the nodes holding users of the room in Redis (room_nodes.lua,
// from a sample of its members) and the room channel's subscribers at this
// node's last heartbeat (subs_seen_, for a Redis that came back without the
// data), capped at the live nodes (registered now, or at the last
// heartbeat); and this node itself first hears the rooms it holds users of.
void RedisCluster::resync_wait_subscribers(const std::shared_ptr<Resync>& r) {
  link_->command(
      nodes_key(), {"ZCOUNT", nodes_key(), std::to_string(now_ms()), "+inf"},
      [this, r](bool ok, const RedisReply& nodes) {
        if (!resync_current(r)) return;
        if (!ok || nodes.is_error()) return resync_retry(r, "ZCOUNT: " + failure(ok, nodes));
        const int64_t live = std::max<int64_t>(nodes.integer, live_seen_.load());
        for (AppId app : r->apps) {
          AppSubscription& a = subs_.at(app);
          bool unheard = false;
          {
            // Not held across resync_poll: it may take the Directory's
            // mutex, which a login holds while it takes subs_mu_.
            std::lock_guard lock(subs_mu_);
            unheard = a.users != 0 && !a.ready;
          }
          if (unheard) return resync_poll(r);  // this node first
        }
        if (r->apps.empty()) return resync_advance(r);
        // One Redis: every room (one bucket); a Redis Cluster: the scope's bucket of its room.
        const uint32_t bucket = r->bucket < 0 ? 0 : static_cast<uint32_t>(r->bucket);
        std::vector<std::string> keys, args{std::to_string(live), std::to_string(kRoomSample)};
        for (AppId app : r->apps) {
          keys.push_back(room_set(app, bucket));
          args.push_back(sharded_ ? bucket_base(app, bucket) + "user:"
                                  : prefix_ + "user:" + std::to_string(app) + ":");  // + userID
        }
        const std::string route = keys.front();  // before the move below
        link_->command(
            route, eval(lua::k_room_nodes, std::move(keys), std::move(args)),
            [this, r, live, bucket](bool ok2, const RedisReply& held) {
              if (!resync_current(r)) return;
              if (!ok2 || held.is_error()) {
                return resync_retry(r, "room_nodes.lua: " + failure(ok2, held));
              }
              std::vector<std::string> channels;
              std::vector<int64_t> want;
              for (std::size_t i = 0; i < r->apps.size(); ++i) {
                const AppId app = r->apps[i];
                int64_t n = i < held.elements.size() ? held.elements[i].integer : 0;
                if (auto seen = subs_seen_.find(app); seen != subs_seen_.end() && seen->second > 0) {
                  n = std::max(n, seen->second);
                } else if (std::lock_guard lock(subs_mu_); subs_.at(app).users != 0) {
                  // Not sampled yet (Redis went within a heartbeat of this
                  // node's first user of the room, maybe empty: the others
                  // have not published again): every live node, as before
                  // subscriptions on demand; the wait may run to its bound.
                  n = live;
                }
                n = std::min(n, live);
                if (n <= 0) continue;
                channels.push_back(room_channel(app, bucket));
                want.push_back(n);
              }
              if (channels.empty()) return resync_advance(r);
              // One Redis: one NUMSUB for the scope's rooms; a Redis Cluster: one room per scope.
              std::vector<std::string> numsub{"PUBSUB", sharded_ ? "SHARDNUMSUB" : "NUMSUB"};
              numsub.insert(numsub.end(), channels.begin(), channels.end());
              link_->command(channels.front(), std::move(numsub),
                             [this, r, want](bool ok3, const RedisReply& subs) {
                               if (!resync_current(r)) return;
                               if (!ok3 || subs.is_error()) {
                                 return resync_retry(r, "PUBSUB: " + failure(ok3, subs));
                               }
                               for (std::size_t i = 0; i < want.size(); ++i) {
                                 const std::size_t k = 2 * i + 1;
                                 const int64_t n =
                                     k < subs.elements.size() ? subs.elements[k].integer : 0;
                                 if (n < want[i]) return resync_poll(r);
                               }
                               resync_advance(r);
                             });
            });
      });
}

void RedisCluster::resync_poll(const std::shared_ptr<Resync>& r) {
  if (Clock::now() >= r->subscribers_deadline) return resync_advance(r);
  r->timer.expires_after(kSubscriberPoll);
  r->timer.async_wait([this, r](const boost::system::error_code& ec) {
    if (!ec && resync_current(r)) run_resync(r);
  });
}

// At each heartbeat: how many subscribers the room channels of the apps this
// node hears have (this node included), for a later resync's wait.
void RedisCluster::sample_subscribers() {
  std::vector<AppId> apps;
  for (const auto& [app, a] : subs_) {
    if (a.wanted) apps.push_back(app);
  }
  auto store = [this](std::vector<AppId> of) {
    return [this, of = std::move(of)](bool ok, const RedisReply& subs) {
      if (!ok || subs.is_error()) return;
      for (std::size_t i = 0; i < of.size() && 2 * i + 1 < subs.elements.size(); ++i) {
        subs_seen_[of[i]] = subs.elements[2 * i + 1].integer;
      }
    };
  };
  if (apps.empty()) return;
  if (!sharded_) {
    std::vector<std::string> numsub{"PUBSUB", "NUMSUB"};
    for (AppId app : apps) numsub.push_back(room_channel(app, 0));
    link_->command("", std::move(numsub), store(apps));
    return;
  }
  for (AppId app : apps) {
    // Bucket 0's room channel: every bucket of an app is heard together.
    const std::string channel = room_channel(app, 0);
    if (!link_->reachable(channel)) continue;
    link_->command(channel, {"PUBSUB", "SHARDNUMSUB", channel}, store({app}));
  }
}

// One Redis server: sync.lua over every room; Redis Cluster: sync_room.lua
// for the scope's room (one per scope).
void RedisCluster::resync_reconcile(const std::shared_ptr<Resync>& r) {
  auto report = [this, r](bool ok, const RedisReply& reply) {
    if (!resync_current(r)) return;
    if (!ok || reply.is_error()) return resync_retry(r, "sync script: " + failure(ok, reply));
    if (reply.integer > 0) {
      spdlog::info("cluster: {} users who left meanwhile removed", reply.integer);
    }
    resync_advance(r);
  };
  const auto users = hub_.directory().users();
  if (!sharded_) {
    std::vector<std::string> args{node_id_,
                                  prefix_,
                                  std::string(kExitText),
                                  node_id_ + "-sync" + std::to_string(++exit_seq_),
                                  max_room(0, 0),
                                  quiet_list()};
    for (const auto& key : users) args.push_back(member(key));
    link_->command(node_users(0, 0, node_id_),
                   eval(lua::k_sync, {node_users(0, 0, node_id_)}, std::move(args)), report);
    return;
  }
  const AppId app = r->apps.front();
  const auto bucket = static_cast<uint32_t>(r->bucket);
  std::vector<std::string> args{node_id_,
                                bucket_base(app, bucket),
                                std::string(kExitText),
                                node_id_ + "-sync" + std::to_string(++exit_seq_),
                                max_room(app, bucket),
                                quiet_list(),
                                room_channel(app, bucket),
                                std::to_string(app)};
  for (const auto& key : users) {
    if (key.app == app && bucket_of(key.user) == bucket) args.push_back(key.user);
  }
  link_->command(room_set(app, bucket),
                 eval(lua::k_sync_room,
                      {node_users(app, bucket, node_id_), room_set(app, bucket)}, std::move(args)),
                 report);
}

void RedisCluster::register_user(const UserKey& key, bool announce,
                                 std::function<void(bool ok, bool first)> done) {
  const PushMessage msg{"enter", std::to_string(hub_.next_push_seq()), std::string(kEnterText),
                        key.user};
  const std::string hash = user_hash(key);
  const uint32_t bucket = bucket_of(key.user);
  link_->command(hash,
                 eval(lua::k_login,
                      {hash, room_set(key.app, bucket), node_users(key.app, bucket, node_id_)},
                      {node_id_, member(key), key.user, room_channel(key.app, bucket),
                       payload(msg, key.app, key.user, true, true),
                       announce && announced_in(key.app) ? "1" : "0", max_room(key.app, bucket),
                       publish_verb()}),
                 [done = std::move(done)](bool ok, const RedisReply& r) {
                   if (ok && r.is_error()) spdlog::error("cluster: presence script: {}", r.str);
                   done(ok && !r.is_error(), ok && r.integer == 1);
                 });
}

}  // namespace imgate
