// Server: owns the worker event loops (one io_context and one shard per
// thread), the listeners, the liveness ticks and the shutdown sequence.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "backend/embedded.hpp"
#include "backend/redis.hpp"
#include "cluster/redis_cluster.hpp"
#include "config/config.hpp"
#include "metrics/counters.hpp"
#include "net/gateway_handler.hpp"
#include "net/listener.hpp"
#include "net/memory_trim.hpp"
#include "net/server_context.hpp"
#include "net/tls.hpp"
#include "protocol/router.hpp"
#include "registry/shard.hpp"
#include "security/token.hpp"

namespace imgate {

class Server {
 public:
  explicit Server(Config config);
  ~Server();

  // Binds the ports (throws on failure), runs until SIGINT / SIGTERM has been
  // handled, and returns the process exit code.
  int run();

 private:
  void listen();
  void share_descriptors();
  void write_ready_file() const;
  void start_tick(uint32_t shard);
  void start_memory_check();
  void wait_reload();
  void begin_shutdown();
  void await_drain(TimePoint deadline);
  void stop_loops();

  Config config_;
  Counters counters_;
  std::vector<std::unique_ptr<boost::asio::io_context>> loops_;
  std::vector<std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>>
      guards_;
  Hub hub_;
  Router router_;
  ServerContext ctx_;
  WsSettings ws_settings_;
  std::unique_ptr<GatewayHandler> ws_handler_;
  std::vector<std::unique_ptr<LoopIo>> loop_io_;  // one per loop
  std::vector<std::shared_ptr<Listener>> listeners_;
  std::vector<std::unique_ptr<boost::asio::steady_timer>> ticks_;
  std::unique_ptr<boost::asio::signal_set> signals_;
  std::unique_ptr<TokenVerifier> tokens_;                 // --auth-*: login tokens
  std::unique_ptr<TlsContext> tls_;                       // --tls-cert / --tls-key
  std::unique_ptr<boost::asio::signal_set> reload_signal_;  // SIGHUP: reload TLS files
  std::unique_ptr<boost::asio::steady_timer> drain_timer_;
  std::unique_ptr<boost::asio::steady_timer> memory_timer_;
  MemoryTrim memory_trim_;
  std::unique_ptr<RedisCluster> cluster_;
  int exit_status_ = 0;  // run()'s: 2 when the cluster refused to run (loop 0 writes it)
  std::unique_ptr<Backend> backend_;  // after cluster_: destroyed before it
  TimePoint shutdown_deadline_{};
  uint16_t ws_port_ = 0;
  uint16_t http_port_ = 0;
};

}  // namespace imgate
