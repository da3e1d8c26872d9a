#include "registry/shard.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "websocket/close_codes.hpp"

namespace imgate {

namespace {

constexpr int kShardBits = 10;  // up to 1024 shards (threads)
constexpr int kSeqBits = 64 - kShardBits;

// Wheel slot width: fine enough for second-scale test timeouts, coarse (1 s)
// for production ones so a tick touches few slots.
std::chrono::milliseconds wheel_tick(const LivenessSettings& s) {
  auto finest = std::min(s.heartbeat_timeout, s.ping_interval) / 8;
  return std::clamp(finest, std::chrono::milliseconds(10), std::chrono::milliseconds(1000));
}

}  // namespace

// One name per reason, kept with the counters they label in /metrics.
static_assert(static_cast<std::size_t>(EndReason::kPolicy) + 1 == Counters::kEndReasons);

std::string_view to_string(EndReason reason) {
  const auto i = static_cast<std::size_t>(reason);
  return i < Counters::kEndReasons ? Counters::kEndReasonNames[i] : "unknown";
}

// --- Shard ---

Shard::Shard(Hub& hub, uint32_t index, TimePoint start)
    : hub_(hub),
      index_(index),
      wheel_(wheel_tick(hub.liveness()),
             std::max(hub.liveness().heartbeat_timeout, hub.liveness().ping_interval), start) {}

ConnId Shard::add(Peer& peer, TimePoint now) {
  ConnId id = (static_cast<ConnId>(index_) << kSeqBits) | ++next_seq_;
  conns_.emplace(id, Conn{id, &peer, nullptr, nullptr, now});
  size_.fetch_add(1, std::memory_order_relaxed);
  const auto& live = hub_.liveness();
  wheel_.schedule(id, now + std::min(live.ping_interval, live.heartbeat_timeout));
  return id;
}

LoginStatus Shard::login(ConnId id, AppId app, std::string_view user, TimePoint now,
                         bool* first) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return LoginStatus::kUnknownConnection;
  Conn& conn = it->second;
  if (conn.key) return LoginStatus::kAlreadyLoggedIn;
  conn.last_seen = now;
  index_login(conn, app, user);
  Counters::bump(hub_.counters().logins);
  const bool was_first =
      hub_.directory().add(*conn.key, id, index_, [&] { hub_.user_came(*conn.key); });
  if (first) *first = was_first;
  return LoginStatus::kOk;
}

bool Shard::heartbeat(ConnId id, TimePoint now) {
  auto it = conns_.find(id);
  if (it == conns_.end() || !it->second.key) return false;
  it->second.last_seen = now;
  return true;
}

void Shard::touch(ConnId id, TimePoint now) {
  auto it = conns_.find(id);
  if (it != conns_.end()) it->second.last_seen = now;
}

bool Shard::logged_in(ConnId id) const {
  auto it = conns_.find(id);
  return it != conns_.end() && it->second.key;
}

uint32_t Shard::index_of(ConnId id) { return static_cast<uint32_t>(id >> kSeqBits); }

const UserKey* Shard::user_of(ConnId id) const {
  auto it = conns_.find(id);
  return it == conns_.end() ? nullptr : it->second.key;
}

bool Shard::set_token_deadline(ConnId id, TimePoint deadline) {
  if (!logged_in(id)) return false;
  auto [it, added] = token_deadlines_.try_emplace(id, deadline);
  if (!added) {
    deadline_order_.erase({it->second, id});
    it->second = deadline;
  }
  deadline_order_.emplace(deadline, id);
  return true;
}

std::optional<TimePoint> Shard::token_deadline(ConnId id) const {
  auto it = token_deadlines_.find(id);
  if (it == token_deadlines_.end()) return std::nullopt;
  return it->second;
}

std::size_t Shard::count_failed_login(ConnId id) {
  if (!conns_.contains(id)) return 0;
  return ++failed_logins_[id];
}

