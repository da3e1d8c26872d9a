// WebSocket close codes imgate sends (RFC 6455 §7.4.1) and its application
// codes: the transport's vocabulary, used by every layer above it (the registry
// closes timed-out and expired connections with them).
#pragma once

#include <cstdint>

namespace imgate {

namespace close_code {
inline constexpr uint16_t kNormal = 1000;
inline constexpr uint16_t kGoingAway = 1001;        // shutdown, heartbeat timeout
inline constexpr uint16_t kProtocolError = 1002;
inline constexpr uint16_t kUnsupportedData = 1003;  // binary frames
inline constexpr uint16_t kInvalidPayload = 1007;   // invalid UTF-8
inline constexpr uint16_t kPolicyViolation = 1008;  // send queue overflow (slow consumer), per-client limits
inline constexpr uint16_t kTooBig = 1009;           // message above max_message_bytes
inline constexpr uint16_t kNoStatus = 1005;         // counted for a client close without a code (never sent)
inline constexpr uint16_t kInternalError = 1011;
// Application codes (4000-4999, RFC 6455 §7.4.2): documented in docs/security.md.
inline constexpr uint16_t kTokenExpired = 4001;     // login token expired, no refresh: reconnect with a new one
}  // namespace close_code

}  // namespace imgate
