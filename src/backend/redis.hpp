// RedisBackend: a cluster of nodes sharing one Redis (cluster/redis_cluster.hpp
// holds the connections, scripts and channels). Presence queries and msgID
// de-duplication are answered by Redis, pushes are routed through it. When
// Redis is unreachable the node keeps serving its own clients (docs/cluster.md):
// list / online answer unavailable (the API says 1004 "redis unavailable"),
// msgIDs are de-duplicated in this node's memory, and pushes are delivered on
// this node only, which the answer says ("sendResultsErr").
#pragma once

#include "backend/backend.hpp"
#include "backend/dedup.hpp"
#include "cluster/redis_cluster.hpp"

namespace imgate {

class RedisBackend final : public Backend {
 public:
  // History on when config.history_size > 0. Where a user's offline messages
  // start is recorded by the logout script (RedisCluster::user_offline).
  RedisBackend(RedisCluster& cluster, Hub& hub, MsgIdDedup& local_dedup, Counters& counters,
               const Config& config);
  ~RedisBackend() override;

  bool healthy() const override { return cluster_.healthy(); }
  std::string degraded() const override {
    if (!healthy()) return "redis unavailable";
    const std::string conflict = cluster_.schema_conflict();
    return conflict.empty() ? "" : "node of another key schema: " + conflict;
  }
  boost::json::value status() const override;
  RedisShards redis_shards() const override { return {cluster_.shards(), cluster_.shards_up()}; }
  void list_users(AppId app, std::function<void(bool, std::vector<std::string>)> done) override;
  void online(AppId app, std::string user, std::function<void(bool, bool)> done) override;
  void publish(PushRequest push, PushDone done) override;
  bool await_login(const UserKey& key, std::function<void()> ready) override {
    return cluster_.await_login(key, std::move(ready));
  }

  // History in Redis (docs/history.md, docs/cluster.md): a meta hash and a
  // list per stream, shared by every node; answered on the Redis thread.
  bool history_on() const override { return history_; }
  bool history_inline() const override { return false; }
  void read_stream(const UserKey& stream, std::optional<StreamPos> since, std::size_t limit,
                   std::string reader, std::function<void(bool, StreamRead)> done) override;
  StreamPos stream_position(const UserKey&) override { return {}; }  // not inline here
  std::optional<StreamPos> user_left_at(const UserKey&) override { return std::nullopt; }

 private:
  // `once`: the msgID checked in the push's own script (one Redis server,
  // history off); "" when it was checked already, or there is none.
  void route(PushRequest push, PushDone done, std::string once);

  RedisCluster& cluster_;
  Hub& hub_;
  MsgIdDedup& local_dedup_;
  Counters& counters_;
  const bool history_;
};

}  // namespace imgate
