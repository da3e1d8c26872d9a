#include "cluster/redis_link.hpp"

#include <spdlog/spdlog.h>

#include <charconv>

namespace imgate {

namespace asio = boost::asio;

namespace {

// CRC16-CCITT (XMODEM): polynomial 0x1021, initial 0 - the Redis Cluster
// specification's key hash. No Debian library offers Redis Cluster routing
// for hiredis (docs/cluster.md), so this and the slot map are ours.
uint16_t crc16(std::string_view data) {
  uint16_t crc = 0;
  for (unsigned char byte : data) {
    crc ^= static_cast<uint16_t>(byte) << 8;
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021)
                           : static_cast<uint16_t>(crc << 1);
    }
  }
  return crc;
}

std::string address_of(const RedisEndpoint& ep) {
  return ep.host + ":" + std::to_string(ep.port);
}

// "MOVED 3999 127.0.0.1:6381" / "ASK 3999 127.0.0.1:6381": the kind and address.
bool parse_redirect(const std::string& error, std::string_view& kind, std::string& address) {
  auto first = error.find(' ');
  if (first == std::string::npos) return false;
  kind = std::string_view(error).substr(0, first);
  if (kind != "MOVED" && kind != "ASK") return false;
  auto second = error.find(' ', first + 1);
  if (second == std::string::npos) return false;
  address = error.substr(second + 1);
  // Redis 7 may answer ":port" when the node does not know its own address.
  return !address.empty() && address.front() != ':';
}

constexpr auto kRefreshHealthy = std::chrono::seconds(5);
constexpr auto kRefreshDegraded = std::chrono::milliseconds(250);
constexpr auto kProbeTimeout = std::chrono::milliseconds(1000);

}  // namespace

uint16_t redis_key_slot(std::string_view key) {
  auto open = key.find('{');
  if (open != std::string_view::npos) {
    auto close = key.find('}', open + 1);
    if (close != std::string_view::npos && close != open + 1) {
      key = key.substr(open + 1, close - open - 1);
    }
  }
  return crc16(key) & (kRedisSlots - 1);
}

// ---- one server ----------------------------------------------------------------------------

SingleRedis::SingleRedis(asio::io_context& loop, const RedisEndpoint& endpoint,
                         const std::string& name)
    : cmd_(std::make_shared<RedisConnection>(loop, endpoint, name + "-cmd", false)),
      sub_(std::make_shared<RedisConnection>(loop, endpoint, name + "-sub", true)) {
  cmd_->on_ready = [this] {
    if (on_ready) on_ready([](std::string_view) { return true; });
    if (on_health) on_health();
  };
  cmd_->on_lost = [this] {
    if (on_health) on_health();
  };
  sub_->on_ready = [this] {
    std::vector<std::string> cmd{"SUBSCRIBE"};
    cmd.insert(cmd.end(), channels_.begin(), channels_.end());
    if (cmd.size() > 1) sub_->command(cmd);
    if (on_health) on_health();
  };
  sub_->on_lost = [this] {
    if (on_health) on_health();
  };
  sub_->on_message = [this](const RedisReply& r) {
    if (on_message) on_message(r);
  };
}

void SingleRedis::start() {
  cmd_->start();
  sub_->start();
}

void SingleRedis::stop() {
  cmd_->stop();
  sub_->stop();
}

void SingleRedis::command(std::string_view, std::vector<std::string> args, RedisCallback cb) {
  cmd_->command(args, std::move(cb));
}

void SingleRedis::command_stamped(std::string_view, std::vector<std::string> args,
                                  RedisCallback cb) {
  cmd_->command_stamped(args, std::move(cb));
}

void SingleRedis::subscribe(std::vector<std::string> channels) {
  if (sub_->connected()) {
    std::vector<std::string> cmd{"SUBSCRIBE"};
    cmd.insert(cmd.end(), channels.begin(), channels.end());
    sub_->command(cmd);
  }
  channels_.insert(channels_.end(), channels.begin(), channels.end());
}

// ---- a Redis Cluster -----------------------------------------------------------------------

ShardedRedis::ShardedRedis(asio::io_context& loop, std::vector<RedisEndpoint> seeds,
                           std::string name)
    : loop_(loop),
      seeds_(std::move(seeds)),
      name_(std::move(name)),
      refresh_timer_(loop),
      probe_timer_(loop) {
  for (const auto& seed : seeds_) known_.push_back(address_of(seed));
}

ShardedRedis::~ShardedRedis() = default;

void ShardedRedis::start() {
  refresh();
  refresh_loop();
}

void ShardedRedis::stop() {
  stopped_ = true;
  refresh_timer_.cancel();
  probe_timer_.cancel();
  if (probe_) {
    probe_->on_ready = nullptr;  // it holds the probe: no cycle outlives the link
    probe_->stop();
    probe_.reset();
  }
  for (auto& [address, master] : masters_) {
    master.cmd->stop();
    master.sub->stop();
  }
}