bool Shard::send_to(ConnId id, const Frame& frame) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return false;
  it->second.peer->send(frame);
  return true;
}

bool Shard::unlink(ConnId id, EndReason reason) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return false;
  Conn& conn = it->second;
  const AppId app = conn.key ? conn.key->app : 0;
  const std::string_view user = conn.key ? std::string_view(conn.key->user) : std::string_view();
  if (reason == EndReason::kTimeout) {
    Counters::bump(hub_.counters().heartbeat_timeouts);
    spdlog::info("connection {:x} ({}_{}) closed: {}", id, app, user, to_string(reason));
  } else {
    spdlog::debug("connection {:x} ({}_{}) unlinked: {}", id, app, user, to_string(reason));
  }
  if (conn.key) {
    // The directory first: the key lives in user_conns_, which unindexing may
    // erase. Its callbacks only post (or record under innermost locks), so the
    // order is not observable.
    std::optional<StreamPos> left_at;
    hub_.directory().remove(
        *conn.key, id, [&] { hub_.user_left(*conn.key, left_at); }, &left_at);
    unindex_login(conn);
  }
  floors_.erase(&conn);
  holds_.erase(&conn);
  if (auto deadline = token_deadlines_.find(id); deadline != token_deadlines_.end()) {
    deadline_order_.erase({deadline->second, id});
    token_deadlines_.erase(deadline);
  }
  failed_logins_.erase(id);
  conns_.erase(it);
  size_.fetch_sub(1, std::memory_order_relaxed);
  Counters::bump(hub_.counters().connections_closed);
  Counters::bump(hub_.counters().closed_by_reason[static_cast<std::size_t>(reason)]);
  return true;
}

void Shard::index_login(Conn& conn, AppId app, std::string_view user) {
  auto entry = user_conns_.try_emplace(UserKey{app, std::string(user)}, nullptr).first;
  conn.key = &entry->first;
  conn.next_of_user = entry->second;
  entry->second = &conn;
  room_members_[app].insert(&conn);
}

void Shard::unindex_login(Conn& conn) {
  if (auto room = room_members_.find(conn.key->app); room != room_members_.end()) {
    room->second.erase(&conn);
    if (room->second.empty()) room_members_.erase(room);
  }
  if (auto user = user_conns_.find(*conn.key); user != user_conns_.end()) {
    Conn** link = &user->second;
    while (*link && *link != &conn) link = &(*link)->next_of_user;
    if (*link) *link = conn.next_of_user;
    if (!user->second) user_conns_.erase(user);  // conn.key dangles from here on
  }
  conn.key = nullptr;
  conn.next_of_user = nullptr;
}

void Shard::tick(TimePoint now) {
  wheel_.advance(now, [&](ConnId id) { check_liveness(id, now); });
  while (!deadline_order_.empty() && deadline_order_.begin()->first <= now) {
    const ConnId id = deadline_order_.begin()->second;
    Peer* peer = conns_.at(id).peer;  // unlink() drops both deadline entries
    unlink(id, EndReason::kExpired);
    peer->close(close_code::kTokenExpired, "token expired");
  }
}

void Shard::check_liveness(ConnId id, TimePoint now) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;  // already unlinked: its wheel entry just lapses
  Conn& conn = it->second;
  const auto& live = hub_.liveness();
  const auto idle = now - conn.last_seen;
  if (idle >= live.heartbeat_timeout) {
    Peer* peer = conn.peer;
    unlink(id, EndReason::kTimeout);
    peer->close(close_code::kGoingAway, "heartbeat timeout");
    return;
  }
  TimePoint next = conn.last_seen + live.heartbeat_timeout;
  if (idle >= live.ping_interval) {
    conn.peer->ping();
    next = std::min(next, now + live.ping_interval);
  } else {
    next = std::min(next, conn.last_seen + live.ping_interval);
  }
  wheel_.schedule(id, next);
}

