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

namespace imgate {

// What a handler may see and do: the connection that sent the request.
struct CommandContext {
  Shard& shard;
  ConnId conn;
  const std::vector<AppId>& app_ids;  // configured rooms, sorted ascending
  TimePoint now;
};

struct Reply {
  Code code = Code::kOk;
  boost::json::value data;  // null unless the command returns something
};

using Handler = std::function<Reply(CommandContext& ctx, const boost::json::value& data)>;

class Router {
 public:
  // Registers `handler` for `cmd`; a later registration replaces an earlier one.
  void add(std::string cmd, Handler handler);

  // Parses one text frame, dispatches it and returns the response text:
  // 1001 for frames that are not a request envelope, 1010 for unknown cmds.
  std::string handle(CommandContext& ctx, std::string_view text, Counters& counters) const;

 private:
  std::unordered_map<std::string, Handler> handlers_;
};

// The gowebsocket commands: login, heartbeat, ping.
Router make_default_router();

}  // namespace imgate
