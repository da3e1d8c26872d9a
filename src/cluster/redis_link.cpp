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
    std::vector<std::string> wanted;
    for (const auto& [channel_name, channel] : channels_) wanted.push_back(channel_name);
    send("SUBSCRIBE", wanted);
    if (on_health) on_health();
  };
  sub_->on_lost = [this] {
    // Nothing is subscribed on the next connection until it says so.
    std::erase_if(channels_, [](const auto& entry) { return !entry.second.wanted; });
    for (auto& entry : channels_) entry.second = Channel{true};
    if (on_health) on_health();
  };
  sub_->on_message = [this](const RedisReply& r) { on_sub_message(r); };
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

bool RedisLink::answered(Channel& channel, bool subscribe) {
  if (channel.inflight == 0) return false;
  --channel.inflight;
  channel.live = subscribe;
  return true;
}

void SingleRedis::send(const char* verb, const std::vector<std::string>& channels) {
  if (channels.empty() || !sub_->connected()) return;
  std::vector<std::string> cmd{verb};
  cmd.insert(cmd.end(), channels.begin(), channels.end());
  sub_->command(cmd);
  for (const auto& name : channels) ++channels_[name].inflight;
}

void SingleRedis::subscribe(const std::vector<std::string>& channels) {
  std::vector<std::string> added;
  for (const auto& name : channels) {
    Channel& channel = channels_[name];
    if (channel.wanted) continue;
    channel.wanted = true;
    added.push_back(name);
  }
  send("SUBSCRIBE", added);
}

void SingleRedis::unsubscribe(const std::vector<std::string>& channels) {
  std::vector<std::string> dropped;
  for (const auto& name : channels) {
    auto it = channels_.find(name);
    if (it == channels_.end() || !it->second.wanted) continue;
    it->second.wanted = false;
    dropped.push_back(name);
  }
  send("UNSUBSCRIBE", dropped);
  // Forgotten once Redis answered (or at once when nothing is in flight).
  std::erase_if(channels_, [](const auto& e) { return !e.second.wanted && e.second.inflight == 0; });
}

bool SingleRedis::subscribed(const std::vector<std::string>& channels) const {
  if (!sub_->connected()) return false;
  for (const auto& name : channels) {
    auto it = channels_.find(name);
    if (it == channels_.end() || !it->second.confirmed()) return false;
  }
  return true;
}

