// Reply codes and their upstream codeMsg strings (spec §2 "Codes"). Clients
// written for gowebsocket compare the strings, so they are byte for byte the
// upstream ones.
#pragma once

#include <cstdint>
#include <string_view>

#include "websocket/close_codes.hpp"  // close_code::, with the reply codes

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

}  // namespace imgate