ShardedRedis::Master* ShardedRedis::owner(std::string_view route) {
  if (route.empty()) {
    for (auto& [address, master] : masters_) {
      if (master.cmd->connected()) return &master;
    }
    return nullptr;
  }
  return slots_[redis_key_slot(route)];
}

const ShardedRedis::Master* ShardedRedis::owner(std::string_view route) const {
  return const_cast<ShardedRedis*>(this)->owner(route);
}

bool ShardedRedis::reachable(std::string_view route) const {
  const Master* m = owner(route);
  return m && m->cmd->connected();
}

std::size_t ShardedRedis::shards_up() const {
  std::size_t up = 0;
  for (const auto& [address, master] : masters_) {
    if (master.cmd->connected() && master.sub->connected()) ++up;
  }
  return up;
}

bool ShardedRedis::healthy() const {
  for (const Master* m : slots_) {
    if (!m) return false;
  }
  if (shards_up() != masters_.size()) return false;
  for (const auto& s : subscriptions_) {
    if (s.placed_on.empty()) return false;
  }
  return true;
}

void ShardedRedis::health_changed() {
  const bool now = healthy();
  if (now != last_health_) {
    last_health_ = now;
    // Degraded: refresh the slot map often until every slot has a live master.
    refresh_timer_.cancel();
  }
  if (on_health) on_health();
}

void ShardedRedis::command(std::string_view route, std::vector<std::string> args,
                           RedisCallback cb) {
  this->route(route, std::move(args), std::move(cb), false);
}

void ShardedRedis::command_stamped(std::string_view route, std::vector<std::string> args,
                                   RedisCallback cb) {
  this->route(route, std::move(args), std::move(cb), true);
}

void ShardedRedis::route(std::string_view route, std::vector<std::string> args, RedisCallback cb,
                         bool stamp) {
  Master* m = owner(route);
  if (!m || !m->cmd->connected()) {
    if (cb) cb(false, RedisReply{});
    return;
  }
  send(*m, std::make_shared<const std::vector<std::string>>(std::move(args)), std::move(cb), 0,
       false, stamp);
}

// `stamp`: the incarnation of the master that gets the command is appended
// when it is sent, so a redirected script carries its new target's.
void ShardedRedis::send(Master& master, Args args, RedisCallback cb, int redirects, bool asking,
                        bool stamp) {
  if (asking) master.cmd->command({"ASKING"});
  const auto& argv = *args;
  auto done = [this, args = std::move(args), cb = std::move(cb), redirects, stamp](
                  bool ok, const RedisReply& reply) mutable {
    if (ok && reply.is_error() && redirect(reply, args, cb, redirects, stamp)) return;
    if (cb) cb(ok, reply);
  };
  if (stamp) {
    master.cmd->command_stamped(argv, std::move(done));
  } else {
    master.cmd->command(argv, std::move(done));
  }
}

// Follows a MOVED or ASK reply; false when `reply` is another error (the
// caller's callback gets it).
bool ShardedRedis::redirect(const RedisReply& reply, Args& args, RedisCallback& cb, int redirects,
                            bool stamp) {
  std::string_view kind;
  std::string address;
  if (!parse_redirect(reply.str, kind, address)) {
    if (reply.str.starts_with("CLUSTERDOWN")) refresh_soon();
    return false;
  }
  if (stopped_ || redirects >= kMaxRedirects) return false;
  RedisEndpoint ep;
  try {
    ep = RedisEndpoint::parse(address);
  } catch (const std::invalid_argument&) {
    return false;
  }
  ep.password = seeds_.front().password;
  Master& target = master_at(address_of(ep));
  if (kind == "MOVED") {
    // The slot lives there now; the rest of the map is probably stale too.
    const auto slot_text = reply.str.substr(6, reply.str.find(' ', 6) - 6);
    unsigned slot = 0;
    auto [end, ec] = std::from_chars(slot_text.data(), slot_text.data() + slot_text.size(), slot);
    if (ec == std::errc() && slot < kRedisSlots) slots_[slot] = &target;
    refresh_soon();
  }
  if (!target.cmd->connected()) {
    // Just created, or down: the caller's retry goes through the new map.
    if (cb) cb(false, RedisReply{});
    return true;
  }
  send(target, std::move(args), std::move(cb), redirects + 1, kind == "ASK", stamp);
  return true;
}

