// HTTP API (spec §3): upstream-compatible routes plus /metrics and /healthz.
// Handlers are thin: parse and validate parameters, call the Hub, shape the
// upstream response {"code":..,"msg":..,"data":..}.
#include "http/api.hpp"

#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <charconv>
#include <thread>

#include "backend/backend.hpp"
#include "http/params.hpp"
#include "metrics/prometheus.hpp"
#include "protocol/codes.hpp"
#include "protocol/envelope.hpp"
#include "security/access.hpp"

namespace imgate {

namespace http = boost::beast::http;
namespace json = boost::json;

namespace {

// One API call in flight: the request, its parsed parameters, and the reply
// path (which counts the route and status).
struct Call {
  const HttpRequest& req;
  ServerContext& ctx;
  HttpReply reply;
  HttpRoute route;
  Params params;

  void send(HttpResponse res) {
    ctx.counters.count_http(route, res.result_int());
    reply(std::move(res));
  }
  void json_reply(Code code, json::value data);
  void bad_param(std::string detail) {
    spdlog::debug("HTTP {} {}: {}", std::string(req.method_string()), std::string(req.target()),
                  detail);
    json_reply(Code::kParameterIllegal, json::object{{"error", std::move(detail)}});
  }
};

void set_cors(const ServerContext& ctx, HttpResponse& res) {
  res.set(http::field::access_control_allow_origin, ctx.config.cors_origin);
  res.set(http::field::access_control_allow_headers,
          "Content-Type,AccessToken,X-CSRF-Token,Authorization,Token");
  res.set(http::field::access_control_allow_methods, "POST, GET, OPTIONS, PUT, DELETE,UPDATE");
  res.set(http::field::access_control_expose_headers,
          "Content-Length, Access-Control-Allow-Origin, Access-Control-Allow-Headers, "
          "Content-Type");
  res.set(http::field::access_control_allow_credentials, "true");
}

void Call::json_reply(Code code, json::value data) {
  json::object body;
  body["code"] = static_cast<uint32_t>(code);
  body["msg"] = code_message(code);
  body["data"] = std::move(data);
  HttpResponse res{http::status::ok, req.version()};
  res.set(http::field::content_type, "application/json; charset=utf-8");
  set_cors(ctx, res);
  res.keep_alive(req.keep_alive());
  res.body() = json::serialize(body);
  res.prepare_payload();
  send(std::move(res));
}

// appID: decimal uint32. Absent -> nullopt with `error` empty; bad -> error set.
std::optional<uint32_t> app_id_param(const Params& params, std::string& error) {
  auto text = params.get("appID");
  if (!text || text->empty()) return std::nullopt;
  uint32_t value = 0;
  auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc() || end != text->data() + text->size()) {
    error = "appID must be an unsigned 32-bit integer, got \"" + *text + "\"";
  }
  return value;
}

// Reads the parameters every push / lookup needs; replies with 1001 and
// returns false when one is bad.
bool require_app(Call& call, uint32_t& app) {
  std::string error;
  auto parsed = app_id_param(call.params, error);
  if (!error.empty()) return call.bad_param(error), false;
  if (!parsed) return call.bad_param("appID is required"), false;
  app = *parsed;
  return true;
}

bool require_text(Call& call, const char* name, std::string& out) {
  auto value = call.params.get(name);
  if (!value || value->empty()) return call.bad_param(std::string(name) + " is required"), false;
  out = std::move(*value);
  return true;
}

// Backend calls may answer later, on another thread: the call moves to the heap.
std::shared_ptr<Call> later(Call& call) { return std::make_shared<Call>(std::move(call)); }

void backend_unavailable(Call& call) {
  call.json_reply(Code::kServerError, json::object{{"error", "redis unavailable"}});
}

void reply_user_list(Call& call, const std::vector<std::string>& users) {
  json::array list;
  for (const auto& user : users) list.emplace_back(user);
  call.json_reply(Code::kOk, json::object{{"userCount", users.size()}, {"userList", list}});
}

void user_list(Call& call) {
  uint32_t app = 0;
  if (!require_app(call, app)) return;
  call.ctx.backend->list_users(app, [c = later(call)](bool ok, std::vector<std::string> users) {
    if (!ok) return backend_unavailable(*c);
    reply_user_list(*c, users);
  });
}

void user_online(Call& call) {
  std::string error, user;
  uint32_t app = app_id_param(call.params, error).value_or(0);  // 0 / absent: any app
  if (!error.empty()) return call.bad_param(error);
  if (!require_text(call, "userID", user)) return;
  call.ctx.backend->online(app, user, [c = later(call), user](bool ok, bool online) {
    if (!ok) return backend_unavailable(*c);
    c->json_reply(Code::kOk, json::object{{"online", online}, {"userID", user}});
  });
}

bool parse_push(Call& call, PushRequest& push) {
  if (!require_app(call, push.app) || !require_text(call, "userID", push.user) ||
      !require_text(call, "message", push.msg)) {
    return false;
  }
  push.from = push.user;
  push.seq = call.params.get("msgID").value_or("");
  push.dedup_key = push.seq;
  if (push.seq.empty()) {  // no id given: a generated one, no de-duplication
    push.seq = std::to_string(call.ctx.hub.next_push_seq());
  }
  return true;
}

void send_push(Call& call, bool to_room) {
  PushRequest push;
  push.to_room = to_room;
  if (!parse_push(call, push)) return;
  call.ctx.backend->publish(std::move(push), [c = later(call)](Code code, json::value data) {
    c->json_reply(code, std::move(data));
  });
}

// GET /user/history?appID=&userID=&since=&epoch=&limit= (docs/history.md): the
// kept pushes of a user's stream, or of the room without userID.
void user_history(Call& call) {
  uint32_t app = 0;
  if (!require_app(call, app)) return;
  const std::string user = call.params.get("userID").value_or("");
  auto number = [&](const char* name, uint64_t fallback, uint64_t max, uint64_t& out) {
    const auto text = call.params.get(name);
    out = fallback;
    if (!text || text->empty()) return true;
    auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), out);
    if (ec != std::errc() || end != text->data() + text->size() || out > max) {
      call.bad_param(std::string(name) + " must be an integer 0.." + std::to_string(max) +
                     ", got \"" + *text + "\"");
      return false;
    }
    return true;
  };
  uint64_t since = 0, limit = 0;
  if (!number("since", 0, UINT64_MAX, since) || !number("limit", 100, 1000, limit)) return;
  if (limit == 0) limit = 100;
  if (!call.ctx.backend->history_on()) {
    return call.json_reply(Code::kOperationFailure,
                           json::object{{"error", "history is off (--history-size 0)"}});
  }
  std::optional<StreamPos> from;
  if (auto epoch = call.params.get("epoch"); epoch && !epoch->empty()) {
    from = StreamPos{*epoch, since};
  } else if (since > 0) {
    from = StreamPos{"*", since};  // the stream's current epoch
  }
  call.ctx.backend->read_stream(
      UserKey{app, user}, from, limit, "", [c = later(call)](bool ok, StreamRead read) {
        if (!ok) return backend_unavailable(*c);
        json::array messages;
        for (const auto& [offset, frame] : read.pushes) {
          json::error_code ec;
          json::value push = json::parse(frame->payload(), ec);
          const json::value* data = ec ? nullptr : push.find_pointer("/response/data", ec);
          json::object m{{"offset", offset}};
          if (data && data->is_object()) {
            m["seq"] = push.at("seq");
            for (const char* field : {"msg", "from", "type"}) {
              if (const json::value* f = data->as_object().if_contains(field)) m[field] = *f;
            }
          }
          messages.push_back(std::move(m));
        }
        c->json_reply(Code::kOk, json::object{{"epoch", read.top.epoch},
                                              {"offset", read.top.offset},
                                              {"complete", read.complete},
                                              {"messages", std::move(messages)}});
      });
}

