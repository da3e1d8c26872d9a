#include "net/ws_connection.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <cerrno>
#include <climits>
#include <cstring>
#include <system_error>

#include "net/tls13_records.hpp"
#include "protocol/codes.hpp"

namespace imgate {

namespace asio = boost::asio;

namespace {

// Frames per writev: enough to empty a burst in one call, small enough for the stack.
constexpr std::size_t kMaxIov = 64;
// Reads per readiness wake-up before the loop serves others.
constexpr int kReadsPerWake = 4;
// Readiness events taken from the epoll set per wake-up of the loop.
constexpr int kEventsPerWake = 256;

const Frame& empty_pong() {
  static const Frame frame = ws::make_control_frame(ws::Opcode::kPong, {});
  return frame;
}

const Frame& empty_ping() {
  static const Frame frame = ws::make_control_frame(ws::Opcode::kPing, {});
  return frame;
}

const Frame& empty_close() {
  static const Frame frame = ws::make_control_frame(ws::Opcode::kClose, {});
  return frame;
}

}  // namespace

LoopIo::LoopIo(asio::io_context& io_context, uint32_t loop_index, const WsSettings& ws_settings,
               WsHandler& ws_handler, Counters& loop_counters)
    : io(io_context),
      index(loop_index),
      settings(ws_settings),
      handler(ws_handler),
      counters(loop_counters),
      read_buffer(new char[kReadBufferSize]),
      epoll_fd(::epoll_create1(EPOLL_CLOEXEC)),
      epoll_watch_(std::make_unique<asio::posix::stream_descriptor>(io_context)) {
  if (epoll_fd < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
  epoll_watch_->assign(::dup(epoll_fd));  // Asio owns (and closes) its duplicate
  watch();
}

LoopIo::~LoopIo() {
  if (epoll_fd >= 0) ::close(epoll_fd);
}

void LoopIo::stop() {
  while (registered) registered->abandon();
  after_request.clear();
  corked.clear();  // after: ending a connection may queue frames for others
  // Gone before the io_context: their services must outlive them.
  flush_timer.reset();
  epoll_watch_.reset();
}

void LoopIo::run_after_request() {
  std::vector<std::function<void()>> tasks;
  tasks.swap(after_request);  // serving_request is false: later posts go to the io_context
  for (const auto& task : tasks) WsConnection::run_then_flush(*this, task);
}

void LoopIo::watch() {
  // The epoll set is readable when any of its connections is ready.
  epoll_watch_->async_wait(asio::posix::descriptor_base::wait_read,
                          [this](boost::system::error_code ec) {
                            if (ec) return;  // stopped
                            dispatch_ready();
                            watch();
                          });
}

void LoopIo::dispatch_ready() {
  epoll_event events[kEventsPerWake];
  const int n = ::epoll_wait(epoll_fd, events, kEventsPerWake, 0);
  // A connection finished by an earlier event of this batch stays allocated
  // until a posted task releases it, and ignores its later events.
  for (int i = 0; i < n; ++i) {
    static_cast<WsConnection*>(events[i].data.ptr)->on_events(events[i].events);
  }
}

// Hands parsed frames to the connection (a FrameSink without a vtable slot in
// every connection).
class WsConnection::Sink final : public ws::FrameSink {
 public:
  explicit Sink(WsConnection& conn) : c_(conn) {}

  bool on_message(ws::Opcode op, std::string_view payload) override {
    if (c_.state_ != State::kOpen) return true;  // closing: ignored, keep looking for close
    Counters::bump(c_.loop_.counters.messages_in);
    if (!c_.within_message_rate()) return true;  // closing now: later messages are ignored
    c_.loop_.handler.on_activity(c_);
    c_.loop_.handler.on_message(c_, op, payload);
    return c_.state_ != State::kDone;
  }

  bool on_control(ws::Opcode op, std::string_view payload) override {
    switch (op) {
      case ws::Opcode::kPing:
        if (c_.state_ != State::kOpen) return true;
        c_.loop_.handler.on_activity(c_);
        c_.send(payload.empty() ? empty_pong() : ws::make_control_frame(ws::Opcode::kPong, payload));
        return true;
      case ws::Opcode::kPong:
        if (c_.state_ == State::kOpen) c_.loop_.handler.on_activity(c_);
        return true;
      default:
        c_.on_peer_close(payload);
        return false;
    }
  }

 private:
  WsConnection& c_;
};

// A wss connection's TLS state (null for plain connections): TLS 1.3's
// record state, or a TLS 1.2 connection's SSL object.
struct WsConnection::TlsState {
  explicit TlsState(SSL* s) : ssl(s) {}
  explicit TlsState(std::unique_ptr<Tls13Records> r) : records(std::move(r)) {}
  ~TlsState() {
    if (ssl) ::SSL_free(ssl);
  }
  SSL* ssl = nullptr;
  std::unique_ptr<Tls13Records> records;
  // TLS 1.3: the start of a record still arriving (in_len bytes), and
  // encrypted bytes the socket did not take yet (out_pending[out_off,
  // out_len)); each allocated only while it holds something.
  std::unique_ptr<unsigned char[]> in_pending;
  std::unique_ptr<unsigned char[]> out_pending;
  uint32_t in_len = 0;
  uint32_t out_len = 0;
  uint32_t out_off = 0;
  bool peer_closed = false;  // close_notify read
  // Length of an SSL_write that would block: its record is encrypted and
  // half sent, the retry must offer the same bytes (at least this many).
  std::size_t write_pending = 0;
  bool read_wants_write = false;  // SSL_read needs writability (e.g. a KeyUpdate answer)
  bool write_wants_read = false;  // SSL_write needs readability
  bool broken = false;            // a fatal TLS or socket error: no close_notify
  bool shut = false;              // close_notify sent
};

WsConnection::WsConnection(int fd, LoopIo& loop, SSL* ssl) : loop_(loop), fd_(fd) {
  if (ssl) tls_ = new TlsState(ssl);
  if (loop_.upgraded) loop_.upgraded->fetch_add(1, std::memory_order_relaxed);
}

WsConnection::WsConnection(int fd, LoopIo& loop, std::unique_ptr<Tls13Records> records)
    : WsConnection(fd, loop) {
  tls_ = new TlsState(std::move(records));
}

// The per-connection state budget (docs/architecture.md, memory per
// connection): 184 bytes is a 192-byte malloc block; one byte more is 208.
static_assert(sizeof(void*) != 8 || sizeof(WsConnection) <= 184,
              "WsConnection outgrew its 192-byte allocation");

WsConnection::~WsConnection() {
  if (client_slot_ != 0 && loop_.clients) {
    loop_.clients->release(client_slot_, to_ns(Clock::now()));  // every ending passes here
  }
  delete tls_;
  if (fd_ >= 0) ::close(fd_);
  if (loop_.upgraded) loop_.upgraded->fetch_sub(1, std::memory_order_relaxed);
  if (loop_.sessions) loop_.sessions->fetch_sub(1, std::memory_order_relaxed);
}

bool WsConnection::watch_socket() {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP;
  ev.data.ptr = this;
  if (::epoll_ctl(loop_.epoll_fd, EPOLL_CTL_ADD, fd_, &ev) != 0) {
    state_ = State::kDone;  // gone before the upgrade completed: never opened
    ::close(fd_);
    fd_ = -1;
    return false;
  }
  link();  // the epoll set refers to us until finish()
  return true;
}

bool WsConnection::send_response(std::string& response) {
  // The 101 goes out at once (the client waits for it before sending
  // anything); whatever the socket does not take goes to the queue's front,
  // before any frame queued since (nothing of those is written yet: writes
  // wait for the loop's flush). Over TLS all of it waits for that flush
  // (SSL_write).
  const ssize_t n =
      tls_ ? 0 : ::send(fd_, response.data(), response.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return false;
  const auto sent = static_cast<std::size_t>(std::max<ssize_t>(n, 0));
  if (sent < response.size()) {
    response.erase(0, sent);
    queue_.push_front(ws::WireFrame::raw(std::move(response)));
    cork();
  }
  return true;
}

void WsConnection::start_refused(std::string response, uint16_t code, std::string_view reason) {
  if (!watch_socket()) return;
  ended_ = true;  // never opened for the handler: nothing to end
  if (!send_response(response)) return finish();
  loop_.counters.count_close(code);
  queue_close(ws::make_close_frame(code, reason));
}

void WsConnection::start(std::string response, std::string_view early) {
  if (!watch_socket()) return;
  // Counted and indexed before the client can see its 101: a client that
  // asks /system/state once upgraded finds itself there.
  Counters::bump(loop_.counters.connections_opened);
  loop_.handler.on_open(*this);
  if (!send_response(response)) {
    end(EndReason::kNetworkError);
    return finish();
  }
  // Bytes the client sent right behind its upgrade request.
  while (!early.empty() && state_ != State::kDone) {
    const std::size_t chunk = std::min(early.size(), LoopIo::kReadBufferSize);
    std::memcpy(loop_.read_buffer.get(), early.data(), chunk);
    early.remove_prefix(chunk);
    Counters::bump(loop_.counters.bytes_in, chunk);
    if (!parse(loop_.read_buffer.get(), chunk)) break;
  }
}

// ---- reading ---------------------------------------------------------------

void WsConnection::on_events(uint32_t events) {
  if (state_ == State::kDone) return;
  if ((events & EPOLLOUT) && write_waiting_) {
    write_waiting_ = false;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.ptr = this;
    ::epoll_ctl(loop_.epoll_fd, EPOLL_CTL_MOD, fd_, &ev);
    const bool read_again = tls_ && tls_->read_wants_write;
    if (read_again) tls_->read_wants_write = false;
    flush();
    if (read_again && state_ != State::kDone) on_readable();
  }
  if (state_ != State::kDone && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
    on_readable();
  }
}

void WsConnection::on_readable() {
  if (tls_ && tls_->write_wants_read) {
    tls_->write_wants_read = false;
    flush();
    if (state_ == State::kDone) return;
  }
  char* const buffer = loop_.read_buffer.get();
  for (int i = 0; i < kReadsPerWake && state_ != State::kDone; ++i) {
    const ssize_t n = read_some(buffer, LoopIo::kReadBufferSize);
    if (n > 0) {
      const auto size = static_cast<std::size_t>(n);
      if (state_ == State::kDraining) continue;  // after our close: discarded
      Counters::bump(loop_.counters.bytes_in, size);
      if (!parse(buffer, size)) {
        if (state_ == State::kDone) return;
        continue;  // closing: keep reading until EOF
      }
      if (size < LoopIo::kReadBufferSize) break;  // the socket is drained
      continue;
    }
    if (n == kEof) {
      if (state_ == State::kOpen) {
        spdlog::debug("connection {:x}: closed without a close frame", tag);
        end(EndReason::kNetworkError);
      }
      finish();
      return;
    }
    if (n == kWouldRead || n == kWouldWrite) break;
    end(EndReason::kNetworkError);  // kIoError, logged by read_some
    finish();
    return;
  }
  // TLS 1.2: a record read only in part is in OpenSSL's buffer, where epoll
  // does not see it. (TLS 1.3 decrypts every whole record it read.)
  if (tls_ && tls_->ssl && state_ != State::kDone && ::SSL_has_pending(tls_->ssl)) {
    asio::post(loop_.io, [self = WsConnectionPtr(this)] {
      if (self->state_ != State::kDone) self->on_readable();
    });
  }
}

ssize_t WsConnection::read_some(char* buffer, std::size_t size) {
  if (tls_) return tls_->records ? records_read(buffer, size) : tls_read(buffer, size);
  while (true) {
    const ssize_t n = ::recv(fd_, buffer, size, MSG_DONTWAIT);
    if (n > 0) return n;
    if (n == 0) return kEof;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return kWouldRead;
    spdlog::debug("connection {:x}: read error: {}", tag, std::strerror(errno));
    return kIoError;
  }
}

ssize_t WsConnection::write_some(const iovec* iov, std::size_t count, std::size_t& offered) {
  if (tls_) return tls_->records ? records_write(iov, count, offered) : tls_write(iov, count, offered);
  while (true) {
    msghdr msg{};
    msg.msg_iov = const_cast<iovec*>(iov);
    msg.msg_iovlen = count;
    const ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return kWouldWrite;
    spdlog::debug("connection {:x}: write error: {}", tag, std::strerror(errno));
    return kIoError;
  }
}

// ---- TLS -------------------------------------------------------------------

namespace {
// The reason of a failed SSL call, for the debug log (empties the error queue).
std::string tls_error_text(int ssl_error) {
  if (ssl_error == SSL_ERROR_SYSCALL && ::ERR_peek_error() == 0) {
    return errno ? std::strerror(errno) : "unexpected EOF";
  }
  char buf[256] = "TLS error";
  if (const unsigned long e = ::ERR_get_error()) ::ERR_error_string_n(e, buf, sizeof buf);
  ::ERR_clear_error();
  return buf;
}
}  // namespace

ssize_t WsConnection::tls_read(char* buffer, std::size_t size) {
  // Fills the buffer as far as the socket allows, so that a result below
  // `size` means drained, as with recv().
  std::size_t filled = 0;
  while (filled < size) {
    ::ERR_clear_error();
    const int n = ::SSL_read(tls_->ssl, buffer + filled,
                             static_cast<int>(std::min<std::size_t>(size - filled, INT_MAX)));
    if (n > 0) {
      filled += static_cast<std::size_t>(n);
      continue;
    }
    const int err = ::SSL_get_error(tls_->ssl, n);
    if (err == SSL_ERROR_WANT_WRITE) {
      tls_->read_wants_write = true;  // retried once writable
      wait_writable();
    }
    // Data first; a condition after it shows again on the next call.
    if (filled > 0) return static_cast<ssize_t>(filled);
    switch (err) {
      case SSL_ERROR_WANT_READ:
        return kWouldRead;
      case SSL_ERROR_WANT_WRITE:
        return kWouldWrite;
      case SSL_ERROR_ZERO_RETURN:  // close_notify (or EOF: SSL_OP_IGNORE_UNEXPECTED_EOF)
        return kEof;
      default:
        if (err == SSL_ERROR_SYSCALL && ::ERR_peek_error() == 0 && errno == 0) {
          tls_->broken = true;
          return kEof;
        }
        tls_->broken = true;
        spdlog::debug("connection {:x}: TLS read error: {}", tag, tls_error_text(err));
        return kIoError;
    }
  }
  return static_cast<ssize_t>(filled);
}

ssize_t WsConnection::tls_write(const iovec* iov, std::size_t count, std::size_t& offered) {
  // One SSL_write per chunk: the front frame alone when it is big (or alone),
  // else the queued frames gathered into the loop's write buffer. A retry
  // after a blocked write rebuilds the chunk from the same queue position;
  // the queue only grew meanwhile, so it offers the same bytes and at least
  // as many (what OpenSSL requires).
  const char* data;
  std::size_t len;
  if (count == 1 || iov[0].iov_len >= LoopIo::kTlsWriteBufferSize) {
    data = static_cast<const char*>(iov[0].iov_base);
    len = iov[0].iov_len;
  } else {
    if (!loop_.tls_write_buffer) loop_.tls_write_buffer.reset(new char[LoopIo::kTlsWriteBufferSize]);
    char* out = loop_.tls_write_buffer.get();
    len = 0;
    for (std::size_t i = 0; i < count && len < LoopIo::kTlsWriteBufferSize; ++i) {
      const std::size_t take = std::min(iov[i].iov_len, LoopIo::kTlsWriteBufferSize - len);
      std::memcpy(out + len, iov[i].iov_base, take);
      len += take;
    }
    data = out;
  }
  offered = len;
  std::size_t done = 0;
  while (done < len) {
    ::ERR_clear_error();
    const int n = ::SSL_write(tls_->ssl, data + done,
                              static_cast<int>(std::min<std::size_t>(len - done, INT_MAX)));
    if (n > 0) {  // one record or more (SSL_MODE_ENABLE_PARTIAL_WRITE)
      done += static_cast<std::size_t>(n);
      tls_->write_pending = 0;
      continue;
    }
    const int err = ::SSL_get_error(tls_->ssl, n);
    if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
      tls_->write_pending = len - done;
      if (err == SSL_ERROR_WANT_READ) tls_->write_wants_read = true;
      if (done > 0) return static_cast<ssize_t>(done);
      return err == SSL_ERROR_WANT_WRITE ? kWouldWrite : kWouldRead;
    }
    tls_->broken = true;
    spdlog::debug("connection {:x}: TLS write error: {}", tag, tls_error_text(err));
    return kIoError;
  }
  return static_cast<ssize_t>(done);
}

ssize_t WsConnection::records_read(char* buffer, std::size_t size) {
  TlsState& t = *tls_;
  if (t.peer_closed) return kEof;
  if (!loop_.tls_read_buffer) loop_.tls_read_buffer.reset(new unsigned char[LoopIo::kReadBufferSize]);
  unsigned char* const raw = loop_.tls_read_buffer.get();
  std::size_t len = t.in_len;
  if (len > 0) {
    std::memcpy(raw, t.in_pending.get(), len);
    t.in_pending.reset();
    t.in_len = 0;
  }
  bool eof = false;
  ssize_t n;
  do {
    n = ::recv(fd_, raw + len, LoopIo::kReadBufferSize - len, MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    len += static_cast<std::size_t>(n);
  } else if (n == 0) {
    eof = true;
  } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
    spdlog::debug("connection {:x}: read error: {}", tag, std::strerror(errno));
    t.broken = true;
    return kIoError;
  }
  // Plaintext is shorter than its record: every whole record fits in `buffer`
  // (as large as the raw buffer), only an incomplete one is left.
  const auto opened = t.records->open(raw, len, reinterpret_cast<unsigned char*>(buffer), size);
  if (opened.status == Tls13Records::Status::kError) {
    spdlog::debug("connection {:x}: TLS read error: {}", tag, t.records->error());
    t.broken = true;
    return kIoError;
  }
  if (const std::size_t rest = len - opened.consumed; rest > 0 && !eof) {
    t.in_pending.reset(new unsigned char[rest]);
    std::memcpy(t.in_pending.get(), raw + opened.consumed, rest);
    t.in_len = static_cast<uint32_t>(rest);
  }
  if (t.records->key_update_due()) cork();  // our KeyUpdate goes out with the next flush
  if (opened.status == Tls13Records::Status::kClosed) {
    t.peer_closed = true;
    return opened.produced > 0 ? static_cast<ssize_t>(opened.produced) : kEof;
  }
  if (opened.produced > 0) return static_cast<ssize_t>(opened.produced);
  return eof ? kEof : kWouldRead;  // at EOF a record cut short is dropped
}

ssize_t WsConnection::records_write(const iovec* iov, std::size_t count, std::size_t& offered) {
  TlsState& t = *tls_;
  auto send_bytes = [this](const unsigned char* data, std::size_t len) -> ssize_t {
    while (true) {
      const ssize_t n = ::send(fd_, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n >= 0) return n;
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      spdlog::debug("connection {:x}: write error: {}", tag, std::strerror(errno));
      return -1;
    }
  };
  // What the socket did not take last time goes first, whole.
  if (t.out_off < t.out_len) {
    const ssize_t n = send_bytes(t.out_pending.get() + t.out_off, t.out_len - t.out_off);
    if (n < 0) return t.broken = true, kIoError;
    t.out_off += static_cast<uint32_t>(n);
    if (t.out_off < t.out_len) return kWouldWrite;
    t.out_pending.reset();
    t.out_len = t.out_off = 0;
  }
  if (!loop_.tls_write_buffer) loop_.tls_write_buffer.reset(new char[LoopIo::kTlsWriteBufferSize]);
  auto* out = reinterpret_cast<unsigned char*>(loop_.tls_write_buffer.get());
  std::size_t taken = 0;
  const std::size_t sealed = t.records->seal(iov, count, out, LoopIo::kTlsWriteBufferSize, taken);
  if (t.records->error()) {
    spdlog::debug("connection {:x}: TLS write error: {}", tag, t.records->error());
    return t.broken = true, kIoError;
  }
  offered = taken;
  const ssize_t n = sealed > 0 ? send_bytes(out, sealed) : 0;
  if (n < 0) return t.broken = true, kIoError;
  if (static_cast<std::size_t>(n) < sealed) {
    // Encrypted, so written as far as the queue is concerned; the rest of
    // the records is ours to send (at most one write buffer).
    const std::size_t rest = sealed - static_cast<std::size_t>(n);
    t.out_pending.reset(new unsigned char[rest]);
    std::memcpy(t.out_pending.get(), out + n, rest);
    t.out_len = static_cast<uint32_t>(rest);
    t.out_off = 0;
    offered = taken + 1;  // less than offered went out: the caller waits for writability
  }
  return static_cast<ssize_t>(taken);
}

bool WsConnection::tls_output_due() const {
  return tls_ && tls_->records && (tls_->out_off < tls_->out_len || tls_->records->key_update_due());
}

void WsConnection::tls_shutdown() {
  // close_notify, best effort: never waited for.
  if (!tls_ || tls_->broken || tls_->shut) return;
  tls_->shut = true;
  if (tls_->records) {
    if (tls_->out_off < tls_->out_len) return;  // cut off mid-record: no alert can follow
    unsigned char alert[Tls13Records::kOverhead + 2];
    const std::size_t n = tls_->records->seal_close_notify(alert);
    if (n > 0) {
      [[maybe_unused]] const ssize_t sent = ::send(fd_, alert, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    return;
  }
  ::ERR_clear_error();
  ::SSL_shutdown(tls_->ssl);
  ::ERR_clear_error();
}

bool WsConnection::parse(char* data, std::size_t size) {
  if (close_received_ || input_failed_) return false;  // nothing is parsed after these
  Sink sink(*this);
  const ws::Violation v = parser_.feed(data, size, loop_.settings.limits, sink);
  if (v) {
    input_failed_ = true;  // the parser is spent; later bytes are discarded
    if (state_ == State::kOpen) {
      spdlog::debug("connection {:x}: {} ({})", tag, v.reason, v.code);
      fail(EndReason::kProtocol, v.code, v.reason);
    }
    return false;
  }
  return state_ == State::kOpen;
}

void WsConnection::on_peer_close(std::string_view payload) {
  close_received_ = true;
  if (state_ == State::kOpen) {
    // The client said goodbye: it leaves the registry now; our reply echoes
    // its code (RFC 6455 §5.5.1) and the TCP connection closes once written.
    const uint16_t code = payload.size() >= 2
                              ? static_cast<uint16_t>((uint8_t(payload[0]) << 8) | uint8_t(payload[1]))
                              : uint16_t(close_code::kNoStatus);
    loop_.counters.count_close(code);
    end(EndReason::kClientClose);
    if (payload.size() >= 2) {
      queue_close(ws::make_close_frame(code, {}));
    } else {
      queue_close(empty_close());
    }
    return;
  }
  // The answer to our close: the handshake is complete once ours is written.
  if (close_queued_ && queue_.empty()) finish();
}

bool WsConnection::within_message_rate() {
  const TokenBucket& rate = loop_.settings.message_rate;
  if (!rate.enabled() || rate.take(message_bucket_, to_ns(Clock::now()))) return true;
  spdlog::debug("connection {:x}: message rate exceeded", tag);
  loop_.counters.count_limit(Limit::kMessageRate);
  fail(EndReason::kPolicy, close_code::kPolicyViolation, "message rate exceeded");
  return false;
}

// ---- ending ----------------------------------------------------------------

void WsConnection::end(EndReason reason) {
  if (ended_) return;
  ended_ = true;
  loop_.handler.on_end(*this, reason);
}

void WsConnection::fail(EndReason reason, uint16_t code, std::string_view text) {
  loop_.counters.count_close(code);
  end(reason);
  queue_close(ws::make_close_frame(code, text));
}

void WsConnection::close(uint16_t code, std::string_view reason) {
  // The application ended the connection (registry: timeout, shutdown).
  if (state_ != State::kOpen) return;
  ended_ = true;
  loop_.counters.count_close(code);
  queue_close(ws::make_close_frame(code, reason));
}

void WsConnection::queue_close(Frame close_frame, bool drop_queued) {
  // Replies already queued go out before the close (a client that sent a
  // valid message and then a bad frame gets both answers), except after an
  // overflow: then frames not yet started are dropped (one partly written is
  // finished, or the stream would be corrupt).
  if (drop_queued) {
    if (tls_ && tls_->write_pending > 0) {
      // Keep the frames of the record OpenSSL has encrypted and half sent.
      std::size_t keep = 0;
      for (std::size_t covered = 0; keep < queue_.size() && covered < tls_->write_pending; ++keep) {
        covered += queue_.at(keep)->size() - (keep == 0 ? front_written_ : 0);
      }
      queue_.keep_first(std::max<std::size_t>(keep, 1));
    } else {
      queue_.drop_unsent(front_written_ > 0 || (!queue_.empty() && queue_.front()->is_raw()));
    }
  }
  queue_.push_back(std::move(close_frame));
  close_queued_ = true;
  state_ = State::kClosing;
  arm_close_deadline();
  cork();
}

void WsConnection::arm_close_deadline() {
  if (close_deadline_) return;
  close_deadline_ = std::make_unique<asio::steady_timer>(loop_.io);
  close_deadline_->expires_after(loop_.settings.close_timeout);
  close_deadline_->async_wait([self = WsConnectionPtr(this)](boost::system::error_code ec) {
    if (ec || self->state_ == State::kDone) return;
    spdlog::debug("connection {:x}: close handshake timed out", self->tag);
    self->finish();  // the peer never finished: cut it off
  });
}

void WsConnection::shutdown_write() {
  if (state_ == State::kDone) return;
  tls_shutdown();
  ::shutdown(fd_, SHUT_WR);
  state_ = State::kDraining;
}

void WsConnection::finish() {
  if (state_ == State::kDone) return;
  end(EndReason::kNetworkError);  // no-op when already ended
  state_ = State::kDone;
  queue_.release();
  if (close_deadline_) close_deadline_->cancel();
  tls_shutdown();
  ::epoll_ctl(loop_.epoll_fd, EPOLL_CTL_DEL, fd_, nullptr);
  ::close(fd_);
  fd_ = -1;
  if (registered_) {
    // The epoll set's reference is released by a posted task: the caller (and
    // later events of the current epoll batch) may still use this object.
    WsConnectionPtr self(this, false);  // adopts that reference
    unlink_from_loop();
    asio::post(loop_.io, [self = std::move(self)] {});
  }
}

void WsConnection::abandon() {
  if (!registered_) return;  // only registered connections are on the loop's list
  // Adopts the epoll set's reference: released (possibly deleting us) on return.
  WsConnectionPtr self(this, false);
  unlink_from_loop();
  end(EndReason::kShutdown);
  state_ = State::kDone;
  queue_.release();
  if (close_deadline_) close_deadline_->cancel();
  if (fd_ >= 0) {
    ::epoll_ctl(loop_.epoll_fd, EPOLL_CTL_DEL, fd_, nullptr);
    ::close(fd_);
    fd_ = -1;
  }
}

void WsConnection::link() {
  intrusive_ptr_add_ref(this);
  registered_ = true;
  next_ = loop_.registered;
  if (next_) next_->prev_ = this;
  loop_.registered = this;
}

void WsConnection::unlink_from_loop() {
  registered_ = false;
  if (prev_) prev_->next_ = next_;
  if (next_) next_->prev_ = prev_;
  if (loop_.registered == this) loop_.registered = next_;
  prev_ = next_ = nullptr;
}

// ---- writing ---------------------------------------------------------------

void WsConnection::send(const Frame& frame) {
  if (state_ != State::kOpen) return;
  if (queue_.bytes() + frame->size() > loop_.settings.send_queue_bytes) {
    // Slow consumer: never wait for it. The close is posted so that the
    // caller (possibly a fan-out loop over the shard's indexes) finishes first.
    Counters::bump(loop_.counters.send_queue_overflows);
    state_ = State::kClosing;  // nothing more is queued
    asio::post(loop_.io, [self = WsConnectionPtr(this)] {
      if (self->state_ == State::kDone) return;
      self->loop_.counters.count_close(close_code::kPolicyViolation);
      self->end(EndReason::kOverflow);
      self->queue_close(ws::make_close_frame(close_code::kPolicyViolation, "send queue overflow"),
                        true);
    });
    return;
  }
  queue_.push_back(frame);
  cork();
}

void WsConnection::ping() {
  if (state_ != State::kOpen || !queue_.empty()) return;  // frames in flight prove liveness soon
  send(empty_ping());
}

void WsConnection::cork() {
  if (corked_ || write_waiting_ || state_ == State::kDone) return;
  corked_ = true;
  loop_.corked.emplace_back(this);
  if (loop_.flush_posted) return;
  loop_.flush_posted = true;
  if (loop_.settings.flush_interval <= Clock::duration::zero()) {
    asio::post(loop_.io, [&loop = loop_] { flush_loop(loop); });
    return;
  }
  if (!loop_.flush_timer) loop_.flush_timer = std::make_unique<asio::steady_timer>(loop_.io);
  loop_.flush_timer->expires_after(loop_.settings.flush_interval);
  loop_.flush_timer->async_wait([&loop = loop_](boost::system::error_code ec) {
    if (!ec) flush_loop(loop);
  });
}

void WsConnection::flush_loop(LoopIo& loop) {
  loop.flush_posted = false;
  std::vector<WsConnectionPtr> batch;
  batch.swap(loop.corked);  // connections corked while flushing go to the next pass
  for (auto& conn : batch) conn->flush();
  batch.clear();
  if (loop.corked.empty()) loop.corked.swap(batch);  // keep the capacity
}

void WsConnection::run_then_flush(LoopIo& loop, const std::function<void()>& task) {
  if (loop.flush_posted || loop.settings.flush_interval > Clock::duration::zero()) return task();
  loop.flush_posted = true;  // cork() posts nothing: the flush follows the task
  task();
  flush_loop(loop);
}

void WsConnection::flush() {
  corked_ = false;
  if (state_ == State::kDone || write_waiting_) return;
  while (!queue_.empty() || tls_output_due()) {
    iovec iov[kMaxIov];
    std::size_t count = 0;
    std::size_t wanted = 0;
    for (std::size_t i = 0; i < queue_.size() && count < kMaxIov; ++i) {
      std::string_view bytes = queue_.at(i)->bytes();
      if (i == 0) bytes.remove_prefix(front_written_);
      iov[count++] = iovec{const_cast<char*>(bytes.data()), bytes.size()};
      wanted += bytes.size();
    }
    const ssize_t n = write_some(iov, count, wanted);
    Counters::bump(loop_.counters.ws_writes);
    if (n < 0) {
      if (n == kWouldWrite) return wait_writable();
      if (n == kWouldRead) return;  // TLS: on_readable() resumes
      end(EndReason::kNetworkError);  // kIoError, logged by write_some
      return finish();
    }
    auto left = static_cast<std::size_t>(n);
    Counters::bump(loop_.counters.bytes_out, left);
    while (left > 0) {
      const std::size_t rest = queue_.front()->size() - front_written_;
      if (left < rest) {
        front_written_ += static_cast<uint32_t>(left);
        break;
      }
      left -= rest;
      if (queue_.front()->opcode() <= ws::Opcode::kBinary && !queue_.front()->is_raw()) {
        Counters::bump(loop_.counters.messages_out);
      }
      queue_.pop_front();
      front_written_ = 0;
    }
    if (static_cast<std::size_t>(n) < wanted) return wait_writable();  // socket buffer full
  }
  on_all_written();
}

void WsConnection::wait_writable() {
  write_waiting_ = true;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLOUT;
  ev.data.ptr = this;
  ::epoll_ctl(loop_.epoll_fd, EPOLL_CTL_MOD, fd_, &ev);
}

void WsConnection::on_all_written() {
  if (!close_queued_ || state_ != State::kClosing) return;
  if (close_received_) {
    finish();  // both close frames exchanged: the server closes TCP first
  } else {
    shutdown_write();  // ours is out: read until the peer closes (or the deadline)
  }
}

}  // namespace imgate