ShardedRedis::Master& ShardedRedis::master_at(const std::string& address) {
  auto it = masters_.find(address);
  if (it != masters_.end()) return it->second;
  RedisEndpoint ep = RedisEndpoint::parse(address);
  ep.password = seeds_.front().password;
  Master& m = masters_[address];
  m.address = address;
  m.endpoint = ep;
  m.cmd = std::make_shared<RedisConnection>(loop_, ep, name_ + "-cmd-" + address, false);
  m.sub = std::make_shared<RedisConnection>(loop_, ep, name_ + "-sub-" + address, true);
  m.cmd->on_ready = [this, address] {
    if (on_ready) {
      on_ready([this, address](std::string_view route) {
        const Master* owner_of = owner(route);
        return owner_of && owner_of->address == address;
      });
    }
    health_changed();
  };
  m.cmd->on_lost = [this] {
    refresh_soon();
    health_changed();
  };
  m.sub->on_ready = [this] {
    place_subscriptions();
    health_changed();
  };
  m.sub->on_lost = [this, address] {
    for (auto& s : subscriptions_) {
      if (s.placed_on == address) s.placed_on.clear();
    }
    refresh_soon();
    health_changed();
  };
  m.sub->on_message = [this, address](const RedisReply& r) { on_sub_message(address, r); };
  if (std::find(known_.begin(), known_.end(), address) == known_.end()) known_.push_back(address);
  if (!stopped_) {
    m.cmd->start();
    m.sub->start();
  }
  return m;
}

void ShardedRedis::drop_master(const std::string& address) {
  auto it = masters_.find(address);
  if (it == masters_.end()) return;
  for (auto& slot : slots_) {
    if (slot == &it->second) slot = nullptr;
  }
  for (auto& s : subscriptions_) {
    if (s.placed_on == address) s.placed_on.clear();
  }
  // Its pending callbacks fail now; the connections are owned by their
  // handlers too, so they go when those have run.
  auto master = std::move(it->second);
  masters_.erase(it);
  master.cmd->on_ready = nullptr;
  master.cmd->on_lost = nullptr;
  master.sub->on_ready = nullptr;
  master.sub->on_lost = nullptr;
  master.sub->on_message = nullptr;
  master.cmd->stop();
  master.sub->stop();
  spdlog::info("redis cluster: {} is no longer a master", address);
}

void ShardedRedis::subscribe(std::vector<std::string> channels) {
  if (channels.empty()) return;
  Subscription s;
  s.slot = redis_key_slot(channels.front());
  s.channels = std::move(channels);
  subscriptions_.push_back(std::move(s));
  place_subscriptions();
}

// Every subscription on the shard that owns its slot: subscribed where it is
// missing, moved where the slot changed hands.
void ShardedRedis::place_subscriptions() {
  for (auto& s : subscriptions_) {
    Master* m = slots_[s.slot];
    if (m && s.placed_on == m->address) continue;
    if (!s.placed_on.empty()) {
      auto old = masters_.find(s.placed_on);
      if (old != masters_.end() && old->second.sub->connected()) {
        std::vector<std::string> cmd{"SUNSUBSCRIBE"};
        cmd.insert(cmd.end(), s.channels.begin(), s.channels.end());
        old->second.sub->command(cmd);
      }
      s.placed_on.clear();
    }
    if (!m || !m->sub->connected()) continue;
    std::vector<std::string> cmd{"SSUBSCRIBE"};
    cmd.insert(cmd.end(), s.channels.begin(), s.channels.end());
    m->sub->command(cmd);
    s.placed_on = m->address;
  }
}

void ShardedRedis::on_sub_message(const std::string& address, const RedisReply& reply) {
  if (reply.type != RedisReply::Type::kArray || reply.elements.empty()) return;
  const std::string& kind = reply.elements[0].str;
  if (kind == "smessage" || kind == "message") {
    if (on_message) on_message(reply);
    return;
  }
  if (kind == "sunsubscribe" && reply.elements.size() >= 2) {
    // Unasked (the slot moved away, or its node became a replica): subscribe
    // again where the new map says.
    for (auto& s : subscriptions_) {
      if (s.placed_on != address) continue;
      if (std::find(s.channels.begin(), s.channels.end(), reply.elements[1].str) !=
          s.channels.end()) {
        s.placed_on.clear();
        refresh_soon();
        health_changed();
      }
    }
  } else if (reply.type == RedisReply::Type::kArray && kind.starts_with("MOVED")) {
    refresh_soon();
  }
}

// ---- the slot map --------------------------------------------------------------------------

void ShardedRedis::refresh_soon() {
  if (stopped_) return;
  if (refreshing_) {
    refresh_again_ = true;
    return;
  }
  asio::post(loop_, [this] { refresh(); });
}

void ShardedRedis::refresh() {
  if (stopped_) return;
  if (refreshing_) {
    refresh_again_ = true;
    return;
  }
  for (auto& [address, master] : masters_) {
    if (master.cmd->connected()) {
      ask_slots(master.cmd);
      return;
    }
  }
  probe_next();
}

