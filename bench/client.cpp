#include "client.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <future>
#include <optional>
#include <stdexcept>

namespace bench {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

const char* fail_name(Fail f) {
  switch (f) {
    case Fail::kClientFds:
      return "client_fds";
    case Fail::kBind:
      return "bind";
    case Fail::kPorts:
      return "ports";
    case Fail::kRefused:
      return "refused";
    case Fail::kConnectTimeout:
      return "connect_timeout";
    case Fail::kConnectOther:
      return "connect_other";
    case Fail::kTlsHandshake:
      return "tls_handshake";
    case Fail::kHandshake:
      return "handshake_rejected";
    case Fail::kClosedBeforeUpgrade:
      return "closed_before_upgrade";
    case Fail::kLoginRejected:
      return "login_rejected";
    case Fail::kClosedBeforeLogin:
      return "closed_before_login_reply";
    case Fail::kSetupTimeout:
      return "setup_timeout";
    case Fail::kDroppedWhileHeld:
      return "dropped_while_held";
    case Fail::kServerClose:
      return "server_close_frame";
    case Fail::kCount:
      break;
  }
  return "?";
}

const char* plan_name(Plan p) {
  switch (p) {
    case Plan::kHold:
      return "hold";
    case Plan::kGraceful:
      return "close_frame";
    case Plan::kDropAfterLogin:
      return "fin_after_login";
    case Plan::kResetAfterLogin:
      return "rst_after_login";
    case Plan::kDropBeforeUpgrade:
      return "fin_before_upgrade";
    case Plan::kDropBeforeLoginReply:
      return "fin_before_login_reply";
    case Plan::kCount:
      break;
  }
  return "?";
}

uint64_t Totals::failures() const {
  uint64_t n = 0;
  for (auto f : fails) n += f;
  return n;
}

// ---- Worker ----------------------------------------------------------------

namespace {
constexpr uint8_t kText = 0x1, kClose = 0x8, kPing = 0x9, kPong = 0xA;
constexpr std::size_t kScratch = 256 * 1024;
constexpr uint32_t kFirstPort = 10000;  // explicit source ports: 10000 .. 10000 + per_source - 1
constexpr std::string_view kCmdKey = "\"cmd\":\"";
constexpr std::string_view kMsgKey = "\"msg\":\"T";
constexpr std::string_view kCodeKey = "\"code\":";
constexpr std::string_view kStreamKey = "\"stream\":\"";
constexpr std::string_view kEpochKey = "\"epoch\":\"";
constexpr std::string_view kOffsetKey = "\"offset\":";
constexpr std::string_view kRoomKey = "\"room\":{";

uint64_t parse_u64(std::string_view text, std::size_t& pos) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data() + pos, text.data() + text.size(), v);
  pos = static_cast<std::size_t>(end - text.data());
  return ec == std::errc() ? v : UINT64_MAX;
}

// The text of "key":"<text>" found at or after `from` (no escapes: stream
// names and epochs are plain); `from` moves past it. nullopt if absent.
std::optional<std::string_view> quoted_after(std::string_view text, std::string_view key,
                                             std::size_t& from) {
  auto pos = text.find(key, from);
  if (pos == std::string_view::npos) return std::nullopt;
  pos += key.size();
  const auto end = text.find('"', pos);
  if (end == std::string_view::npos) return std::nullopt;
  from = end + 1;
  return text.substr(pos, end - pos);
}

uint64_t number_after(std::string_view text, std::string_view key, std::size_t from) {
  auto pos = text.find(key, from);
  if (pos == std::string_view::npos) return UINT64_MAX;
  pos += key.size();
  return parse_u64(text, pos);
}

unsigned reply_code(std::string_view text) {
  auto pos = text.find(kCodeKey);
  if (pos == std::string_view::npos) return 0;
  pos += kCodeKey.size();
  return static_cast<unsigned>(parse_u64(text, pos));
}
}  // namespace

struct Worker::Conn {
  explicit Conn(asio::io_context& io) : sock(io) {}
  tcp::socket sock;
  SSL* ssl = nullptr;    // --tls: this connection's TLS state over `sock`
  std::string in;        // partial input (upgrade reply or a split frame); usually empty
  std::string out;       // unsent output; usually empty
  int64_t since_ns = 0;  // start of the current phase
  uint64_t index = 0;    // global connection index: user, app and source address
  uint64_t last_msg = 0;
  uint32_t gen = 0;
  uint32_t slot = 0;
  Phase phase = Phase::kFree;
  Plan plan = Plan::kHold;
  bool reading = false;
  bool writing = false;
};

