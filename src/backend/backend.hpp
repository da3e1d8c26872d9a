// Backend: everything that depends on the mode, behind one interface (after
// centrifuge's Broker / PresenceManager). Two implementations:
//   - EmbeddedBackend (backend/embedded.hpp): this node alone, in memory; the
//     default, no external service;
//   - RedisBackend (backend/redis.hpp): a cluster of nodes sharing a Redis.
// The HTTP API, the client commands and the registry call this interface and
// never ask which mode they are in. The registry's first-in / last-out
// decisions (enter / exit) go through PresenceSink (registry/shard.hpp), which
// the Redis mode replaces with a cluster-wide one.
//
// Thread safety: every method may be called from any thread; `done` callbacks
// run on any thread (the caller's for the embedded backend, the Redis thread
// for the Redis one) and must only post or reply.
#pragma once

#include <boost/json/value.hpp>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/codes.hpp"
#include "registry/stream.hpp"
#include "registry/types.hpp"

namespace imgate {

// A msg push as the HTTP API (sendMessage, sendMessageAll) and the publish
// command hand it over.
struct PushRequest {
  AppId app = 0;
  std::string user;   // recipient (to a user) or sender, left out (to the room)
  std::string seq;    // msgID, or a generated id
  std::string msg;    // the text
  std::string from;   // sender shown in the push
  bool to_room = false;
  // What msgID de-duplication is keyed on; empty: none (no msgID was given).
  // The HTTP API's msgID as is (upstream's one set); a client's publish its
  // own scope (client_dedup_key), so a logged-in client can never use up a
  // backend's msgID nor another user's.
  std::string dedup_key;
};

// The de-duplication key of a msgID a client publishes: its room and user,
// between unit separators (a backend's msgID would need to start with one).
inline std::string client_dedup_key(AppId app, std::string_view user, std::string_view msg_id) {
  std::string key = "\x1f";
  key += std::to_string(app);
  key += '\x1f';
  key += user;
  key += '\x1f';
  key += msg_id;
  return key;
}

// The answer to a push in upstream's HTTP shape: code 200 with
// {"sendResults":bool} (plus "sendResultsErr" when degraded), or {} for a
// duplicate msgID (nothing sent).
using PushDone = std::function<void(Code, boost::json::value)>;

class Backend {
 public:
  virtual ~Backend() = default;

  // False while a service the mode depends on is unreachable: the node still
  // serves its own clients (degraded). Always true in embedded mode.
  virtual bool healthy() const = 0;
  // Why /healthz says degraded ("" = it does not): Redis unreachable, or
  // (cluster mode) a live node of another Redis key schema.
  virtual std::string degraded() const { return healthy() ? "" : "redis unavailable"; }
  // What /system/state shows under imgate.cluster; null when there is nothing to show.
  virtual boost::json::value status() const = 0;
  // The Redis the mode runs on, for /metrics: shards 0 = none (embedded), 1 =
  // one server, N = the masters of a Redis Cluster; up = reachable ones.
  struct RedisShards {
    std::size_t shards = 0;
    std::size_t up = 0;
  };
  virtual RedisShards redis_shards() const { return {}; }

  // Presence queries over the whole deployment. ok = false when the answer
  // is unavailable (Redis down); the caller answers 1004.
  virtual void list_users(AppId app,
                          std::function<void(bool ok, std::vector<std::string> users)> done) = 0;
  // app 0: online in any configured app.
  virtual void online(AppId app, std::string user,
                      std::function<void(bool ok, bool online)> done) = 0;

  // msgID de-duplication, then delivery to the user's connections or the room.
  // History on: the push is stored in its stream first (a user's is kept for
  // an offline user: {"sendResults":false,"stored":true}) and the answer
  // carries its "epoch" and "offset".
  virtual void publish(PushRequest push, PushDone done) = 0;

  // Cluster mode (docs/cluster.md, "Subscriptions on demand"): called right
  // after a login of `key`; false when it is answered later: `ready` then
  // runs, on any thread, once Redis routes the user's pushes to this node
  // (or Redis is unreachable). Embedded: always true.
  virtual bool await_login(const UserKey& key, std::function<void()> ready) {
    (void)key, (void)ready;
    return true;
  }

  // History (docs/history.md); off by default (--history-size 0).
  virtual bool history_on() const = 0;
  // True when read_stream answers before it returns (embedded).
  virtual bool history_inline() const { return true; }
  // The pushes of `stream` (app, user; "" = the room) after `since` (all that
  // is kept when absent), at most `limit` (0: all), without those `reader`
  // never got live (its own room pushes). `done` gets ok = false when the
  // history cannot be read. Embedded: answered before the call returns.
  virtual void read_stream(const UserKey& stream, std::optional<StreamPos> since,
                           std::size_t limit, std::string reader,
                           std::function<void(bool ok, StreamRead read)> done) = 0;
  virtual StreamPos stream_position(const UserKey& stream) = 0;
  struct HistoryStats {
    std::size_t streams = 0, pushes = 0, bytes = 0;
  };
  virtual HistoryStats history_stats() const { return {}; }
  // Where the user stream stood when the user's last connection went away.
  virtual std::optional<StreamPos> user_left_at(const UserKey& user) = 0;
};

}  // namespace imgate
