#include "cluster/redis_cluster.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <cstdlib>
#include <future>
#include <random>

#include "cluster/lua_scripts.hpp"
#include "cluster/redis_commands.hpp"
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

// A failed push: a Redis error reply or a command that never left this node
// did not run; one whose connection broke after it was written may have.
RedisCluster::Sent outcome(bool ok, const RedisReply& r) {
  return !ok && r.may_have_run ? RedisCluster::Sent::kUnknown : RedisCluster::Sent::kNotSent;
}

}  // namespace

using redis_commands::eval;
using redis_commands::now_ms;

RedisCluster::RedisCluster(const Config& config, Hub& hub)
    : config_(config),
      hub_(hub),
      prefix_(config.redis_prefix),
      node_id_(random_node_id()),
      refresh_timer_(loop_),
      reap_timer_(loop_) {
  if (!config.redis_cluster.empty()) {
    std::vector<RedisEndpoint> seeds;
    std::string_view list = config.redis_cluster;
    while (!list.empty()) {
      auto comma = list.find(',');
      std::string item(list.substr(0, comma));
      list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
      item.erase(0, item.find_first_not_of(' '));
      item.erase(item.find_last_not_of(' ') + 1);
      if (item.empty()) continue;
      RedisEndpoint ep = RedisEndpoint::parse(item);
      ep.password = config.redis_password;
      seeds.push_back(std::move(ep));
    }
    link_ = std::make_unique<ShardedRedis>(loop_, std::move(seeds), node_id_);
    sharded_ = true;
  } else {
    RedisEndpoint ep = RedisEndpoint::parse(config.redis_addr);
    ep.password = config.redis_password;
    ep.db = config.redis_db;
    link_ = std::make_unique<SingleRedis>(loop_, ep, node_id_);
  }
  link_->on_ready = [this](const RedisLink::Owns& owns) { on_link_ready(owns); };
  link_->on_health = [this] { update_health(); };
  link_->on_message = [this](const RedisReply& r) { on_message(r); };
  for (AppId app : config_.app_ids) {
    subs_[app].linger = std::make_unique<asio::steady_timer>(loop_);
    subs_[app].deadline = std::make_unique<asio::steady_timer>(loop_);
    for (auto& channel : app_channels(app)) channel_apps_.emplace(std::move(channel), app);
  }
  link_->on_subscribed = [this](const std::string& channel) {
    if (auto it = channel_apps_.find(channel); it != channel_apps_.end()) {
      check_app(it->second, subs_.at(it->second));
    }
  };
}

RedisCluster::~RedisCluster() {
  if (thread_.joinable()) {
    loop_.stop();
    thread_.join();
  }
}

void RedisCluster::start() {
  spdlog::info("cluster mode: node {} on {} {} (prefix \"{}\")", node_id_,
               sharded_ ? "redis cluster" : "redis",
               sharded_ ? config_.redis_cluster : config_.redis_addr, prefix_);
  post([this] {
    // One Redis: the node's own channel, always. The channels of an app
    // (app_channels) only while the node holds users of it (want_app).
    if (!sharded_) link_->subscribe({node_channel_prefix(0) + node_id_});
    link_->start();
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
    cancel_resyncs();
    // Runs after every logout queued before it (one connection per shard, in order).
    reap(node_id_, [left](int64_t) { left->set_value(); });
  });
  if (done.wait_for(deadline) != std::future_status::ready) {
    spdlog::warn("cluster: leaving timed out; the other nodes will reap this node");
  }
  post([this] { link_->stop(); });
  loop_.stop();
  thread_.join();
}

void RedisCluster::post(std::function<void()> task) {
  asio::post(loop_, std::move(task));
}

void RedisCluster::update_health() {
  const bool up = link_->healthy();
  shards_.store(link_->shards(), std::memory_order_relaxed);
  shards_up_.store(link_->shards_up(), std::memory_order_relaxed);
  if (healthy_.exchange(up) != up) {
    spdlog::log(up ? spdlog::level::info : spdlog::level::warn, "cluster: redis {}",
                up ? "available" : "unavailable, running degraded (local only)");
  }
  check_apps();
}