void send_message(Call& call) { send_push(call, false); }
void send_message_all(Call& call) { send_push(call, true); }

json::object counters_json(const Counters& c) {
  auto get = [](const Counters::Counter& v) { return v.load(std::memory_order_relaxed); };
  json::object closes;
  for (std::size_t i = 0; i < Counters::kCloseSlots; ++i) {
    if (uint64_t n = get(c.closes_by_code[i])) {
      closes[i + 1 == Counters::kCloseSlots ? "other" : std::to_string(1000 + i)] = n;
    }
  }
  json::object limits;
  for (std::size_t i = 0; i < kLimits; ++i) limits[kLimitStateNames[i]] = get(c.limit_closes[i]);
  return json::object{
      {"connectionsOpened", get(c.connections_opened)},
      {"connectionsClosed", get(c.connections_closed)},
      {"logins", get(c.logins)},
      {"heartbeatTimeouts", get(c.heartbeat_timeouts)},
      {"sendQueueOverflows", get(c.send_queue_overflows)},
      {"handshakeFailures", get(c.handshake_failures)},
      {"rejectedConnections", get(c.rejected_connections)},
      {"httpRejectedConnections", get(c.http_rejected_connections)},
      {"httpIdleCloses", get(c.http_idle_closes)},
      {"descriptorRefusals", get(c.descriptor_refusals)},
      {"originRejections", get(c.origin_rejections)},
      {"apiKeyRejections", get(c.api_key_rejections)},
      {"tokenRejections", get(c.token_rejections)},
      {"tokenRefreshes", get(c.token_refreshes)},
      {"messagesIn", get(c.messages_in)},
      {"messagesOut", get(c.messages_out)},
      {"wsWrites", get(c.ws_writes)},
      {"bytesIn", get(c.bytes_in)},
      {"bytesOut", get(c.bytes_out)},
      {"badRequests", get(c.bad_requests)},
      {"closesByCode", std::move(closes)},
      {"limitCloses", std::move(limits)},
  };
}