void Shard::close_all(uint16_t code, std::string_view reason) {
  for (ConnId id : ids()) {
    Peer* peer = conns_.at(id).peer;
    unlink(id, EndReason::kShutdown);
    peer->close(code, reason);
  }
}

std::size_t Shard::deliver_room(AppId app, std::string_view except_user, const Frame& frame,
                                uint64_t offset) {
  auto room = room_members_.find(app);
  if (room == room_members_.end()) return 0;
  const bool check_floors = offset != 0 && !floors_.empty();
  std::size_t sent = 0;
  for (Conn* conn : room->second) {
    sent += deliver_to_member(conn, except_user, frame, offset, check_floors) ? 1 : 0;
  }
  return sent;
}

bool Shard::deliver_room(RoomFanout& fanout, std::size_t& budget) {
  const auto& pushes = fanout.pushes;
  const std::size_t count = pushes.size();
  if (!fanout.started) {
    fanout.started = true;
    fanout.sent.assign(count, 0);
    auto room = room_members_.find(pushes.front()->app);
    if (room == room_members_.end()) return true;
    if (room->second.size() * count <= budget) {
      budget -= room->second.size() * count;
      for (std::size_t i = 0; i < count; ++i) {
        fanout.sent[i] =
            deliver_room(pushes[i]->app, pushes[i]->except_user, pushes[i]->frame, pushes[i]->offset);
      }
      return true;
    }
    // Later slices cannot walk the room index (a login in between may rehash
    // it): they walk the members it had now.
    fanout.recipients.reserve(room->second.size());
    for (const Conn* conn : room->second) fanout.recipients.push_back(conn->id);
  }
  const std::size_t per_slice = std::max<std::size_t>(budget / count, 1);
  const std::size_t end = std::min(fanout.recipients.size(), fanout.next + per_slice);
  budget -= std::min(budget, (end - fanout.next) * count);
  const bool floors = !floors_.empty();
  for (; fanout.next < end; ++fanout.next) {
    auto it = conns_.find(fanout.recipients[fanout.next]);
    // Gone since the first slice: skipped. Still registered: still logged in
    // as the member it was (only unlink ends a login).
    if (it == conns_.end()) continue;
    for (std::size_t i = 0; i < count; ++i) {
      const RoomPush& push = *pushes[i];
      fanout.sent[i] += deliver_to_member(&it->second, push.except_user, push.frame, push.offset,
                                          floors && push.offset != 0)
                            ? 1
                            : 0;
    }
  }
  if (fanout.next < fanout.recipients.size()) return false;
  fanout.recipients = {};
  return true;
}

bool Shard::deliver_to_member(Conn* conn, std::string_view except_user, const Frame& frame,
                              uint64_t offset, bool check_floors) {
  if (conn->key->user == except_user) return false;
  if (!holds_.empty()) {
    if (auto h = holds_.find(conn); h != holds_.end()) {
      h->second.push_back(Held{true, offset, frame});
      return false;
    }
  }
  if (check_floors && below_floor(conn, offset, true)) return false;
  conn->peer->send(frame);
  return true;
}

std::size_t Shard::deliver_user(const UserKey& key, const Frame& frame, uint64_t offset) {
  auto user = user_conns_.find(key);
  if (user == user_conns_.end()) return 0;
  const bool check_floors = offset != 0 && !floors_.empty();
  std::size_t sent = 0;
  for (Conn* conn = user->second; conn; conn = conn->next_of_user) {
    if (!holds_.empty()) {
      if (auto h = holds_.find(conn); h != holds_.end()) {
        h->second.push_back(Held{false, offset, frame});
        continue;
      }
    }
    if (check_floors && below_floor(conn, offset, false)) continue;
    conn->peer->send(frame);
    ++sent;
  }
  return sent;
}

bool Shard::below_floor(const Conn* conn, uint64_t offset, bool room) {
  auto it = floors_.find(conn);
  if (it == floors_.end()) return false;
  uint64_t& floor = room ? it->second.room : it->second.user;
  if (offset <= floor) return true;
  // Deliveries of a stream arrive in offset order: past the floor, it is not needed again.
  floor = 0;
  if (it->second.room == 0 && it->second.user == 0) floors_.erase(it);
  return false;
}