void SingleRedis::on_sub_message(const RedisReply& r) {
  if (r.type == RedisReply::Type::kArray && r.elements.size() == 3 &&
      (r.elements[0].str == "subscribe" || r.elements[0].str == "unsubscribe")) {
    auto it = channels_.find(r.elements[1].str);
    if (it == channels_.end()) return;
    const bool was = it->second.confirmed();
    if (!answered(it->second, r.elements[0].str == "subscribe")) return;
    if (!it->second.wanted && it->second.inflight == 0) {
      channels_.erase(it);
    } else if (!was && it->second.confirmed() && on_subscribed) {
      const std::string name = it->first;  // the callback may rehash channels_
      on_subscribed(name);
    }
    return;
  }
  if (on_message) on_message(r);
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
  for (const auto& [name, channel] : channels_) {
    if (channel.wanted && channel.placed_on.empty()) return false;
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
    unplace(address);
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
  unplace(address);
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

void ShardedRedis::unplace(const std::string& address) {
  for (auto it = channels_.begin(); it != channels_.end();) {
    Channel& c = it->second;
    if (c.placed_on != address) {
      ++it;
      continue;
    }
    if (!c.wanted) {
      it = channels_.erase(it);
      continue;
    }
    c.placed_on.clear();
    c.inflight = 0;
    c.live = false;
    ++it;
  }
}

void ShardedRedis::send_sub(Master& master, const char* verb,
                            const std::vector<std::string>& channels) {
  std::vector<std::string> cmd{verb};
  cmd.insert(cmd.end(), channels.begin(), channels.end());
  master.sub->command(cmd);
}

void ShardedRedis::subscribe(const std::vector<std::string>& channels) {
  for (const auto& name : channels) {
    Channel& c = channels_[name];
    if (c.wanted) continue;
    c.wanted = true;
    c.slot = redis_key_slot(name);
    if (c.placed_on.empty()) continue;  // placed below
    // Still placed: its unsubscribe is in flight there; subscribe after it.
    auto m = masters_.find(c.placed_on);
    if (m == masters_.end() || !m->second.sub->connected()) continue;
    send_sub(m->second, "SSUBSCRIBE", {name});
    ++c.inflight;
  }
  place_subscriptions();
}

void ShardedRedis::unsubscribe(const std::vector<std::string>& channels) {
  for (const auto& name : channels) {
    auto it = channels_.find(name);
    if (it == channels_.end() || !it->second.wanted) continue;
    Channel& c = it->second;
    c.wanted = false;
    auto m = masters_.find(c.placed_on);
    if (c.placed_on.empty() || m == masters_.end() || !m->second.sub->connected()) {
      channels_.erase(it);
      continue;
    }
    send_sub(m->second, "SUNSUBSCRIBE", {name});
    ++c.inflight;  // forgotten when Redis answered
  }
}

bool ShardedRedis::subscribed(const std::vector<std::string>& channels) const {
  for (const auto& name : channels) {
    auto it = channels_.find(name);
    if (it == channels_.end() || !it->second.confirmed()) return false;
    const Master* m = slots_[it->second.slot];
    if (!m || m->address != it->second.placed_on || !m->sub->connected()) return false;
  }
  return true;
}

bool ShardedRedis::can_subscribe(const std::vector<std::string>& channels) const {
  for (const auto& name : channels) {
    const Master* m = slots_[redis_key_slot(name)];
    if (!m || !m->sub->connected()) return false;
  }
  return true;
}

// Every kept channel on the shard that owns its slot: subscribed where it is
// missing, moved where the slot changed hands (one command per slot and master).
void ShardedRedis::place_subscriptions() {
  std::map<std::pair<std::string, uint16_t>, std::vector<std::string>> leave, join;
  for (auto it = channels_.begin(); it != channels_.end();) {
    Channel& c = it->second;
    Master* m = slots_[c.slot];
    if (m && c.placed_on == m->address) {
      ++it;
      continue;
    }
    if (!c.placed_on.empty()) {
      auto old = masters_.find(c.placed_on);
      if (old != masters_.end() && old->second.sub->connected()) {
        leave[{c.placed_on, c.slot}].push_back(it->first);
      }
      c.placed_on.clear();
      c.inflight = 0;  // its answers there are no longer counted
      c.live = false;
    }
    if (!c.wanted) {
      it = channels_.erase(it);
      continue;
    }
    if (m && m->sub->connected()) {
      join[{m->address, c.slot}].push_back(it->first);
      c.placed_on = m->address;
      c.inflight = 1;
    }
    ++it;
  }
  for (const auto& [where, names] : leave) send_sub(masters_.at(where.first), "SUNSUBSCRIBE", names);
  for (const auto& [where, names] : join) send_sub(masters_.at(where.first), "SSUBSCRIBE", names);
}

void ShardedRedis::on_sub_message(const std::string& address, const RedisReply& reply) {
  if (reply.is_error()) {
    // A refused SSUBSCRIBE (MOVED while the map is stale): the map is asked
    // again and the channel moves with it.
    spdlog::warn("redis cluster: subscriber on {}: {}", address, reply.str);
    refresh_soon();
    return;
  }
  if (reply.type != RedisReply::Type::kArray || reply.elements.empty()) return;
  const std::string& kind = reply.elements[0].str;
  if (kind == "smessage" || kind == "message") {
    if (on_message) on_message(reply);
    return;
  }
  if ((kind != "ssubscribe" && kind != "sunsubscribe") || reply.elements.size() < 2) return;
  auto it = channels_.find(reply.elements[1].str);
  if (it == channels_.end() || it->second.placed_on != address) return;  // from a former master
  Channel& c = it->second;
  const bool was = c.confirmed();
  if (answered(c, kind == "ssubscribe")) {
    if (!c.wanted && c.inflight == 0) {
      channels_.erase(it);
    } else if (!was && c.confirmed() && on_subscribed) {
      const std::string name = it->first;  // the callback may rehash channels_
      on_subscribed(name);
    }
    return;
  }
  if (kind == "sunsubscribe") {
    // Unasked (the slot moved away, or its node became a replica): subscribe
    // again where the new map says.
    c.placed_on.clear();
    c.live = false;
    if (!c.wanted) channels_.erase(it);
    refresh_soon();
    health_changed();
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