json::value system_state(ServerContext& ctx, const std::vector<ConnId>* clients) {
  Hub& hub = ctx.hub;
  json::object manager{
      {"chanBroadcastLen", 0}, {"chanLoginLen", 0},  {"chanRegisterLen", 0},
      {"chanUnregisterLen", 0}, {"clientsLen", hub.connections()},
      {"usersLen", hub.directory().user_count()},
  };
  if (clients) {
    json::array ids;
    for (ConnId id : *clients) ids.emplace_back(std::to_string(id));
    manager["clients"] = std::move(ids);
    json::array users;
    for (auto& key : hub.directory().user_keys()) users.emplace_back(key);
    manager["users"] = std::move(users);
  }
  json::array per_thread;
  for (auto n : hub.connections_per_shard()) per_thread.emplace_back(n);
  auto uptime = std::chrono::duration<double>(Clock::now() - ctx.started).count();
  json::object own{
      {"version", IMGATE_VERSION},
      {"uptimeSeconds", uptime},
      {"threads", hub.shard_count()},
      {"connectionsPerThread", std::move(per_thread)},
      {"sessions", ctx.ws_sessions.load(std::memory_order_relaxed)},
      {"maxConnections", ctx.config.max_connections},
      {"roomsLen", hub.directory().room_count()},
      {"counters", counters_json(ctx.counters)},
  };
  if (ctx.http_connections) own["httpSessions"] = ctx.http_connections->open();
  if (ctx.clients) {
    // The per-client limits' table: addresses tracked, connections counted there.
    own["clientAddresses"] = ctx.clients->addresses();
    own["clientConnections"] = ctx.clients->connections();
  }
  if (json::value status = ctx.backend->status(); !status.is_null()) {
    own["cluster"] = std::move(status);
  }
  return json::object{
      {"numCPU", std::thread::hardware_concurrency()},
      {"numGoroutine", hub.shard_count()},
      {"managerInfo", std::move(manager)},
      {"imgate", std::move(own)},
  };
}

void system_state_route(Call& call) {
  if (call.params.get("isDebug").value_or("") != "true") {
    return call.json_reply(Code::kOk, system_state(call.ctx, nullptr));
  }
  auto shared = later(call);
  shared->ctx.collect_connection_ids([shared](std::vector<ConnId> ids) {
    shared->json_reply(Code::kOk, system_state(shared->ctx, &ids));
  });
}

// Replaces every `{{name}}` in `page`.
void substitute(std::string& page, std::string_view name, std::string_view value) {
  const std::string token = "{{" + std::string(name) + "}}";
  for (auto pos = page.find(token); pos != std::string::npos;
       pos = page.find(token, pos + value.size())) {
    page.replace(pos, token.size(), value);
  }
}

