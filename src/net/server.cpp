#include "net/server.hpp"

#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <cstdio>
#include <fstream>
#include <random>

#include "net/descriptors.hpp"
#include "net/ws_connection.hpp"

namespace imgate {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

// Entries of each of the client table's stripes visited per second by the
// sweep (64 stripes: ~262,000 a second, a few ms of loop 0 at most).
constexpr std::size_t kClientSweepVisits = 4096;

// A seed for the client table's hash, so that nobody can choose addresses
// that all land in one stripe.
uint64_t random_seed() {
  std::random_device rd;
  return (uint64_t{rd()} << 32) | rd();
}

unsigned thread_count(const Config& config) {
  unsigned n = config.threads ? config.threads : std::thread::hardware_concurrency();
  return n ? n : 1;
}

LivenessSettings liveness_of(const Config& config) {
  return LivenessSettings{config.heartbeat_timeout, config.ping_interval};
}

std::vector<std::unique_ptr<asio::io_context>> make_loops(unsigned n) {
  std::vector<std::unique_ptr<asio::io_context>> loops;
  for (unsigned i = 0; i < n; ++i) loops.push_back(std::make_unique<asio::io_context>(1));
  return loops;
}

}  // namespace

void ServerContext::collect_connection_ids(std::function<void(std::vector<ConnId>)> done) {
  // Visit shard 0, then 1, ... each on its own thread, carrying the list along.
  struct Walk : std::enable_shared_from_this<Walk> {
    ServerContext* ctx;
    std::function<void(std::vector<ConnId>)> done;
    std::vector<ConnId> ids;
    void visit(uint32_t shard) {
      asio::post(*ctx->loops[shard], [self = shared_from_this(), shard] {
        auto local = self->ctx->hub.shard(shard).ids();
        self->ids.insert(self->ids.end(), local.begin(), local.end());
        if (shard + 1 < self->ctx->loops.size()) {
          self->visit(shard + 1);
        } else {
          self->done(std::move(self->ids));
        }
      });
    }
  };
  auto walk = std::make_shared<Walk>();
  walk->ctx = this;
  walk->done = std::move(done);
  walk->visit(0);
}

MetricsSnapshot ServerContext::metrics_snapshot() const {
  MetricsSnapshot s;
  s.connections = hub.connections();
  s.ws_sessions = ws_sessions.load();
  if (http_connections) s.http_sessions = http_connections->open();
  if (clients) {
    s.clients = MetricsSnapshot::ClientAddresses{clients->addresses(), clients->connections()};
  }
  s.users = hub.directory().user_count();
  s.rooms = hub.directory().room_count();
  if (const Backend::RedisShards redis = backend->redis_shards(); redis.shards > 0) {
    s.redis = MetricsSnapshot::Redis{backend->healthy(), redis.shards, redis.up};
  }
  const Backend::HistoryStats history = backend->history_stats();
  s.history_streams = history.streams;
  s.history_pushes = history.pushes;
  s.history_bytes = history.bytes;
  s.msg_id_evictions = dedup->evicted();
  s.room_pushes_in_flight = hub.room_pushes_in_flight();
  s.uptime = Clock::now() - started;
  return s;
}

