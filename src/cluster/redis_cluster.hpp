// RedisCluster: many imgate nodes acting as one gateway through Redis
// (docs/cluster.md has the key / channel schema and the message flows).
//
// Threading: all Redis work runs on the cluster's own event loop and thread
// (with one WebSocket loop, on that loop: the constructor's shared_loop);
// WebSocket loops only post to it (PresenceSink calls) and HTTP handlers get
// their answers as callbacks on it. Nothing here ever blocks a WebSocket loop.
//
// Degraded mode: while Redis is unreachable every cluster-wide call fails fast
// (callbacks with ok == false) and presence changes fall back to local pushes;
// on reconnect the node resyncs (redis_resync.cpp): it re-registers,
// re-publishes its presence, announces the users who came meanwhile and
// removes those who left, retrying until every step succeeded.
//
// Subscriptions on demand (docs/cluster.md, "Subscriptions on demand"): the
// node hears an app's channels (app_channels) only while it holds users of
// the app, plus a linger; a login's login.lua runs once they are confirmed
// subscribed, and the login is answered once its login.lua ran (await_login).
//
// On one Redis server or a Redis Cluster (RedisLink). On a Redis Cluster a
// room's (appID's) users are spread over --redis-buckets buckets, each with
// its own hash tag (cluster/buckets.hpp): a user's keys, presence decisions,
// channels and history share its bucket's slot, so that each script touches
// one slot; the room's pushes and history are in bucket 0. A shard that fails
// over is treated as a reconnect for the buckets it holds.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "cluster/buckets.hpp"
#include "cluster/redis_connection.hpp"
#include "cluster/redis_link.hpp"
#include "config/config.hpp"
#include "registry/shard.hpp"
#include "registry/stream.hpp"

namespace imgate {

// A push as it travels between nodes; each node frames it once.
struct PushMessage {
  std::string cmd;  // msg, enter, exit
  std::string seq;
  std::string msg;
  std::string from;
};

class RedisCluster final : public PresenceSink {
 public:
  // `shared_loop`: the loop to run on instead of a thread of its own (a
  // server with one loop, --threads 1: the API's Redis commands are then
  // written, and their answers sent, on the thread that got the request and
  // the reply, and the pushes from Redis are delivered on it: no hand-off).
  // It must outlive this object.
  RedisCluster(const Config& config, Hub& hub,
               boost::asio::io_context* shared_loop = nullptr);
  ~RedisCluster();

  void start();  // connects and starts the cluster thread (or posts to the shared loop)
  // Leaves the cluster (removes this node's presence, announcing exits) and
  // stops; waits at most `deadline`. On a shared loop: called once that loop
  // has stopped; runs it on the caller's thread until this node has left.
  void stop(std::chrono::milliseconds deadline);

  // PresenceSink: called by shards under the directory lock; counts the
  // app's users on this node (a short lock, no I/O) and posts.
  void user_online(const UserKey& key) override;
  void user_offline(const UserKey& key, const std::optional<StreamPos>& delivered) override;

  // Cluster-wide API calls; `done` runs on the cluster thread.
  void list_users(AppId app, std::function<void(bool ok, std::vector<std::string>)> done);
  void online(AppId app, std::string user, std::function<void(bool ok, bool online)> done);
  // The send path (first_msg_id, send_user, send_room) runs at once when
  // called on the cluster thread (from another's callback): no second hand-off.
  // The msgID's key: one Redis server, <prefix>msgid:<id> (one set for every
  // appID and target, as upstream's); a Redis Cluster, in the slot of the
  // push's target (the user's bucket; bucket 0 for a room push), so that the
  // SET NX runs in the push's own script (docs/cluster.md, "msgID").
  // `user` "" for a room push.
  void first_msg_id(AppId app, std::string_view user, std::string id,
                    std::function<void(bool ok, bool first)> done);
  // How a push sent through Redis went: Redis ran it (kDone); its msgID was
  // used already and nothing was sent (kDuplicate); it never left this node
  // (kNotSent: Redis unreachable, or a Redis error); or the connection broke
  // after it was written (kUnknown: it may have run, stored and published, or
  // not).
  enum class Sent { kDone, kDuplicate, kNotSent, kUnknown };
  // `msg_id` ("" = none): the msgID, set in the same script as the push
  // (SET NX PX --msg-id-ttl), which is then sent only if it was new. With
  // history on, the caller runs first_msg_id first instead.
  void send_user(UserKey key, PushMessage msg, std::string msg_id,
                 std::function<void(Sent, bool delivered)> done);
  void send_room(AppId app, std::string except, PushMessage msg, std::string msg_id,
                 std::function<void(Sent)> done);