void ShardedRedis::ask_slots(const std::shared_ptr<RedisConnection>& conn) {
  refreshing_ = true;
  conn->command({"CLUSTER", "SLOTS"}, [this](bool ok, const RedisReply& reply) {
    refreshing_ = false;
    const bool applied = ok && !reply.is_error() && apply_slots(reply);
    if (!applied && ok) spdlog::warn("redis cluster: no usable slot map: {}", reply.str);
    if (refresh_again_ || !applied) {
      refresh_again_ = false;
      if (applied) refresh_soon();
      // else the degraded refresh loop asks again shortly
    }
  });
}

// No master connection is up (start, or all lost): ask the seeds and every
// node seen so far, one at a time.
void ShardedRedis::probe_next() {
  if (stopped_ || known_.empty()) return;
  if (probe_) {
    probe_->on_ready = nullptr;
    probe_->stop();
  }
  const std::string address = known_[probe_index_++ % known_.size()];
  RedisEndpoint ep = RedisEndpoint::parse(address);
  ep.password = seeds_.front().password;
  auto probe = std::make_shared<RedisConnection>(loop_, ep, name_ + "-probe", false);
  // One warning while no node answers, not one per probe.
  probe->warn_unreachable = !probe_warned_;
  probe_warned_ = true;
  probe_ = probe;
  refreshing_ = true;
  probe->on_ready = [this, probe] {
    if (probe_ != probe) return;
    probe_warned_ = false;
    probe_timer_.cancel();
    refreshing_ = false;
    ask_slots(probe);
  };
  probe->start();
  probe_timer_.expires_after(kProbeTimeout);
  probe_timer_.async_wait([this, probe](const boost::system::error_code& ec) {
    if (ec || probe_ != probe) return;
    probe->on_ready = nullptr;
    probe->stop();
    probe_.reset();
    refreshing_ = false;
    bool any_up = false;
    for (auto& entry : masters_) any_up = any_up || entry.second.cmd->connected();
    if (!any_up) probe_next();
  });
}

// CLUSTER SLOTS: [[start, end, [host, port, id], replicas...], ...]
bool ShardedRedis::apply_slots(const RedisReply& reply) {
  if (reply.type != RedisReply::Type::kArray || reply.elements.empty()) return false;
  std::vector<std::string> addresses;      // masters, in reply order
  std::vector<int> next(kRedisSlots, -1);  // index into addresses per slot
  for (const auto& range : reply.elements) {
    if (range.elements.size() < 3 || range.elements[2].elements.size() < 2) return false;
    const int64_t first = range.elements[0].integer;
    const int64_t last = range.elements[1].integer;
    if (first < 0 || last >= static_cast<int64_t>(kRedisSlots) || first > last) return false;
    std::string host = range.elements[2].elements[0].str;
    if (host.empty()) host = seeds_.front().host;  // a node that does not know its address
    const std::string address = host + ":" + std::to_string(range.elements[2].elements[1].integer);
    const int index = static_cast<int>(addresses.size());
    for (int64_t slot = first; slot <= last; ++slot) next[static_cast<std::size_t>(slot)] = index;
    addresses.push_back(address);
    for (std::size_t r = 3; r < range.elements.size(); ++r) {
      const auto& node = range.elements[r].elements;
      if (node.size() < 2) continue;
      const std::string replica =
          (node[0].str.empty() ? host : node[0].str) + ":" + std::to_string(node[1].integer);
      if (std::find(known_.begin(), known_.end(), replica) == known_.end()) {
        known_.push_back(replica);
      }
    }
  }
  for (const auto& address : addresses) master_at(address);
  std::vector<std::string> gone;
  for (const auto& [address, master] : masters_) {
    if (std::find(addresses.begin(), addresses.end(), address) == addresses.end()) {
      gone.push_back(address);
    }
  }
  for (const auto& address : gone) drop_master(address);
  std::vector<Master*> masters;
  for (const auto& address : addresses) masters.push_back(&masters_.at(address));
  for (std::size_t slot = 0; slot < kRedisSlots; ++slot) {
    slots_[slot] = next[slot] < 0 ? nullptr : masters[static_cast<std::size_t>(next[slot])];
  }
  if (probe_) {
    probe_->on_ready = nullptr;
    probe_->stop();
    probe_.reset();
  }
  place_subscriptions();
  health_changed();
  return true;
}

void ShardedRedis::refresh_loop() {
  refresh_timer_.expires_after(last_health_ ? std::chrono::milliseconds(kRefreshHealthy)
                                            : std::chrono::milliseconds(kRefreshDegraded));
  refresh_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (stopped_) return;
    if (!ec) refresh();
    refresh_loop();  // also when cancelled by a change of health: a new interval
  });
}

}  // namespace imgate
