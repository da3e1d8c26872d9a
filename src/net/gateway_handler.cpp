#include "net/gateway_handler.hpp"

#include <boost/asio/post.hpp>

#include "backend/backend.hpp"
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
  Shard& shard = shard_of(conn);
  CommandContext cmd{shard, conn.tag, ctx_.sorted_app_ids, Clock::now()};
  cmd.services = this;
  if (ctx_.tokens) cmd.max_failed_logins = ctx_.config.max_failed_logins;
  const std::string reply = ctx_.router.handle(cmd, payload, ctx_.counters);
  if (!reply.empty()) conn.send(make_frame(reply));
  for (const Frame& frame : cmd.after_reply) conn.send(frame);  // recovered pushes
  if (cmd.close_code != 0) {  // asked for by the handler: after its reply
    shard.unlink(conn.tag, cmd.end_reason);
    conn.close(cmd.close_code, cmd.close_reason);
  }
}

int64_t GatewayHandler::unix_now() const {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void GatewayHandler::publish_room(AppId app, std::string from, std::string msg_id,
                                  std::string message, std::function<void(Reply)> done) {
  PushRequest push;
  push.app = app;
  push.to_room = true;
  push.user = from;
  push.from = std::move(from);
  push.msg = std::move(message);
  if (!msg_id.empty()) push.dedup_key = client_dedup_key(app, push.from, msg_id);
  push.seq = msg_id.empty() ? std::to_string(ctx_.hub.next_push_seq()) : std::move(msg_id);
  ctx_.backend->publish(std::move(push), [done = std::move(done)](Code code, boost::json::value data) {
    done(Reply{code, std::move(data)});
  });
}

bool GatewayHandler::await_login(ConnId conn, const UserKey& key,
                                 std::function<void(Shard&)> then) {
  const uint32_t index = Shard::index_of(conn);
  if (index >= ctx_.hub.shard_count()) return true;
  return ctx_.backend->await_login(key, [this, index, then = std::move(then)]() mutable {
    // Through the shard's ordered inbox, as read_later.
    ctx_.hub.send(index, [this, index, then = std::move(then)] { then(ctx_.hub.shard(index)); });
  });
}

bool GatewayHandler::history_on() const { return ctx_.backend->history_on(); }

StreamRead GatewayHandler::read_stream(const UserKey& stream, const std::optional<StreamPos>& since,
                                       std::string_view reader) {
  // Used only when backend->history_inline() (embedded): the read is answered
  // before read_stream returns. Redis mode reads through read_later.
  StreamRead out;
  out.complete = false;
  ctx_.backend->read_stream(stream, since, 0, std::string(reader), [&out](bool ok, StreamRead read) {
    if (ok) out = std::move(read);
  });
  return out;
}

StreamPos GatewayHandler::stream_position(const UserKey& stream) {
  return ctx_.backend->stream_position(stream);
}

std::optional<StreamPos> GatewayHandler::user_left_at(const UserKey& key) {
  return ctx_.backend->user_left_at(key);
}

bool GatewayHandler::history_inline() const { return ctx_.backend->history_inline(); }

void GatewayHandler::read_later(ConnId conn, const UserKey& stream, std::optional<StreamPos> since,
                                std::string reader,
                                std::function<void(Shard&, bool, StreamRead)> then) {
  const uint32_t index = Shard::index_of(conn);
  if (index >= ctx_.hub.shard_count()) return;
  ctx_.backend->read_stream(
      stream, std::move(since), 0, std::move(reader),
      [this, index, then = std::move(then)](bool ok, StreamRead read) mutable {
        // Through the shard's ordered inbox: after every push queued there before.
        ctx_.hub.send(index, [this, index, then = std::move(then), ok,
                              read = std::move(read)]() mutable {
          then(ctx_.hub.shard(index), ok, std::move(read));
        });
      });
}

void GatewayHandler::send_later(ConnId conn, std::string text) {
  const uint32_t index = Shard::index_of(conn);
  if (index >= ctx_.loops.size()) return;
  boost::asio::post(*ctx_.loops[index], [this, index, conn, text = std::move(text)] {
    ctx_.hub.shard(index).send_to(conn, make_frame(text));
  });
}

void GatewayHandler::list_room_users(AppId app,
                                     std::function<void(bool, std::vector<std::string>)> done) {
  ctx_.backend->list_users(app, std::move(done));
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