  // History on (docs/history.md): stores `msg` in stream `stream` (user ""
  // = the room of stream.app) and routes it in one script; `done` gets its
  // position and, for a user stream, how many nodes hold the user.
  void send_stored(UserKey stream, std::string except, PushMessage msg,
                   std::function<void(Sent, StreamPos pos, int64_t nodes)> done);
  // A stream's meta data and its kept entries after offset `after` (JSON,
  // oldest first; none when `after` is negative: the position only). Entries
  // older than --history-ttl are dropped first (Redis's clock) and not counted
  // in `first`.
  struct StoredStream {
    StreamPos top;
    std::optional<uint64_t> left;
    uint64_t first = 1;  // oldest kept offset (top + 1 when none is kept)
    std::vector<std::string> entries;
  };
  // `offline`: the read of a user's offline messages at a login of it on this
  // node; when another node holds the user, the user is online there and has
  // had its pushes: `left` is then the stream's top and no entry is returned.
  void read_stored(UserKey stream, int64_t after, bool offline,
                   std::function<void(bool ok, StoredStream)> done);

  // From a shard thread, right after a login of `key` on it: false, and
  // `ready` runs on the cluster thread once the login.lua of every login of
  // `key` on this node so far has run in Redis (it runs once the node hears
  // the app's channels), or failed (Redis unreachable: the login is answered
  // degraded, as before). So Redis routes to this node every push sent after
  // the login's answer. True (answer now) for an app that is not configured.
  bool await_login(const UserKey& key, std::function<void()> ready);
  // How long the channels of an app stay subscribed after its last user on
  // this node left: a user who comes back within it costs no round trip.
  static constexpr auto kUnsubscribeLinger = std::chrono::seconds(2);
  // How long logins wait for a subscription that Redis does not confirm
  // although it is reachable (a refused SUBSCRIBE: an ACL, a stale slot map):
  // then they are answered degraded, with a warning, as when Redis is down.
  static constexpr auto kSubscribeDeadline = std::chrono::seconds(5);

  bool healthy() const { return healthy_.load(std::memory_order_relaxed); }
  // Why the node runs degraded although Redis is reachable: a live node of
  // another key schema (docs/cluster.md, "Upgrading from the one-slot
  // schema"); "" when there is none. Any thread.
  std::string schema_conflict() const;
  // Called (on the cluster thread) when the node must not run: at start-up a
  // live node uses another key schema. The server exits with `status`.
  std::function<void(int status)> on_fatal;
  // Every channel this node listens on for `app`: each bucket's room channel
  // (enter / exit of its users; bucket 0 also the room's pushes) and this
  // node's channel of each bucket (unicasts). One Redis server: the room
  // channel (the node channel is not per app; it is subscribed at start).
  // Subscribed only while this node holds users of the app (on demand).
  std::vector<std::string> app_channels(AppId app) const;
  bool on_redis_cluster() const { return sharded_; }
  // Redis Cluster masters known and how many are reachable (1 / 0-1 for one server).
  std::size_t shards() const { return shards_.load(std::memory_order_relaxed); }
  std::size_t shards_up() const { return shards_up_.load(std::memory_order_relaxed); }
  const std::string& node_id() const { return node_id_; }
  // Live nodes (this one included) at the last heartbeat; 0 before the first.
  int64_t live_nodes() const { return live_seen_.load(std::memory_order_relaxed); }
  // Rounds of room size counts done for the presence policy (Redis Cluster
  // with --presence-max-room: one a second).
  uint64_t room_count_rounds() const { return room_count_rounds_.load(std::memory_order_relaxed); }
  // Resyncs begun and not finished (redis_resync.cpp): 0 once presence is in Redis.
  std::size_t resyncs_pending() const { return resyncs_pending_.load(std::memory_order_relaxed); }

 private:
  void post(std::function<void()> task);
  void leave_on_shared_loop(std::chrono::milliseconds deadline);
  // Runs `task` now on the cluster thread, else posts it (the send path).
  void dispatch(std::function<void()> task);
  std::string msg_id_key(AppId app, uint32_t bucket, std::string_view id) const;
  void on_link_ready(const RedisLink::Owns& owns);
  void on_message(const RedisReply& reply);
  void update_health();

