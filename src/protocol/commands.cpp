// The gowebsocket client commands (spec §2), with upstream's validation order:
// data must be an object (or null / absent), field types must match, then
// userID (non-empty, < 20 bytes), then appID (configured), then (token mode)
// the token, then "already logged in". imgate's own commands: refresh,
// publish and users (docs/security.md).
#include <boost/json.hpp>
#include <algorithm>
#include <memory>

#include "protocol/envelope.hpp"
#include "protocol/router.hpp"
#include "security/token.hpp"

namespace imgate {

namespace json = boost::json;

namespace {

// Data of a command is either absent/null (all fields empty) or an object.
const json::object* data_object(const json::value& data, bool& ok) {
  ok = data.is_null() || data.is_object();
  return data.is_object() ? &data.get_object() : nullptr;
}

// Reads an optional string field; false if present with another type.
bool string_field(const json::object* obj, std::string_view name, std::string& out) {
  if (!obj) return true;
  const json::value* v = obj->if_contains(name);
  if (!v || v->is_null()) return true;
  if (!v->is_string()) return false;
  out = v->get_string();
  return true;
}

// Reads an optional uint32 field; false if present and not an integer in range.
bool uint32_field(const json::object* obj, std::string_view name, uint32_t& out) {
  if (!obj) return true;
  const json::value* v = obj->if_contains(name);
  if (!v || v->is_null()) return true;
  if (v->is_uint64() && v->get_uint64() <= UINT32_MAX) {
    out = static_cast<uint32_t>(v->get_uint64());
    return true;
  }
  if (v->is_int64() && v->get_int64() >= 0 && v->get_int64() <= UINT32_MAX) {
    out = static_cast<uint32_t>(v->get_int64());
    return true;
  }
  return false;
}

constexpr std::size_t kMaxUserIdBytes = 19;  // upstream: len(userID) >= 20 is refused

const TokenVerifier* tokens_of(const CommandContext& ctx) {
  return ctx.services ? ctx.services->tokens() : nullptr;
}

// Token mode: a refused login or refresh counts against the connection; at
// max_failed_logins it is closed (1008) once the reply is out.
Reply refused(CommandContext& ctx, Code code, std::string_view error) {
  if (ctx.max_failed_logins != 0 &&
      ctx.shard.count_failed_login(ctx.conn) >= ctx.max_failed_logins) {
    if (ctx.counters) ctx.counters->count_limit(Limit::kFailedLogins);
    ctx.close_code = close_code::kPolicyViolation;
    ctx.close_reason = "too many failed logins";
    ctx.end_reason = EndReason::kPolicy;
  }
  if (error.empty()) return {code, nullptr};
  return {code, json::object{{"error", error}}};
}

Reply token_refused(CommandContext& ctx, std::string_view error) {
  if (ctx.counters) Counters::bump(ctx.counters->token_rejections);
  return refused(ctx, Code::kUnauthorized, error);
}

// The token's deadline on the steady clock: exp + leeway, as far from now as
// it is on the wall clock (capped at ten years).
TimePoint token_deadline(const CommandContext& ctx, const TokenVerifier& tokens, int64_t exp) {
  constexpr int64_t kMaxAhead = int64_t{10} * 365 * 24 * 3600;
  const int64_t ahead = std::clamp<int64_t>(
      exp > INT64_MAX - tokens.leeway().count() ? kMaxAhead
                                                : exp + tokens.leeway().count() - ctx.services->unix_now(),
      0, kMaxAhead);
  return ctx.now + std::chrono::seconds(ahead);
}

// Checks a token for (app, user); "" when it may log in.
std::string check_token(const CommandContext& ctx, const TokenVerifier& tokens,
                        std::string_view token, AppId app, std::string_view user,
                        TokenClaims& claims) {
  if (std::string error = tokens.verify(token, ctx.services->unix_now(), claims); !error.empty()) {
    return error;
  }
  if (claims.sub != user) return "token sub does not match userID";
  if (!claims.allows_app(app)) return "appID not granted by the token";
  return {};
}

// data.recover of a login: {"room": {"epoch": "..", "offset": N}, "user": {...}},
// either part optional. False when present and malformed.
struct Recover {
  bool asked = false;
  std::optional<StreamPos> room, user;
};

bool stream_pos_field(const json::object& obj, std::string_view name, std::optional<StreamPos>& out) {
  const json::value* v = obj.if_contains(name);
  if (!v || v->is_null()) return true;
  if (!v->is_object()) return false;
  const json::object& pos = v->get_object();
  StreamPos p;
  const json::value* epoch = pos.if_contains("epoch");
  const json::value* offset = pos.if_contains("offset");
  if (epoch && !epoch->is_null()) {
    if (!epoch->is_string()) return false;
    p.epoch = epoch->get_string();
  }
  if (offset && !offset->is_null()) {
    if (offset->is_uint64()) {
      p.offset = offset->get_uint64();
    } else if (offset->is_int64() && offset->get_int64() >= 0) {
      p.offset = static_cast<uint64_t>(offset->get_int64());
    } else {
      return false;
    }
  }
  out = std::move(p);
  return true;
}

bool recover_field(const json::object* obj, Recover& out) {
  if (!obj) return true;
  const json::value* v = obj->if_contains("recover");
  if (!v || v->is_null()) return true;
  if (!v->is_object()) return false;
  out.asked = true;
  return stream_pos_field(v->get_object(), "room", out.room) &&
         stream_pos_field(v->get_object(), "user", out.user);
}

json::object position_json(const StreamPos& pos) {
  return json::object{{"epoch", pos.epoch}, {"offset", pos.offset}};
}

// History on, after a successful login: the pushes the client missed (asked
// for with data.recover, or, on the user's first connection without it, its
// offline messages) go out right after the reply, and live deliveries below
// what they covered skip the connection. Adds the streams' positions (and
// "recovered") to the reply's data.
void catch_up(CommandContext& ctx, AppId app, std::string_view user, const Recover& recover,
              bool first, json::object& data) {
  CommandServices& services = *ctx.services;
  const UserKey room_stream{app, ""};
  const UserKey user_stream{app, std::string(user)};
  bool complete = true;
  uint64_t room_floor = 0, user_floor = 0;
  auto take = [&](const StreamRead& read, uint64_t& floor) {
    for (const auto& [offset, frame] : read.pushes) ctx.after_reply.push_back(frame);
    floor = read.top.offset;
    complete = complete && read.complete;
  };
  StreamPos room_pos, user_pos;
  if (recover.asked && recover.room) {
    StreamRead read = services.read_stream(room_stream, recover.room, user);
    take(read, room_floor);
    room_pos = read.top;
  } else {
    room_pos = services.stream_position(room_stream);
  }
  if (recover.asked && recover.user) {
    StreamRead read = services.read_stream(user_stream, recover.user, user);
    take(read, user_floor);
    user_pos = read.top;
  } else if (!recover.asked && first) {
    // Offline messages: what was stored since the user's last connection went away.
    StreamRead read = services.read_stream(user_stream, services.user_left_at(user_stream), user);
    take(read, user_floor);
    user_pos = read.top;
    if (!read.pushes.empty()) data["offline"] = read.pushes.size();
  } else {
    user_pos = services.stream_position(user_stream);
  }
  ctx.shard.set_floors(ctx.conn, room_floor, user_floor);
  if (user_floor != 0) ctx.shard.note_delivered(ctx.conn, user_pos);
  data["room"] = position_json(room_pos);
  data["user"] = position_json(user_pos);
  if (recover.asked) data["recovered"] = complete;
}

// catch_up when the history is in Redis: the connection is already in the
// indexes, so live deliveries to it are held while both streams are read;
// then, on its shard, the reply goes out, then the missed pushes, then the held
// ones above them (in order), and the floors take care of deliveries still
// queued. The same merge by offset as catch_up, spread over a round trip.
struct LaterLogin {
  ConnId conn;
  std::string seq, cmd, user;
  Recover recover;
  bool first = false;
  json::object reply;
  StreamRead room, own;  // read results
  bool ok = true;
};

void finish_later(Shard& shard, const std::shared_ptr<LaterLogin>& l) {
  std::vector<Shard::Held> held = shard.release_hold(l->conn);
  if (!shard.contains(l->conn)) return;  // gone meanwhile: unlink dropped everything
  json::object data = std::move(l->reply);
  bool complete = l->ok;
  std::vector<Frame> frames;
  uint64_t room_floor = 0, user_floor = 0;
  auto take = [&](const StreamRead& read, uint64_t& floor) {
    for (const auto& [offset, frame] : read.pushes) frames.push_back(frame);
    floor = read.top.offset;
    complete = complete && read.complete;
  };
  const bool room_asked = l->recover.asked && l->recover.room;
  const bool user_asked = l->recover.asked && l->recover.user;
  const bool offline = !l->recover.asked && l->first;
  if (room_asked) take(l->room, room_floor);
  if (user_asked || offline) take(l->own, user_floor);
  if (user_floor != 0) shard.note_delivered(l->conn, l->own.top);
  if (offline && !l->own.pushes.empty()) data["offline"] = l->own.pushes.size();
  data["room"] = position_json(l->room.top);
  data["user"] = position_json(l->own.top);
  if (l->recover.asked) data["recovered"] = complete;
  shard.send_to(l->conn, make_frame(make_response(l->seq, l->cmd, Code::kOk, data)));
  for (const Frame& f : frames) shard.send_to(l->conn, f);
  for (const Shard::Held& h : held) {
    const uint64_t floor = h.room ? room_floor : user_floor;
    if (h.offset != 0 && h.offset <= floor) continue;  // already sent from history
    shard.send_to(l->conn, h.frame);
    if (h.offset != 0) (h.room ? room_floor : user_floor) = std::max(floor, h.offset);
  }
  shard.set_floors(l->conn, room_floor, user_floor);
}

// What a login answers once its room is heard (answer_login).
struct LoginAnswer {
  ConnId conn;
  std::string seq, cmd, user;
  AppId app = 0;
  Recover recover;
  bool first = false;
  bool history = false;  // read from Redis (catch_up_later)
  json::value reply;     // data: null (upstream's), or {"exp"} in token mode
};

void catch_up_later(Shard& shard, CommandServices& services, const LoginAnswer& a);

// Cluster mode: the login was held until Redis routes the user's pushes here
// (CommandServices::await_login); answer it now, then what was delivered to
// it meanwhile.
void answer_login(Shard& shard, CommandServices& services, const LoginAnswer& a) {
  if (a.history) return catch_up_later(shard, services, a);  // releases the hold itself
  std::vector<Shard::Held> held = shard.release_hold(a.conn);
  if (!shard.contains(a.conn)) return;
  shard.send_to(a.conn, make_frame(make_response(a.seq, a.cmd, Code::kOk, a.reply)));
  for (const Shard::Held& h : held) shard.send_to(a.conn, h.frame);
}

void catch_up_later(Shard& shard, CommandServices& services, const LoginAnswer& a) {
  if (!shard.contains(a.conn)) return;
  auto l = std::make_shared<LaterLogin>();
  l->conn = a.conn;
  l->seq = a.seq;
  l->cmd = a.cmd;
  l->user = a.user;
  l->recover = a.recover;
  l->first = a.first;
  if (a.reply.is_object()) l->reply = a.reply.get_object();
  const AppId app = a.app;
  const Recover& recover = a.recover;
  shard.hold(a.conn);
  const UserKey room_stream{app, ""};
  const UserKey user_stream{app, a.user};
  // Room first, then the user stream (its `left` mark gives the offline start).
  std::optional<StreamPos> room_since =
      recover.asked && recover.room ? recover.room : std::optional<StreamPos>(StreamPos{"-", 0});
  services.read_later(
      a.conn, room_stream, room_since, l->user,
      [l, &services, user_stream](Shard&, bool ok, StreamRead room) {
        l->ok = ok;
        l->room = std::move(room);
        std::optional<StreamPos> since{StreamPos{"-", 0}};  // position only
        const bool offline = !l->recover.asked && l->first;
        if (l->recover.asked && l->recover.user) since = l->recover.user;
        if (offline) since = StreamPos{std::string(kSinceLeft), 0};
        services.read_later(
            l->conn, user_stream, since, l->user,
            [l, offline](Shard& shard2, bool ok2, StreamRead own) {
              l->ok = l->ok && ok2;
              if (offline && own.left) {
                // Only what came after the user's last connection left.
                std::vector<std::pair<uint64_t, Frame>> after;
                for (auto& p : own.pushes) {
                  if (p.first > *own.left) after.push_back(std::move(p));
                }
                own.pushes = std::move(after);
              }
              l->own = std::move(own);
              finish_later(shard2, l);
            });
      });
}

Reply login(CommandContext& ctx, const json::value& data) {
  bool ok = false;
  const json::object* obj = data_object(data, ok);
  std::string token, user;
  uint32_t app = 0;
  Recover recover;
  const TokenVerifier* tokens = tokens_of(ctx);
  // Token mode counts a refused login and gives a reason where there is one;
  // the default mode answers data null, as upstream.
  const auto fail = [&](Code code, std::string_view reason = {}) {
    return tokens ? refused(ctx, code, reason) : Reply{code, nullptr};
  };
  if (!ok || !string_field(obj, "serviceToken", token) || !string_field(obj, "userID", user) ||
      !uint32_field(obj, "appID", app) || !recover_field(obj, recover)) {
    return fail(Code::kParameterIllegal);
  }
  if (user.empty() || user.size() > kMaxUserIdBytes) return fail(Code::kUnauthorizedUserId);
  if (!std::binary_search(ctx.app_ids.begin(), ctx.app_ids.end(), app)) {
    return fail(Code::kUnauthorized, "appID is not configured");
  }
  TokenClaims claims;
  if (tokens) {
    if (ctx.shard.logged_in(ctx.conn)) return {Code::kOperationFailure, nullptr};
    if (std::string error = check_token(ctx, *tokens, token, app, user, claims); !error.empty()) {
      return token_refused(ctx, error);
    }
  }
  bool first = false;
  switch (ctx.shard.login(ctx.conn, app, user, ctx.now, &first)) {
    case LoginStatus::kOk: {
      const bool history = ctx.services && ctx.services->history_on();
      json::object reply;
      if (tokens) {
        ctx.shard.set_token_deadline(ctx.conn, token_deadline(ctx, *tokens, claims.exp));
        reply["exp"] = claims.exp;
      }
      const bool later = history && !ctx.services->history_inline();
      if (ctx.services) {
        // Cluster mode: not answered before Redis routes the user's pushes
        // here, so that every push sent after the reply reaches the client.
        auto a = std::make_shared<LoginAnswer>(LoginAnswer{
            ctx.conn, std::string(ctx.seq), std::string(ctx.cmd), user, app, recover, first, later,
            tokens || history ? json::value(reply) : json::value(nullptr)});
        CommandServices* services = ctx.services;
        if (!services->await_login(ctx.conn, UserKey{app, user}, [services, a](Shard& shard) {
              answer_login(shard, *services, *a);
            })) {
          // Deliveries wait behind the reply (the answer runs on this
          // thread, after this handler).
          ctx.shard.hold(ctx.conn);
          return Reply::answered_later();
        }
        if (later) {
          catch_up_later(ctx.shard, *services, *a);
          return Reply::answered_later();
        }
      }
      if (!tokens && !history) return {Code::kOk, nullptr};  // upstream's reply
      if (history) catch_up(ctx, app, user, recover, first, reply);
      return {Code::kOk, std::move(reply)};
    }
    case LoginStatus::kAlreadyLoggedIn: return {Code::kOperationFailure, nullptr};
    case LoginStatus::kUnknownConnection: break;
  }
  return {Code::kServerError, nullptr};
}

// {"serviceToken": "<newer token>"}: moves the connection's token deadline.
// Same sub as the login, and the token must allow the connection's appID.
Reply refresh(CommandContext& ctx, const json::value& data) {
  const TokenVerifier* tokens = tokens_of(ctx);
  if (!tokens) return {Code::kRoutingNotExist, nullptr};  // not a command without tokens
  bool ok = false;
  const json::object* obj = data_object(data, ok);
  std::string token;
  if (!ok || !string_field(obj, "serviceToken", token)) {
    return refused(ctx, Code::kParameterIllegal, {});
  }
  const UserKey* key = ctx.shard.user_of(ctx.conn);
  if (!key) return {Code::kNotLoggedIn, nullptr};
  TokenClaims claims;
  if (std::string error = check_token(ctx, *tokens, token, key->app, key->user, claims);
      !error.empty()) {
    return token_refused(ctx, error);
  }
  ctx.shard.set_token_deadline(ctx.conn, token_deadline(ctx, *tokens, claims.exp));
  if (ctx.counters) Counters::bump(ctx.counters->token_refreshes);
  return {Code::kOk, json::object{{"exp", claims.exp}}};
}

// {"message": "<text>", "msgID": "<optional id>"}: a msg push to the
// connection's own room, as POST /user/sendMessageAll with its appID and
// userID would send it. Answered once the push is routed.
Reply publish(CommandContext& ctx, const json::value& data) {
  bool ok = false;
  const json::object* obj = data_object(data, ok);
  std::string message, msg_id;
  if (!ok || !string_field(obj, "message", message) || !string_field(obj, "msgID", msg_id) ||
      message.empty()) {
    return {Code::kParameterIllegal, json::object{{"error", "message (a non-empty string) is required"}}};
  }
  const UserKey* key = ctx.shard.user_of(ctx.conn);
  if (!key) return {Code::kNotLoggedIn, nullptr};
  if (!ctx.services) return {Code::kServerError, nullptr};
  CommandServices* services = ctx.services;
  services->publish_room(key->app, key->user, std::move(msg_id), std::move(message),
                         [services, conn = ctx.conn, seq = std::string(ctx.seq),
                          cmd = std::string(ctx.cmd)](Reply reply) {
                           services->send_later(conn, make_response(seq, cmd, reply.code, reply.data));
                         });
  return Reply::answered_later();
}

// The users online in the connection's own room, in GET /user/list's shape:
// {"userCount": N, "userList": [the first kMaxUsersListed in byte order]},
// plus "truncated": true when the list was cut. data may be empty or name the
// own appID; another room is refused. Redis down: 1004, as the HTTP API.
json::object user_list_data(std::vector<std::string> users) {
  const std::size_t count = users.size();
  const std::size_t listed = std::min(count, kMaxUsersListed);
  std::partial_sort(users.begin(), users.begin() + static_cast<std::ptrdiff_t>(listed), users.end());
  json::array list;
  list.reserve(listed);
  for (std::size_t i = 0; i < listed; ++i) list.emplace_back(users[i]);
  json::object data{{"userCount", count}, {"userList", std::move(list)}};
  if (listed < count) data["truncated"] = true;
  return data;
}

Reply users(CommandContext& ctx, const json::value& data) {
  bool ok = false;
  const json::object* obj = data_object(data, ok);
  uint32_t app = 0;
  if (!ok || !uint32_field(obj, "appID", app)) return {Code::kParameterIllegal, nullptr};
  const UserKey* key = ctx.shard.user_of(ctx.conn);
  if (!key) return {Code::kNotLoggedIn, nullptr};
  if (app != 0 && app != key->app) {
    return {Code::kUnauthorized, json::object{{"error", "only the connection's own room"}}};
  }
  if (!ctx.services) return {Code::kServerError, nullptr};
  CommandServices* services = ctx.services;
  services->list_room_users(
      key->app, [services, conn = ctx.conn, seq = std::string(ctx.seq),
                 cmd = std::string(ctx.cmd)](bool found, std::vector<std::string> list) {
        if (!found) {
          services->send_later(conn, make_response(seq, cmd, Code::kServerError,
                                                   json::object{{"error", "redis unavailable"}}));
          return;
        }
        services->send_later(conn, make_response(seq, cmd, Code::kOk, user_list_data(std::move(list))));
      });
  return Reply::answered_later();
}

Reply heartbeat(CommandContext& ctx, const json::value& data) {
  bool ok = false;
  const json::object* obj = data_object(data, ok);
  std::string user;  // upstream sends it; the connection's own login is what counts
  if (!ok || !string_field(obj, "userID", user)) return {Code::kParameterIllegal, nullptr};
  if (!ctx.shard.heartbeat(ctx.conn, ctx.now)) return {Code::kNotLoggedIn, nullptr};
  return {Code::kOk, nullptr};
}

Reply ping(CommandContext&, const json::value&) { return {Code::kOk, "pong"}; }

}  // namespace

Router make_default_router() {
  Router router;
  router.add("login", login);
  router.add("heartbeat", heartbeat);
  router.add("ping", ping);
  router.add("refresh", refresh);
  router.add("publish", publish);
  router.add("users", users);
  return router;
}

}  // namespace imgate
