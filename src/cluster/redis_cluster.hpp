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
#include <string>
#include <string_view>
#include <thread>
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

  // PresenceSink: called by shards under the directory lock; only posts.
  void user_online(const UserKey& key) override;
  void user_offline(const UserKey& key, const std::optional<StreamPos>& delivered) override;

  // Cluster-wide API calls; `done` runs on the cluster thread.
  void list_users(AppId app, std::function<void(bool ok, std::vector<std::string>)> done);
  void online(AppId app, std::string user, std::function<void(bool ok, bool online)> done);
  // The send path (first_msg_id, send_user, send_room) runs at once when
  // called on the cluster thread (from another's callback): no second hand-off.
  void first_msg_id(std::string id, std::function<void(bool ok, bool first)> done);
  // How a push sent through Redis went: Redis ran it (kDone); its msgID was
  // used already and nothing was sent (kDuplicate); it never left this node
  // (kNotSent: Redis unreachable, or a Redis error); or the connection broke
  // after it was written (kUnknown: it may have run, stored and published, or
  // not).
  enum class Sent { kDone, kDuplicate, kNotSent, kUnknown };
  // `msg_id` (one Redis server only; "" = none): the msgID de-duplication
  // key, set in the same script as the push (SET NX PX --msg-id-ttl), which
  // is then sent only if the key was new. On a Redis Cluster the msgID key
  // is in another slot than the room's: the caller runs first_msg_id first.
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
  void leave_on_shared_loop(std::chrono::milliseconds deadline);
  // Runs `task` now on the cluster thread, else posts it (the send path).
  void dispatch(std::function<void()> task);
  std::string msg_id_key(std::string_view id) const { return prefix_ + "msgid:" + std::string(id); }
  void on_link_ready(const RedisLink::Owns& owns);
  void on_message(const RedisReply& reply);
  void update_health();
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
  // reaped): register, publish the node's users again, wait until every live
  // node is subscribed, announce the users who logged in while Redis was
  // unreachable, remove those who left. One state machine per scope (one
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
  std::unique_ptr<boost::asio::io_context> own_loop_;  // null on a shared loop
  boost::asio::io_context& loop_;
  bool started_ = false;  // start() ran and stop() not yet
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
};

}  // namespace imgate