Worker::Worker(const Options& opts, unsigned index)
    : opts_(opts),
      index_(index),
      io_(1),
      guard_(asio::make_work_guard(io_)),
      pump_timer_(io_),
      sweep_timer_(io_),
      heartbeat_timer_(io_),
      server_(asio::ip::make_address_v4(opts.host), opts.ws_port),
      scratch_(kScratch) {
  upgrade_request_ = "GET " + opts.ws_path + " HTTP/1.1\r\nHost: " + opts.host + ":" +
                     std::to_string(opts.ws_port) +
                     "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n";
  if (opts.tls) {
    std::string error;
    tls_ctx_ = make_client_ctx(opts, error);
    if (!tls_ctx_) throw std::runtime_error(error);  // main() checked the options already
    SSL_CTX_set_app_data(tls_ctx_.get(), this);
    if (opts.tls_resume) {
      // Sessions are kept by on_new_session, not in OpenSSL's cache.
      SSL_CTX_set_session_cache_mode(tls_ctx_.get(),
                                     SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
      SSL_CTX_sess_set_new_cb(tls_ctx_.get(), &Worker::on_new_session);
    }
  }
}

Worker::~Worker() {
  stop();
  join();
  for (auto& c : conns_) {
    if (c->ssl) SSL_free(c->ssl);
  }
  if (tls_session_) SSL_SESSION_free(tls_session_);
}

void Worker::start() {
  arm_sweep();
  thread_ = std::thread([this] { io_.run(); });
}

void Worker::stop() {
  guard_.reset();
  io_.stop();
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::begin(Job* job) {
  asio::post(io_, [this, job] {
    job_ = job;
    pump();
  });
}

void Worker::heartbeats(bool on) {
  asio::post(io_, [this, on] {
    heartbeats_on_ = on;
    if (on) arm_heartbeat();
  });
}

Histogram Worker::latency_snapshot() {
  std::promise<Histogram> copy;
  auto result = copy.get_future();
  asio::post(io_, [this, &copy] { copy.set_value(latency_); });
  return result.get();
}

void Worker::reset_latency() {
  asio::post(io_, [this] { latency_ = Histogram{}; });
}

void Worker::sync() {
  std::promise<void> ran;
  auto done = ran.get_future();
  asio::post(io_, [&ran] { ran.set_value(); });
  done.get();
}

Worker::Conn* Worker::live(uint32_t slot, uint32_t gen) {
  Conn& c = *conns_[slot];
  return c.gen == gen && c.phase != Phase::kFree ? &c : nullptr;
}

// ---- setup -----------------------------------------------------------------

void Worker::pump() {
  if (!job_) return;
  static thread_local bool pumping = false;
  if (pumping) return;  // a synchronous failure inside open(): the outer loop goes on
  pumping = true;
  // --tls-resume: one setup alone first, so that the others have a session to offer.
  const bool first_alone = opts_.tls_resume && !first_setup_done_ && !tls_session_;
  const uint32_t max_inflight = first_alone ? 1 : job_->inflight;
  while (inflight_ < max_inflight && !job_->stop.load(std::memory_order_relaxed)) {
    uint64_t limit = job_->count;
    if (job_->rate > 0) {
      const double elapsed = static_cast<double>(now_ns() - job_->start_ns) / 1e9;
      limit = std::min<uint64_t>(limit, static_cast<uint64_t>(elapsed * job_->rate) + 1);
    }
    uint64_t i = job_->next.load(std::memory_order_relaxed);
    if (i >= limit) {
      if (i < job_->count) arm_pump_timer();
      break;
    }
    if (!job_->next.compare_exchange_weak(i, i + 1, std::memory_order_relaxed)) continue;
    ++inflight_;
    open(job_->first + i);
  }
  pumping = false;
}

void Worker::arm_pump_timer() {
  if (pump_timer_armed_) return;
  pump_timer_armed_ = true;
  pump_timer_.expires_after(std::chrono::milliseconds(1));
  pump_timer_.async_wait([this](const error_code&) {
    pump_timer_armed_ = false;
    pump();
  });
}

void Worker::open(uint64_t index) {
  uint32_t slot;
  if (!free_.empty()) {
    slot = free_.back();
    free_.pop_back();
  } else {
    slot = static_cast<uint32_t>(conns_.size());
    conns_.push_back(std::make_unique<Conn>(io_));
    conns_.back()->slot = slot;
  }
  Conn& c = *conns_[slot];
  c.index = index;
  c.plan = job_->plan ? job_->plan(index) : Plan::kHold;
  c.phase = Phase::kConnecting;
  c.since_ns = now_ns();
  c.last_msg = 0;
  stats_.started.add();

  error_code ec;
  c.sock.open(tcp::v4(), ec);
  if (ec) {
    fail(c, ec == asio::error::no_descriptors || ec.value() == ENFILE ? Fail::kClientFds
                                                                      : Fail::kConnectOther);
    return;
  }
  stats_.open_sockets.add();
  // Source address 127.0.0.<first_source + index / per_source>. The port is
  // chosen here (kFirstPort + index % per_source, below the ephemeral range):
  // left to connect(), the kernel searches the ephemeral range for a free
  // 4-tuple, a cost that grows with every connection already made from that
  // address (60% of the generator's CPU at 20k connections). If that port is
  // taken, the kernel picks one after all.
  // Job::source_offset gives a batch of the same indices (users) other ports.
  const uint64_t source_index = index + job_->source_offset;
  const asio::ip::address_v4 source((127u << 24) + opts_.first_source +
                                    static_cast<uint32_t>(source_index / opts_.per_source));
  int one = 1;
  ::setsockopt(c.sock.native_handle(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  const auto port = static_cast<uint16_t>(kFirstPort + source_index % opts_.per_source);
  c.sock.bind(tcp::endpoint(source, opts_.kernel_ports ? 0 : port), ec);
  if (ec && !opts_.kernel_ports) {
    stats_.port_fallbacks.add();
    error_code ignored;
    c.sock.close(ignored);
    c.sock.open(tcp::v4(), ec);
    if (ec) {
      stats_.open_sockets.sub();
      fail(c, Fail::kClientFds);
      return;
    }
    ::setsockopt(c.sock.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    c.sock.bind(tcp::endpoint(source, 0), ec);
  }
  if (ec) {
    fail(c, Fail::kBind);
    return;
  }
  setting_up_.push_back(slot);
  const tcp::endpoint server =
      job_->ws_port ? tcp::endpoint(server_.address(), job_->ws_port) : server_;
  c.sock.async_connect(
      server, [this, slot, gen = c.gen](const error_code& e) { on_connect(slot, gen, e); });
}

void Worker::on_connect(uint32_t slot, uint32_t gen, const error_code& ec) {
  Conn* c = live(slot, gen);
  if (!c) return;
  if (ec) {
    Fail why = Fail::kConnectOther;
    if (ec.value() == EADDRNOTAVAIL)
      why = Fail::kPorts;
    else if (ec.value() == ECONNREFUSED)
      why = Fail::kRefused;
    else if (ec.value() == ETIMEDOUT)
      why = Fail::kConnectTimeout;
    fail(*c, why);
    return;
  }
  stats_.connected.add();
  if (c->plan == Plan::kDropBeforeUpgrade) {
    stats_.early_dropped.add();
    stats_.plans_done[static_cast<std::size_t>(c->plan)].add();
    setup_done(*c);
    finish(*c);
    return;
  }
  int one = 1;
  ::setsockopt(c->sock.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  error_code ignored;
  c->sock.non_blocking(true, ignored);
  if (tls_ctx_) {
    start_tls(*c);
    return;
  }
  start_upgrade(*c);
}

void Worker::start_upgrade(Conn& c) {
  c.phase = Phase::kUpgrading;
  send_raw(c, upgrade_request_);
  arm_read(c);
}

void Worker::setup_done(Conn&) {
  --inflight_;
  first_setup_done_ = true;
  pump();
}

// ---- TLS (--tls) -----------------------------------------------------------

void Worker::start_tls(Conn& c) {
  c.phase = Phase::kHandshaking;
  c.ssl = SSL_new(tls_ctx_.get());
  if (!c.ssl || SSL_set_fd(c.ssl, c.sock.native_handle()) != 1) {
    stats_.tls_last_error.v.store(ERR_peek_last_error(), std::memory_order_relaxed);
    ERR_clear_error();
    fail(c, Fail::kTlsHandshake);
    return;
  }
  SSL_set_connect_state(c.ssl);
  if (tls_session_) {
    // A copy: OpenSSL marks a connection's session unresumable when the
    // connection ends without close_notify (churn), which must not spoil ours.
    SSL_SESSION* offer = SSL_SESSION_dup(tls_session_);
    if (offer) {
      SSL_set_session(c.ssl, offer);
      SSL_SESSION_free(offer);
    }
  }
  tls_handshake(c);
}

void Worker::tls_handshake(Conn& c) {
  ERR_clear_error();
  const int r = SSL_connect(c.ssl);
  if (r == 1) {
    (SSL_session_reused(c.ssl) ? stats_.tls_resumed : stats_.tls_full).add();
    stats_.tls_version.store(SSL_get_version(c.ssl), std::memory_order_relaxed);
    stats_.tls_cipher.store(SSL_get_cipher_name(c.ssl), std::memory_order_relaxed);
    start_upgrade(c);
    return;
  }
  switch (SSL_get_error(c.ssl, r)) {
    case SSL_ERROR_WANT_READ:
      arm_read(c);
      return;
    case SSL_ERROR_WANT_WRITE:
      arm_write(c);
      return;
    default:
      stats_.tls_last_error.v.store(ERR_peek_last_error(), std::memory_order_relaxed);
      if (const long v = SSL_get_verify_result(c.ssl); v != X509_V_OK) {
        stats_.tls_last_verify.v.store(static_cast<uint64_t>(v), std::memory_order_relaxed);
      }
      ERR_clear_error();
      fail(c, Fail::kTlsHandshake);
  }
}

// Either readiness: the handshake goes on; else unsent output is retried and
// input read (an SSL_write may wait for input and an SSL_read for output).
void Worker::tls_ready(Conn& c) {
  if (c.phase == Phase::kHandshaking) {
    tls_handshake(c);
    return;
  }
  if (!c.out.empty()) {
    std::string pending;
    pending.swap(c.out);
    tls_send(c, pending);
  }
  tls_read(c);
}

bool Worker::tls_read(Conn& c) {
  for (;;) {
    ERR_clear_error();
    const int n = SSL_read(c.ssl, scratch_.data(), static_cast<int>(scratch_.size()));
    if (n > 0) {
      stats_.bytes_in.add(static_cast<uint64_t>(n));
      if (!consume(c, scratch_.data(), static_cast<std::size_t>(n))) return false;
      continue;  // until WANT_READ: the socket is drained
    }
    switch (SSL_get_error(c.ssl, n)) {
      case SSL_ERROR_WANT_READ:
        arm_read(c);
        return true;
      case SSL_ERROR_WANT_WRITE:
        arm_write(c);
        return true;
      default:
        ERR_clear_error();
        on_eof(c);  // close_notify, EOF, reset or a TLS error
        return false;
    }
  }
}

void Worker::tls_send(Conn& c, std::string_view bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    ERR_clear_error();
    const int n = SSL_write(c.ssl, bytes.data() + done,
                            static_cast<int>(std::min<std::size_t>(bytes.size() - done, 1 << 30)));
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    switch (SSL_get_error(c.ssl, n)) {
      case SSL_ERROR_WANT_WRITE:
        c.out.assign(bytes.substr(done));  // the retry passes the same bytes first
        arm_write(c);
        return;
      case SSL_ERROR_WANT_READ:
        c.out.assign(bytes.substr(done));
        arm_read(c);
        return;
      default:
        ERR_clear_error();
        return;  // the read side reports it
    }
  }
}

// A session ticket arrived (TLS 1.3: after the handshake, read by SSL_read).
// Keeps a copy as the worker's session to offer; OpenSSL keeps its reference.
int Worker::on_new_session(SSL* ssl, SSL_SESSION* session) {
  auto* w = static_cast<Worker*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  SSL_SESSION* copy = SSL_SESSION_dup(session);
  if (!copy) return 0;
  if (w->tls_session_) SSL_SESSION_free(w->tls_session_);
  w->tls_session_ = copy;
  return 0;
}

// ---- I/O -------------------------------------------------------------------

void Worker::arm_read(Conn& c) {
  if (c.reading) return;
  c.reading = true;
  c.sock.async_wait(
      tcp::socket::wait_read,
      [this, slot = c.slot, gen = c.gen](const error_code& ec) { on_readable(slot, gen, ec); });
}

void Worker::arm_write(Conn& c) {
  if (c.writing) return;
  c.writing = true;
  c.sock.async_wait(
      tcp::socket::wait_write,
      [this, slot = c.slot, gen = c.gen](const error_code& ec) { on_writable(slot, gen, ec); });
}

void Worker::on_readable(uint32_t slot, uint32_t gen, const error_code& ec) {
  Conn* c = live(slot, gen);
  if (!c) return;
  c->reading = false;
  if (ec) {
    on_eof(*c);
    return;
  }
  if (c->ssl) {
    tls_ready(*c);
    return;
  }
  for (;;) {
    ssize_t n = ::recv(c->sock.native_handle(), scratch_.data(), scratch_.size(), 0);
    if (n > 0) {
      stats_.bytes_in.add(static_cast<uint64_t>(n));
      if (!consume(*c, scratch_.data(), static_cast<std::size_t>(n))) return;
      if (static_cast<std::size_t>(n) < scratch_.size()) break;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0 && errno == EINTR) continue;
    on_eof(*c);  // 0: orderly shutdown; < 0: reset or other error
    return;
  }
  arm_read(*c);
}

void Worker::on_writable(uint32_t slot, uint32_t gen, const error_code& ec) {
  Conn* c = live(slot, gen);
  if (!c) return;
  c->writing = false;
  if (ec) return;  // the read side reports the error
  if (c->ssl) {
    tls_ready(*c);
    return;
  }
  std::string pending;
  pending.swap(c->out);
  send_raw(*c, pending);
}

void Worker::send_raw(Conn& c, std::string_view bytes) {
  if (!c.out.empty()) {
    c.out.append(bytes);
    return;
  }
  if (c.ssl) {
    tls_send(c, bytes);
    return;
  }
  ssize_t n =
      ::send(c.sock.native_handle(), bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) return;  // the read side reports it
    n = 0;
  }
  if (static_cast<std::size_t>(n) < bytes.size()) {
    c.out.assign(bytes.substr(static_cast<std::size_t>(n)));
    arm_write(c);
  }
}

void Worker::send_frame(Conn& c, uint8_t opcode, std::string_view payload) {
  static constexpr uint8_t kMask[4] = {0x37, 0xfa, 0x21, 0x3d};
  std::string& f = frame_buf_;
  f.clear();
  f.push_back(static_cast<char>(0x80 | opcode));
  const std::size_t n = payload.size();
  if (n < 126) {
    f.push_back(static_cast<char>(0x80 | n));
  } else if (n < 65536) {
    f.push_back(static_cast<char>(0x80 | 126));
    f.push_back(static_cast<char>(n >> 8));
    f.push_back(static_cast<char>(n & 0xff));
  } else {
    f.push_back(static_cast<char>(0x80 | 127));
    for (int shift = 56; shift >= 0; shift -= 8)
      f.push_back(static_cast<char>((n >> shift) & 0xff));
  }
  f.append(reinterpret_cast<const char*>(kMask), 4);
  for (std::size_t i = 0; i < n; ++i) f.push_back(static_cast<char>(payload[i] ^ kMask[i & 3]));
  send_raw(c, f);
}

// ---- input -----------------------------------------------------------------

bool Worker::consume(Conn& c, const char* data, std::size_t size) {
  if (c.phase == Phase::kUpgrading) {
    c.in.append(data, size);
    return on_upgrade_reply(c);
  }
  if (c.in.empty()) {
    std::size_t used = 0;
    if (!parse_frames(c, data, size, used)) return false;
    if (used < size) c.in.assign(data + used, size - used);
    return true;
  }
  std::string buf;
  buf.swap(c.in);
  buf.append(data, size);
  std::size_t used = 0;
  if (!parse_frames(c, buf.data(), buf.size(), used)) return false;
  if (used < buf.size()) c.in.assign(buf, used);
  return true;
}

bool Worker::on_upgrade_reply(Conn& c) {
  const auto end = c.in.find("\r\n\r\n");
  if (end == std::string::npos) {
    if (c.in.size() > 8192) {
      fail(c, Fail::kHandshake);
      return false;
    }
    return true;
  }
  if (c.in.compare(0, 12, "HTTP/1.1 101") != 0) {
    fail(c, Fail::kHandshake);
    return false;
  }
  std::string rest = c.in.substr(end + 4);
  std::string().swap(c.in);
  stats_.upgraded.add();
  c.phase = Phase::kLoggingIn;
  c.since_ns = now_ns();
  char login[512];
  const uint32_t app = job_->app_of ? job_->app_of(c.index) : opts_.app_base;
  const std::string extra = job_->login_extra ? job_->login_extra(c.index) : std::string();
  int n = std::snprintf(
      login, sizeof login,
      R"({"seq":"1","cmd":"login","data":{"serviceToken":"","appID":%u,"userID":"%s%llu"%s}})", app,
      opts_.user_prefix.c_str(), static_cast<unsigned long long>(c.index / opts_.conns_per_user),
      extra.c_str());
  n = std::min(n, static_cast<int>(sizeof login) - 1);
  send_frame(c, kText, std::string_view(login, static_cast<std::size_t>(n)));
  if (c.plan == Plan::kDropBeforeLoginReply) {
    stats_.early_dropped.add();
    stats_.plans_done[static_cast<std::size_t>(c.plan)].add();
    setup_done(c);
    finish(c);
    return false;
  }
  if (rest.empty()) return true;
  return consume(c, rest.data(), rest.size());
}

bool Worker::parse_frames(Conn& c, const char* data, std::size_t size, std::size_t& used) {
  auto p = reinterpret_cast<const uint8_t*>(data);
  std::size_t pos = 0;
  while (size - pos >= 2) {
    const uint8_t b0 = p[pos], b1 = p[pos + 1];
    std::size_t header = 2;
    uint64_t len = b1 & 0x7f;
    if (len == 126) {
      if (size - pos < 4) break;
      len = (uint64_t{p[pos + 2]} << 8) | p[pos + 3];
      header = 4;
    } else if (len == 127) {
      if (size - pos < 10) break;
      len = 0;
      for (int i = 0; i < 8; ++i) len = (len << 8) | p[pos + 2 + i];
      header = 10;
    }
    const bool masked = b1 & 0x80;  // a server must not mask; tolerate it
    if (masked) header += 4;
    if (size - pos < header + len) break;
    std::string unmasked;
    const char* payload = data + pos + header;
    if (masked) {
      unmasked.assign(payload, len);
      for (std::size_t i = 0; i < len; ++i)
        unmasked[i] ^= static_cast<char>(p[pos + header - 4 + (i & 3)]);
      payload = unmasked.data();
    }
    pos += header + len;
    used = pos;
    stats_.frames_in.add();
    if (!on_frame(c, b0 & 0x0f, payload, len)) return false;
  }
  used = pos;
  return true;
}

bool Worker::on_frame(Conn& c, uint8_t opcode, const char* payload, std::size_t size) {
  switch (opcode) {
    case kText:
      return on_text(c, std::string_view(payload, size));
    case kPing:
      stats_.pings.add();
      send_frame(c, kPong, std::string_view(payload, size));
      return true;
    case kPong:
      return true;
    case kClose: {
      const uint64_t code = size >= 2 ? (uint64_t{static_cast<uint8_t>(payload[0])} << 8) |
                                            static_cast<uint8_t>(payload[1])
                                      : 1005;
      if (c.phase == Phase::kClosing) return true;  // the answer to ours: wait for the FIN
      stats_.server_close_code.v.store(code, std::memory_order_relaxed);
      fail(c, Fail::kServerClose);
      return false;
    }
    default:
      stats_.other.add();
      return true;
  }
}

bool Worker::on_text(Conn& c, std::string_view text) {
  auto pos = text.find(kCmdKey);
  if (pos == std::string_view::npos) {
    stats_.other.add();
    return true;
  }
  const std::string_view cmd = text.substr(pos + kCmdKey.size());
  if (cmd.starts_with("msg\"")) {
    const int64_t now = now_ns();
    auto m = text.find(kMsgKey);
    if (m == std::string_view::npos) {
      stats_.bad_msgs.add();
      return true;
    }
    m += kMsgKey.size();
    const uint64_t sent = parse_u64(text, m);
    uint64_t no = 0;
    if (m < text.size() && text[m] == '.') {
      ++m;
      no = parse_u64(text, m);
    }
    if (sent == UINT64_MAX || no == UINT64_MAX) {
      stats_.bad_msgs.add();
      return true;
    }
    latency_.record(static_cast<uint64_t>(std::max<int64_t>(0, now - static_cast<int64_t>(sent))));
    stats_.msgs.add();
    stats_.last_delivery_ns.max(static_cast<uint64_t>(now));
    if (no <= c.last_msg) stats_.reordered.add();
    c.last_msg = std::max(c.last_msg, no);
    if (job_ && job_->streams) track_push(c, text, now);
    return true;
  }
  if (cmd.starts_with("enter\"") || cmd.starts_with("exit\"")) {
    stats_.presence.add();
    return true;
  }
  if (cmd.starts_with("heartbeat\"")) {
    if (reply_code(text) == 200) stats_.heartbeats_ok.add();
    return true;
  }
  if (cmd.starts_with("login\"") && c.phase == Phase::kLoggingIn) {
    if (reply_code(text) != 200) {
      fail(c, Fail::kLoginRejected);
      return false;
    }
    stats_.logged_in.add();
    if (job_ && job_->streams) track_login(c, text);
    setup_done(c);
    return after_login(c);
  }
  stats_.other.add();
  return true;
}

bool Worker::after_login(Conn& c) {
  switch (c.plan) {
    case Plan::kHold:
      c.phase = Phase::kHeld;
      stats_.held.add();
      held_.push_back(c.slot);
      return true;
    case Plan::kGraceful:
      start_close(c);
      return true;
    case Plan::kDropAfterLogin:
    case Plan::kResetAfterLogin:
      stats_.plans_done[static_cast<std::size_t>(c.plan)].add();
      finish(c, c.plan == Plan::kResetAfterLogin);
      return false;
    default:
      return true;
  }
}

// ---- room stream (recovery mode) ----------------------------------------------

void Worker::track_login(Conn& c, std::string_view reply) {
  StreamTracker& t = *job_->streams;
  if (c.index >= t.seen.size()) return;
  StreamSeen& s = t.seen[c.index];
  if (reply.find("\"recovered\":true") != std::string_view::npos) {
    s.recovered = 1;
  } else if (reply.find("\"recovered\":false") != std::string_view::npos) {
    s.recovered = 0;
  }
  if (!job_->recovering) {
    // A fresh login: the room's position is where this client starts.
    std::size_t pos = reply.find(kRoomKey);
    if (pos == std::string_view::npos) return;  // history off: no positions
    if (auto epoch = quoted_after(reply, kEpochKey, pos)) s.epoch = *epoch;
    const uint64_t offset = number_after(reply, kOffsetKey, pos);
    if (offset != UINT64_MAX) s.offset = offset;
  }
  const uint64_t target = t.target.load(std::memory_order_relaxed);
  if (target && s.offset >= target && s.caught_up_ns == 0) {  // nothing to recover
    s.caught_up_ns = now_ns();
    stats_.caught_up.add();
  }
}

void Worker::track_push(Conn& c, std::string_view push, int64_t now) {
  StreamTracker& t = *job_->streams;
  if (c.index >= t.seen.size()) return;
  std::size_t pos = 0;
  const auto stream = quoted_after(push, kStreamKey, pos);
  if (!stream || *stream != "room") return;  // history off, or a user push
  const auto epoch = quoted_after(push, kEpochKey, pos);
  const uint64_t offset = number_after(push, kOffsetKey, pos);
  StreamSeen& s = t.seen[c.index];
  stats_.stream_msgs.add();
  ++s.received;
  if (!epoch || offset == UINT64_MAX) {
    stats_.stream_errors.add();
    return;
  }
  if (s.epoch.empty() && s.offset == 0) {
    s.epoch = *epoch;  // the stream began after this client's login
  } else if (*epoch != s.epoch) {
    ++s.foreign;
    stats_.stream_errors.add();
    return;
  }
  if (offset <= s.offset) {
    ++s.duplicates;
    stats_.stream_errors.add();
    return;
  }
  if (offset != s.offset + 1) {
    s.gaps += offset - s.offset - 1;
    stats_.stream_errors.add();
  }
  s.offset = offset;
  const uint64_t target = t.target.load(std::memory_order_relaxed);
  if (target && s.offset >= target && s.caught_up_ns == 0) {
    s.caught_up_ns = now;
    stats_.caught_up.add();
  }
}

void Worker::on_eof(Conn& c) {
  switch (c.phase) {
    case Phase::kHandshaking:
      fail(c, Fail::kTlsHandshake);
      return;
    case Phase::kConnecting:
    case Phase::kUpgrading:
      fail(c, Fail::kClosedBeforeUpgrade);
      return;
    case Phase::kLoggingIn:
      fail(c, Fail::kClosedBeforeLogin);
      return;
    case Phase::kHeld:
      fail(c, Fail::kDroppedWhileHeld);
      return;
    case Phase::kClosing:
      stats_.closed_gracefully.add();
      stats_.plans_done[static_cast<std::size_t>(c.plan)].add();
      finish(c);
      return;
    case Phase::kFree:
      return;
  }
}

// ---- endings ---------------------------------------------------------------

void Worker::start_close(Conn& c) {
  if (c.phase == Phase::kHeld) stats_.held.sub();
  c.phase = Phase::kClosing;
  c.since_ns = now_ns();
  static constexpr char kNormal[2] = {0x03, static_cast<char>(0xE8)};  // 1000
  send_frame(c, kClose, std::string_view(kNormal, 2));
  setting_up_.push_back(c.slot);
}

void Worker::fail(Conn& c, Fail why) {
  stats_.fails[static_cast<std::size_t>(why)].add();
  if (c.phase == Phase::kConnecting || c.phase == Phase::kHandshaking ||
      c.phase == Phase::kUpgrading || c.phase == Phase::kLoggingIn) {
    stats_.setup_failed.add();
    setup_done(c);
  }
  finish(c);
}

void Worker::finish(Conn& c, bool reset) {
  if (c.phase == Phase::kHeld) stats_.held.sub();
  if (c.ssl) {
    SSL_free(c.ssl);  // no close_notify: a graceful end has had the WebSocket close
    c.ssl = nullptr;
  }
  if (c.sock.is_open()) {
    if (reset) {
      linger lg{1, 0};
      ::setsockopt(c.sock.native_handle(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    error_code ignored;
    c.sock.close(ignored);
    stats_.open_sockets.sub();
  }
  c.phase = Phase::kFree;
  ++c.gen;
  c.reading = c.writing = false;
  std::string().swap(c.in);
  std::string().swap(c.out);
  free_.push_back(c.slot);
}

void Worker::arm_sweep() {
  sweep_timer_.expires_after(std::chrono::milliseconds(200));
  sweep_timer_.async_wait([this](const error_code& ec) {
    if (ec) return;
    sweep();
    arm_sweep();
  });
}

void Worker::sweep() {
  const int64_t now = now_ns();
  const auto setup_limit = static_cast<int64_t>(opts_.setup_timeout * 1e9);
  const auto close_limit = static_cast<int64_t>(opts_.close_timeout * 1e9);
  // fail() may start new setups (pump), which append to setting_up_: walk a copy.
  std::vector<uint32_t> list;
  list.swap(setting_up_);
  std::sort(list.begin(), list.end());
  list.erase(std::unique(list.begin(), list.end()), list.end());  // a recycled slot listed twice
  for (uint32_t slot : list) {
    Conn& c = *conns_[slot];
    switch (c.phase) {
      case Phase::kConnecting:
      case Phase::kHandshaking:
      case Phase::kUpgrading:
      case Phase::kLoggingIn:
        if (now - c.since_ns > setup_limit) {
          fail(c, c.phase == Phase::kConnecting ? Fail::kConnectTimeout : Fail::kSetupTimeout);
        } else {
          setting_up_.push_back(slot);
        }
        break;
      case Phase::kClosing:
        if (now - c.since_ns > close_limit) {
          stats_.close_timeouts.add();
          stats_.plans_done[static_cast<std::size_t>(c.plan)].add();
          finish(c);
        } else {
          setting_up_.push_back(slot);
        }
        break;
      default:
        break;  // held or free: no deadline
    }
  }
}

// ---- heartbeats and teardown -------------------------------------------------

void Worker::arm_heartbeat() {
  heartbeat_timer_.expires_after(std::chrono::milliseconds(100));
  heartbeat_timer_.async_wait([this](const error_code& ec) {
    if (ec || !heartbeats_on_) return;
    heartbeat_tick();
    arm_heartbeat();
  });
}

void Worker::heartbeat_tick() {
  if (held_.empty() || opts_.heartbeat_interval <= 0) return;
  heartbeat_credit_ += static_cast<double>(held_.size()) * 0.1 / opts_.heartbeat_interval;
  auto due = static_cast<std::size_t>(heartbeat_credit_);
  heartbeat_credit_ -= static_cast<double>(due);
  static constexpr std::string_view kBeat = R"({"seq":"h","cmd":"heartbeat","data":{}})";
  for (; due > 0; --due) {
    if (heartbeat_cursor_ >= held_.size()) {
      heartbeat_cursor_ = 0;
      std::erase_if(held_, [this](uint32_t s) { return conns_[s]->phase != Phase::kHeld; });
      if (held_.empty()) return;
    }
    Conn& c = *conns_[held_[heartbeat_cursor_++]];
    if (c.phase != Phase::kHeld) continue;
    send_frame(c, kText, kBeat);
    stats_.heartbeats_sent.add();
  }
}

void Worker::close_held(bool graceful) {
  asio::post(io_, [this, graceful] {
    heartbeats_on_ = false;
    if (job_) job_->stop.store(true);
    std::vector<uint32_t> slots;
    slots.swap(held_);
    std::sort(slots.begin(), slots.end());
    slots.erase(std::unique(slots.begin(), slots.end()), slots.end());
    for (uint32_t slot : slots) {
      Conn& c = *conns_[slot];
      if (c.phase != Phase::kHeld) continue;
      if (graceful) {
        start_close(c);
      } else {
        stats_.plans_done[static_cast<std::size_t>(c.plan)].add();
        finish(c);
      }
    }
  });
}

void Worker::force_close_all() {
  asio::post(io_, [this] {
    if (job_) job_->stop.store(true);
    for (auto& c : conns_) {
      if (c->phase != Phase::kFree) finish(*c);
    }
    held_.clear();
    setting_up_.clear();
  });
}

// ---- Client ----------------------------------------------------------------

Client::Client(const Options& opts) {
  unsigned n = opts.threads ? opts.threads : std::thread::hardware_concurrency();
  if (n == 0) n = 1;
  for (unsigned i = 0; i < n; ++i) workers_.push_back(std::make_unique<Worker>(opts, i));
  for (auto& w : workers_) w->start();
}

Client::~Client() {
  for (auto& w : workers_) w->stop();
  for (auto& w : workers_) w->join();
}

Totals Client::totals() const {
  Totals t;
  for (const auto& w : workers_) {
    const WorkerStats& s = w->stats();
    t.started += s.started.get();
    t.connected += s.connected.get();
    t.upgraded += s.upgraded.get();
    t.logged_in += s.logged_in.get();
    t.setup_failed += s.setup_failed.get();
    t.early_dropped += s.early_dropped.get();
    for (std::size_t i = 0; i < t.fails.size(); ++i) t.fails[i] += s.fails[i].get();
    for (std::size_t i = 0; i < t.plans_done.size(); ++i) t.plans_done[i] += s.plans_done[i].get();
    t.open_sockets += s.open_sockets.get();
    t.held += s.held.get();
    t.closed_gracefully += s.closed_gracefully.get();
    t.close_timeouts += s.close_timeouts.get();
    t.port_fallbacks += s.port_fallbacks.get();
    t.frames_in += s.frames_in.get();
    t.bytes_in += s.bytes_in.get();
    t.msgs += s.msgs.get();
    t.presence += s.presence.get();
    t.heartbeats_sent += s.heartbeats_sent.get();
    t.heartbeats_ok += s.heartbeats_ok.get();
    t.pings += s.pings.get();
    t.other += s.other.get();
    t.reordered += s.reordered.get();
    t.bad_msgs += s.bad_msgs.get();
    t.stream_msgs += s.stream_msgs.get();
    t.stream_errors += s.stream_errors.get();
    t.caught_up += s.caught_up.get();
    t.tls_full += s.tls_full.get();
    t.tls_resumed += s.tls_resumed.get();
    if (s.tls_last_error.get()) t.tls_last_error = s.tls_last_error.get();
    if (s.tls_last_verify.get()) t.tls_last_verify = s.tls_last_verify.get();
    if (const char* v = s.tls_version.load(std::memory_order_relaxed)) t.tls_version = v;
    if (const char* v = s.tls_cipher.load(std::memory_order_relaxed)) t.tls_cipher = v;
    if (s.server_close_code.get()) t.last_server_close_code = s.server_close_code.get();
    t.last_delivery_ns = std::max(t.last_delivery_ns, s.last_delivery_ns.get());
  }
  return t;
}

void Client::begin(Job& job) {
  job.start_ns = now_ns();
  for (auto& w : workers_) w->begin(&job);
}

void Client::heartbeats(bool on) {
  for (auto& w : workers_) w->heartbeats(on);
}

void Client::close_held(bool graceful) {
  for (auto& w : workers_) w->close_held(graceful);
}

void Client::force_close_all() {
  for (auto& w : workers_) w->force_close_all();
}

Histogram Client::latency() {
  Histogram h;
  for (auto& w : workers_) h.merge(w->latency_snapshot());
  return h;
}

void Client::reset_latency() {
  for (auto& w : workers_) w->reset_latency();
}

void Client::sync() {
  for (auto& w : workers_) w->sync();
}

}  // namespace bench
