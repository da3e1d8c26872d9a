#include "cluster/redis_cluster.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <cstdlib>
#include <future>
#include <random>

#include "cluster/lua_scripts.hpp"
#include "protocol/envelope.hpp"

namespace imgate {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

std::string random_node_id() {
  std::random_device rd;
  std::mt19937_64 rng(rd() ^ static_cast<uint64_t>(Clock::now().time_since_epoch().count()));
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  for (int i = 0; i < 12; ++i) id += kHex[rng() % 16];
  return id;
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::vector<std::string> eval(const char* script, std::vector<std::string> keys,
                              std::vector<std::string> args) {
  std::vector<std::string> cmd{"EVAL", script, std::to_string(keys.size())};
  for (auto& k : keys) cmd.push_back(std::move(k));
  for (auto& a : args) cmd.push_back(std::move(a));
  return cmd;
}

}  // namespace

RedisCluster::RedisCluster(const Config& config, Hub& hub)
    : config_(config),
      hub_(hub),
      prefix_(config.redis_prefix),
      node_id_(random_node_id()),
      refresh_timer_(loop_),
      reap_timer_(loop_),
      reconcile_timer_(loop_) {
  RedisEndpoint ep = RedisEndpoint::parse(config.redis_addr);
  ep.password = config.redis_password;
  ep.db = config.redis_db;
  cmd_ = std::make_shared<RedisConnection>(loop_, ep, node_id_ + "-cmd", false);
  sub_ = std::make_shared<RedisConnection>(loop_, ep, node_id_ + "-sub", true);
  cmd_->on_ready = [this] { on_command_ready(); };
  cmd_->on_lost = [this] { update_health(); };
  sub_->on_ready = [this] { on_subscriber_ready(); };
  sub_->on_lost = [this] { update_health(); };
  sub_->on_message = [this](const RedisReply& r) { on_message(r); };
}

RedisCluster::~RedisCluster() {
  if (thread_.joinable()) {
    loop_.stop();
    thread_.join();
  }
}

void RedisCluster::start() {
  spdlog::info("cluster mode: node {} on redis {} (prefix \"{}\")", node_id_, config_.redis_addr,
               prefix_);
  post([this] {
    cmd_->start();
    sub_->start();
    refresh_loop();
    reap_loop();
  });
  thread_ = std::thread([this] {
    auto guard = asio::make_work_guard(loop_);
    loop_.run();
  });
}

void RedisCluster::stop(std::chrono::milliseconds deadline) {
  if (!thread_.joinable()) return;
  auto left = std::make_shared<std::promise<void>>();
  auto done = left->get_future();
  post([this, left] {
    refresh_timer_.cancel();
    reap_timer_.cancel();
    reconcile_timer_.cancel();
    // Runs after every logout queued before it (one connection, in order).
    cmd_->command(eval(lua::k_reap, {prefix_ + "nodes"},
                       {std::to_string(now_ms()), prefix_, std::string(kExitText),
                        node_id_ + "-bye", node_id_, max_room(), quiet_list()}),
                  [left](bool, const RedisReply&) { left->set_value(); });
  });
  if (done.wait_for(deadline) != std::future_status::ready) {
    spdlog::warn("cluster: leaving timed out; the other nodes will reap this node");
  }
  post([this] {
    cmd_->stop();
    sub_->stop();
  });
  loop_.stop();
  thread_.join();
}

void RedisCluster::post(std::function<void()> task) { asio::post(loop_, std::move(task)); }

void RedisCluster::update_health() {
  bool up = cmd_->connected() && sub_->connected();
  if (healthy_.exchange(up) != up) {
    spdlog::log(up ? spdlog::level::info : spdlog::level::warn, "cluster: redis {}",
                up ? "available" : "unavailable, running degraded (local only)");
  }
}

void RedisCluster::on_command_ready() {
  register_node(true);
  update_health();
}

void RedisCluster::on_subscriber_ready() {
  std::vector<std::string> cmd{"SUBSCRIBE", prefix_ + "ch:node:" + node_id_};
  for (AppId app : config_.app_ids) cmd.push_back(room_channel(app));
  sub_->command(std::move(cmd));
  update_health();
}

void RedisCluster::register_node(bool republish_always) {
  cmd_->command({"ZADD", prefix_ + "nodes", std::to_string(expiry_ms()), node_id_},
                [this, republish_always](bool ok, const RedisReply& r) {
                  if (!ok || r.is_error()) return;
                  // After a (re)connect: reconcile with whatever Redis still holds.
                  // 1 on a live connection: we were reaped after a stall and the
                  // others announced our users' exit, so announce them again.
                  if (republish_always) {
                    republish(false);
                  } else if (r.integer == 1) {
                    spdlog::warn("cluster: node {} had been reaped (stalled?); rejoining",
                                 node_id_);
                    republish(true);
                  }
                });
}

void RedisCluster::republish(bool announce) {
  auto users = hub_.directory().users();
  for (const auto& key : users) presence_script(key, true, announce);
  spdlog::info("cluster: node {} registered, {} users published", node_id_, users.size());
  reconcile_when_subscribed(Clock::now() + config_.node_ttl);
}

// The exits of stale users go out on the room channels, and pub/sub keeps
// nothing: after a Redis restart the nodes resubscribe at different moments,
// so wait until every live node is subscribed again (at most until
// `deadline`) before reconciling.
void RedisCluster::reconcile_when_subscribed(TimePoint deadline) {
  const std::string channel = room_channel(config_.app_ids.front());
  cmd_->command(
      {"ZCOUNT", prefix_ + "nodes", std::to_string(now_ms()), "+inf"},
      [this, deadline, channel](bool ok, const RedisReply& nodes) {
        if (!ok || nodes.is_error()) return;  // connection lost: the next reconnect starts over
        cmd_->command({"PUBSUB", "NUMSUB", channel}, [this, deadline, live = nodes.integer](
                                                         bool ok2, const RedisReply& r) {
          if (!ok2) return;
          const int64_t subscribers = r.elements.size() == 2 ? r.elements[1].integer : 0;
          if (subscribers >= live || Clock::now() >= deadline) return reconcile();
          reconcile_timer_.expires_after(std::chrono::milliseconds(200));
          reconcile_timer_.async_wait([this, deadline](const boost::system::error_code& ec) {
            if (!ec) reconcile_when_subscribed(deadline);
          });
        });
      });
}

void RedisCluster::reconcile() {
  std::vector<std::string> args{node_id_, prefix_, std::string(kExitText),
                                node_id_ + "-sync" + std::to_string(++exit_seq_), max_room(),
                                quiet_list()};
  for (const auto& key : hub_.directory().users()) args.push_back(member(key));
  cmd_->command(eval(lua::k_sync, {prefix_ + "node:" + node_id_ + ":users"}, std::move(args)),
                [](bool ok, const RedisReply& r) {
                  if (ok && r.integer > 0) {
                    spdlog::info("cluster: {} users who left meanwhile removed", r.integer);
                  }
                });
}

void RedisCluster::refresh_loop() {
  refresh_timer_.expires_after(config_.node_ttl / 3);
  refresh_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    if (cmd_->connected()) register_node(false);
    refresh_loop();
  });
}