Server::Server(Config config)
    : config_(std::move(config)),
      loops_(make_loops(thread_count(config_))),
      hub_(static_cast<uint32_t>(loops_.size()), liveness_of(config_), counters_, Clock::now()),
      router_(make_default_router()),
      ctx_{config_, counters_, hub_, router_, loops_, Clock::now()},
      signals_(std::make_unique<asio::signal_set>(*loops_[0], SIGINT, SIGTERM)) {
  hub_.set_poster([this](uint32_t shard, Hub::Task task) {
    // Posted from an HTTP request served on the task's own loop (a unicast
    // to a user of this loop): the task runs as soon as the request's
    // handler returns, without a pass of the loop of its own.
    if (shard < loop_io_.size() && loops_[shard]->get_executor().running_in_this_thread() &&
        loop_io_[shard]->serving_request) {
      loop_io_[shard]->after_request.push_back(std::move(task));
      return;
    }
    // Frames the task sends leave at its end, not in a flush posted after it
    // (one pass of the loop less per delivery).
    asio::post(*loops_[shard], [this, shard, task = std::move(task)] {
      if (shard < loop_io_.size()) return WsConnection::run_then_flush(*loop_io_[shard], task);
      task();
    });
  });
  for (auto& loop : loops_) guards_.emplace_back(asio::make_work_guard(*loop));
  hub_.set_presence_policy(PresencePolicy{config_.presence_max_room, config_.quiet_app_ids});
  hub_.set_presence_frames(make_presence_push);
  ctx_.dedup = std::make_unique<MsgIdDedup>(config_.msg_id_ttl, config_.msg_id_capacity);
  ctx_.sorted_app_ids = config_.app_ids;
  std::sort(ctx_.sorted_app_ids.begin(), ctx_.sorted_app_ids.end());
  if (!config_.redis_addr.empty() || !config_.redis_cluster.empty()) {
    // One loop (--threads 1): the cluster runs on it, no thread of its own,
    // so a unicast is no hand-off between threads (docs/cluster.md).
    cluster_ = std::make_unique<RedisCluster>(config_, hub_,
                                              loops_.size() == 1 ? loops_[0].get() : nullptr);
    hub_.set_presence_sink(cluster_.get());
    ctx_.cluster = cluster_.get();
    // A live node of another key schema at start-up: the node must not run.
    cluster_->on_fatal = [this](int status) {
      asio::post(*loops_[0], [this, status] {
        exit_status_ = status;
        begin_shutdown();
      });
    };
    backend_ = std::make_unique<RedisBackend>(*cluster_, hub_, *ctx_.dedup, counters_, config_);
  } else {
    backend_ = std::make_unique<EmbeddedBackend>(
        hub_, *ctx_.dedup, counters_,
        HistoryLimits{config_.history_size, config_.history_ttl, config_.history_max_bytes});
  }
  ctx_.backend = backend_.get();
  tokens_ = TokenVerifier::from_config(config_);  // throws ConfigError: not started
  ctx_.tokens = tokens_.get();
  if (tokens_) {
    spdlog::info("login needs a signed token ({}{}{})", tokens_->has_hmac() ? "HMAC" : "",
                 tokens_->has_hmac() && tokens_->has_public_key() ? ", " : "",
                 tokens_->has_public_key() ? "public key" : "");
  }
  ctx_.clients = std::make_unique<ClientTable>(
      ClientTable::Limits{config_.ip_max_connections,
                          TokenBucket(config_.ip_upgrade_rate, config_.ip_upgrade_burst),
                          config_.ip_table_size},
      random_seed());
  if (config_.ws_port == 0 || config_.ws_port != config_.http_port) {  // two ports: listen()
    ctx_.http_connections = std::make_unique<HttpConnections>(config_.max_http_connections);
  }
  std::string trusted;
  for (const std::string& network : config_.trusted_proxies) trusted += network + ",";
  ctx_.trusted_proxies = CidrSet::parse(trusted);  // validated with the configuration
  ws_settings_ = ws_settings_of(config_);
  ws_handler_ = std::make_unique<GatewayHandler>(ctx_);
  for (uint32_t i = 0; i < loops_.size(); ++i) {
    auto io = std::make_unique<LoopIo>(*loops_[i], i, ws_settings_, *ws_handler_, counters_);
    io->upgraded = &ctx_.ws_upgraded;
    io->sessions = &ctx_.ws_sessions;
    io->clients = ctx_.clients.get();
    ctx_.loop_io.push_back(io.get());
    loop_io_.push_back(std::move(io));
  }
  if (!config_.tls_cert.empty()) {
    tls_ = std::make_unique<TlsContext>(config_.tls_cert, config_.tls_key,
                                        config_.tls_ticket_key_file);  // throws: not started
    ctx_.tls = tls_.get();
    reload_signal_ = std::make_unique<asio::signal_set>(*loops_[0], SIGHUP);
  }
  if (config_.web_root.empty()) {
    ctx_.web = WebAssets::embedded();
  } else {
    ctx_.web = WebAssets::load(config_.web_root);
    if (!ctx_.web.find("index.html")) {
      spdlog::warn("no chat page in {} (--web-root): serving the one compiled in",
                   config_.web_root);
      ctx_.web = WebAssets::embedded();
    }
  }
}

