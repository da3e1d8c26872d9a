// GatewayHandler: what the gateway does with a WebSocket connection. It ties
// the transport (net/ws_connection.hpp) to the registry and the command
// router: a connection is added to its loop's shard when it opens, its text
// messages are commands answered on the same connection, any frame refreshes
// its liveness, and its end unlinks it (Shard::unlink, idempotent).
#pragma once

#include "net/server_context.hpp"
#include "net/ws_connection.hpp"

namespace imgate {

class GatewayHandler final : public WsHandler, public CommandServices {
 public:
  explicit GatewayHandler(ServerContext& ctx) : ctx_(ctx) {}

  void on_open(WsConnection& conn) override;
  void on_message(WsConnection& conn, ws::Opcode op, std::string_view payload) override;
  void on_activity(WsConnection& conn) override;
  void on_end(WsConnection& conn, EndReason reason) override;

  // CommandServices
  const TokenVerifier* tokens() const override { return ctx_.tokens; }
  int64_t unix_now() const override;
  void publish_room(AppId app, std::string from, std::string msg_id, std::string message,
                    std::function<void(Reply)> done) override;
  void send_later(ConnId conn, std::string text) override;
  void list_room_users(AppId app,
                       std::function<void(bool, std::vector<std::string>)> done) override;
  bool await_login(ConnId conn, const UserKey& key, std::function<void(Shard&)> then) override;
  bool history_on() const override;
  StreamRead read_stream(const UserKey& stream, const std::optional<StreamPos>& since,
                         std::string_view reader) override;
  StreamPos stream_position(const UserKey& stream) override;
  std::optional<StreamPos> user_left_at(const UserKey& key) override;
  bool history_inline() const override;
  void read_later(ConnId conn, const UserKey& stream, std::optional<StreamPos> since,
                  std::string reader,
                  std::function<void(Shard&, bool, StreamRead)> then) override;

 private:
  Shard& shard_of(const WsConnection& conn) { return ctx_.hub.shard(conn.loop().index); }

  ServerContext& ctx_;
};

// The transport settings the configuration asks for.
WsSettings ws_settings_of(const Config& config);

}  // namespace imgate
