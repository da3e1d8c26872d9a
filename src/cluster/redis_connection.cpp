#include "cluster/redis_connection.hpp"

#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <algorithm>
#include <charconv>
#include <mutex>
#include <stdexcept>
#include <string_view>

namespace imgate {

namespace asio = boost::asio;

namespace {

RedisReply convert(const redisReply* r) {
  RedisReply out;
  switch (r->type) {
    case REDIS_REPLY_STRING: out.type = RedisReply::Type::kString; break;
    case REDIS_REPLY_STATUS: out.type = RedisReply::Type::kStatus; break;
    case REDIS_REPLY_ERROR: out.type = RedisReply::Type::kError; break;
    case REDIS_REPLY_INTEGER: out.type = RedisReply::Type::kInteger; break;
    case REDIS_REPLY_ARRAY: out.type = RedisReply::Type::kArray; break;
    default: out.type = RedisReply::Type::kNil; break;
  }
  out.integer = r->integer;
  if (r->str) out.str.assign(r->str, r->len);
  for (std::size_t i = 0; i < r->elements; ++i) out.elements.push_back(convert(r->element[i]));
  return out;
}

constexpr std::chrono::milliseconds kMaxBackoff{3000};

// The value of `field` in an INFO reply ("field:value" lines), at most `n`
// characters of it; "" when absent.
std::string info_field(std::string_view info, std::string_view field, std::size_t n) {
  while (!info.empty()) {
    const auto end = std::min(info.find('\n'), info.size());
    std::string_view line = info.substr(0, end);
    info.remove_prefix(std::min(end + 1, info.size()));
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > field.size() && line.starts_with(field) && line[field.size()] == ':') {
      return std::string(line.substr(field.size() + 1, n));
    }
  }
  return {};
}

// The declared scripts (RedisScript), in declaration order.
struct ScriptRegistry {
  std::mutex mu;
  std::vector<const RedisScript*> scripts;
};
ScriptRegistry& script_registry() {
  static ScriptRegistry registry;
  return registry;
}

std::string sha1_hex(std::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_Digest(text.data(), text.size(), digest, &size, EVP_sha1(), nullptr) != 1) {
    throw std::runtime_error("SHA1 unavailable (OpenSSL)");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < size; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 0xf];
  }
  return hex;
}

}  // namespace

RedisScript::RedisScript(const char* body) : body_(body), sha1_(sha1_hex(body)) {
  auto& registry = script_registry();
  std::lock_guard lock(registry.mu);
  registry.scripts.push_back(this);
}

std::vector<const RedisScript*> RedisScript::all() {
  auto& registry = script_registry();
  std::lock_guard lock(registry.mu);
  return registry.scripts;
}

const RedisScript* RedisScript::find(std::string_view sha1) {
  auto& registry = script_registry();
  std::lock_guard lock(registry.mu);
  for (const RedisScript* s : registry.scripts) {
    if (s->sha1_ == sha1) return s;
  }
  return nullptr;
}

RedisEndpoint RedisEndpoint::parse(const std::string& addr) {
  RedisEndpoint ep;
  auto colon = addr.rfind(':');
  ep.host = colon == std::string::npos ? addr : addr.substr(0, colon);
  if (ep.host == "localhost" || ep.host.empty()) ep.host = "127.0.0.1";
  if (colon != std::string::npos) {
    const char* first = addr.data() + colon + 1;
    const char* last = addr.data() + addr.size();
    unsigned port = 0;
    auto [end, ec] = std::from_chars(first, last, port);
    if (ec != std::errc() || end != last || port == 0 || port > 65535) {
      throw std::invalid_argument("redis address \"" + addr + "\": bad port");
    }
    ep.port = static_cast<uint16_t>(port);
  }
  return ep;
}

