// The gowebsocket client commands (spec §2), with upstream's validation order:
// data must be an object (or null / absent), field types must match, then
// userID (non-empty, < 20 bytes), then appID (configured), then "already
// logged in".
#include <boost/json.hpp>
#include <algorithm>

#include "protocol/router.hpp"

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

Reply login(CommandContext& ctx, const json::value& data) {
  bool ok = false;
  const json::object* obj = data_object(data, ok);
  std::string token, user;
  uint32_t app = 0;
  if (!ok || !string_field(obj, "serviceToken", token) || !string_field(obj, "userID", user) ||
      !uint32_field(obj, "appID", app)) {
    return {Code::kParameterIllegal, nullptr};
  }
  if (user.empty() || user.size() > kMaxUserIdBytes) return {Code::kUnauthorizedUserId, nullptr};
  if (!std::binary_search(ctx.app_ids.begin(), ctx.app_ids.end(), app)) {
    return {Code::kUnauthorized, nullptr};
  }
  switch (ctx.shard.login(ctx.conn, app, user, ctx.now)) {
    case LoginStatus::kOk: return {Code::kOk, nullptr};
    case LoginStatus::kAlreadyLoggedIn: return {Code::kOperationFailure, nullptr};
    case LoginStatus::kUnknownConnection: break;
  }
  return {Code::kServerError, nullptr};
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
  return router;
}

}  // namespace imgate