void Shard::set_floors(ConnId id, uint64_t room, uint64_t user) {
  auto it = conns_.find(id);
  if (it == conns_.end() || (room == 0 && user == 0)) return;
  floors_[&it->second] = Floors{room, user};
}

void Shard::note_delivered(ConnId id, const StreamPos& pos) {
  const UserKey* key = user_of(id);
  if (key && pos.offset != 0) hub_.directory().note_delivered(*key, pos);
}

void Shard::hold(ConnId id) {
  auto it = conns_.find(id);
  if (it != conns_.end()) holds_.try_emplace(&it->second);
}

std::vector<Shard::Held> Shard::release_hold(ConnId id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return {};
  auto h = holds_.find(&it->second);
  if (h == holds_.end()) return {};
  std::vector<Held> held = std::move(h->second);
  holds_.erase(h);
  return held;
}

std::vector<ConnId> Shard::ids() const {
  std::vector<ConnId> ids;
  ids.reserve(conns_.size());
  for (const auto& entry : conns_) ids.push_back(entry.first);
  return ids;
}

// --- Hub ---

Hub::Hub(uint32_t shards, LivenessSettings liveness, Counters& counters, TimePoint start)
    : liveness_(liveness),
      counters_(counters),
      push_seq_(static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(
              std::chrono::system_clock::now().time_since_epoch())
              .count())) {
  shards_.reserve(shards);
  for (uint32_t i = 0; i < shards; ++i) {
    shards_.push_back(std::make_unique<Shard>(*this, i, start));
    inboxes_.push_back(std::make_unique<Inbox>());
  }
}

void Hub::send(uint32_t index, Task task) { enqueue(index, Item{std::move(task), nullptr}); }

void Hub::enqueue(uint32_t index, Item item) {
  Inbox& box = *inboxes_[index];
  {
    std::lock_guard lock(box.mu);
    box.work.push_back(std::move(item));
    if (box.scheduled) return;
    box.scheduled = true;
  }
  poster_(index, [this, index] { drain(index); });
}

void Hub::drain(uint32_t index) {
  Inbox& box = *inboxes_[index];
  std::size_t budget = slice_;
  for (;;) {
    if (!box.active && box.taken.empty()) {
      std::lock_guard lock(box.mu);
      if (box.work.empty()) {
        box.scheduled = false;  // the next send() posts a drain
        return;
      }
      for (Item& item : box.work) box.taken.push_back(std::move(item));
      box.work.clear();
    }
    if (budget == 0) break;
    // Work sent while this runs queues behind it (box.scheduled stays true).
    if (!box.active) {
      if (box.taken.front().task) {
        Task task = std::move(box.taken.front().task);
        box.taken.pop_front();
        task();
        --budget;
        continue;
      }
      // Room pushes to one room queued one after the other go out together.
      RoomFanout fanout;
      const AppId app = box.taken.front().push->app;
      while (!box.taken.empty() && box.taken.front().push && box.taken.front().push->app == app &&
             fanout.pushes.size() < kMaxPushesTogether) {
        fanout.pushes.push_back(std::move(box.taken.front().push));
        box.taken.pop_front();
      }
      box.active = std::move(fanout);
    }
    if (shards_[index]->deliver_room(*box.active, budget)) {
      room_pushes_done(*box.active);
      box.active.reset();
    }
  }
  // The slice is spent: the rest goes on after what the loop got meanwhile.
  Counters::bump(counters_.fanout_slices);
  poster_(index, [this, index] { drain(index); });
}

namespace {
uint64_t micros_since(TimePoint start) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count());
}
}  // namespace