RedisConnection::RedisConnection(asio::io_context& loop, RedisEndpoint endpoint, std::string name,
                                 bool subscriber)
    : loop_(loop),
      endpoint_(std::move(endpoint)),
      name_(std::move(name)),
      subscriber_(subscriber),
      socket_(loop),
      retry_timer_(loop),
      watchdog_timer_(loop),
      in_(16 * 1024) {}

RedisConnection::~RedisConnection() {
  if (reader_) redisReaderFree(reader_);
}

void RedisConnection::start() {
  connect();
  watchdog();
}

void RedisConnection::stop() {
  state_ = State::kStopped;
  retry_timer_.cancel();
  watchdog_timer_.cancel();
  boost::system::error_code ignored;
  socket_.close(ignored);
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& p : pending) {
    if (p.cb) p.cb(false, RedisReply{});
  }
}

void RedisConnection::connect() {
  if (state_ == State::kStopped) return;
  state_ = State::kConnecting;
  if (reader_) redisReaderFree(reader_);
  reader_ = redisReaderCreate();
  out_.clear();
  boost::system::error_code ec;
  auto address = asio::ip::make_address(endpoint_.host, ec);
  if (ec) {
    spdlog::log(unreachable_warned_ ? spdlog::level::debug : spdlog::level::err,
                "redis {}: host must be an IP address or localhost: {}", name_, endpoint_.host);
    unreachable_warned_ = true;
    schedule_reconnect();
    return;
  }
  socket_ = asio::ip::tcp::socket(loop_);
  socket_.async_connect({address, endpoint_.port},
                        [self = shared_from_this()](const boost::system::error_code& e) {
                          self->on_connected(e);
                        });
}

void RedisConnection::on_connected(const boost::system::error_code& ec) {
  if (state_ == State::kStopped) return;
  if (ec) {
    // One warning until the next successful connection ("connected to", at
    // info), not one per retry; after a loss, that loss was the warning.
    const bool warn = warn_unreachable && !unreachable_warned_;
    spdlog::log(warn ? spdlog::level::warn : spdlog::level::debug,
                "redis {}: cannot connect to {}:{}: {} (retrying{})", name_, endpoint_.host,
                endpoint_.port, ec.message(),
                warn ? "; further failures are logged at debug level" : "");
    unreachable_warned_ = true;
    schedule_reconnect();
    return;
  }
  boost::system::error_code ignored;
  socket_.set_option(asio::ip::tcp::no_delay(true), ignored);
  state_ = State::kHandshake;
  handshake_left_ = 0;
  do_read();
  auto done = [self = shared_from_this()](bool ok, const RedisReply& r) {
    if (!ok || r.is_error()) {
      spdlog::error("redis {}: handshake failed: {}", self->name_, r.str);
      self->fail("handshake failed");
      return;
    }
    if (--self->handshake_left_ == 0) {
      self->state_ = State::kReady;
      self->backoff_ = std::chrono::milliseconds(100);
      self->unreachable_warned_ = false;
      spdlog::info("redis {}: connected to {}:{}", self->name_, self->endpoint_.host,
                   self->endpoint_.port);
      if (self->on_ready) self->on_ready();
    }
  };
  std::vector<std::vector<std::string>> handshake;
  if (!endpoint_.password.empty()) handshake.push_back({"AUTH", endpoint_.password});
  if (endpoint_.db != 0) handshake.push_back({"SELECT", std::to_string(endpoint_.db)});
  handshake.push_back({"CLIENT", "SETNAME", "imgate-" + name_});
  handshake_left_ = handshake.size();
  for (auto& cmd : handshake) enqueue(cmd, done, true);
  if (subscriber_) return;
  // Every declared script in this server's cache before the first EVALSHA:
  // NOSCRIPT then only follows a SCRIPT FLUSH. A refused load (an ACL) is
  // no failure: that script's EVALSHAs fall back to EVAL.
  for (const RedisScript* script : RedisScript::all()) {
    ++handshake_left_;
    enqueue({"SCRIPT", "LOAD", script->body()},
            [self = shared_from_this(), done](bool ok, const RedisReply& r) {
              if (ok && r.is_error()) {
                spdlog::warn("redis {}: SCRIPT LOAD refused: {}", self->name_, r.str);
              }
              done(ok, RedisReply{RedisReply::Type::kStatus});
            },
            true);
  }
  // Before ready, so nothing is sent with the previous server's incarnation.
  // Two sections in two commands: INFO takes one before Redis 7. A refused
  // INFO (an ACL) leaves the incarnation empty rather than the node unable
  // to connect.
  auto info = [self = shared_from_this(), done](std::string_view field, std::size_t n) {
    return [self, done, field, n](bool ok, const RedisReply& r) {
      const std::string value = ok && !r.is_error() ? info_field(r.str, field, n) : std::string();
      if (field == "run_id") {
        self->incarnation_ = value;
      } else if (self->incarnation_.empty() || value.empty()) {
        spdlog::warn("redis {}: INFO tells no run_id / master_replid: a history tail this server "
                     "loses will not change its streams' epochs", self->name_);
        self->incarnation_.clear();
      } else {
        self->incarnation_ += ":" + value;
      }
      done(ok, RedisReply{RedisReply::Type::kStatus});
    };
  };
  handshake_left_ += 2;
  enqueue({"INFO", "server"}, info("run_id", 16), true);
  enqueue({"INFO", "replication"}, info("master_replid", 16), true);
}

