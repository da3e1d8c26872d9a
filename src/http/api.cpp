#include "http/api.hpp"

#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <thread>

#include "protocol/codes.hpp"

namespace imgate {

namespace http = boost::beast::http;
namespace json = boost::json;

namespace {

// Upstream's permissive CORS headers (controllers/base_controller.go).
void set_cors(HttpResponse& res) {
  res.set(http::field::access_control_allow_origin, "*");
  res.set(http::field::access_control_allow_headers,
          "Content-Type,AccessToken,X-CSRF-Token,Authorization,Token");
  res.set(http::field::access_control_allow_methods, "POST, GET, OPTIONS, PUT, DELETE,UPDATE");
  res.set(http::field::access_control_expose_headers,
          "Content-Length, Access-Control-Allow-Origin, Access-Control-Allow-Headers, "
          "Content-Type");
  res.set(http::field::access_control_allow_credentials, "true");
}

HttpResponse json_response(const HttpRequest& req, Code code, json::value data) {
  json::object body;
  body["code"] = static_cast<uint32_t>(code);
  body["msg"] = code_message(code);
  body["data"] = std::move(data);
  HttpResponse res{http::status::ok, req.version()};
  res.set(http::field::content_type, "application/json; charset=utf-8");
  set_cors(res);
  res.keep_alive(req.keep_alive());
  res.body() = json::serialize(body);
  res.prepare_payload();
  return res;
}

bool query_flag(const HttpRequest& req, std::string_view name) {
  auto url = boost::urls::parse_origin_form(req.target());
  if (!url) return false;
  auto it = url->params().find(name);
  return it != url->params().end() && (*it).value == "true";
}

json::object counters_json(const Counters& c) {
  auto get = [](const Counters::Counter& v) { return v.load(std::memory_order_relaxed); };
  json::object closes;
  for (std::size_t i = 0; i < Counters::kCloseSlots; ++i) {
    if (uint64_t n = get(c.closes_by_code[i])) {
      closes[i + 1 == Counters::kCloseSlots ? "other" : std::to_string(1000 + i)] = n;
    }
  }
  return json::object{
      {"connectionsOpened", get(c.connections_opened)},
      {"connectionsClosed", get(c.connections_closed)},
      {"logins", get(c.logins)},
      {"heartbeatTimeouts", get(c.heartbeat_timeouts)},
      {"sendQueueOverflows", get(c.send_queue_overflows)},
      {"handshakeFailures", get(c.handshake_failures)},
      {"rejectedConnections", get(c.rejected_connections)},
      {"messagesIn", get(c.messages_in)},
      {"messagesOut", get(c.messages_out)},
      {"bytesIn", get(c.bytes_in)},
      {"bytesOut", get(c.bytes_out)},
      {"badRequests", get(c.bad_requests)},
      {"closesByCode", std::move(closes)},
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
      {"roomsLen", hub.directory().room_count()},
      {"counters", counters_json(ctx.counters)},
  };
  return json::object{
      {"numCPU", std::thread::hardware_concurrency()},
      {"numGoroutine", hub.shard_count()},
      {"managerInfo", std::move(manager)},
      {"imgate", std::move(own)},
  };
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
  if (path == "/system/state") {
    if (!query_flag(req, "isDebug")) {
      reply(json_response(req, Code::kOk, system_state(ctx, nullptr)));
      return;
    }
    ctx.collect_connection_ids([&ctx, req, reply](std::vector<ConnId> ids) {
      reply(json_response(req, Code::kOk, system_state(ctx, &ids)));
    });
    return;
  }
  if (path == "/healthz") {
    reply(text_response(req, ctx.stopping ? http::status::service_unavailable : http::status::ok,
                        ctx.stopping ? "stopping\n" : "ok\n"));
    return;
  }
  reply(text_response(req, http::status::not_found, "404 page not found"));
}

}  // namespace imgate