std::vector<std::string> RedisCluster::app_channels(AppId app) const {
  // On a Redis Cluster the node has a channel in each room's slot (the
  // scripts of a room publish only in their slot).
  if (sharded_) return {room_channel(app), node_channel_prefix(app) + node_id_};
  return {room_channel(app)};
}

// ---- subscriptions on demand (docs/cluster.md) ----

bool RedisCluster::await_app(AppId app, std::function<void()> ready) {
  auto it = subs_.find(app);
  if (it == subs_.end()) return true;
  {
    std::lock_guard lock(subs_mu_);
    if (it->second.ready) return true;
  }
  // After the user_online() of the login that calls this (posted before it).
  post([this, app, ready = std::move(ready)]() mutable {
    AppSubscription& a = subs_.at(app);
    bool heard = false;
    {
      std::lock_guard lock(subs_mu_);
      heard = a.ready;
    }
    if (heard || !a.wanted || !link_->can_subscribe(app_channels(app))) return ready();
    a.waiters.push_back(std::move(ready));
    if (a.waiters.size() != 1) return;
    a.deadline->expires_after(kSubscribeDeadline);
    a.deadline->async_wait([this, app](const boost::system::error_code& ec) {
      AppSubscription& late = subs_.at(app);
      if (ec || late.waiters.empty()) return;
      spdlog::warn("cluster: the channels of app {} are not confirmed subscribed after {} s; "
                   "answering its logins degraded",
                   app, std::chrono::seconds(kSubscribeDeadline).count());
      release_app(late);
    });
  });
  return false;
}

void RedisCluster::want_app(AppId app) {
  auto it = subs_.find(app);
  if (it == subs_.end()) return;
  AppSubscription& a = it->second;
  a.linger->cancel();
  if (a.wanted) return;
  a.wanted = true;
  link_->subscribe(app_channels(app));
  check_app(app, a);
}

void RedisCluster::linger_app(AppId app) {
  auto it = subs_.find(app);
  if (it == subs_.end() || !it->second.wanted) return;
  {
    std::lock_guard lock(subs_mu_);
    if (it->second.users != 0) return;
  }
  it->second.linger->expires_after(kUnsubscribeLinger);
  it->second.linger->async_wait([this, app](const boost::system::error_code& ec) {
    if (ec) return;
    AppSubscription& a = subs_.at(app);
    {
      // Under the lock: a login counted after this waits for the next subscribe.
      std::lock_guard lock(subs_mu_);
      if (a.users != 0 || !a.wanted) return;
      a.ready = false;
    }
    a.wanted = false;
    link_->unsubscribe(app_channels(app));
    release_app(a);  // logins whose connection is gone again
  });
}

void RedisCluster::when_heard(AppId app, std::function<void()> task) {
  auto it = subs_.find(app);
  if (it == subs_.end()) return task();
  AppSubscription& a = it->second;
  if (a.held.empty()) {
    bool heard = false;
    {
      std::lock_guard lock(subs_mu_);
      heard = a.ready;
    }
    if (heard || !link_->can_subscribe(app_channels(app))) return task();
  }
  a.held.push_back(std::move(task));
}

void RedisCluster::check_apps() {
  for (auto& [app, a] : subs_) {
    if (a.wanted) check_app(app, a);
  }
}

void RedisCluster::check_app(AppId app, AppSubscription& a) {
  if (!a.wanted) return;
  const auto channels = app_channels(app);
  const bool heard = link_->subscribed(channels);
  {
    std::lock_guard lock(subs_mu_);
    a.ready = heard;
  }
  // Heard: the waiting logins are answered. Not subscribable (Redis
  // unreachable): they are answered degraded, as every login is then.
  if (heard || !link_->can_subscribe(channels)) release_app(a);
}

void RedisCluster::release_app(AppSubscription& a) {
  a.deadline->cancel();
  auto waiters = std::move(a.waiters);
  a.waiters.clear();
  auto held = std::move(a.held);
  a.held.clear();
  for (auto& task : held) task();
  for (auto& ready : waiters) ready();
}

