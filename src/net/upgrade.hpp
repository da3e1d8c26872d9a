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
#include "security/limits.hpp"

namespace imgate {

using UpgradeRequest = boost::beast::http::request<boost::beast::http::string_body>;
using UpgradeRefusal = boost::beast::http::response<boost::beast::http::string_body>;

// Why the request cannot be upgraded (426 for a version other than 13, 400 for
// a malformed Sec-WebSocket-Key), or nullopt when it can.
std::optional<UpgradeRefusal> check_upgrade(const UpgradeRequest& request);

// Sends the 101 and starts a WsConnection on `loop` with the stream's socket;
// `buffer` holds what the HTTP reader read past the request. `admission` is
// the per-client limits' verdict: admitted, the connection holds its slot
// (released when it ends); refused, it is closed at once with 1008 and the
// verdict as reason. Returns true (the connection counts itself from here on).
bool hand_over(boost::beast::tcp_stream& stream, const boost::beast::flat_buffer& buffer,
               const UpgradeRequest& request, LoopIo& loop,
               const ClientTable::Admission& admission = {});

// The same over TLS: the connection takes the stream's SSL object (its own
// reference) and talks to the socket through it directly. Returns false, and
// leaves the stream to be closed by its owner, when the TLS layer holds bytes
// the transport cannot take over (a client that sent data before the 101);
// the admission's slot is released then.
bool hand_over(boost::beast::ssl_stream<boost::beast::tcp_stream>& stream,
               const boost::beast::flat_buffer& buffer, const UpgradeRequest& request, LoopIo& loop,
               const ClientTable::Admission& admission = {});

}  // namespace imgate