void RedisConnection::command(const std::vector<std::string>& args, RedisCallback cb) {
  if (state_ != State::kReady || pending_.size() >= kMaxPending) {
    if (cb) cb(false, RedisReply{});
    return;
  }
  enqueue(args, retry_noscript(args, std::move(cb), false), false);
}

void RedisConnection::command_stamped(const std::vector<std::string>& args, RedisCallback cb) {
  if (state_ != State::kReady || pending_.size() >= kMaxPending) {
    if (cb) cb(false, RedisReply{});
    return;
  }
  enqueue(args, retry_noscript(args, std::move(cb), true), false, &incarnation_);
}

RedisCallback RedisConnection::retry_noscript(const std::vector<std::string>& args,
                                              RedisCallback cb, bool stamped) {
  if (args.size() < 2 || args[0] != "EVALSHA") return cb;
  const RedisScript* script = RedisScript::find(args[1]);
  if (!script) return cb;
  // Sent again at most once, behind the commands already queued: only after
  // a SCRIPT FLUSH can it pass one of them (docs/cluster.md, "EVALSHA").
  return [self = shared_from_this(), script, args = std::vector<std::string>(args),
          cb = std::move(cb), stamped](bool ok, const RedisReply& reply) mutable {
    if (!ok || !reply.is_error() || !reply.str.starts_with("NOSCRIPT") ||
        self->state_ != State::kReady) {
      if (cb) cb(ok, reply);
      return;
    }
    spdlog::debug("redis {}: NOSCRIPT for {}: sent again with EVAL", self->name_, args[1]);
    args[0] = "EVAL";
    args[1] = script->body();
    self->enqueue(args, std::move(cb), false, stamped ? &self->incarnation_ : nullptr);
  };
}

void RedisConnection::enqueue(const std::vector<std::string>& args, RedisCallback cb,
                              bool internal, const std::string* last) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  if (last) {
    argv.push_back(last->data());
    lens.push_back(last->size());
  }
  char* formatted = nullptr;
  int len = redisFormatCommandArgv(&formatted, static_cast<int>(argv.size()), argv.data(),
                                   lens.data());
  if (len < 0) {
    if (cb) cb(false, RedisReply{});
    return;
  }
  out_.append(formatted, static_cast<std::size_t>(len));
  redisFreeCommand(formatted);
  if (!subscriber_ || internal) {
    pending_.push_back(Pending{std::move(cb), std::chrono::steady_clock::now(), internal});
    ++unsent_;
  }
  if (!write_in_flight_) do_write();
}

