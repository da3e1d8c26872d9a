// The process's file descriptors at their limit (docs/architecture.md
// "Descriptors"): how RLIMIT_NOFILE is shared between the WebSocket port, the
// HTTP API port and everything else, the 503 a refused connection gets, and
// the spare descriptor that lets a listener answer it when accept() itself
// fails for want of a descriptor (EMFILE / ENFILE).
#pragma once

#include <cstddef>

namespace imgate {

// Seconds a refused client is asked to wait (Retry-After of the 503): long
// enough for connections to go away, short enough not to strand a client that
// retries at once when told nothing.
inline constexpr int kRetryAfterSeconds = 5;

// Descriptors kept for what opens some after start-up: Redis connections
// (their reconnects), the log file, TLS files read on SIGHUP, the listeners'
// spare descriptors, slack for accepts under way.
inline constexpr std::size_t kOtherDescriptors = 64;

// The WebSocket port's share of `limit` descriptors when `open` are in use
// already: what is left after `max_http` HTTP API sessions and
// kOtherDescriptors. When that leaves less than half of what is free (a tiny
// limit), half of what is free, so that the gateway still serves WebSockets.
std::size_t websocket_share(std::size_t limit, std::size_t open, std::size_t max_http);

// Descriptors open in this process now (the entries of /proc/self/fd); 0 when
// that cannot be read.
std::size_t open_descriptors();

// Writes a minimal "503 Service Unavailable" (Retry-After, Connection: close)
// to a just-accepted socket without blocking, after discarding what the
// client already sent (so that the close is an orderly FIN rather than a
// reset), then closes it. With `tls` nothing is written (no handshake is run
// for a refusal): the close is all the client sees.
void refuse_unavailable(int fd, bool tls);

// One descriptor held open (on /dev/null) for a listener to give up when
// accept() fails with EMFILE / ENFILE, so that the connection waiting in the
// backlog can be accepted, answered 503 and closed instead of waiting there
// unanswered; the descriptor is then taken back. Loop thread only.
class SpareDescriptor {
 public:
  SpareDescriptor();
  ~SpareDescriptor();
  SpareDescriptor(const SpareDescriptor&) = delete;
  SpareDescriptor& operator=(const SpareDescriptor&) = delete;

  // Releases the spare, accepts one connection from `listen_fd`, refuses it
  // (refuse_unavailable) and takes the spare back. False when nothing could
  // be accepted (no spare held, or the descriptor went to another thread).
  bool refuse_one(int listen_fd, bool tls);

 private:
  void take();
  int fd_ = -1;
};

}  // namespace imgate
