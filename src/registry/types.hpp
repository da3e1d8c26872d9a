// Vocabulary shared by the registry and the transport.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "websocket/frame.hpp"

namespace imgate {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

// A connection's identity for its whole life. Allocated by the owning shard
// (shard index in the top 10 bits, a per-shard sequence below), never reused,
// never derived from an address.
using ConnId = uint64_t;
using AppId = uint32_t;

// One serialised message, framed once (WebSocket header + payload), immutable
// and shared by every recipient.
using Frame = ws::SharedFrame;

// A text message as a frame; frame->payload() is `text`.
inline Frame make_frame(std::string_view text) { return ws::make_text_frame(text); }

// Why a connection ended. Every ending goes through Shard::unlink with one of these.
enum class EndReason : uint8_t {
  kClientClose,   // close frame from the client
  kNetworkError,  // read/write error, abrupt TCP drop
  kTimeout,       // idle past heartbeat_timeout
  kOverflow,      // send queue above send_queue_bytes
  kProtocol,      // RFC 6455 violation, binary frame, invalid UTF-8, oversized message
  kShutdown,      // server stopping
  kPolicy,        // a per-client limit crossed (close 1008)
};
std::string_view to_string(EndReason reason);

// The transport side of a connection as the registry sees it (implemented by
// the WebSocket session). Every call is made on the connection's own thread.
// None of them may call back into the registry synchronously: effects such as
// an overflow close are deferred until the caller returns.
class Peer {
 public:
  // Queues `frame`; on overflow the peer schedules its own close (kOverflow).
  virtual void send(const Frame& frame) = 0;
  // Sends a WebSocket ping (liveness probe).
  virtual void ping() = 0;
  // Starts a close handshake with `code`; the peer no longer needs the registry.
  virtual void close(uint16_t code, std::string_view reason) = 0;

 protected:
  ~Peer() = default;
};

}  // namespace imgate