void RedisCluster::reap_loop() {
  reap_timer_.expires_after(std::min<std::chrono::milliseconds>(config_.node_ttl / 4,
                                                                std::chrono::seconds(2)));
  reap_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    if (cmd_->connected()) {
      cmd_->command(eval(lua::k_reap, {prefix_ + "nodes"},
                         {std::to_string(now_ms()), prefix_, std::string(kExitText),
                          node_id_ + "-" + std::to_string(++exit_seq_), "", max_room(),
                          quiet_list()}),
                    [](bool ok, const RedisReply& r) {
                      if (ok && r.integer > 0) {
                        spdlog::info("cluster: reaped a dead node, {} users left", r.integer);
                      }
                    });
    }
    reap_loop();
  });
}

std::string RedisCluster::max_room() const {
  return std::to_string(hub_.presence_policy().max_room);
}

std::string RedisCluster::quiet_list() const {
  std::string list = ",";
  for (AppId app : hub_.presence_policy().quiet) list += std::to_string(app) + ",";
  return list;
}

int64_t RedisCluster::expiry_ms() const { return now_ms() + config_.node_ttl.count(); }

std::string RedisCluster::member(const UserKey& key) const {
  return std::to_string(key.app) + ":" + key.user;
}

std::string RedisCluster::user_hash(const UserKey& key) const {
  return prefix_ + "user:" + member(key);
}

std::string RedisCluster::room_channel(AppId app) const {
  return prefix_ + "ch:room:" + std::to_string(app);
}

std::string RedisCluster::payload(const PushMessage& msg, AppId app,
                                  std::string_view except_or_user, bool room) const {
  json::object o{{"cmd", msg.cmd}, {"seq", msg.seq}, {"msg", msg.msg},
                 {"from", msg.from}, {"app", app}};
  o[room ? "except" : "user"] = except_or_user;
  return json::serialize(o);
}

void RedisCluster::user_online(const UserKey& key) {
  post([this, key] { presence_script(key, true, true); });
}

