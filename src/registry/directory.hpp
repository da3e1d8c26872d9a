// Directory: the node-wide view of who is logged in, shared by all shards.
//
// It maps (appID, userID) to the set of that user's connections (several per
// user: tabs, devices), and appID to the room's users. It is the single place
// that decides "first connection of this user" (enter) and "last connection
// gone" (exit). Every method takes one short mutex; no I/O is ever done under
// it, only posting tasks (see Hub), which keeps enter/exit pushes in the same
// order as the logins and logouts that caused them.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "registry/stream.hpp"
#include "registry/types.hpp"

namespace imgate {

struct UserKey {
  AppId app = 0;
  std::string user;
  bool operator==(const UserKey&) const = default;
};

struct UserKeyHash {
  std::size_t operator()(const UserKey& k) const noexcept {
    return std::hash<std::string_view>{}(k.user) * 31u + k.app;
  }
};

class Directory {
 public:
  // Adds `conn` (living on `shard`) to the user. If it is the user's first
  // connection, calls on_first() while still holding the lock, so that what
  // it posts is ordered with every other directory change. Returns whether
  // it was the first. Adding a connection twice is a no-op returning false.
  bool add(const UserKey& key, ConnId conn, uint32_t shard,
           const std::function<void()>& on_first);

  // Removes `conn` from the user; if that was its last connection, sets
  // `*left_at` (when given) to the user stream position delivered to the user
  // on this node (see delivered()), calls on_last() under the lock and forgets
  // the user. Idempotent: removing an unknown connection does nothing and
  // returns false.
  bool remove(const UserKey& key, ConnId conn, const std::function<void()>& on_last,
              std::optional<StreamPos>* left_at = nullptr);

  // History on: the node's knowledge of what it delivered to each online user
  // (docs/history.md, "Offline messages"). Node-wide, whatever thread each of
  // the user's connections lives on, and forgotten with the user.
  //  - route_user(): the user's shards, and, when the push carries a stream
  //    position, that position becomes the user's delivered mark: a push
  //    routed to the user's connections counts as delivered (one that was on
  //    its way while the last of them closed is the only exception);
  //  - note_delivered(): pushes sent to a connection from history at login.
  // A mark only moves forward within an epoch; another epoch replaces it.
  std::vector<uint32_t> route_user(const UserKey& key, const StreamPos* pos);
  void note_delivered(const UserKey& key, const StreamPos& pos);
  std::optional<StreamPos> delivered(const UserKey& key) const;

  // Queries (any thread).
  std::vector<std::string> users_of(AppId app) const;
  bool online(AppId app, std::string_view user) const;  // app 0: any app
  std::vector<uint32_t> shards_of(const UserKey& key) const;
  std::vector<std::string> user_keys() const;
  std::vector<UserKey> users() const;  // every logged-in user of this node  // "<appID>_<userID>", upstream's debug format
  std::size_t user_count() const;
  // Users in the room; only from inside an add / remove callback (lock held).
  std::size_t room_size_locked(AppId app) const;
  std::size_t room_count() const;
  std::size_t connection_count() const;  // logged-in connections

 private:
  struct Entry {
    std::vector<std::pair<ConnId, uint32_t>> conns;  // (connection, shard)
    // History on, once a user push reached the user here; allocated then only
    // (a pointer: users without history cost 8 bytes, not a StreamPos).
    std::unique_ptr<StreamPos> delivered;
  };
  static void raise(Entry& entry, const StreamPos& pos);
  static std::vector<uint32_t> shards_in(const Entry& entry);  // each shard once
  mutable std::mutex mu_;
  std::unordered_map<UserKey, Entry, UserKeyHash> users_;
  std::unordered_map<AppId, std::unordered_set<std::string>> rooms_;
  std::size_t logged_in_ = 0;
};

}  // namespace imgate
