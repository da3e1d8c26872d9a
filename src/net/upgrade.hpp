// The hand-over from Beast's HTTP reader to imgate's WebSocket transport: an
// upgrade request (already checked with websocket::is_upgrade) is validated,
// answered with 101 and its socket, with any bytes read past the request,
// becomes a WsConnection on the given loop.
#pragma once

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <optional>
#include <string>

#include "net/ws_connection.hpp"

namespace imgate {

using UpgradeRequest = boost::beast::http::request<boost::beast::http::string_body>;
using UpgradeRefusal = boost::beast::http::response<boost::beast::http::string_body>;

// Why the request cannot be upgraded (426 for a version other than 13, 400 for
// a malformed Sec-WebSocket-Key), or nullopt when it can.
std::optional<UpgradeRefusal> check_upgrade(const UpgradeRequest& request);

// Sends the 101 and starts a WsConnection on `loop` with the stream's socket;
// `buffer` holds what the HTTP reader read past the request. Returns true
// (the connection counts itself from here on).
bool hand_over(boost::beast::tcp_stream& stream, const boost::beast::flat_buffer& buffer,
               const UpgradeRequest& request, LoopIo& loop);

// The same over TLS: the connection takes the stream's SSL object (its own
// reference) and talks to the socket through it directly. Returns false, and
// leaves the stream to be closed by its owner, when the TLS layer holds bytes
// the transport cannot take over (a client that sent data before the 101).
bool hand_over(boost::beast::ssl_stream<boost::beast::tcp_stream>& stream,
               const boost::beast::flat_buffer& buffer, const UpgradeRequest& request,
               LoopIo& loop);

}  // namespace imgate
