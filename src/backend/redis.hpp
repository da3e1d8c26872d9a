// RedisBackend: a cluster of nodes sharing one Redis (cluster/redis_cluster.hpp
// holds the connections, scripts and channels). Presence queries and msgID
// de-duplication are answered by Redis, pushes are routed through it. When
// Redis is unreachable the node keeps serving its own clients (docs/cluster.md):
// list / online answer unavailable (the API says 1004 "redis unavailable"),
// msgIDs are de-duplicated in this node's memory, and pushes are delivered on
// this node only, which the answer says ("sendResultsErr").
#pragma once

#include "backend/backend.hpp"
#include "cluster/redis_cluster.hpp"
#include "http/dedup.hpp"

namespace imgate {

class RedisBackend final : public Backend {
 public:
  RedisBackend(RedisCluster& cluster, Hub& hub, MsgIdDedup& local_dedup, Counters& counters)
      : cluster_(cluster), hub_(hub), local_dedup_(local_dedup), counters_(counters) {}

  bool healthy() const override { return cluster_.healthy(); }
  boost::json::value status() const override;
  void list_users(AppId app, std::function<void(bool, std::vector<std::string>)> done) override;
  void online(AppId app, std::string user, std::function<void(bool, bool)> done) override;
  void publish(PushRequest push, PushDone done) override;
  // History is not implemented in Redis mode yet (config refuses it).
  bool history_on() const override { return false; }
  void read_stream(const UserKey&, std::optional<StreamPos>, std::size_t, std::string,
                   std::function<void(bool, StreamRead)> done) override {
    done(false, {});
  }
  StreamPos stream_position(const UserKey&) override { return {}; }
  std::optional<StreamPos> user_left_at(const UserKey&) override { return std::nullopt; }

 private:
  void route(PushRequest push, PushDone done);

  RedisCluster& cluster_;
  Hub& hub_;
  MsgIdDedup& local_dedup_;
  Counters& counters_;
};

}  // namespace imgate
