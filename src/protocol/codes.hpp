// Reply codes and their upstream codeMsg strings (spec §2 "Codes"). Clients
// written for gowebsocket compare the strings, so they are byte for byte the
// upstream ones.
#pragma once

#include <cstdint>
#include <string_view>

namespace imgate {

enum class Code : uint32_t {
  kOk = 200,
  kNotLoggedIn = 1000,
  kParameterIllegal = 1001,
  kUnauthorizedUserId = 1002,
  kUnauthorized = 1003,
  kServerError = 1004,
  kNotData = 1005,
  kModelAddError = 1006,
  kModelDeleteError = 1007,
  kModelStoreError = 1008,
  kOperationFailure = 1009,
  kRoutingNotExist = 1010,
};

// The upstream codeMsg for a reply code ("Success" for 200).
std::string_view code_message(Code code);

// codeMsg of server pushes (msg / enter / exit): upstream writes "Ok".
inline constexpr std::string_view kPushCodeMsg = "Ok";

// WebSocket close codes imgate sends (RFC 6455 §7.4.1).
namespace close_code {
inline constexpr uint16_t kNormal = 1000;
inline constexpr uint16_t kGoingAway = 1001;        // shutdown, heartbeat timeout
inline constexpr uint16_t kProtocolError = 1002;
inline constexpr uint16_t kUnsupportedData = 1003;  // binary frames
inline constexpr uint16_t kInvalidPayload = 1007;   // invalid UTF-8
inline constexpr uint16_t kPolicyViolation = 1008;  // send queue overflow, per-client limits
inline constexpr uint16_t kTooBig = 1009;           // message above max_message_bytes
inline constexpr uint16_t kNoStatus = 1005;         // counted for a client close without a code (never sent)
inline constexpr uint16_t kInternalError = 1011;
}  // namespace close_code

}  // namespace imgate