  // ---- subscriptions on demand ----
  struct AppSubscription {
    // Guarded by subs_mu_ (written by shards and the cluster thread).
    std::size_t users = 0;  // this node's users of the app (user_online - user_offline)
    bool ready = false;     // confirmed subscribed, no unsubscribe since
    // Cluster thread only.
    bool wanted = false;  // link_->subscribe()d, not unsubscribed since
    // Presence scripts of the app's users held until the subscription is
    // confirmed, in order (login.lua makes Redis route to this node).
    std::vector<std::function<void()>> held;
    std::unique_ptr<boost::asio::steady_timer> linger;
    std::unique_ptr<boost::asio::steady_timer> deadline;  // kSubscribeDeadline of the held
  };
  // Cluster thread: the logins of a user on this node whose login.lua has
  // not run yet, and the answers waiting for them (await_login). An entry
  // lives from the user_online() of a login until its login.lua's reply: at
  // most the node's users.
  struct PendingLogin {
    std::size_t scripts = 0;
    std::vector<std::function<void()>> waiters;
  };
  std::unordered_map<UserKey, PendingLogin, UserKeyHash> logins_pending_;
  void login_ran(const UserKey& key);
  // Cluster thread: a user of `app` came / left: subscribe, or unsubscribe after the linger.
  void want_app(AppId app);
  void linger_app(AppId app);
  // Cluster thread: `task` (a presence script) now, or after the subscription.
  void when_heard(AppId app, std::function<void()> task);
  // Cluster thread: the link confirmed or lost subscriptions: release the
  // held scripts of apps now heard, or that cannot be subscribed (Redis unreachable).
  void check_apps();
  void check_app(AppId app, AppSubscription& a);
  void release_app(AppSubscription& a);
  void refresh_loop();
  void reap_loop();
  // Removes `node` (expired, or this node leaving) and its users, in batches
  // of at most kReapBatch users per script; `done` gets the number of exits
  // published. The node leaves the nodes key once all its users are gone.
  void reap(std::string node, std::function<void(int64_t exits)> done);
  void reap_buckets(const std::string& node, std::function<void(int64_t exits)> done);
  void reap_bucket(const std::string& node, AppId app, uint32_t bucket, std::string seq,
                   int batch, int64_t exits, std::function<void(bool ok, int64_t exits)> done);
  void reap_single(std::string node, std::string seq, int batch, int64_t exits,
                   std::function<void(int64_t exits)> done);
  static constexpr int kReapBatch = 200;
  static constexpr int kReapCheckEvery = 5;  // batches between two ZSCOREs of the reaped node
  // register.lua: ZADD this node and its schema entry; `strict` (until the
  // first registration succeeded) refuses to register next to a node of
  // another schema. `done` gets whether the node had been (or was being)
  // reaped and the conflicting nodes' description ("" = none).
  void register_node(bool strict,
                     std::function<void(bool ok, bool rejoined, std::string conflict)> done);
  void on_schema_check(const std::string& conflict);
  // `delivered` (a logout, history on): where the user's offline messages
  // start if no node holds the user any more (logout.lua records it).
  void presence_script(const UserKey& key, bool online, bool announce,
                       const std::optional<StreamPos>& delivered = std::nullopt);

  // ---- resync (redis_resync.cpp; docs/cluster.md, "Redis loss") ----
  // After a Redis server or master became ready (or this node found itself
  // reaped): register, publish the node's users again, wait until the nodes
  // that heard each room hear it again, announce the users who logged in
  // while Redis was unreachable, remove those who left. One state machine per scope (one
  // Redis server: everything; Redis Cluster: the registration, and each
  // room); a step that fails is retried after a back-off (100 ms doubling to
  // 2 s) until it succeeds. Starting a scope again (a newer reconnect)
  // replaces its machine; stop() cancels them all.
  struct Resync;
  static constexpr int64_t kResyncAll = -1;       // one Redis server
  static constexpr int64_t kResyncRegister = -2;  // Redis Cluster: the nodes key
  static int64_t bucket_scope(AppId app, uint32_t bucket) {
    return static_cast<int64_t>(app) * kMaxRedisBuckets + bucket;
  }
  // `bucket` < 0: every bucket of `apps` (one Redis server).
  void start_resync(int64_t scope, std::vector<AppId> apps, int64_t bucket, bool register_first,
                    bool announce_all);
  void resync_rooms(bool announce_all);  // every room, no registration
  void run_resync(const std::shared_ptr<Resync>& r);
  void resync_register(const std::shared_ptr<Resync>& r);
  void resync_publish(const std::shared_ptr<Resync>& r, std::vector<UserKey> users, bool announce);
  void resync_wait_subscribers(const std::shared_ptr<Resync>& r);
  void resync_poll(const std::shared_ptr<Resync>& r);  // the wait again shortly, or on
  void resync_reconcile(const std::shared_ptr<Resync>& r);
  void resync_advance(const std::shared_ptr<Resync>& r);  // the next step, or finished
  void resync_retry(const std::shared_ptr<Resync>& r, std::string reason);
  bool resync_current(const std::shared_ptr<Resync>& r) const;
  void cancel_resyncs();  // for good: stop()
  // login.lua for a user this node already told its own clients about: the
  // `enter` (when `announce`, the app is not quiet and the user is new
  // cluster-wide) skips this node. `first`: the user was new cluster-wide.
  void register_user(const UserKey& key, bool announce,
                     std::function<void(bool ok, bool first)> done);
  bool announced_in(AppId app) const;  // not a quiet app

