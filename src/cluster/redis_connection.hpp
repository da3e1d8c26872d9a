// RedisConnection: one pipelined connection to Redis on an Asio loop, speaking
// RESP through hiredis' command formatter and reply parser (no hiredis I/O).
//
// Contract: every method is called on the connection's loop. Commands are
// written in order, several per write; replies complete callbacks in the same
// order. While disconnected, commands fail at once (never queue up unbounded);
// the connection reconnects by itself with exponential back-off. Commands
// waiting while no reply at all has come for `kCommandTimeout` break the
// connection, so a hung Redis is detected as fast as a dead one; a busy Redis
// that keeps answering a long backlog is not (breaking it would only make the
// node publish its presence again and deepen the backlog).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

struct redisReader;

namespace imgate {

struct RedisReply {
  enum class Type { kNil, kInteger, kString, kStatus, kError, kArray };
  Type type = Type::kNil;
  int64_t integer = 0;
  std::string str;  // string, status or error text
  std::vector<RedisReply> elements;
  // With ok == false: the command had been written to Redis when the
  // connection broke, so it may have run (its reply was lost); false when it
  // never left this process.
  bool may_have_run = false;

  bool is_error() const { return type == Type::kError; }
};

// `ok` is false when the command could not run or its reply was lost
// (disconnected, timeout, overload; RedisReply::may_have_run tells which); a
// Redis error reply comes with ok == true and type kError.
using RedisCallback = std::function<void(bool ok, const RedisReply& reply)>;

// A Lua script sent by its SHA1 (EVALSHA ARGS[1] = sha1()): the SHA1 is
// computed once, when the script is declared; every command connection loads
// each declared script (SCRIPT LOAD) before it is ready, and a NOSCRIPT
// answer (the server's cache was emptied meanwhile: SCRIPT FLUSH) makes the
// connection send the same command again with the whole script (EVAL), which
// loads it: the caller sees one reply. Declare scripts as objects of static
// storage duration (they register themselves; never destroyed before exit).
class RedisScript {
 public:
  explicit RedisScript(const char* body);
  RedisScript(const RedisScript&) = delete;
  RedisScript& operator=(const RedisScript&) = delete;

  const char* body() const { return body_; }
  const std::string& sha1() const { return sha1_; }  // 40 lower-case hex digits

  // Every script declared so far; the one with this SHA1 (nullptr: none).
  static std::vector<const RedisScript*> all();
  static const RedisScript* find(std::string_view sha1);

 private:
  const char* body_;
  std::string sha1_;
};

struct RedisEndpoint {
  std::string host = "127.0.0.1";
  uint16_t port = 6379;
  std::string password;
  int db = 0;

  // "host:port" (upstream's redis.addr); throws std::invalid_argument.
  static RedisEndpoint parse(const std::string& addr);
};

class RedisConnection : public std::enable_shared_from_this<RedisConnection> {
 public:
  RedisConnection(boost::asio::io_context& loop, RedisEndpoint endpoint, std::string name,
                  bool subscriber);
  ~RedisConnection();

  void start();
  void stop();

  // Queues a command; `cb` may be empty. Fails at once when disconnected or
  // when `kMaxPending` commands are already waiting. An EVALSHA of a
  // RedisScript answered NOSCRIPT is sent again as EVAL (RedisScript): `cb`
  // gets the reply of that one.
  void command(const std::vector<std::string>& args, RedisCallback cb = {});
  // As command(), with incarnation() appended as the last argument: a script
  // told which server runs it (history_append.lua, history_read.lua).
  void command_stamped(const std::vector<std::string>& args, RedisCallback cb);

  // The incarnation of the server (command connections): the first 16 hex
  // digits of its run_id (new on every start) and of its master_replid (new
  // when a replica is promoted), read with INFO before the connection is
  // ready, so every command sent on it sees the server it was read from.
  // Empty when INFO did not tell (then no lost tail is ever detected).
  const std::string& incarnation() const { return incarnation_; }

  bool connected() const { return state_ == State::kReady; }

  std::function<void()> on_ready;                    // connected, AUTH / SELECT done
  std::function<void()> on_lost;                     // connection lost (after being ready)
  // false: failed connects are debug lines only (a probe, whose owner warns once).
  bool warn_unreachable = true;
  std::function<void(const RedisReply&)> on_message; // subscriber: every pushed reply

  static constexpr std::size_t kMaxPending = 100'000;
  static constexpr auto kCommandTimeout = std::chrono::seconds(3);

 private:
  enum class State { kIdle, kConnecting, kHandshake, kReady, kStopped };
  struct Pending {
    RedisCallback cb;
    std::chrono::steady_clock::time_point sent;
    bool internal = false;  // AUTH / SELECT
  };

  void connect();
  void on_connected(const boost::system::error_code& ec);
  void enqueue(const std::vector<std::string>& args, RedisCallback cb, bool internal,
               const std::string* last = nullptr);
  // `cb` wrapped to send an EVALSHA of a RedisScript again as EVAL on NOSCRIPT.
  RedisCallback retry_noscript(const std::vector<std::string>& args, RedisCallback cb,
                               bool stamped);
  void do_write();
  void do_read();
  void on_read(const boost::system::error_code& ec, std::size_t n);
  void dispatch(RedisReply reply);
  void fail(const char* why);
  void schedule_reconnect();
  void watchdog();

  boost::asio::io_context& loop_;
  RedisEndpoint endpoint_;
  std::string name_;
  bool subscriber_;
  State state_ = State::kIdle;
  boost::asio::ip::tcp::socket socket_;
  boost::asio::steady_timer retry_timer_;
  boost::asio::steady_timer watchdog_timer_;
  std::chrono::milliseconds backoff_{100};
  redisReader* reader_ = nullptr;
  std::string out_;       // formatted commands not yet written
  std::size_t unsent_ = 0;  // the newest entries of pending_ whose commands are in out_
  std::string writing_;   // the buffer of the write in flight
  bool write_in_flight_ = false;
  std::vector<char> in_;
  std::deque<Pending> pending_;
  std::size_t handshake_left_ = 0;
  std::chrono::steady_clock::time_point last_reply_{};
  std::string incarnation_;
  // A failed connect was warned about (or the connection was lost, which
  // warns): further failures go to debug until the next successful one.
  bool unreachable_warned_ = false;
};

}  // namespace imgate
