#include "backend/redis.hpp"

#include <boost/json.hpp>

#include "backend/embedded.hpp"
#include "protocol/envelope.hpp"

namespace imgate {

namespace json = boost::json;

namespace {
constexpr std::string_view kRedisDown = "redis unavailable";
constexpr std::string_view kOutcomeUnknown =
    "redis connection lost after the push was sent: it may have been delivered (and, with "
    "history, stored) or not; not delivered again here";

PushMessage message_of(const PushRequest& push) {
  return PushMessage{"msg", push.seq, push.msg, push.from};
}
}  // namespace

RedisBackend::RedisBackend(RedisCluster& cluster, Hub& hub, MsgIdDedup& local_dedup,
                           Counters& counters, const Config& config)
    : cluster_(cluster),
      hub_(hub),
      local_dedup_(local_dedup),
      counters_(counters),
      history_(config.history_size > 0) {}

RedisBackend::~RedisBackend() = default;

void RedisBackend::read_stream(const UserKey& stream, std::optional<StreamPos> since,
                               std::size_t limit, std::string reader,
                               std::function<void(bool, StreamRead)> done) {
  if (!history_) return done(false, {});
  const bool room = stream.user.empty();
  const bool offline = since && since->epoch == kSinceLeft;
  if (offline) since.reset();
  // Only what the reader may need leaves Redis: nothing for a position read
  // (epoch "-"), the entries after its offset otherwise (all for another epoch
  // would be useless, but its epoch is only known with the answer).
  int64_t wanted_after = 0;
  if (since && since->epoch == "-") {
    wanted_after = -1;
  } else if (since) {
    wanted_after = static_cast<int64_t>(std::min<uint64_t>(since->offset, INT64_MAX));
  }
  cluster_.read_stored(stream, wanted_after, offline, [since = std::move(since), limit,
                                              reader = std::move(reader), room,
                                              done = std::move(done)](
                                                 bool ok, RedisCluster::StoredStream s) {
    if (!ok) return done(false, {});
    StreamRead out;
    out.top = s.top;
    out.left = s.left;
    uint64_t after = 0;
    if (since && since->epoch != "*") {
      if (since->epoch != s.top.epoch && (!since->epoch.empty() || since->offset != 0)) {
        out.complete = false;  // another epoch: its offsets mean nothing here
        return done(true, std::move(out));
      }
      if (since->epoch == s.top.epoch) after = since->offset;
      if (after > s.top.offset) {
        // Beyond the top of its own epoch: the stream lost a tail the epoch
        // did not record (history_append.lua names the cases it cannot see).
        out.complete = false;
        return done(true, std::move(out));
      }
    } else if (since) {
      after = since->offset;
    }
    const uint64_t first = s.first;
    for (const std::string& text : s.entries) {
      json::error_code ec;
      json::value v = json::parse(text, ec);
      if (ec || !v.is_object()) continue;
      const json::object& e = v.get_object();
      auto field = [&](const char* name) -> std::string {
        const json::value* f = e.if_contains(name);
        return f && f->is_string() ? std::string(f->get_string()) : std::string();
      };
      const json::value* o = e.if_contains("o");
      if (!o || !o->is_number()) continue;
      const uint64_t offset = o->to_number<uint64_t>();
      if (offset <= after) continue;
      if (!reader.empty() && field("x") == reader) continue;
      if (limit != 0 && out.pushes.size() >= limit) continue;
      const StreamMark mark{room ? "room" : "user", s.top.epoch, offset};
      out.pushes.emplace_back(offset, make_push(field("s"), "msg", field("m"), field("f"), &mark));
    }
    out.complete = !since || after + 1 >= first || after >= s.top.offset;
    done(true, std::move(out));
  });
}

json::value RedisBackend::status() const {
  json::object o{{"nodeId", cluster_.node_id()},
                 {"redis", healthy() ? "up" : "down"},
                 {"liveNodes", cluster_.live_nodes()},
                 {"resyncsPending", cluster_.resyncs_pending()}};
  if (cluster_.on_redis_cluster()) {
    o["redisCluster"] = json::object{{"masters", cluster_.shards()},
                                     {"mastersUp", cluster_.shards_up()},
                                     {"roomCounts", cluster_.room_count_rounds()}};
  }
  return o;
}

void RedisBackend::list_users(AppId app, std::function<void(bool, std::vector<std::string>)> done) {
  cluster_.list_users(app, std::move(done));
}

void RedisBackend::online(AppId app, std::string user, std::function<void(bool, bool)> done) {
  cluster_.online(app, std::move(user), std::move(done));
}

void RedisBackend::publish(PushRequest push, PushDone done) {
  if (push.to_room) done = paced(hub_, std::move(done));
  if (push.dedup_key.empty()) return route(std::move(push), std::move(done), {});
  // History off: the msgID is set in the push's own script (one round trip;
  // on a Redis Cluster its key is in the target's slot). History on: the
  // history script would need it too: SET NX first.
  if (!history_) {
    std::string once = push.dedup_key;
    return route(std::move(push), std::move(done), std::move(once));
  }
  std::string id = push.dedup_key;
  const AppId app = push.app;
  const std::string user = push.to_room ? std::string() : push.user;
  cluster_.first_msg_id(app, user, id, [this, push = std::move(push), done = std::move(done)](
                                bool ok, bool first) mutable {
    // Without Redis, the node's own memory de-duplicates (degraded).
    if (!ok) first = local_dedup_.first_seen(push.dedup_key, Clock::now());
    if (!first) return answer_duplicate(counters_, done);
    route(std::move(push), std::move(done), {});
  });
}

void RedisBackend::route(PushRequest push, PushDone done, std::string once) {
  using Sent = RedisCluster::Sent;
  // Not sent (Redis unreachable): delivered on this node only, not kept; a
  // msgID the script did not get to check is de-duplicated in this node's
  // memory instead (as when SET NX fails). Unknown (the connection broke
  // after the command was written): Redis may have run it, stored and
  // published it to every node, this one included, so delivering it here as
  // well could double it: nothing more is done, and the answer says the
  // outcome is unknown (docs/http-api.md).
  auto failed = [this, push, done, checked = !once.empty()](Sent sent) {
    if (sent == Sent::kDuplicate) return answer_duplicate(counters_, done);
    if (sent == Sent::kUnknown) {
      Counters::bump(counters_.push_outcome_unknown);
      return done(Code::kOk, json::object{{"sendResults", false},
                                          {"sendResultsErr", std::string(kOutcomeUnknown)}});
    }
    if (checked && !local_dedup_.first_seen(push.dedup_key, Clock::now())) {
      return answer_duplicate(counters_, done);
    }
    const bool delivered = deliver_on_this_node(hub_, push);
    done(Code::kOk, json::object{{"sendResults", delivered},
                                 {"sendResultsErr",
                                  std::string(kRedisDown) + ": delivered on this node only"}});
  };
  if (history_) {
    UserKey stream{push.app, push.to_room ? std::string() : push.user};
    const bool to_room = push.to_room;
    cluster_.send_stored(std::move(stream), to_room ? push.user : std::string(), message_of(push),
                         [done, failed, to_room](Sent s, StreamPos pos, int64_t nodes) {
                           if (s != Sent::kDone) return failed(s);
                           const bool sent = to_room || nodes > 0;
                           json::object answer{{"sendResults", sent},
                                               {"epoch", pos.epoch},
                                               {"offset", pos.offset}};
                           if (!sent) answer["stored"] = true;
                           done(Code::kOk, std::move(answer));
                         });
    return;
  }
  if (push.to_room) {
    cluster_.send_room(push.app, push.user, message_of(push), std::move(once),
                       [done, failed](Sent s) {
                         if (s != Sent::kDone) return failed(s);
                         done(Code::kOk, json::object{{"sendResults", true}});
                       });
  } else {
    cluster_.send_user(UserKey{push.app, push.user}, message_of(push), std::move(once),
                       [done, failed](Sent s, bool sent) {
                         if (s != Sent::kDone) return failed(s);
                         done(Code::kOk, json::object{{"sendResults", sent}});
                       });
  }
}

}  // namespace imgate
