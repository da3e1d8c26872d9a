// Command dispatch: a table from `cmd` to handler, so a new command is one
// registration. Every request frame gets exactly one response.
#pragma once

#include <boost/json/value.hpp>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "metrics/counters.hpp"
#include "protocol/codes.hpp"
#include "protocol/envelope.hpp"
#include "registry/shard.hpp"
#include "registry/stream.hpp"

namespace imgate {

class TokenVerifier;

// The users command answers at most this many userIDs (the first in byte
// order), with "truncated": true when the room has more: one request, one
// bounded frame (IDs are < 20 bytes: about 22 KB, at most ~120 KB when every
// byte needs a JSON escape; the send queue holds 1 MiB by default).
inline constexpr std::size_t kMaxUsersListed = 1000;

struct Reply {
  Code code = Code::kOk;
  boost::json::value data;  // null unless the command returns something
  bool later = false;       // the handler answers later (CommandServices::send_later)

  static Reply answered_later() { return Reply{Code::kOk, nullptr, true}; }
};

// What commands need beyond their shard; implemented by the gateway
// (net/gateway_handler.cpp), faked by tests. Called on the connection's thread.
class CommandServices {
 public:
  // Verifies login tokens; null when login is not authenticated (upstream).
  virtual const TokenVerifier* tokens() const = 0;
  // Wall-clock time in unix seconds (token exp / nbf are wall-clock).
  virtual int64_t unix_now() const = 0;
  // Pushes `message` (cmd "msg", from `from`) to room `app` except `from`'s own
  // connections, exactly as POST /user/sendMessageAll does (msgID
  // de-duplication when `msg_id` is not empty); `done` gets the reply, on any thread.
  virtual void publish_room(AppId app, std::string from, std::string msg_id, std::string message,
                            std::function<void(Reply)> done) = 0;
  // Sends `text` to connection `conn` if it is still registered; from any thread.
  virtual void send_later(ConnId conn, std::string text) = 0;
  // The users online in room `app` over the whole deployment, as GET
  // /user/list lists them; `done` gets ok = false when that cannot be known
  // (Redis down), on any thread.
  virtual void list_room_users(AppId app,
                               std::function<void(bool ok, std::vector<std::string> users)> done) = 0;

  // Cluster mode (docs/cluster.md, "Subscriptions on demand"): false when
  // the login of `key` just made on `conn` is answered later: once Redis
  // routes the user's pushes to this node (its login.lua ran, after the node
  // heard the room), or Redis is unreachable; `then` runs on `conn`'s shard
  // thread, after every delivery queued to that shard before.
  virtual bool await_login(ConnId conn, const UserKey& key,
                           std::function<void(Shard& shard)> then) {
    (void)conn, (void)key, (void)then;
    return true;
  }

  // History (docs/history.md): off unless --history-size > 0.
  virtual bool history_on() const { return false; }
  // The pushes of a stream (app, user; "" = the room) after `since` (all that
  // is kept when absent) that `reader` got live or would have, read at once;
  // only called when history_on().
  virtual StreamRead read_stream(const UserKey& stream, const std::optional<StreamPos>& since,
                                 std::string_view reader) {
    (void)stream, (void)since, (void)reader;
    return {};
  }
  virtual StreamPos stream_position(const UserKey& stream) {
    (void)stream;
    return {};
  }
  // Where the user stream stood when the user's last connection went away.
  virtual std::optional<StreamPos> user_left_at(const UserKey& key) {
    (void)key;
    return std::nullopt;
  }
  // False when history is read with a round trip (Redis): the login is then
  // answered through read_later.
  virtual bool history_inline() const { return true; }
  // Reads `stream` (as read_stream) and runs `then` on connection `conn`'s
  // shard thread, after every delivery queued to that shard before the read's
  // answer, with ok = false when the history could not be read.
  virtual void read_later(ConnId conn, const UserKey& stream, std::optional<StreamPos> since,
                          std::string reader,
                          std::function<void(Shard& shard, bool ok, StreamRead read)> then) {
    (void)conn, (void)stream, (void)since, (void)reader, (void)then;
  }

 protected:
  ~CommandServices() = default;
};

// What a handler may see and do: the connection that sent the request.
struct CommandContext {
  Shard& shard;
  ConnId conn;
  const std::vector<AppId>& app_ids;  // configured rooms, sorted ascending
  TimePoint now;
  CommandServices* services = nullptr;  // null: commands that need one answer 1004
  std::size_t max_failed_logins = 0;    // token mode: close after this many refusals (0: never)

  // Set by Router::handle for the handler: the request being answered.
  std::string_view seq;
  std::string_view cmd;
  Counters* counters = nullptr;

  // Frames to send right after the reply (recovered pushes, in order).
  std::vector<Frame> after_reply;

  // A handler asks for the connection to end after its reply is queued (the
  // caller unlinks with `end_reason` and closes with `close_code`).
  uint16_t close_code = 0;
  std::string_view close_reason;
  EndReason end_reason = EndReason::kPolicy;
};

using Handler = std::function<Reply(CommandContext& ctx, const boost::json::value& data)>;

class Router {
 public:
  // Registers `handler` for `cmd`; a later registration replaces an earlier one.
  void add(std::string cmd, Handler handler);

  // Parses one text frame, dispatches it and returns the response text:
  // 1001 for frames that are not a request envelope, 1010 for unknown cmds;
  // "" when the handler answers later.
  std::string handle(CommandContext& ctx, std::string_view text, Counters& counters) const;

 private:
  std::unordered_map<std::string, Handler> handlers_;
};

// The gowebsocket commands (login, heartbeat, ping) and imgate's own:
// refresh (token mode), publish and users (docs/security.md).
Router make_default_router();

}  // namespace imgate
