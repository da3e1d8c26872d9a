// The HTTP side of the generator: a blocking one-shot GET (for /system/state)
// and the Pusher, which drives /user/sendMessage(All) at a fixed rate over a
// few keep-alive connections (one request in flight on each; no pipelining).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <functional>
#include <atomic>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "histogram.hpp"
#include "options.hpp"

namespace bench {

// An HTTPS connection (--tls) over a socket owned beside it.
using TlsStream = boost::asio::ssl::stream<boost::asio::ip::tcp::socket&>;

// GET http(s)://--host:port/target with Connection: close (https with --tls);
// the body of a 200, or nullopt (with `error` set) on any failure or after
// `timeout_s`.
std::optional<std::string> http_get(const Options& o, uint16_t port, const std::string& target,
                                    double timeout_s, std::string& error);

class Pusher {
 public:
  struct Result {
    uint64_t sent = 0;          // requests written
    uint64_t delivered_ok = 0;  // answered {"sendResults":true}
    uint64_t not_online = 0;    // answered {"sendResults":false}
    uint64_t errors = 0;        // transport errors, non-200, unexpected bodies
    uint64_t reconnects = 0;
    uint64_t max_backlog = 0;  // messages due but not yet sent (all connections busy)
    uint64_t skipped = 0;      // never sent: --send-for ended the sending behind schedule
    uint64_t max_offset = 0;   // history on: the highest "offset" answered (0: none)
    std::string epoch;         // history on: the "epoch" of that answer
    int64_t first_ns = 0, last_ns = 0, done_ns = 0;
    bool deadline_hit = false;
    Histogram api_latency;  // request written -> response read
  };
  // Builds the form body of message `no` (1-based), sent at `sent_ns`.
  using MakeBody = std::function<std::string(uint64_t no, int64_t sent_ns)>;

  Pusher(const Options& opts, std::string path, uint64_t count, double rate, MakeBody make);
  ~Pusher();

  // Sends `count` messages at `rate` per second; returns when every request
  // is answered or after `deadline_s`. `tick` is called about once a second.
  Result run(double deadline_s, const std::function<void()>& tick);

 private:
  struct Conn;
  void connect(Conn& c);
  void issue(Conn& c);
  void read_more(Conn& c);
  void on_response(Conn& c, std::string_view head, std::string_view body);
  void on_error(Conn& c);
  void note_position(std::string_view body);
  void schedule();
  bool finished() const;

  const Options& opts_;
  std::string path_;
  uint64_t count_;
  double rate_;
  MakeBody make_;
  boost::asio::io_context io_;
  boost::asio::steady_timer timer_;
  std::optional<boost::asio::ssl::context> tls_;  // --tls
  std::vector<std::unique_ptr<Conn>> conns_;
  Result result_;
  uint64_t issued_ = 0;
  uint64_t answered_ = 0;
  int64_t start_ns_ = 0;
};

// The API's latency while a load runs (bench/run compare fanout-api): on its
// own thread and keep-alive connection, one request at a time, `rate` times a
// second in turn GET /system/state and POST /user/sendMessage (`send_body`),
// each timed from the first byte written to the last byte read.
class ApiProbe {
 public:
  struct Result {
    Histogram state;  // GET /system/state
    Histogram send;   // POST /user/sendMessage
    uint64_t errors = 0;  // failed or non-200 requests (a reconnect follows)
  };
  ApiProbe(const Options& opts, double rate, std::string send_body);
  ~ApiProbe();
  ApiProbe(const ApiProbe&) = delete;
  ApiProbe& operator=(const ApiProbe&) = delete;

  // Stops the requests (the one in flight finishes, 5 s at most) and returns the figures.
  Result stop();

 private:
  void run();

  const Options& opts_;
  const double rate_;
  const std::string send_body_;
  std::atomic<bool> stop_{false};
  Result result_;
  std::thread thread_;
};

}  // namespace bench
