#include "registry/directory.hpp"

#include <algorithm>

namespace imgate {

bool Directory::add(const UserKey& key, ConnId conn, uint32_t shard,
                    const std::function<void()>& on_first) {
  std::lock_guard lock(mu_);
  auto [it, created] = users_.try_emplace(key);
  auto& conns = it->second.conns;
  if (std::any_of(conns.begin(), conns.end(), [&](const auto& c) { return c.first == conn; })) {
    return false;
  }
  conns.emplace_back(conn, shard);
  ++logged_in_;
  if (!created) return false;
  rooms_[key.app].insert(key.user);
  if (on_first) on_first();
  return true;
}

bool Directory::remove(const UserKey& key, ConnId conn, const std::function<void()>& on_last,
                       std::optional<StreamPos>* left_at) {
  std::lock_guard lock(mu_);
  auto it = users_.find(key);
  if (it == users_.end()) return false;
  auto& conns = it->second.conns;
  auto pos = std::find_if(conns.begin(), conns.end(), [&](const auto& c) { return c.first == conn; });
  if (pos == conns.end()) return false;
  conns.erase(pos);
  --logged_in_;
  if (!conns.empty()) return false;
  if (left_at && it->second.delivered) *left_at = *it->second.delivered;
  users_.erase(it);
  auto room = rooms_.find(key.app);
  if (room != rooms_.end()) {
    room->second.erase(key.user);
    if (room->second.empty()) rooms_.erase(room);
  }
  if (on_last) on_last();
  return true;
}

std::vector<std::string> Directory::users_of(AppId app) const {
  std::lock_guard lock(mu_);
  auto room = rooms_.find(app);
  if (room == rooms_.end()) return {};
  return {room->second.begin(), room->second.end()};
}

bool Directory::online(AppId app, std::string_view user) const {
  std::lock_guard lock(mu_);
  if (app != 0) return users_.contains(UserKey{app, std::string(user)});
  return std::any_of(rooms_.begin(), rooms_.end(),
                     [&](const auto& room) { return room.second.contains(std::string(user)); });
}

std::vector<uint32_t> Directory::shards_of(const UserKey& key) const {
  std::lock_guard lock(mu_);
  auto it = users_.find(key);
  return it == users_.end() ? std::vector<uint32_t>{} : shards_in(it->second);
}

std::vector<uint32_t> Directory::shards_in(const Entry& entry) {
  std::vector<uint32_t> shards;
  for (const auto& [conn, shard] : entry.conns) {
    if (std::find(shards.begin(), shards.end(), shard) == shards.end()) shards.push_back(shard);
  }
  return shards;
}

void Directory::raise(Entry& entry, const StreamPos& pos) {
  if (!entry.delivered) {
    entry.delivered = std::make_unique<StreamPos>(pos);
  } else if (entry.delivered->epoch != pos.epoch) {
    *entry.delivered = pos;  // a new history: the old offsets mean nothing in it
  } else {
    entry.delivered->offset = std::max(entry.delivered->offset, pos.offset);
  }
}

std::vector<uint32_t> Directory::route_user(const UserKey& key, const StreamPos* pos) {
  std::lock_guard lock(mu_);
  auto it = users_.find(key);
  if (it == users_.end()) return {};
  if (pos && pos->offset != 0) raise(it->second, *pos);
  return shards_in(it->second);
}

void Directory::note_delivered(const UserKey& key, const StreamPos& pos) {
  if (pos.offset == 0) return;
  std::lock_guard lock(mu_);
  if (auto it = users_.find(key); it != users_.end()) raise(it->second, pos);
}

std::optional<StreamPos> Directory::delivered(const UserKey& key) const {
  std::lock_guard lock(mu_);
  auto it = users_.find(key);
  if (it == users_.end() || !it->second.delivered) return std::nullopt;
  return *it->second.delivered;
}

std::vector<std::string> Directory::user_keys() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> keys;
  keys.reserve(users_.size());
  for (const auto& [key, entry] : users_) keys.push_back(std::to_string(key.app) + "_" + key.user);
  return keys;
}

std::vector<UserKey> Directory::users() const {
  std::lock_guard lock(mu_);
  std::vector<UserKey> keys;
  keys.reserve(users_.size());
  for (const auto& [key, entry] : users_) keys.push_back(key);
  return keys;
}

std::size_t Directory::room_size_locked(AppId app) const {
  auto room = rooms_.find(app);
  return room == rooms_.end() ? 0 : room->second.size();
}

std::size_t Directory::user_count() const {
  std::lock_guard lock(mu_);
  return users_.size();
}

std::size_t Directory::room_count() const {
  std::lock_guard lock(mu_);
  return rooms_.size();
}

std::size_t Directory::connection_count() const {
  std::lock_guard lock(mu_);
  return logged_in_;
}

}  // namespace imgate
