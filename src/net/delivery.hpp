// Routing of a msg push from the HTTP API (sendMessage, sendMessageAll) or the
// publish command: msgID de-duplication, then delivery on this node (embedded)
// or through Redis (cluster mode, degrading to this node when Redis is down).
#pragma once

#include <boost/json/value.hpp>
#include <functional>
#include <string>

#include "cluster/redis_cluster.hpp"
#include "net/server_context.hpp"
#include "protocol/codes.hpp"

namespace imgate {

struct PushRequest {
  uint32_t app = 0;
  std::string user;    // recipient (to a user) or sender, left out (to the room)
  PushMessage msg;     // cmd "msg"; seq is the msgID
  bool dedup = true;   // false when no msgID was given (seq generated)
  bool to_room = false;
};

// Delivers `push` and calls `done` once, on any thread, with the upstream reply:
// 200 {"sendResults":bool} (plus "sendResultsErr" when Redis is down and the push
// was delivered on this node only), or 200 {} for a duplicate msgID (nothing sent).
void deliver_push(ServerContext& ctx, PushRequest push,
                  std::function<void(Code, boost::json::value)> done);

}  // namespace imgate
