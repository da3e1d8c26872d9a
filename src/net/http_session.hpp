// HttpSession: the first stage of every TCP connection. Reads HTTP requests
// (bounded header and body, a deadline per request); an upgrade at the
// WebSocket path hands the socket to the WebSocket transport (WsConnection),
// anything else is answered by the HTTP API (on the API port) or 404 / 400
// (on the WS port). With TLS configured (ServerContext::tls) the session first
// runs the TLS handshake (bounded by the handshake timeout) and speaks HTTP
// over Beast's ssl_stream; an upgrade hands the SSL object over with the socket.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <cstdint>

#include "net/server_context.hpp"

namespace imgate {

// What a listening port serves.
struct PortRole {
  bool websocket = false;  // upgrades at config.ws_path
  bool api = false;        // the HTTP API
};

// True when a session on a port with this role counts against
// ctx.http_connections (the HTTP API port, when it is not the WebSocket port);
// the listener admits such a connection first.
inline bool counts_as_http_connection(PortRole role, const ServerContext& ctx) {
  return !role.websocket && ctx.http_connections != nullptr;
}

// Starts a session for an accepted socket, on the socket's loop (plain or
// TLS as the server is configured).
void start_http_session(boost::asio::ip::tcp::socket socket, ServerContext& ctx, uint32_t shard,
                        PortRole role);

}  // namespace imgate
