// RedisCluster: many imgate nodes acting as one gateway through Redis
// (docs/cluster.md has the key / channel schema and the message flows).
//
// Threading: all Redis work runs on the cluster's own event loop and thread;
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
// the app, plus a linger; the first login of an app on the node is answered,
// and its login.lua run, once they are confirmed subscribed (await_app).
//
// On one Redis server or a Redis Cluster (RedisLink). On a Redis Cluster
// everything of one room (appID) - its users, presence, channels and history
// - shares one hash tag, so that each script touches one slot; a shard that
// fails over is treated as a reconnect for the rooms it holds.
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
  RedisCluster(const Config& config, Hub& hub);
  ~RedisCluster();

  void start();  // connects and starts the cluster thread
  // Leaves the cluster (removes this node's presence, announcing exits) and
  // stops; waits at most `deadline`.
  void stop(std::chrono::milliseconds deadline);

  // PresenceSink: called by shards under the directory lock; counts the
  // app's users on this node (a short lock, no I/O) and posts.
  void user_online(const UserKey& key) override;
  void user_offline(const UserKey& key, const std::optional<StreamPos>& delivered) override;

  // Cluster-wide API calls; `done` runs on the cluster thread.
  void list_users(AppId app, std::function<void(bool ok, std::vector<std::string>)> done);
  void online(AppId app, std::string user, std::function<void(bool ok, bool online)> done);
  void first_msg_id(std::string id, std::function<void(bool ok, bool first)> done);
  // How a push sent through Redis went: Redis ran it (kDone); it never left
  // this node (kNotSent: Redis unreachable); or the connection broke after it
  // was written (kUnknown: it may have run, stored and published, or not).
  enum class Sent { kDone, kNotSent, kUnknown };
  void send_user(UserKey key, PushMessage msg, std::function<void(Sent, bool delivered)> done);
  void send_room(AppId app, std::string except, PushMessage msg, std::function<void(Sent)> done);

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

  // Every channel this node must hear for `app` while it holds users of it:
  // the room channel and, on a Redis Cluster, the node's channel in the room.
  std::vector<std::string> app_channels(AppId app) const;
  // True when this node hears app_channels(app) now (confirmed subscribed),
  // or cannot subscribe while Redis is unreachable (a login then answers
  // degraded, as before). Otherwise false, and `ready` runs on the cluster
  // thread once they are confirmed (or Redis became unreachable). From any
  // thread, after the login that made the app's users count on this node.
  bool await_app(AppId app, std::function<void()> ready);
  // How long the channels of an app stay subscribed after its last user on
  // this node left: a user who comes back within it costs no round trip.
  static constexpr auto kUnsubscribeLinger = std::chrono::seconds(2);
  // How long logins wait for a subscription that Redis does not confirm
  // although it is reachable (a refused SUBSCRIBE: an ACL, a stale slot map):
  // then they are answered degraded, with a warning, as when Redis is down.
  static constexpr auto kSubscribeDeadline = std::chrono::seconds(5);

  bool healthy() const { return healthy_.load(std::memory_order_relaxed); }
  bool on_redis_cluster() const { return sharded_; }
  // Redis Cluster masters known and how many are reachable (1 / 0-1 for one server).
  std::size_t shards() const { return shards_.load(std::memory_order_relaxed); }
  std::size_t shards_up() const { return shards_up_.load(std::memory_order_relaxed); }
  const std::string& node_id() const { return node_id_; }
  // Live nodes (this one included) at the last heartbeat; 0 before the first.
  int64_t live_nodes() const { return live_seen_.load(std::memory_order_relaxed); }
  // Resyncs begun and not finished (redis_resync.cpp): 0 once presence is in Redis.
  std::size_t resyncs_pending() const { return resyncs_pending_.load(std::memory_order_relaxed); }

 private:
  void post(std::function<void()> task);
  void on_link_ready(const RedisLink::Owns& owns);
  void on_message(const RedisReply& reply);
  void update_health();

  // ---- subscriptions on demand ----
  struct AppSubscription {
    // Guarded by subs_mu_ (written by shards and the cluster thread).
    std::size_t users = 0;  // this node's users of the app (user_online - user_offline)
    bool ready = false;     // confirmed subscribed, no unsubscribe since
    // Cluster thread only.
    std::vector<std::function<void()>> waiters;  // await_app() callers
    bool wanted = false;  // link_->subscribe()d, not unsubscribed since
    // Presence scripts of the app's users held until the subscription is
    // confirmed, in order (login.lua makes Redis route to this node).
    std::vector<std::function<void()>> held;
    std::unique_ptr<boost::asio::steady_timer> linger;
    std::unique_ptr<boost::asio::steady_timer> deadline;  // kSubscribeDeadline of the waiters
  };
  // Cluster thread: a user of `app` came / left: subscribe, or unsubscribe after the linger.
  void want_app(AppId app);
  void linger_app(AppId app);
  // Cluster thread: `task` (a presence script) now, or after the subscription.
  void when_heard(AppId app, std::function<void()> task);
  // Cluster thread: the link confirmed or lost subscriptions: release the
  // waiters of apps now heard, or that cannot be subscribed (Redis unreachable).
  void check_apps();
  void check_app(AppId app, AppSubscription& a);
  void release_app(AppSubscription& a);
  void refresh_loop();
  void reap_loop();
  // Removes `node` (expired, or this node leaving) and its users; `done` gets
  // the number of exits published.
  void reap(std::string node, std::function<void(int64_t exits)> done);
  void reap_rooms(const std::string& node, std::function<void(int64_t exits)> done);
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
  void start_resync(int64_t scope, std::vector<AppId> apps, bool register_node, bool announce_all);
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
  // the names imgate always used. Redis Cluster: those of a room begin with
  // the hash tag "{<prefix><appID>}:" and share its slot.
  std::string room_base(AppId app) const;
  std::string user_hash(const UserKey& key) const;
  std::string room_set(AppId app) const;
  std::string node_users(AppId app, const std::string& node) const;
  std::string member(const UserKey& key) const;  // in node_users
  std::string room_channel(AppId app) const;
  std::string node_channel_prefix(AppId app) const;  // + node id
  std::string stream_key(const UserKey& stream, std::string_view part) const;
  std::string nodes_key() const { return prefix_ + "nodes"; }
  const char* publish_verb() const { return link_->sharded() ? "SPUBLISH" : "PUBLISH"; }
  std::string payload(const PushMessage& msg, AppId app, std::string_view except_or_user, bool room,
                      bool skip_self = false) const;
  int64_t expiry_ms() const;
  std::string max_room() const;
  std::string quiet_list() const;

  const Config& config_;
  Hub& hub_;
  const std::string prefix_;
  const std::string node_id_;
  boost::asio::io_context loop_;
  std::unique_ptr<RedisLink> link_;
  boost::asio::steady_timer refresh_timer_;
  boost::asio::steady_timer reap_timer_;
  std::thread thread_;
  std::atomic<bool> healthy_{false};
  std::atomic<std::size_t> shards_{0};
  std::atomic<std::size_t> shards_up_{0};
  bool sharded_ = false;
  uint64_t exit_seq_ = 0;
  std::map<int64_t, std::shared_ptr<Resync>> resyncs_;
  bool stopping_ = false;  // no resync starts any more
  std::atomic<int64_t> live_seen_{0};
  std::atomic<std::size_t> resyncs_pending_{
      0};  // resyncs_.size(), for status()  // by scope: room appID or kResync*
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
