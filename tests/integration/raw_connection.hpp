// RawConnection: a plain POSIX TCP connection to the imgate WebSocket port,
// for what a well-behaved WebSocket library will not do: byte-exact frames,
// sessions that never upgrade, peers that upgrade and then go silent, and
// floods written without reading. Every operation has a deadline. Test thread
// only. Header-only: it needs no Asio.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

namespace imgate::test {

// A frame as seen on the wire.
struct RawFrame {
  bool fin = true;
  uint8_t opcode = 0;
  std::string payload;
  // For a close frame: the status code in the payload (1005 if none).
  uint16_t close_code() const {
    if (payload.size() < 2) return 1005;
    return static_cast<uint16_t>((static_cast<uint8_t>(payload[0]) << 8) |
                                 static_cast<uint8_t>(payload[1]));
  }
};

// Result of RawConnection::flood.
struct FloodResult {
  std::size_t bytes_sent = 0;
  int error = 0;         // errno that ended the flood (0 if stopped or completed)
  bool stalled = false;  // a write made no progress for the stall timeout
};

class RawConnection {
 public:
  using Millis = std::chrono::milliseconds;
  using Clock = std::chrono::steady_clock;

  RawConnection() = default;
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;
  ~RawConnection() { close(); }

  // Throws std::runtime_error on failure. SO_RCVBUF is set before connecting
  // so that the advertised window is small from the start.
  void connect(uint16_t port, int receive_buffer_bytes = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    if (receive_buffer_bytes > 0) {
      ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer_bytes, sizeof receive_buffer_bytes);
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      throw std::runtime_error(std::string("connect: ") + std::strerror(errno));
    }
    ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
  }

  // Sends an upgrade request for `path` (with `extra_headers`, each line
  // ending in CRLF); returns the HTTP status of the answer (0 if the server
  // closed or did not answer in time). Bytes after the answer's header stay
  // buffered for read_frame.
  unsigned upgrade(std::string_view path = "/acc", Millis timeout = Millis(3000),
                   std::string_view extra_headers = "") {
    const std::string request = "GET " + std::string(path) +
                                " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                                "Connection: Upgrade\r\nSec-WebSocket-Key: "
                                "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
                                std::string(extra_headers) + "\r\n";
    return exchange(request, timeout);
  }

  // Sends `request` (raw HTTP) and reads the answer's header; returns its
  // status (0 if the server closed or did not answer in time). The body, if
  // any, stays buffered. A failed send still reads: a server may answer and
  // close before the request arrives.
  unsigned exchange(std::string_view request, Millis timeout = Millis(3000)) {
    send_all(request, timeout);
    const auto deadline = Clock::now() + timeout;
    std::size_t end;
    while ((end = rx_.find("\r\n\r\n")) == std::string::npos) {
      if (receive_some(left(deadline)) <= 0) return 0;
    }
    head_ = rx_.substr(0, end);
    rx_.erase(0, end + 4);
    const auto space = head_.find(' ');
    return space == std::string::npos ? 0 : std::stoul(head_.substr(space + 1, 3));
  }

  // The status line and header fields of the last answer exchange() read
  // (without the blank line), e.g. "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5".
  const std::string& head() const { return head_; }