void RedisCluster::user_offline(const UserKey& key) {
  post([this, key] { presence_script(key, false, true); });
}

void RedisCluster::presence_script(const UserKey& key, bool online, bool announce) {
  const std::string cmd = online ? "enter" : "exit";
  PushMessage msg{cmd, std::to_string(hub_.next_push_seq()),
                  std::string(online ? kEnterText : kExitText), key.user};
  const PresencePolicy& policy = hub_.presence_policy();
  const bool quiet = std::find(policy.quiet.begin(), policy.quiet.end(), key.app) !=
                     policy.quiet.end();
  if (quiet && announce) Counters::bump(hub_.counters().presence_suppressed);
  announce = announce && !quiet;
  auto local_fallback = [this, key, msg, announce] {
    if (!announce) return;
    hub_.push_room(key.app, key.user, make_push(msg.seq, msg.cmd, msg.msg, msg.from));
  };
  if (!cmd_->connected()) {
    local_fallback();
    return;
  }
  cmd_->command(
      eval(online ? lua::k_login : lua::k_logout,
           {user_hash(key), prefix_ + "room:" + std::to_string(key.app),
            prefix_ + "node:" + node_id_ + ":users"},
           {node_id_, member(key), key.user, room_channel(key.app),
            payload(msg, key.app, key.user, true), announce ? "1" : "0", max_room()}),
      [local_fallback](bool ok, const RedisReply& r) {
        if (!ok || r.is_error()) {
          if (r.is_error()) spdlog::error("cluster: presence script: {}", r.str);
          local_fallback();
        }
      });
}

void RedisCluster::on_message(const RedisReply& reply) {
  // ["message", channel, payload]; subscribe confirmations are ignored.
  if (reply.type != RedisReply::Type::kArray || reply.elements.size() != 3 ||
      reply.elements[0].str != "message") {
    return;
  }
  json::error_code ec;
  json::value v = json::parse(reply.elements[2].str, ec);
  if (ec || !v.is_object()) {
    spdlog::warn("cluster: malformed message on {}", reply.elements[1].str);
    return;
  }
  const json::object& o = v.get_object();
  auto text = [&](std::string_view name) -> std::string {
    const json::value* f = o.if_contains(name);
    return f && f->is_string() ? std::string(f->get_string()) : std::string();
  };
  const json::value* app_field = o.if_contains("app");
  AppId app = app_field && app_field->is_number() ? app_field->to_number<AppId>() : 0;
  if (text("skip") == node_id_) return;  // this node already told its own clients
  // An exit about a user still connected here (we were reaped during a
  // stall) is wrong for our clients: the user did not leave.
  if (text("cmd") == "exit" && hub_.directory().online(app, text("from"))) return;
  const bool room = o.contains("except");
  // History on: the script that stored the push added its stream position.
  uint64_t offset = 0;
  if (const json::value* off = o.if_contains("offset"); off && off->is_number()) {
    offset = off->to_number<uint64_t>();
  }
  const std::string epoch = text("epoch");
  const StreamMark mark{room ? "room" : "user", epoch, offset};
  Frame frame = make_push(text("seq"), text("cmd"), text("msg"), text("from"),
                          offset != 0 ? &mark : nullptr);
  if (room) {
    hub_.push_room(app, text("except"), frame, offset);
  } else {
    hub_.push_user(UserKey{app, text("user")}, frame, offset);
  }
}

std::string RedisCluster::stream_key(const UserKey& stream, std::string_view part) const {
  const std::string id = stream.user.empty() ? "room:" + std::to_string(stream.app)
                                             : "user:" + member(stream);
  return prefix_ + "hist:" + id + ":" + std::string(part);
}

void RedisCluster::send_stored(UserKey stream, std::string except, PushMessage msg,
                               std::function<void(bool, StreamPos, int64_t)> done) {
  post([this, stream = std::move(stream), except = std::move(except), msg = std::move(msg),
        done = std::move(done)] {
    const bool room = stream.user.empty();
    const std::string entry = json::serialize(
        json::object{{"s", msg.seq}, {"m", msg.msg}, {"f", msg.from}, {"x", except}});
    cmd_->command(
        eval(lua::k_history_append,
             {stream_key(stream, "meta"), stream_key(stream, "log"),
              room ? prefix_ + "user:-" : user_hash(stream)},
             {random_node_id(), std::to_string(now_ms()), std::to_string(config_.history_size),
              std::to_string(config_.history_ttl.count()), entry,
              payload(msg, stream.app, room ? except : stream.user, room),
              room ? "room" : "user", room ? room_channel(stream.app) : prefix_ + "ch:node:"}),
        [done](bool ok, const RedisReply& r) {
          if (!ok || r.is_error() || r.elements.size() != 3) {
            if (r.is_error()) spdlog::error("cluster: history script: {}", r.str);
            return done(false, {}, 0);
          }
          done(true, StreamPos{r.elements[0].str, static_cast<uint64_t>(r.elements[1].integer)},
               r.elements[2].integer);
        });
  });
}