void RedisCluster::refresh_loop() {
  refresh_timer_.expires_after(config_.node_ttl / 3);
  refresh_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    if (link_->reachable(nodes_key())) {
      link_->command(
          nodes_key(), {"ZADD", nodes_key(), std::to_string(expiry_ms()), node_id_},
          [this](bool ok, const RedisReply& r) {
            if (!ok || r.is_error()) return;
            // 1 on a live connection: we were reaped after a stall and
            // the others announced our users' exit, so announce them again.
            if (r.integer == 1) {
              spdlog::warn("cluster: node {} had been reaped (stalled?); rejoining", node_id_);
              resync_rooms(true);
            }
            // How many nodes a resync waits for should Redis lose the nodes key.
            link_->command(nodes_key(), {"ZCOUNT", nodes_key(), std::to_string(now_ms()), "+inf"},
                           [this](bool ok2, const RedisReply& live) {
                             if (ok2 && !live.is_error()) live_seen_.store(live.integer);
                           });
            // And how many hear each room this node hears.
            sample_subscribers();
          });
    }
    refresh_loop();
  });
}

void RedisCluster::reap_loop() {
  reap_timer_.expires_after(
      std::min<std::chrono::milliseconds>(config_.node_ttl / 4, std::chrono::seconds(2)));
  reap_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    if (link_->reachable(nodes_key())) {
      reap("", [](int64_t exits) {
        if (exits > 0) spdlog::info("cluster: reaped a dead node, {} users left", exits);
      });
    }
    reap_loop();
  });
}

// One Redis server: one script, ZREM deciding which reaper does the work.
// Redis Cluster: the expired nodes from the nodes key's slot, then one script
// per room in the room's slot (HDEL deciding, so concurrent reapers never
// double an exit), then ZREM.
void RedisCluster::reap(std::string node, std::function<void(int64_t)> done) {
  if (!sharded_) {
    link_->command(
        nodes_key(),
        eval(lua::k_reap, {nodes_key()},
             {std::to_string(now_ms()), prefix_, std::string(kExitText),
              node.empty() ? node_id_ + "-" + std::to_string(++exit_seq_) : node_id_ + "-bye", node,
              max_room(), quiet_list()}),
        [done](bool ok, const RedisReply& r) { done(ok ? r.integer : 0); });
    return;
  }
  if (!node.empty()) return reap_rooms(node, std::move(done));
  link_->command(nodes_key(), {"ZRANGEBYSCORE", nodes_key(), "-inf", std::to_string(now_ms())},
                 [this, done](bool ok, const RedisReply& r) {
                   if (!ok || r.is_error() || r.elements.empty()) return done(0);
                   auto total = std::make_shared<int64_t>(0);
                   auto left = std::make_shared<std::size_t>(r.elements.size());
                   for (const auto& dead : r.elements) {
                     reap_rooms(dead.str, [total, left, done](int64_t exits) {
                       *total += exits;
                       if (--*left == 0) done(*total);
                     });
                   }
                 });
}

void RedisCluster::reap_rooms(const std::string& node, std::function<void(int64_t)> done) {
  struct Pending {
    std::size_t left;
    int64_t exits = 0;
    bool failed = false;
  };
  auto pending = std::make_shared<Pending>(Pending{config_.app_ids.size()});
  const std::string seq =
      node_id_ + (node == node_id_ ? "-bye" : "-" + std::to_string(++exit_seq_));
  const auto& quiet = hub_.presence_policy().quiet;
  for (AppId app : config_.app_ids) {
    const bool is_quiet = std::find(quiet.begin(), quiet.end(), app) != quiet.end();
    link_->command(
        room_set(app),
        eval(lua::k_reap_room, {node_users(app, node), room_set(app)},
             {node, room_base(app), std::string(kExitText), seq + "-" + std::to_string(app),
              max_room(), is_quiet ? "1" : "0", room_channel(app), std::to_string(app)}),
        [this, node, pending, done](bool ok, const RedisReply& r) {
          if (ok && !r.is_error()) {
            pending->exits += r.integer;
          } else {
            pending->failed = true;
          }
          if (--pending->left != 0) return;
          // A room that failed keeps the node registered (expired), so that a
          // later reaper finds it again; the done rooms are then no-ops.
          if (pending->failed) return done(pending->exits);
          link_->command(nodes_key(), {"ZREM", nodes_key(), node},
                         [pending, done](bool, const RedisReply&) { done(pending->exits); });
        });
  }
}

