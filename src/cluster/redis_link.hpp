// RedisLink: where the cluster mode's commands and subscriptions go - one
// Redis server (SingleRedis) or a Redis Cluster (ShardedRedis, one pipelined
// connection and one subscriber per master, commands routed by hash slot).
//
// Contract: every method runs on the cluster loop, and so do all callbacks.
// A command names its `route` (a key or shard channel it touches); on a Redis
// Cluster its slot picks the shard. Commands whose shard is unreachable fail
// at once (ok == false), as RedisConnection's do. Subscriptions are kept until
// unsubscribed: the link renews them after every reconnect, failover and slot
// move, and tells when one is confirmed (Redis answered its subscribe, and no
// later subscribe or unsubscribe of the channel is in flight).
#pragma once

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cluster/redis_connection.hpp"

namespace imgate {

// Redis Cluster hash slot of a key or channel: CRC16 (XMODEM) of its hash tag
// (the part between the first '{' and the next '}', when not empty) mod 16384.
uint16_t redis_key_slot(std::string_view key);
constexpr std::size_t kRedisSlots = 16384;

class RedisLink {
 public:
  // Tells whether a route's shard is the one that became reachable.
  using Owns = std::function<bool(std::string_view route)>;

  virtual ~RedisLink() = default;
  virtual void start() = 0;
  virtual void stop() = 0;

  virtual void command(std::string_view route, std::vector<std::string> args,
                       RedisCallback cb = {}) = 0;
  // As command(), with the incarnation of the server that runs it appended
  // (RedisConnection::command_stamped): after a redirect, the new target's.
  virtual void command_stamped(std::string_view route, std::vector<std::string> args,
                               RedisCallback cb) = 0;
  // A command on `route` would be sent now (its shard's connection is up).
  virtual bool reachable(std::string_view route) const = 0;
  // Every shard reachable and every subscription in place.
  virtual bool healthy() const = 0;
  // Keeps `channels` subscribed (on a Redis Cluster: shard channels, each on
  // the master of its slot) until unsubscribe() of them; a channel already
  // kept is left as it is.
  virtual void subscribe(const std::vector<std::string>& channels) = 0;
  virtual void unsubscribe(const std::vector<std::string>& channels) = 0;
  // Every channel is kept and confirmed on the connection that holds it now:
  // a message published from here on reaches this node.
  virtual bool subscribed(const std::vector<std::string>& channels) const = 0;
  // The subscriber connections that would hold `channels` are up (else
  // nothing can be confirmed until Redis is back).
  virtual bool can_subscribe(const std::vector<std::string>& channels) const = 0;
  // True on a Redis Cluster: SPUBLISH / SSUBSCRIBE, scripts per slot.
  virtual bool sharded() const = 0;
  // Text for /metrics and logs: shards (1 for a single server) and how many are up.
  virtual std::size_t shards() const = 0;
  virtual std::size_t shards_up() const = 0;

  // A shard's command connection became ready (first connect, reconnect, or
  // a new master after a failover): state kept in Redis for the routes it owns
  // may be missing and is to be published again.
  std::function<void(const Owns& owns)> on_ready;
  std::function<void()> on_health;                    // healthy() may have changed
  std::function<void(const RedisReply&)> on_message;  // ["message"|"smessage", channel, payload]
  // A channel became confirmed: subscribed() may have become true.
  std::function<void(const std::string& channel)> on_subscribed;

 protected:
  // A kept channel on the subscriber connection that holds it. `inflight`:
  // subscribe / unsubscribe commands sent on that connection and not yet
  // answered (Redis answers each, per channel, in order); `live`: the last
  // answer was a subscribe.
  struct Channel {
    bool wanted = false;  // subscribe() since the last unsubscribe()
    int inflight = 0;
    bool live = false;
    uint16_t slot = 0;      // Redis Cluster
    std::string placed_on;  // Redis Cluster: the master it is subscribed on; "" = none
    bool confirmed() const { return wanted && live && inflight == 0; }
  };
  // An answer to a (s)subscribe / (s)unsubscribe of `channel`; false when none was awaited.
  bool answered(Channel& channel, bool subscribe);
};

// One Redis server: the connection pair the cluster mode always had.
class SingleRedis final : public RedisLink {
 public:
  SingleRedis(boost::asio::io_context& loop, const RedisEndpoint& endpoint,
              const std::string& name);

