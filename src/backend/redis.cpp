#include "backend/redis.hpp"

#include <boost/json.hpp>

#include "backend/embedded.hpp"

namespace imgate {

namespace json = boost::json;

namespace {
constexpr std::string_view kRedisDown = "redis unavailable";

PushMessage message_of(const PushRequest& push) {
  return PushMessage{"msg", push.seq, push.msg, push.from};
}
}  // namespace

json::value RedisBackend::status() const {
  return json::object{{"nodeId", cluster_.node_id()}, {"redis", healthy() ? "up" : "down"}};
}

void RedisBackend::list_users(AppId app, std::function<void(bool, std::vector<std::string>)> done) {
  cluster_.list_users(app, std::move(done));
}

void RedisBackend::online(AppId app, std::string user, std::function<void(bool, bool)> done) {
  cluster_.online(app, std::move(user), std::move(done));
}

void RedisBackend::publish(PushRequest push, PushDone done) {
  if (!push.dedup) return route(std::move(push), std::move(done));
  std::string id = push.seq;
  cluster_.first_msg_id(id, [this, push = std::move(push), done = std::move(done)](
                                bool ok, bool first) mutable {
    // Without Redis, the node's own memory de-duplicates (degraded).
    if (!ok) first = local_dedup_.first_seen(push.seq, Clock::now());
    if (!first) return answer_duplicate(counters_, done);
    route(std::move(push), std::move(done));
  });
}

void RedisBackend::route(PushRequest push, PushDone done) {
  auto degraded = [this, push, done] {
    const bool sent = deliver_on_this_node(hub_, push) && !push.to_room;
    done(Code::kOk, json::object{{"sendResults", sent},
                                 {"sendResultsErr",
                                  std::string(kRedisDown) + ": delivered on this node only"}});
  };
  if (push.to_room) {
    cluster_.send_room(push.app, push.user, message_of(push), [done, degraded](bool ok) {
      if (!ok) return degraded();
      done(Code::kOk, json::object{{"sendResults", true}});
    });
  } else {
    cluster_.send_user(UserKey{push.app, push.user}, message_of(push),
                       [done, degraded](bool ok, bool sent) {
                         if (!ok) return degraded();
                         done(Code::kOk, json::object{{"sendResults", sent}});
                       });
  }
}

}  // namespace imgate