std::string RedisCluster::max_room() const {
  return std::to_string(hub_.presence_policy().max_room);
}

std::string RedisCluster::quiet_list() const {
  std::string list = ",";
  for (AppId app : hub_.presence_policy().quiet) list += std::to_string(app) + ",";
  return list;
}

int64_t RedisCluster::expiry_ms() const {
  return now_ms() + config_.node_ttl.count();
}

std::string RedisCluster::room_base(AppId app) const {
  return sharded_ ? "{" + prefix_ + std::to_string(app) + "}:" : prefix_;
}

std::string RedisCluster::member(const UserKey& key) const {
  return sharded_ ? key.user : std::to_string(key.app) + ":" + key.user;
}

std::string RedisCluster::user_hash(const UserKey& key) const {
  return sharded_ ? room_base(key.app) + "user:" + key.user
                  : prefix_ + "user:" + std::to_string(key.app) + ":" + key.user;
}

std::string RedisCluster::room_set(AppId app) const {
  return sharded_ ? room_base(app) + "room" : prefix_ + "room:" + std::to_string(app);
}

std::string RedisCluster::node_users(AppId app, const std::string& node) const {
  return room_base(app) + "node:" + node + ":users";
}

std::string RedisCluster::room_channel(AppId app) const {
  return sharded_ ? room_base(app) + "ch:room" : prefix_ + "ch:room:" + std::to_string(app);
}

std::string RedisCluster::node_channel_prefix(AppId app) const {
  return room_base(app) + "ch:node:";
}

std::string RedisCluster::payload(const PushMessage& msg, AppId app,
                                  std::string_view except_or_user, bool room,
                                  bool skip_self) const {
  json::object o{
      {"cmd", msg.cmd}, {"seq", msg.seq}, {"msg", msg.msg}, {"from", msg.from}, {"app", app}};
  o[room ? "except" : "user"] = except_or_user;
  if (skip_self) o["skip"] = node_id_;
  return json::serialize(o);
}

void RedisCluster::user_online(const UserKey& key) {
  if (auto it = subs_.find(key.app); it != subs_.end()) {
    std::lock_guard lock(subs_mu_);
    ++it->second.users;
  }
  post([this, key] {
    unannounced_.insert(key);  // until login.lua has run
    want_app(key.app);
    // login.lua makes Redis route the user's pushes here: not before the
    // node hears them.
    when_heard(key.app, [this, key] { presence_script(key, true, true); });
  });
}

void RedisCluster::user_offline(const UserKey& key, const std::optional<StreamPos>& delivered) {
  if (auto it = subs_.find(key.app); it != subs_.end()) {
    std::lock_guard lock(subs_mu_);
    --it->second.users;
  }
  post([this, key, delivered] {
    unannounced_.erase(key);
    // After the user's login.lua, should that still be held.
    when_heard(key.app, [this, key, delivered] { presence_script(key, false, true, delivered); });
    linger_app(key.app);
  });
}

bool RedisCluster::announced_in(AppId app) const {
  const auto& quiet = hub_.presence_policy().quiet;
  return std::find(quiet.begin(), quiet.end(), app) == quiet.end();
}