void RedisConnection::do_write() {
  if (out_.empty() || write_in_flight_) return;
  writing_.swap(out_);
  out_.clear();
  unsent_ = 0;  // handed to the socket: from here on they may run
  write_in_flight_ = true;
  asio::async_write(socket_, asio::buffer(writing_),
                    [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
                      self->write_in_flight_ = false;
                      self->writing_.clear();
                      if (ec) {
                        self->fail("write failed");
                        return;
                      }
                      self->do_write();
                    });
}

void RedisConnection::do_read() {
  socket_.async_read_some(asio::buffer(in_),
                          [self = shared_from_this()](const boost::system::error_code& ec,
                                                      std::size_t n) { self->on_read(ec, n); });
}

void RedisConnection::on_read(const boost::system::error_code& ec, std::size_t n) {
  if (state_ == State::kStopped || state_ == State::kConnecting) return;
  if (ec) {
    fail(ec == asio::error::eof ? "closed by server" : "read failed");
    return;
  }
  if (redisReaderFeed(reader_, in_.data(), n) != REDIS_OK) {
    fail("protocol error");
    return;
  }
  for (;;) {
    void* raw = nullptr;
    if (redisReaderGetReply(reader_, &raw) != REDIS_OK) {
      fail("protocol error");
      return;
    }
    if (!raw) break;
    RedisReply reply = convert(static_cast<redisReply*>(raw));
    freeReplyObject(raw);
    dispatch(std::move(reply));
    if (state_ == State::kStopped || state_ == State::kConnecting) return;  // a callback failed us
  }
  do_read();
}

void RedisConnection::dispatch(RedisReply reply) {
  if (subscriber_ && (pending_.empty() || !pending_.front().internal)) {
    if (on_message) on_message(reply);
    return;
  }
  if (pending_.empty()) {
    fail("unexpected reply");
    return;
  }
  Pending p = std::move(pending_.front());
  pending_.pop_front();
  last_reply_ = std::chrono::steady_clock::now();
  if (p.cb) p.cb(true, reply);
}

void RedisConnection::fail(const char* why) {
  if (state_ == State::kStopped || state_ == State::kConnecting) return;
  const bool was_ready = state_ == State::kReady;
  spdlog::warn("redis {}: connection lost ({})", name_, why);
  unreachable_warned_ = true;
  boost::system::error_code ignored;
  socket_.close(ignored);
  state_ = State::kConnecting;  // until the retry
  auto pending = std::move(pending_);
  pending_.clear();
  out_.clear();
  const std::size_t written = pending.size() - std::min(unsent_, pending.size());
  unsent_ = 0;
  for (std::size_t i = 0; i < pending.size(); ++i) {
    RedisReply lost;
    lost.may_have_run = i < written;
    if (pending[i].cb) pending[i].cb(false, lost);
  }
  if (was_ready && on_lost) on_lost();
  schedule_reconnect();
}

void RedisConnection::schedule_reconnect() {
  if (state_ == State::kStopped) return;
  state_ = State::kConnecting;
  retry_timer_.expires_after(backoff_);
  backoff_ = std::min(backoff_ * 2, kMaxBackoff);
  retry_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (!ec) self->connect();
  });
}

void RedisConnection::watchdog() {
  watchdog_timer_.expires_after(std::chrono::milliseconds(500));
  watchdog_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (ec || self->state_ == State::kStopped) return;
    // Silent for kCommandTimeout since the oldest waiting command was sent
    // or, if later, since the last reply.
    if (!self->pending_.empty() &&
        std::chrono::steady_clock::now() -
                std::max(self->pending_.front().sent, self->last_reply_) >
            kCommandTimeout) {
      self->fail("command timeout");
    }
    self->watchdog();
  });
}

}  // namespace imgate