  // False on error or timeout.
  bool send_all(std::string_view bytes, Millis timeout = Millis(3000)) {
    const auto deadline = Clock::now() + timeout;
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n > 0) {
        bytes.remove_prefix(static_cast<std::size_t>(n));
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (!wait(POLLOUT, left(deadline))) return false;
      } else if (n < 0 && errno != EINTR) {
        return false;
      }
    }
    return true;
  }

  // Sends `chunk` up to `max_chunks` times without reading, stopping early
  // when `stop()` returns true (checked between chunks), on a send error, or
  // when writing makes no progress for `stall_timeout`.
  FloodResult flood(std::string_view chunk, std::size_t max_chunks,
                    const std::function<bool()>& stop, Millis stall_timeout) {
    FloodResult result;
    for (std::size_t i = 0; i < max_chunks && !stop(); ++i) {
      std::string_view rest = chunk;
      while (!rest.empty()) {
        const ssize_t n = ::send(fd_, rest.data(), rest.size(), MSG_NOSIGNAL);
        if (n > 0) {
          rest.remove_prefix(static_cast<std::size_t>(n));
          result.bytes_sent += static_cast<std::size_t>(n);
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
          if (!wait(POLLOUT, stall_timeout)) {
            result.stalled = true;
            return result;
          }
        } else if (n < 0 && errno != EINTR) {
          result.error = errno;
          return result;
        }
      }
    }
    return result;
  }

  // Sends `bytes` in pieces of `piece` bytes, each its own TCP segment
  // (TCP_NODELAY), pausing `pause` between pieces so that the server sees
  // them in separate reads. False on error.
  bool send_in_pieces(std::string_view bytes, std::size_t piece, Millis pause) {
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    while (!bytes.empty()) {
      const std::size_t n = std::min(piece, bytes.size());
      if (!send_all(bytes.substr(0, n))) return false;
      bytes.remove_prefix(n);
      if (!bytes.empty()) std::this_thread::sleep_for(pause);  // let the server read this piece
    }
    return true;
  }

  // How the server ended the stream: an orderly FIN, a reset (or another
  // receive error), or still open at the deadline.
  enum class End { kEof, kReset, kTimeout };
  // Receives until the stream ends; bytes received meanwhile stay buffered
  // (see buffered()).
  End wait_end(Millis timeout = Millis(3000)) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      const int r = receive_some(left(deadline));
      if (r == 0) return error_ == 0 ? End::kEof : End::kReset;
      if (r < 0) return End::kTimeout;
    }
  }
  // Received bytes not yet returned as frames.
  std::size_t buffered() const { return rx_.size(); }
  // Receives until at least `size` bytes are buffered; false on timeout or
  // end of stream.
  bool receive_at_least(std::size_t size, Millis timeout = Millis(3000)) {
    const auto deadline = Clock::now() + timeout;
    while (rx_.size() < size) {
      if (receive_some(left(deadline)) <= 0) return false;
    }
    return true;
  }
  // The first `size` buffered bytes, removed from the buffer.
  std::string take(std::size_t size) {
    std::string out = rx_.substr(0, size);
    rx_.erase(0, out.size());
    return out;
  }
  // errno of the receive error that ended the stream (0: none, or an orderly end).
  int receive_error() const { return error_; }

  // Next frame, or nullopt on timeout or end of stream.
  std::optional<RawFrame> read_frame(Millis timeout = Millis(2000)) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      if (auto frame = parse_frame()) return frame;
      if (receive_some(left(deadline)) <= 0) return std::nullopt;
    }
  }

  // Reads and discards until the server closes the connection; false on timeout.
  bool wait_closed(Millis timeout = Millis(3000)) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      rx_.clear();
      const int r = receive_some(left(deadline));
      if (r == 0) return true;
      if (r < 0) return false;
    }
  }

  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // Encodes one client frame (masked unless told otherwise).
  static std::string encode_frame(uint8_t opcode, std::string_view payload, bool fin = true,
                                  bool masked = true) {
    std::string out;
    out.push_back(static_cast<char>((fin ? 0x80 : 0x00) | (opcode & 0x0f)));
    const uint8_t mask_bit = masked ? 0x80 : 0x00;
    const std::size_t n = payload.size();
    if (n < 126) {
      out.push_back(static_cast<char>(mask_bit | n));
    } else if (n <= 0xffff) {
      out.push_back(static_cast<char>(mask_bit | 126));
      out.push_back(static_cast<char>(n >> 8));
      out.push_back(static_cast<char>(n & 0xff));
    } else {
      out.push_back(static_cast<char>(mask_bit | 127));
      for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>(n >> shift));
    }
    const char key[4] = {0x37, static_cast<char>(0xfa), 0x21, 0x3d};
    if (masked) out.append(key, 4);
    for (std::size_t i = 0; i < n; ++i)
      out.push_back(masked ? payload[i] ^ key[i % 4] : payload[i]);
    return out;
  }

 private:
  static Millis left(Clock::time_point deadline) {
    const auto d = std::chrono::duration_cast<Millis>(deadline - Clock::now());
    return d > Millis(0) ? d : Millis(0);
  }

  bool wait(short events, Millis timeout) {
    pollfd p{fd_, events, 0};
    const int r = ::poll(&p, 1, static_cast<int>(timeout.count()));
    return r > 0;
  }

  // Appends received bytes to rx_; returns 1 on data, 0 on end of stream or
  // error, -1 on timeout.
  int receive_some(Millis timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      char buf[16384];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) {
        rx_.append(buf, static_cast<std::size_t>(n));
        return 1;
      }
      if (n == 0) return 0;
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        error_ = errno;
        return 0;
      }
      if (!wait(POLLIN, left(deadline))) return -1;
    }
  }

  // Removes and returns one complete frame from rx_, if there is one.
  std::optional<RawFrame> parse_frame() {
    if (rx_.size() < 2) return std::nullopt;
    const auto byte = [&](std::size_t i) { return static_cast<uint8_t>(rx_[i]); };
    std::size_t pos = 2;
    uint64_t len = byte(1) & 0x7f;
    if (len == 126 || len == 127) {
      const std::size_t extra = len == 126 ? 2 : 8;
      if (rx_.size() < pos + extra) return std::nullopt;
      len = 0;
      for (std::size_t i = 0; i < extra; ++i) len = (len << 8) | byte(pos + i);
      pos += extra;
    }
    const bool masked = (byte(1) & 0x80) != 0;
    const std::size_t key_pos = pos;
    if (masked) pos += 4;
    if (rx_.size() < pos + len) return std::nullopt;
    RawFrame frame;
    frame.fin = (byte(0) & 0x80) != 0;
    frame.opcode = byte(0) & 0x0f;
    frame.payload = rx_.substr(pos, len);
    if (masked) {
      for (std::size_t i = 0; i < frame.payload.size(); ++i)
        frame.payload[i] ^= rx_[key_pos + i % 4];
    }
    rx_.erase(0, pos + len);
    return frame;
  }

  int fd_ = -1;
  int error_ = 0;
  std::string rx_;
  std::string head_;
};

}  // namespace imgate::test
