#include "net/ws_connection.hpp"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <boost/asio/post.hpp>
#include <cerrno>
#include <cstring>

#include "protocol/codes.hpp"

namespace imgate {

namespace asio = boost::asio;

namespace {

// Frames per writev: enough to empty a burst in one call, small enough for the stack.
constexpr std::size_t kMaxIov = 64;
// Reads per readiness wake-up before the loop serves others.
constexpr int kReadsPerWake = 4;

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
      read_buffer(new char[kReadBufferSize]) {}

// Hands parsed frames to the connection (a FrameSink without a vtable slot in
// every connection).
class WsConnection::Sink final : public ws::FrameSink {
 public:
  explicit Sink(WsConnection& conn) : c_(conn) {}

  bool on_message(ws::Opcode op, std::string_view payload) override {
    if (c_.state_ != State::kOpen) return true;  // closing: ignored, keep looking for close
    Counters::bump(c_.loop_.counters.messages_in);
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

WsConnection::WsConnection(asio::ip::tcp::socket socket, LoopIo& loop)
    : socket_(std::move(socket)), loop_(loop) {
  if (loop_.upgraded) loop_.upgraded->fetch_add(1, std::memory_order_relaxed);
  boost::system::error_code ec;
  socket_.non_blocking(true, ec);
}

WsConnection::~WsConnection() {
  if (loop_.upgraded) loop_.upgraded->fetch_sub(1, std::memory_order_relaxed);
  if (loop_.sessions) loop_.sessions->fetch_sub(1, std::memory_order_relaxed);
}

void WsConnection::start(std::string response, std::string_view early) {
  // The 101 goes out at once (the client waits for it before sending
  // anything); whatever the socket does not take waits at the queue's front.
  const ssize_t n = ::send(socket_.native_handle(), response.data(), response.size(),
                           MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
    state_ = State::kDone;  // gone before the upgrade completed: never opened
    boost::system::error_code ignored;
    socket_.close(ignored);
    return;
  }
  if (static_cast<std::size_t>(std::max<ssize_t>(n, 0)) < response.size()) {
    response.erase(0, static_cast<std::size_t>(std::max<ssize_t>(n, 0)));
    queue_.push_back(ws::WireFrame::raw(std::move(response)));
    cork();
  }
  Counters::bump(loop_.counters.connections_opened);
  loop_.handler.on_open(*this);
  // Bytes the client sent right behind its upgrade request.
  while (!early.empty() && state_ != State::kDone) {
    const std::size_t chunk = std::min(early.size(), LoopIo::kReadBufferSize);
    std::memcpy(loop_.read_buffer.get(), early.data(), chunk);
    early.remove_prefix(chunk);
    Counters::bump(loop_.counters.bytes_in, chunk);
    if (!parse(loop_.read_buffer.get(), chunk)) break;
  }
  if (state_ != State::kDone) wait_readable();
}

// ---- reading ---------------------------------------------------------------

void WsConnection::wait_readable() {
  socket_.async_wait(asio::socket_base::wait_read,
                     [self = shared_from_this()](boost::system::error_code ec) {
                       if (ec || self->state_ == State::kDone) return;
                       self->on_readable();
                     });
}

void WsConnection::on_readable() {
  char* const buffer = loop_.read_buffer.get();
  for (int i = 0; i < kReadsPerWake && state_ != State::kDone; ++i) {
    const ssize_t n = ::recv(socket_.native_handle(), buffer, LoopIo::kReadBufferSize, 0);
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
    if (n == 0) {  // EOF
      if (state_ == State::kOpen) {
        spdlog::debug("connection {:x}: closed without a close frame", tag);
        end(EndReason::kNetworkError);
      }
      finish();
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    spdlog::debug("connection {:x}: read error: {}", tag, std::strerror(errno));
    end(EndReason::kNetworkError);
    finish();
    return;
  }
  if (state_ != State::kDone) wait_readable();
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
    queue_.drop_unsent(front_written_ > 0 || (!queue_.empty() && queue_.front()->is_raw()));
  }
  queue_.push_back(std::move(close_frame));
  close_queued_ = true;
  state_ = State::kClosing;
  arm_close_deadline();
  cork();
}

void WsConnection::arm_close_deadline() {
  if (close_deadline_) return;
  close_deadline_ = std::make_unique<asio::steady_timer>(socket_.get_executor());
  close_deadline_->expires_after(loop_.settings.close_timeout);
  close_deadline_->async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (ec || self->state_ == State::kDone) return;
    spdlog::debug("connection {:x}: close handshake timed out", self->tag);
    self->finish();  // the peer never finished: cut it off
  });
}

void WsConnection::shutdown_write() {
  if (state_ == State::kDone) return;
  boost::system::error_code ignored;
  socket_.shutdown(asio::socket_base::shutdown_send, ignored);
  state_ = State::kDraining;
}

void WsConnection::finish() {
  if (state_ == State::kDone) return;
  end(EndReason::kNetworkError);  // no-op when already ended
  state_ = State::kDone;
  queue_.release();
  if (close_deadline_) close_deadline_->cancel();
  boost::system::error_code ignored;
  socket_.close(ignored);  // pending waits complete with operation_aborted
}

// ---- writing ---------------------------------------------------------------

void WsConnection::send(const Frame& frame) {
  if (state_ != State::kOpen) return;
  if (queue_.bytes() + frame->size() > loop_.settings.send_queue_bytes) {
    // Slow consumer: never wait for it. The close is posted so that the
    // caller (possibly a fan-out loop over the shard's indexes) finishes first.
    Counters::bump(loop_.counters.send_queue_overflows);
    state_ = State::kClosing;  // nothing more is queued
    asio::post(loop_.io, [self = shared_from_this()] {
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
  loop_.corked.push_back(shared_from_this());
  if (!loop_.flush_posted) {
    loop_.flush_posted = true;
    asio::post(loop_.io, [&loop = loop_] { flush_loop(loop); });
  }
}

void WsConnection::flush_loop(LoopIo& loop) {
  loop.flush_posted = false;
  std::vector<std::shared_ptr<WsConnection>> batch;
  batch.swap(loop.corked);  // connections corked while flushing go to the next pass
  for (auto& conn : batch) conn->flush();
  batch.clear();
  if (loop.corked.empty()) loop.corked.swap(batch);  // keep the capacity
}

void WsConnection::flush() {
  corked_ = false;
  if (state_ == State::kDone || write_waiting_) return;
  while (!queue_.empty()) {
    iovec iov[kMaxIov];
    std::size_t count = 0;
    std::size_t wanted = 0;
    for (std::size_t i = 0; i < queue_.size() && count < kMaxIov; ++i) {
      std::string_view bytes = queue_.at(i)->bytes();
      if (i == 0) bytes.remove_prefix(front_written_);
      iov[count++] = iovec{const_cast<char*>(bytes.data()), bytes.size()};
      wanted += bytes.size();
    }
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = count;
    const ssize_t n = ::sendmsg(socket_.native_handle(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return wait_writable();
      spdlog::debug("connection {:x}: write error: {}", tag, std::strerror(errno));
      end(EndReason::kNetworkError);
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
  socket_.async_wait(asio::socket_base::wait_write,
                     [self = shared_from_this()](boost::system::error_code ec) {
                       self->write_waiting_ = false;
                       if (ec || self->state_ == State::kDone) return;
                       self->flush();
                     });
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