// The inside of a JSON string literal, safe inside <script> (no "</script>").
std::string script_json(std::string_view text) {
  std::string quoted = json::serialize(json::string(text));
  std::string safe;
  for (char c : std::string_view(quoted).substr(1, quoted.size() - 2)) {
    switch (c) {
      case '<': safe += "\\u003c"; break;
      case '>': safe += "\\u003e"; break;
      case '&': safe += "\\u0026"; break;
      default: safe += c;
    }
  }
  return safe;
}

void home_index(Call& call) {
  const WebAsset* page = call.ctx.web.find("index.html");
  if (!page) return call.send(text_response(call.req, http::status::not_found, "no chat page\n"));
  const auto& apps = call.ctx.config.app_ids;
  std::string error;
  uint32_t app = app_id_param(call.params, error).value_or(0);
  if (!error.empty() || std::find(apps.begin(), apps.end(), app) == apps.end()) app = apps.front();
  // webSocketUrl as upstream writes it (host:port) or a full URL; empty: this host.
  std::string ws_url = call.ctx.config.web_socket_url;
  if (ws_url.empty()) {
    std::string host(call.req[http::field::host]);
    if (host.empty()) host = "127.0.0.1";
    if (auto colon = host.rfind(':'); colon != std::string::npos && host.back() != ']') {
      host.resize(colon);
    }
    ws_url = host + ":" + std::to_string(call.ctx.ws_port);
  }
  if (ws_url.find("://") == std::string::npos) ws_url = "ws://" + ws_url + call.ctx.config.ws_path;
  std::string body = page->body;
  substitute(body, "WS_URL", script_json(ws_url));
  substitute(body, "APP_ID", std::to_string(app));
  substitute(body, "HTTP_BASE", script_json(""));
  HttpResponse res{http::status::ok, call.req.version()};
  res.set(http::field::content_type, page->content_type);
  res.set(http::field::cache_control, "no-cache");
  res.keep_alive(call.req.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  call.send(std::move(res));
}

void static_asset(Call& call, std::string_view name) {
  const WebAsset* asset =
      name.find('/') == std::string_view::npos ? call.ctx.web.find(name) : nullptr;
  if (!asset) return call.send(text_response(call.req, http::status::not_found, "404 page not found"));
  HttpResponse res{http::status::ok, call.req.version()};
  res.set(http::field::content_type, asset->content_type);
  res.set(http::field::cache_control, "no-cache");
  res.keep_alive(call.req.keep_alive());
  res.body() = asset->body;
  res.prepare_payload();
  call.send(std::move(res));
}

// `GET /`: 302 to the chat page, keeping the query (`/?appID=102` opens room 102).
void redirect_to_chat_page(Call& call, std::string_view query) {
  HttpResponse res{http::status::found, call.req.version()};
  res.set(http::field::location, "/home/index" + std::string(query));
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.keep_alive(call.req.keep_alive());
  res.body() = "see /home/index\n";
  res.prepare_payload();
  call.send(std::move(res));
}

struct RouteEntry {
  std::string_view path;
  HttpRoute id;
  void (*handler)(Call&);
};

constexpr RouteEntry kRoutes[] = {
    {"/user/list", HttpRoute::kUserList, user_list},
    {"/user/online", HttpRoute::kUserOnline, user_online},
    {"/user/sendMessage", HttpRoute::kSendMessage, send_message},
    {"/user/sendMessageAll", HttpRoute::kSendMessageAll, send_message_all},
    {"/user/history", HttpRoute::kUserHistory, user_history},
    {"/system/state", HttpRoute::kSystemState, system_state_route},
    {"/home/index", HttpRoute::kHomeIndex, home_index},
};

// Routes that need an API key when keys are configured: every /user/* path, and with
// --protect-metrics /system/state and /metrics. /healthz, /home/index and /web/* stay open.
bool needs_api_key(const Config& config, std::string_view path) {
  if (config.api_keys.empty()) return false;
  if (path.starts_with("/user/")) return true;
  return config.protect_metrics && (path == "/system/state" || path == "/metrics");
}

// 401 in the upstream error shape: {"code":1003,"msg":..,"data":{"error":..}}, with
// WWW-Authenticate: Bearer; the connection is closed after it.
void unauthorized(Call& call, std::string_view error) {
  Counters::bump(call.ctx.counters.api_key_rejections);
  json::object body;
  body["code"] = static_cast<uint32_t>(Code::kUnauthorized);
  body["msg"] = code_message(Code::kUnauthorized);
  body["data"] = json::object{{"error", error}};
  HttpResponse res{http::status::unauthorized, call.req.version()};
  res.set(http::field::content_type, "application/json; charset=utf-8");
  res.set(http::field::www_authenticate, "Bearer");
  set_cors(call.ctx, res);
  res.keep_alive(false);
  res.body() = json::serialize(body);
  res.prepare_payload();
  call.send(std::move(res));
}

// False (after answering 401) when the request lacks a valid key.
bool authorized(Call& call) {
  const auto header = [&](http::field f) {
    const auto v = call.req[f];
    return std::string_view(v.data(), v.size());
  };
  const auto x_api_key = call.req["X-API-Key"];
  const std::string_view key = presented_api_key(
      header(http::field::authorization), std::string_view(x_api_key.data(), x_api_key.size()));
  if (key.empty()) {
    unauthorized(call, "API key required: send Authorization: Bearer <key> or X-API-Key: <key>");
    return false;
  }
  if (!api_key_matches(key, call.ctx.config.api_keys)) {
    unauthorized(call, "invalid API key");
    return false;
  }
  return true;
}

}  // namespace