Server::~Server() {
  // Everything bound to a loop goes before the loops; destroying a loop
  // destroys its pending handlers and with them the sessions they hold,
  // which still need ctx_ (declared later, so destroyed after this body).
  signals_.reset();
  reload_signal_.reset();
  drain_timer_.reset();
  memory_timer_.reset();
  if (cluster_) cluster_->stop(std::chrono::seconds(1));  // no-op after run()
  ticks_.clear();
  listeners_.clear();
  guards_.clear();
  // Connections waiting for a flush close their sockets while the loops live.
  for (auto& io : loop_io_) io->stop();
  hub_.drop_waiting();
  // A cluster on loop 0 (--threads 1) has timers and sockets of it: it goes
  // before the loop (with the backend that refers to it).
  ctx_.backend = nullptr;
  ctx_.cluster = nullptr;
  backend_.reset();
  cluster_.reset();
  for (auto& loop : loops_) loop.reset();
}

void Server::listen() {
  auto address = asio::ip::make_address(config_.bind_address);
  const bool shared_port = config_.ws_port != 0 && config_.ws_port == config_.http_port;
  auto ws = std::make_shared<Listener>(*loops_[0], tcp::endpoint(address, config_.ws_port), ctx_,
                                       PortRole{true, shared_port});
  listeners_.push_back(ws);
  ws_port_ = ws->port();
  ctx_.ws_port = ws_port_;
  http_port_ = ws_port_;
  if (!shared_port) {
    auto api = std::make_shared<Listener>(*loops_[0], tcp::endpoint(address, config_.http_port),
                                          ctx_, PortRole{false, true});
    listeners_.push_back(api);
    http_port_ = api->port();
  }
  share_descriptors();
  for (auto& l : listeners_) l->start();
  spdlog::info("imgate {} listening: websocket {}://{}:{}{}, http{} {}:{}, {} threads", IMGATE_VERSION,
               tls_ ? "wss" : "ws", config_.bind_address, ws_port_, config_.ws_path,
               tls_ ? "s" : "", config_.bind_address, http_port_, loops_.size());
}

// The WebSocket port may take what the descriptor limit leaves after the
// descriptors open now (event loops, listeners, their spares, the log), the
// HTTP API port's --max-http-connections and kOtherDescriptors: so /healthz
// and the API still find descriptors when the WebSocket port is full.
// Called before the listeners start (no other thread reads the config yet).
void Server::share_descriptors() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY) return;
  const auto limit = static_cast<std::size_t>(lim.rlim_cur);
  const std::size_t open = open_descriptors();
  const std::size_t share = websocket_share(limit, open, config_.max_http_connections);
  if (limit < open + config_.max_http_connections + kOtherDescriptors + share) {
    spdlog::warn("descriptor limit {} too low to keep {} for the HTTP API and {} others next to "
                 "{} open: the WebSocket port gets {} (raise ulimit -n)",
                 limit, config_.max_http_connections, kOtherDescriptors, open, share);
  }
  if (config_.max_connections == 0 || config_.max_connections > share) {
    spdlog::warn("max connections lowered from {} to {} (descriptor limit {}: {} open, {} for "
                 "the HTTP API, {} others)",
                 config_.max_connections, share, limit, open, config_.max_http_connections,
                 kOtherDescriptors);
    config_.max_connections = share;
  }
}

void Server::write_ready_file() const {
  if (config_.ready_file.empty()) return;
  const std::string tmp = config_.ready_file + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << R"({"ws":)" << ws_port_ << R"(,"http":)" << http_port_ << R"(,"pid":)" << getpid()
        << "}\n";
  }
  if (std::rename(tmp.c_str(), config_.ready_file.c_str()) != 0) {
    spdlog::warn("cannot write ready file {}", config_.ready_file);
  }
}