void Hub::push_room(AppId app, std::string except_user, Frame frame, uint64_t offset) {
  auto push =
      std::make_shared<RoomPush>(app, std::move(except_user), std::move(frame), offset, shard_count());
  Counters::bump(counters_.pushes);
  {
    std::lock_guard lock(flight_mu_);
    ++room_pushes_in_flight_;
  }
  for (uint32_t i = 0; i < shard_count(); ++i) enqueue(i, Item{nullptr, push});
}

void Hub::room_pushes_done(const RoomFanout& fanout) {
  for (std::size_t i = 0; i < fanout.pushes.size(); ++i) {
    const RoomPush& push = *fanout.pushes[i];
    if (i < fanout.sent.size() && fanout.sent[i] > 0) {
      counters_.push_latency.observe(micros_since(push.created));
    }
    if (fanout.pushes[i]->shards_left.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      room_push_done();
    }
  }
}

std::size_t Hub::room_pushes_in_flight() const {
  std::lock_guard lock(flight_mu_);
  return room_pushes_in_flight_;
}

void Hub::after_room_backlog(std::function<void()> then) {
  {
    std::lock_guard lock(flight_mu_);
    if (room_pushes_in_flight_ > kRoomPushesInFlight || !waiting_.empty()) {
      waiting_.push_back(std::move(then));
      return;
    }
  }
  then();
}

void Hub::drop_waiting() {
  std::vector<std::function<void()>> dropped;
  std::lock_guard lock(flight_mu_);
  dropped.swap(waiting_);
}

void Hub::room_push_done() {
  std::vector<std::function<void()>> ready;
  {
    std::lock_guard lock(flight_mu_);
    --room_pushes_in_flight_;
    if (room_pushes_in_flight_ > kRoomPushesInFlight) return;
    ready.swap(waiting_);
  }
  for (auto& then : ready) then();
}

bool Hub::push_user(const UserKey& key, Frame frame, uint64_t offset, std::string_view epoch) {
  const StreamPos pos{std::string(epoch), offset};
  auto shards = directory_.route_user(key, offset != 0 ? &pos : nullptr);
  if (shards.empty()) return false;
  auto shared_key = std::make_shared<const UserKey>(key);
  const TimePoint created = Clock::now();
  Counters::bump(counters_.pushes);
  for (uint32_t i : shards) {
    send(i, [this, i, shared_key, frame, created, offset] {
      if (shards_[i]->deliver_user(*shared_key, frame, offset) > 0) {
        counters_.push_latency.observe(micros_since(created));
      }
    });
  }
  return true;
}

void Hub::user_came(const UserKey& key) { presence_sink_->user_online(key); }

void Hub::user_left(const UserKey& key, const std::optional<StreamPos>& delivered) {
  presence_sink_->user_offline(key, delivered);
  if (history_hooks_) history_hooks_->user_left(key, delivered);
}

void Hub::LocalPresence::user_online(const UserKey& key) {
  if (!hub_.policy_.announces(key.app, hub_.directory_.room_size_locked(key.app))) {
    return Counters::bump(hub_.counters_.presence_suppressed);
  }
  hub_.push_room(key.app, key.user, hub_.presence_frame("enter", key.user));
}

void Hub::LocalPresence::user_offline(const UserKey& key, const std::optional<StreamPos>&) {
  if (!hub_.policy_.announces(key.app, hub_.directory_.room_size_locked(key.app) + 1)) {
    return Counters::bump(hub_.counters_.presence_suppressed);
  }
  hub_.push_room(key.app, key.user, hub_.presence_frame("exit", key.user));
}

Frame Hub::presence_frame(std::string_view cmd, std::string_view user) {
  return presence_frames_(std::to_string(next_push_seq()), cmd, user);
}

std::size_t Hub::connections() const {
  std::size_t total = 0;
  for (const auto& shard : shards_) total += shard->size();
  return total;
}

std::vector<std::size_t> Hub::connections_per_shard() const {
  std::vector<std::size_t> counts;
  for (const auto& shard : shards_) counts.push_back(shard->size());
  return counts;
}

}  // namespace imgate