HttpResponse text_response(const HttpRequest& request, http::status status, std::string body) {
  HttpResponse res{status, request.version()};
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.keep_alive(request.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

void serve_api(const HttpRequest& req, ServerContext& ctx, HttpReply reply) {
  std::string_view target(req.target().data(), req.target().size());
  std::string_view path = target.substr(0, target.find('?'));
  Call call{req, ctx, std::move(reply), HttpRoute::kOther, {}};

  if (path == "/healthz") {
    call.route = HttpRoute::kHealthz;
    if (ctx.stopping.load()) {
      return call.send(text_response(req, http::status::service_unavailable, "stopping\n"));
    }
    // Degraded still answers 200: local traffic works without Redis.
    const std::string degraded = ctx.backend->degraded();
    return call.send(text_response(req, http::status::ok,
                                   degraded.empty() ? "ok\n" : "degraded: " + degraded + "\n"));
  }
  // A CORS preflight carries no credentials (browsers never send them on it) and
  // returns no data: it stays open; the real request then needs the key.
  if (req.method() != http::verb::options && needs_api_key(ctx.config, path)) {
    if (path == "/metrics") call.route = HttpRoute::kMetrics;
    for (const auto& r : kRoutes) {
      if (r.path == path) call.route = r.id;
    }
    if (!authorized(call)) return;
  }
  if (path == "/metrics") {
    call.route = HttpRoute::kMetrics;
    HttpResponse res{http::status::ok, req.version()};
    res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
    res.keep_alive(req.keep_alive());
    res.body() = render_prometheus(ctx.counters, ctx.metrics_snapshot());
    res.prepare_payload();
    return call.send(std::move(res));
  }
  if (path.starts_with("/web/")) {
    call.route = HttpRoute::kStatic;
    return static_asset(call, path.substr(5));
  }
  if (path == "/" && req.method() == http::verb::get) {
    return redirect_to_chat_page(call, target.substr(path.size()));
  }
  const RouteEntry* route = nullptr;
  for (const auto& r : kRoutes) {
    if (r.path == path) route = &r;
  }
  if (!route || (req.method() != http::verb::get && req.method() != http::verb::post &&
                 req.method() != http::verb::options)) {
    return call.send(text_response(req, http::status::not_found, "404 page not found"));
  }
  call.route = route->id;
  if (req.method() == http::verb::options) {  // CORS preflight
    HttpResponse res{http::status::no_content, req.version()};
    set_cors(ctx, res);
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
    return call.send(std::move(res));
  }
  std::string error;
  auto params = Params::parse(target, req[http::field::content_type], req.body(), error);
  if (!params) return call.bad_param(error);
  call.params = std::move(*params);
  route->handler(call);
}

}  // namespace imgate