void Server::start_tick(uint32_t shard) {
  auto& timer = *ticks_[shard];
  timer.expires_after(std::chrono::milliseconds(
      std::clamp<long>(std::min(config_.heartbeat_timeout, config_.ping_interval).count() / 8, 10,
                       1000)));
  timer.async_wait([this, shard](boost::system::error_code ec) {
    if (ec) return;
    hub_.shard(shard).tick(Clock::now());
    start_tick(shard);
  });
}

void Server::wait_reload() {
  reload_signal_->async_wait([this](boost::system::error_code ec, int) {
    if (ec || ctx_.stopping.load()) return;
    spdlog::info("SIGHUP: reloading the TLS certificate and key");
    tls_->reload();  // logs; a bad file keeps the previous context
    wait_reload();
  });
}

void Server::start_memory_check() {
  memory_timer_->expires_after(std::chrono::seconds(1));
  memory_timer_->async_wait([this](boost::system::error_code ec) {
    if (ec || ctx_.stopping.load()) return;
    memory_trim_.check(ctx_.ws_sessions.load(std::memory_order_relaxed),
                       ctx_.counters.connections_opened.load(std::memory_order_relaxed));
    // Addresses whose connections are gone leave once their upgrade bucket is
    // full again (admissions sweep their own stripes too).
    ctx_.clients->sweep(to_ns(Clock::now()), kClientSweepVisits);
    start_memory_check();
  });
}

int Server::run() {
  listen();
  for (uint32_t i = 0; i < loops_.size(); ++i) {
    ticks_.push_back(std::make_unique<asio::steady_timer>(*loops_[i]));
    start_tick(i);
  }
  memory_timer_ = std::make_unique<asio::steady_timer>(*loops_[0]);
  start_memory_check();
  signals_->async_wait([this](boost::system::error_code ec, int signo) {
    if (ec) return;
    spdlog::info("signal {}: shutting down", signo);
    begin_shutdown();
  });
  if (reload_signal_) wait_reload();
  if (cluster_) cluster_->start();
  write_ready_file();

  std::vector<std::thread> threads;
  for (std::size_t i = 1; i < loops_.size(); ++i) {
    threads.emplace_back([loop = loops_[i].get()] { loop->run(); });
  }
  loops_[0]->run();
  for (auto& t : threads) t.join();
  if (cluster_) {
    // The logouts of the closed connections are already queued on the
    // cluster's own loop; leaving runs after them.
    auto left = std::max(shutdown_deadline_ - Clock::now(), Clock::duration(std::chrono::seconds(1)));
    cluster_->stop(std::chrono::duration_cast<std::chrono::milliseconds>(left));
  }
  spdlog::info("imgate stopped");
  return exit_status_;
}

void Server::begin_shutdown() {
  if (ctx_.stopping.exchange(true)) return;
  if (reload_signal_) reload_signal_->cancel();
  for (auto& l : listeners_) l->stop();
  for (uint32_t i = 0; i < loops_.size(); ++i) {
    asio::post(*loops_[i], [this, i] {
      ticks_[i]->cancel();
      hub_.shard(i).close_all(close_code::kGoingAway, "server shutdown");
    });
  }
  shutdown_deadline_ = Clock::now() + config_.shutdown_timeout;
  await_drain(shutdown_deadline_ - std::min<Clock::duration>(config_.shutdown_timeout / 4,
                                                            std::chrono::seconds(2)));
}

void Server::await_drain(TimePoint deadline) {
  // Polls (on loop 0) until every WebSocket session has finished its close
  // handshake, or the deadline passes; then stops all loops.
  if (!drain_timer_) drain_timer_ = std::make_unique<asio::steady_timer>(*loops_[0]);
  if (ctx_.ws_upgraded.load() == 0 || Clock::now() >= deadline) {
    if (ctx_.ws_upgraded.load() != 0) {
      spdlog::warn("shutdown deadline: {} connections cut off", ctx_.ws_upgraded.load());
    }
    stop_loops();
    return;
  }
  drain_timer_->expires_after(std::chrono::milliseconds(10));
  drain_timer_->async_wait([this, deadline](boost::system::error_code) { await_drain(deadline); });
}

void Server::stop_loops() {
  for (auto& g : guards_) g.reset();
  for (auto& loop : loops_) loop->stop();
}

}  // namespace imgate