void RedisCluster::presence_script(const UserKey& key, bool online, bool announce,
                                   const std::optional<StreamPos>& delivered) {
  const std::string cmd = online ? "enter" : "exit";
  PushMessage msg{cmd, std::to_string(hub_.next_push_seq()),
                  std::string(online ? kEnterText : kExitText), key.user};
  const bool quiet = !announced_in(key.app);
  if (quiet && announce) Counters::bump(hub_.counters().presence_suppressed);
  announce = announce && !quiet;
  auto local_fallback = [this, key, msg, announce] {
    if (!announce) return;
    hub_.push_room(key.app, key.user, make_push(msg.seq, msg.cmd, msg.msg, msg.from));
  };
  const std::string hash = user_hash(key);
  if (!link_->reachable(hash)) {
    local_fallback();
    return;
  }
  std::vector<std::string> keys{hash, room_set(key.app), node_users(key.app, node_id_)};
  std::vector<std::string> args{node_id_,
                                member(key),
                                key.user,
                                room_channel(key.app),
                                payload(msg, key.app, key.user, true),
                                announce ? "1" : "0",
                                max_room(),
                                publish_verb()};
  if (!online && config_.history_size > 0) {
    // The offline start goes with the last-out decision, in one script: a
    // login elsewhere can never come between them.
    keys.push_back(stream_key(key, "meta"));
    args.push_back(delivered ? delivered->epoch : std::string());
    args.push_back(std::to_string(delivered ? delivered->offset : 0));
  }
  link_->command(hash,
                 eval(online ? lua::k_login : lua::k_logout, std::move(keys), std::move(args)),
                 [this, key, online, local_fallback](bool ok, const RedisReply& r) {
                   const bool done = ok && !r.is_error();
                   // A login that did not reach Redis is announced by the resync.
                   if (online && done) unannounced_.erase(key);
                   if (online && !done && hub_.directory().online(key.app, key.user)) {
                     unannounced_.insert(key);
                   }
                   if (!done) {
                     if (r.is_error()) spdlog::error("cluster: presence script: {}", r.str);
                     local_fallback();
                   }
                 });
}