  void start() override;
  void stop() override;
  void command(std::string_view route, std::vector<std::string> args,
               RedisCallback cb = {}) override;
  void command_stamped(std::string_view route, std::vector<std::string> args,
                       RedisCallback cb) override;
  bool reachable(std::string_view) const override { return cmd_->connected(); }
  bool healthy() const override { return cmd_->connected() && sub_->connected(); }
  void subscribe(const std::vector<std::string>& channels) override;
  void unsubscribe(const std::vector<std::string>& channels) override;
  bool subscribed(const std::vector<std::string>& channels) const override;
  bool can_subscribe(const std::vector<std::string>&) const override { return sub_->connected(); }
  bool sharded() const override { return false; }
  std::size_t shards() const override { return 1; }
  std::size_t shards_up() const override { return healthy() ? 1 : 0; }

 private:
  std::shared_ptr<RedisConnection> cmd_;
  std::shared_ptr<RedisConnection> sub_;
  void send(const char* verb, const std::vector<std::string>& channels);
  void on_sub_message(const RedisReply& reply);
  std::unordered_map<std::string, Channel> channels_;
};

// A Redis Cluster, found from seed nodes. The slot map comes from CLUSTER
// SLOTS: at start, after a MOVED reply, when a shard's connection breaks, and
// every few seconds; MOVED is followed at once (the command is sent again to
// the node it names), ASK with ASKING on the importing node. Commands for one
// slot keep their order (one connection per master); a redirected command
// may pass later ones, which only happens while slots move.
class ShardedRedis final : public RedisLink {
 public:
  ShardedRedis(boost::asio::io_context& loop, std::vector<RedisEndpoint> seeds, std::string name);
  ~ShardedRedis() override;

  void start() override;
  void stop() override;
  void command(std::string_view route, std::vector<std::string> args,
               RedisCallback cb = {}) override;
  void command_stamped(std::string_view route, std::vector<std::string> args,
                       RedisCallback cb) override;
  bool reachable(std::string_view route) const override;
  bool healthy() const override;
  void subscribe(const std::vector<std::string>& channels) override;
  void unsubscribe(const std::vector<std::string>& channels) override;
  bool subscribed(const std::vector<std::string>& channels) const override;
  bool can_subscribe(const std::vector<std::string>& channels) const override;
  bool sharded() const override { return true; }
  std::size_t shards() const override { return masters_.size(); }
  std::size_t shards_up() const override;

  static constexpr int kMaxRedirects = 5;

 private:
  struct Master {
    std::string address;  // "host:port"
    RedisEndpoint endpoint;
    std::shared_ptr<RedisConnection> cmd;
    std::shared_ptr<RedisConnection> sub;
  };
  using Args = std::shared_ptr<const std::vector<std::string>>;

  void route(std::string_view route, std::vector<std::string> args, RedisCallback cb, bool stamp);
  void send(Master& master, Args args, RedisCallback cb, int redirects, bool asking, bool stamp);
  bool redirect(const RedisReply& reply, Args& args, RedisCallback& cb, int redirects,
                bool stamp);
  Master* owner(std::string_view route);
  const Master* owner(std::string_view route) const;
  Master& master_at(const std::string& address);
  void drop_master(const std::string& address);
  void refresh();
  void refresh_soon();
  void ask_slots(const std::shared_ptr<RedisConnection>& conn);
  void probe_next();
  bool apply_slots(const RedisReply& reply);
  void place_subscriptions();
  void unplace(const std::string& address);  // its subscriber connection is gone
  void send_sub(Master& master, const char* verb, const std::vector<std::string>& channels);
  void on_sub_message(const std::string& address, const RedisReply& reply);
  void refresh_loop();
  void health_changed();

  boost::asio::io_context& loop_;
  std::vector<RedisEndpoint> seeds_;
  std::string name_;
  std::map<std::string, Master> masters_;     // by address; nodes are stable
  std::array<Master*, kRedisSlots> slots_{};  // owner of each slot; null = uncovered
  std::vector<std::string> known_;            // every node address seen, for probes
  std::unordered_map<std::string, Channel> channels_;
  boost::asio::steady_timer refresh_timer_;
  boost::asio::steady_timer probe_timer_;
  std::shared_ptr<RedisConnection> probe_;  // a seed or known node, asked for the slot map
  std::size_t probe_index_ = 0;
  bool probe_warned_ = false;  // a probe warned it cannot connect; the next ones do not
  bool refreshing_ = false;
  bool refresh_again_ = false;
  bool stopped_ = false;
  bool last_health_ = false;
};

}  // namespace imgate