  // Key and channel names (docs/cluster.md, "Key schema"). One Redis server:
  // the names imgate always used (one bucket). Redis Cluster: those of bucket
  // k of a room begin with its hash tag "{<prefix><app>/<k>~<n>}:" and share
  // its slot; a user's are in its bucket, the room's pushes and history in 0.
  uint32_t bucket_of(std::string_view user) const { return user_bucket(user, buckets_); }
  std::string bucket_base(AppId app, uint32_t bucket) const;
  std::string user_hash(const UserKey& key) const;
  std::string room_set(AppId app, uint32_t bucket) const;
  std::string node_users(AppId app, uint32_t bucket, const std::string& node) const;
  std::string member(const UserKey& key) const;  // in node_users
  std::string room_channel(AppId app, uint32_t bucket) const;
  std::string node_channel_prefix(AppId app, uint32_t bucket) const;  // + node id
  std::string stream_key(const UserKey& stream, std::string_view part) const;
  std::string nodes_key() const { return prefix_ + "nodes"; }
  // node id -> "<schema>:<buckets>"; its hash tag is the nodes key's name, so
  // both are in one slot.
  std::string schema_key() const { return "{" + nodes_key() + "}:schema"; }
  const char* publish_verb() const { return link_->sharded() ? "SPUBLISH" : "PUBLISH"; }
  std::string payload(const PushMessage& msg, AppId app, std::string_view except_or_user, bool room,
                      bool skip_self = false) const;
  int64_t expiry_ms() const;
  // ARGV "largest room announced in" of a script on bucket `bucket`: the
  // presence policy's --presence-max-room less the room's users in its other
  // buckets (Redis Cluster: as counted at most a second ago; -1 = announce
  // nothing), so that the script's SCARD of its bucket decides.
  std::string max_room(AppId app, uint32_t bucket) const;
  void count_loop();  // every second: count_room() of every configured app
  void count_room(AppId app, std::function<void()> done);
  std::string quiet_list() const;

  const Config& config_;
  Hub& hub_;
  const std::string prefix_;
  const std::string node_id_;
  const bool sharded_;
  const uint32_t buckets_;  // 1 on one Redis server
  // The bucket key bases ("{tag}:") of each configured app, computed in the
  // constructor and never changed (any thread reads them).
  std::map<AppId, std::vector<std::string>> make_bases(const std::vector<AppId>& apps) const;
  const std::map<AppId, std::vector<std::string>> bases_;
  std::unique_ptr<boost::asio::io_context> own_loop_;  // null on a shared loop
  boost::asio::io_context& loop_;
  bool started_ = false;  // start() ran and stop() not yet
  std::unique_ptr<RedisLink> link_;
  boost::asio::steady_timer refresh_timer_;
  boost::asio::steady_timer reap_timer_;
  boost::asio::steady_timer count_timer_;
  std::thread thread_;
  std::atomic<bool> healthy_{false};
  std::atomic<std::size_t> shards_{0};
  std::atomic<std::size_t> shards_up_{0};
  uint64_t exit_seq_ = 0;
  // Room sizes per bucket for the presence policy on a Redis Cluster.
  std::map<AppId, std::vector<int64_t>> room_counts_;  // app -> users per bucket
  std::atomic<uint64_t> room_count_rounds_{0};
  std::unordered_set<std::string> reaping_;  // nodes this node is reaping now
  bool registered_ = false;                  // a registration succeeded once
  mutable std::mutex conflict_mutex_;
  std::string conflict_;  // schema_conflict()
  std::map<int64_t, std::shared_ptr<Resync>> resyncs_;
  bool stopping_ = false;  // no resync starts any more
  std::atomic<int64_t> live_seen_{0};
  std::atomic<std::size_t> resyncs_pending_{
      0};  // resyncs_.size(), for status()  // by scope: bucket_scope() or kResync*
  // This node's users whose login.lua has not run in Redis (they logged in
  // while it was unreachable, or the script failed): the resync announces
  // them. Cluster thread only; at most the node's users.
  std::unordered_set<UserKey, UserKeyHash> unannounced_;
  // One entry per configured app, made in the constructor (the map never
  // changes shape afterwards, so any thread may find an entry).
  std::unordered_map<AppId, AppSubscription> subs_;
  std::mutex subs_mu_;
  std::unordered_map<std::string, AppId> channel_apps_;  // app_channels -> app
  // Cluster thread: subscribers of each app's room channel at the last
  // heartbeat (PUBSUB NUMSUB / SHARDNUMSUB, for the apps this node hears):
  // what a resync waits for (redis_resync.cpp).
  std::unordered_map<AppId, int64_t> subs_seen_;
  void sample_subscribers();
};

}  // namespace imgate