void RedisCluster::read_stored(UserKey stream, int64_t after,
                               std::function<void(bool, StoredStream)> done) {
  post([this, stream = std::move(stream), after, done = std::move(done)] {
    cmd_->command(eval(lua::k_history_read,
                       {stream_key(stream, "meta"), stream_key(stream, "log")},
                       {std::to_string(after)}),
                  [done](bool ok, const RedisReply& r) {
                    if (!ok || r.is_error() || r.elements.size() != 3 ||
                        r.elements[0].elements.size() != 3) {
                      return done(false, {});
                    }
                    StoredStream out;
                    const auto& meta = r.elements[0].elements;
                    auto number = [](const RedisReply& v) -> std::optional<uint64_t> {
                      if (v.type != RedisReply::Type::kString) return std::nullopt;
                      return std::strtoull(v.str.c_str(), nullptr, 10);
                    };
                    if (meta[0].type == RedisReply::Type::kString) out.top.epoch = meta[0].str;
                    out.top.offset = number(meta[1]).value_or(0);
                    out.left = number(meta[2]);
                    out.first = static_cast<uint64_t>(std::max<int64_t>(r.elements[2].integer, 1));
                    for (const auto& e : r.elements[1].elements) out.entries.push_back(e.str);
                    done(true, std::move(out));
                  });
  });
}

void RedisCluster::mark_left(UserKey key, uint64_t delivered) {
  post([this, key = std::move(key), delivered] {
    if (!cmd_->connected()) return;
    cmd_->command(eval(lua::k_history_left, {user_hash(key), stream_key(key, "meta")},
                       {std::to_string(delivered)}),
                  [](bool, const RedisReply&) {});
  });
}

void RedisCluster::list_users(AppId app,
                              std::function<void(bool, std::vector<std::string>)> done) {
  post([this, app, done = std::move(done)] {
    cmd_->command({"SMEMBERS", prefix_ + "room:" + std::to_string(app)},
                  [done](bool ok, const RedisReply& r) {
                    std::vector<std::string> users;
                    for (const auto& e : r.elements) users.push_back(e.str);
                    done(ok && !r.is_error(), std::move(users));
                  });
  });
}

void RedisCluster::online(AppId app, std::string user,
                          std::function<void(bool, bool)> done) {
  post([this, app, user = std::move(user), done = std::move(done)] {
    auto reply = [done](bool ok, const RedisReply& r) {
      done(ok && !r.is_error(), r.integer == 1);
    };
    if (app != 0) {
      cmd_->command({"EXISTS", user_hash(UserKey{app, user})}, reply);
      return;
    }
    std::vector<std::string> args{prefix_, user};
    for (AppId a : config_.app_ids) args.push_back(std::to_string(a));
    cmd_->command(eval(lua::k_online_any, {}, std::move(args)), reply);
  });
}

void RedisCluster::first_msg_id(std::string id, std::function<void(bool, bool)> done) {
  post([this, id = std::move(id), done = std::move(done)] {
    cmd_->command({"SET", prefix_ + "msgid:" + id, "1", "NX", "PX",
                   std::to_string(config_.msg_id_ttl.count())},
                  [done](bool ok, const RedisReply& r) {
                    done(ok && !r.is_error(), r.type == RedisReply::Type::kStatus);
                  });
  });
}

void RedisCluster::send_user(UserKey key, PushMessage msg,
                             std::function<void(bool, bool)> done) {
  post([this, key = std::move(key), msg = std::move(msg), done = std::move(done)] {
    cmd_->command(eval(lua::k_unicast, {user_hash(key)},
                       {prefix_ + "ch:node:", payload(msg, key.app, key.user, false)}),
                  [done](bool ok, const RedisReply& r) {
                    done(ok && !r.is_error(), r.integer > 0);
                  });
  });
}

void RedisCluster::send_room(AppId app, std::string except, PushMessage msg,
                             std::function<void(bool)> done) {
  post([this, app, except = std::move(except), msg = std::move(msg), done = std::move(done)] {
    cmd_->command({"PUBLISH", room_channel(app), payload(msg, app, except, true)},
                  [done](bool ok, const RedisReply& r) { done(ok && !r.is_error()); });
  });
}

}  // namespace imgate
