#include "net/delivery.hpp"

#include <boost/json.hpp>

#include "protocol/envelope.hpp"

namespace imgate {

namespace json = boost::json;

namespace {

using Done = std::function<void(Code, json::value)>;

constexpr std::string_view kRedisDown = "redis unavailable";

Frame frame_of(const PushMessage& m) { return make_push(m.seq, m.cmd, m.msg, m.from); }

// Delivers on this node only (embedded mode, or cluster mode without Redis).
bool deliver_locally(ServerContext& ctx, const PushRequest& push) {
  if (push.to_room) {
    ctx.hub.push_room(push.app, push.user, frame_of(push.msg));
    return true;
  }
  return ctx.hub.push_user(UserKey{push.app, push.user}, frame_of(push.msg));
}

void duplicate(ServerContext& ctx, const Done& done) {
  Counters::bump(ctx.counters.msg_id_duplicates);
  done(Code::kOk, json::object{});  // upstream: 200 with empty data, nothing sent
}

// Cluster mode: route through Redis; without Redis, deliver here and say so.
void deliver_cluster(ServerContext& ctx, PushRequest push, Done done) {
  auto degraded = [&ctx, push, done] {
    bool sent = deliver_locally(ctx, push) && !push.to_room;
    done(Code::kOk, json::object{{"sendResults", sent},
                                 {"sendResultsErr",
                                  std::string(kRedisDown) + ": delivered on this node only"}});
  };
  RedisCluster& cluster = *ctx.cluster;
  if (push.to_room) {
    cluster.send_room(push.app, push.user, push.msg, [done, degraded](bool ok) {
      if (!ok) return degraded();
      done(Code::kOk, json::object{{"sendResults", true}});
    });
  } else {
    cluster.send_user(UserKey{push.app, push.user}, push.msg,
                      [done, degraded](bool ok, bool sent) {
                        if (!ok) return degraded();
                        done(Code::kOk, json::object{{"sendResults", sent}});
                      });
  }
}

}  // namespace

void deliver_push(ServerContext& ctx, PushRequest push, Done done) {
  if (!ctx.cluster) {
    if (push.dedup && !ctx.dedup->first_seen(push.msg.seq, Clock::now())) {
      return duplicate(ctx, done);
    }
    const bool sent = deliver_locally(ctx, push);
    return done(Code::kOk, json::object{{"sendResults", sent}});
  }
  if (!push.dedup) return deliver_cluster(ctx, std::move(push), std::move(done));
  std::string id = push.msg.seq;
  ctx.cluster->first_msg_id(id, [&ctx, push = std::move(push), done = std::move(done)](
                                    bool ok, bool first) mutable {
    // Without Redis, the node's own memory de-duplicates (degraded).
    if (!ok) first = ctx.dedup->first_seen(push.msg.seq, Clock::now());
    if (!first) return duplicate(ctx, done);
    deliver_cluster(ctx, std::move(push), std::move(done));
  });
}

}  // namespace imgate