void RedisCluster::on_message(const RedisReply& reply) {
  // ["message" or "smessage", channel, payload]; subscribe confirmations are ignored.
  if (reply.type != RedisReply::Type::kArray || reply.elements.size() != 3 ||
      (reply.elements[0].str != "message" && reply.elements[0].str != "smessage")) {
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
  Frame frame =
      make_push(text("seq"), text("cmd"), text("msg"), text("from"), offset != 0 ? &mark : nullptr);
  if (room) {
    hub_.push_room(app, text("except"), frame, offset);
  } else {
    hub_.push_user(UserKey{app, text("user")}, frame, offset, epoch);
  }
}

std::string RedisCluster::stream_key(const UserKey& stream, std::string_view part) const {
  if (sharded_) {
    return room_base(stream.app) +
           "hist:" + (stream.user.empty() ? std::string("room") : "user:" + stream.user) + ":" +
           std::string(part);
  }
  const std::string id =
      stream.user.empty() ? "room:" + std::to_string(stream.app) : "user:" + member(stream);
  return prefix_ + "hist:" + id + ":" + std::string(part);
}

void RedisCluster::send_stored(UserKey stream, std::string except, PushMessage msg,
                               std::function<void(Sent, StreamPos, int64_t)> done) {
  post([this, stream = std::move(stream), except = std::move(except), msg = std::move(msg),
        done = std::move(done)] {
    const bool room = stream.user.empty();
    const std::string entry = json::serialize(
        json::object{{"s", msg.seq}, {"m", msg.msg}, {"f", msg.from}, {"x", except}});
    const std::string meta = stream_key(stream, "meta");
    // KEYS[3] is read for user streams only; for a room any key of its slot.
    // The server's incarnation goes last (ARGV[9]): a new epoch if it changed.
    link_->command_stamped(
        meta,
        eval(lua::k_history_append,
             {meta, stream_key(stream, "log"),
              room ? (sharded_ ? room_set(stream.app) : prefix_ + "user:-") : user_hash(stream)},
             {random_node_id(), std::to_string(config_.history_size),
              std::to_string(config_.history_ttl.count()), entry,
              payload(msg, stream.app, room ? except : stream.user, room), room ? "room" : "user",
              room ? room_channel(stream.app) : node_channel_prefix(stream.app), publish_verb()}),
        [done](bool ok, const RedisReply& r) {
          if (!ok || r.is_error() || r.elements.size() != 3) {
            if (r.is_error()) spdlog::error("cluster: history script: {}", r.str);
            return done(outcome(ok, r), {}, 0);
          }
          done(Sent::kDone,
               StreamPos{r.elements[0].str, static_cast<uint64_t>(r.elements[1].integer)},
               r.elements[2].integer);
        });
  });
}

void RedisCluster::read_stored(UserKey stream, int64_t after, bool offline,
                               std::function<void(bool, StoredStream)> done) {
  post([this, stream = std::move(stream), after, offline, done = std::move(done)] {
    const std::string meta_key = stream_key(stream, "meta");
    // ARGV[3] the epoch the stream takes if the server's incarnation
    // (appended by command_stamped: ARGV[5]) is not the one that last wrote
    // it; ARGV[4] this node, for an offline read (KEYS[3] the user hash).
    std::vector<std::string> keys{meta_key, stream_key(stream, "log")};
    std::vector<std::string> args{std::to_string(after),
                                  std::to_string(config_.history_ttl.count()),
                                  random_node_id(), node_id_};
    if (offline && !stream.user.empty()) keys.push_back(user_hash(stream));
    link_->command_stamped(
        meta_key, eval(lua::k_history_read, std::move(keys), std::move(args)),
        [done](bool ok, const RedisReply& r) {
          if (!ok || r.is_error() || r.elements.size() != 3 || r.elements[0].elements.size() != 3) {
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

void RedisCluster::list_users(AppId app, std::function<void(bool, std::vector<std::string>)> done) {
  post([this, app, done = std::move(done)] {
    link_->command(room_set(app), {"SMEMBERS", room_set(app)},
                   [done](bool ok, const RedisReply& r) {
                     std::vector<std::string> users;
                     for (const auto& e : r.elements) users.push_back(e.str);
                     done(ok && !r.is_error(), std::move(users));
                   });
  });
}

void RedisCluster::online(AppId app, std::string user, std::function<void(bool, bool)> done) {
  post([this, app, user = std::move(user), done = std::move(done)] {
    auto reply = [done](bool ok, const RedisReply& r) {
      done(ok && !r.is_error(), r.integer == 1);
    };
    if (app != 0) {
      const std::string hash = user_hash(UserKey{app, user});
      link_->command(hash, {"EXISTS", hash}, reply);
      return;
    }
    if (sharded_) {
      // One EXISTS per app (each room is its own slot), answered when all are in.
      struct Pending {
        std::size_t left;
        bool ok = true;
        bool online = false;
      };
      auto pending = std::make_shared<Pending>(Pending{config_.app_ids.size()});
      for (AppId a : config_.app_ids) {
        const std::string hash = user_hash(UserKey{a, user});
        link_->command(hash, {"EXISTS", hash}, [pending, done](bool ok, const RedisReply& r) {
          pending->ok = pending->ok && ok && !r.is_error();
          pending->online = pending->online || r.integer == 1;
          if (--pending->left == 0) done(pending->ok || pending->online, pending->online);
        });
      }
      return;
    }
    std::vector<std::string> args{prefix_, user};
    for (AppId a : config_.app_ids) args.push_back(std::to_string(a));
    link_->command("", eval(lua::k_online_any, {}, std::move(args)), reply);
  });
}

void RedisCluster::first_msg_id(std::string id, std::function<void(bool, bool)> done) {
  post([this, id = std::move(id), done = std::move(done)] {
    const std::string key = prefix_ + "msgid:" + id;
    link_->command(key, {"SET", key, "1", "NX", "PX", std::to_string(config_.msg_id_ttl.count())},
                   [done](bool ok, const RedisReply& r) {
                     done(ok && !r.is_error(), r.type == RedisReply::Type::kStatus);
                   });
  });
}

void RedisCluster::send_user(UserKey key, PushMessage msg,
                             std::function<void(Sent, bool)> done) {
  post([this, key = std::move(key), msg = std::move(msg), done = std::move(done)] {
    const std::string hash = user_hash(key);
    link_->command(
        hash,
        eval(
            lua::k_unicast, {hash},
            {node_channel_prefix(key.app), payload(msg, key.app, key.user, false), publish_verb()}),
        [done](bool ok, const RedisReply& r) {
          done(ok && !r.is_error() ? Sent::kDone : outcome(ok, r), r.integer > 0);
        });
  });
}

void RedisCluster::send_room(AppId app, std::string except, PushMessage msg,
                             std::function<void(Sent)> done) {
  post([this, app, except = std::move(except), msg = std::move(msg), done = std::move(done)] {
    const std::string channel = room_channel(app);
    link_->command(channel, {publish_verb(), channel, payload(msg, app, except, true)},
                   [done](bool ok, const RedisReply& r) {
                     done(ok && !r.is_error() ? Sent::kDone : outcome(ok, r));
                   });
  });
}

}  // namespace imgate
