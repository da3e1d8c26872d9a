// The server side of the opening handshake (RFC 6455 §4.2): checks the
// client's upgrade headers and builds the 101 response. The HTTP request
// itself is read by Beast's parser (net/http_session.cpp).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace imgate::ws {

// Sec-WebSocket-Accept for a client's Sec-WebSocket-Key: base64(SHA-1(key +
// the RFC's GUID)).
std::string accept_key(std::string_view client_key);

// A client key must be the base64 form of 16 bytes (24 characters).
bool is_valid_client_key(std::string_view client_key);

// The complete "HTTP/1.1 101 Switching Protocols" response (headers and the
// empty line), with `server` as the Server header.
std::string switching_protocols_response(std::string_view client_key, std::string_view server);

}  // namespace imgate::ws
