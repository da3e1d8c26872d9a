#include "net/gateway_handler.hpp"

#include "protocol/codes.hpp"

namespace imgate {

void GatewayHandler::on_open(WsConnection& conn) {
  Shard& shard = shard_of(conn);
  conn.tag = shard.add(conn, Clock::now());
  if (ctx_.stopping.load(std::memory_order_relaxed)) {
    // Upgraded while the server shuts down: the shard's close_all may have
    // run already, so this connection leaves by itself.
    shard.unlink(conn.tag, EndReason::kShutdown);
    conn.close(close_code::kGoingAway, "server shutdown");
  }
}

void GatewayHandler::on_message(WsConnection& conn, ws::Opcode, std::string_view payload) {
  // Binary messages never get here (ParseLimits::binary_allowed is false: 1003).
  CommandContext cmd{shard_of(conn), conn.tag, ctx_.sorted_app_ids, Clock::now()};
  conn.send(make_frame(ctx_.router.handle(cmd, payload, ctx_.counters)));
}

void GatewayHandler::on_activity(WsConnection& conn) {
  shard_of(conn).touch(conn.tag, Clock::now());
}

void GatewayHandler::on_end(WsConnection& conn, EndReason reason) {
  shard_of(conn).unlink(conn.tag, reason);
}

WsSettings ws_settings_of(const Config& config) {
  WsSettings s;
  s.limits.max_message = config.max_message_bytes;
  s.limits.binary_allowed = false;
  s.send_queue_bytes = config.send_queue_bytes;
  s.close_timeout = config.close_timeout;
  s.flush_interval = config.flush_interval;
  s.message_rate = TokenBucket(config.message_rate, config.message_burst);
  return s;
}

}  // namespace imgate
