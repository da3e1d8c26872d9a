#include "modes.hpp"

#include <boost/json/serialize.hpp>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>
#include <thread>

#include "client.hpp"
#include "http.hpp"
#include "probe.hpp"

namespace bench {

namespace json = boost::json;

namespace {

constexpr double kNs = 1e9;

// JSON with plain decimals (Boost.JSON writes doubles as 1.5E3).
void write_json(std::string& out, const json::value& v) {
  char num[64];
  switch (v.kind()) {
    case json::kind::object: {
      out += '{';
      bool first = true;
      for (const auto& [key, value] : v.get_object()) {
        if (!first) out += ',';
        first = false;
        out += json::serialize(json::string(key));
        out += ':';
        write_json(out, value);
      }
      out += '}';
      return;
    }
    case json::kind::array: {
      out += '[';
      bool first = true;
      for (const auto& value : v.get_array()) {
        if (!first) out += ',';
        first = false;
        write_json(out, value);
      }
      out += ']';
      return;
    }
    case json::kind::double_: {
      const double d = v.get_double();
      std::snprintf(num, sizeof num, std::abs(d) >= 100 ? "%.0f" : "%.3f", d);
      out += num;
      return;
    }
    default:
      out += json::serialize(v);
      return;
  }
}

uint64_t mix(uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

json::object latency_json(const Histogram& h) {
  auto us = [](uint64_t ns) { return static_cast<double>(ns) / 1000.0; };
  return json::object{{"count", h.count()},
                      {"p50_us", us(h.quantile(0.50))},
                      {"p90_us", us(h.quantile(0.90))},
                      {"p99_us", us(h.quantile(0.99))},
                      {"p999_us", us(h.quantile(0.999))},
                      {"max_us", us(h.max())},
                      {"mean_us", h.mean() / 1000.0}};
}

std::string latency_line(const Histogram& h) {
  char line[200];
  std::snprintf(line, sizeof line,
                "p50 %.0f us, p90 %.0f us, p99 %.0f us, p99.9 %.0f us, max %.0f us",
                h.quantile(0.5) / 1e3, h.quantile(0.9) / 1e3, h.quantile(0.99) / 1e3,
                h.quantile(0.999) / 1e3, static_cast<double>(h.max()) / 1e3);
  return line;
}

// One measurement: the client, the report being built, progress output.
class Run {
 public:
  explicit Run(const Options& opts) : o(opts), client(opts), t0(now_ns()) {
    out["mode"] = opts.mode_name;
    out["threads"] = client.threads();
    out["gateway_pid"] = opts.gateway_pid;
    out["load_average_before"] = load_average();
  }

  const Options& o;
  Client client;
  json::object out;
  int64_t t0;

  // CPU used by the gateway and by this generator since the last mark(): shows
  // which side saturated the cores during a phase.
  void mark_cpu() {
    cpu_mark_ns = now_ns();
    gw_cpu_mark = cpu_seconds(o.gateway_pid);
    self_cpu_mark = cpu_seconds(0);
  }
  json::object cpu_json() const {
    const double wall = static_cast<double>(now_ns() - cpu_mark_ns) / kNs;
    const double gw = o.gateway_pid ? cpu_seconds(o.gateway_pid) - gw_cpu_mark : -1;
    const double self = cpu_seconds(0) - self_cpu_mark;
    return json::object{{"wall_seconds", wall},
                        {"gateway_cpu_seconds", gw},
                        {"generator_cpu_seconds", self},
                        {"gateway_cores", wall > 0 && gw >= 0 ? gw / wall : -1},
                        {"generator_cores", wall > 0 ? self / wall : -1}};
  }
  std::string cpu_line() const {
    const json::object c = cpu_json();
    char line[160];
    std::snprintf(line, sizeof line, "cpu: gateway %.2f cores, generator %.2f cores (over %.1f s)",
                  c.at("gateway_cores").to_number<double>(),
                  c.at("generator_cores").to_number<double>(),
                  c.at("wall_seconds").to_number<double>());
    return line;
  }
  // Adds "<prefix>gateway_cpu_us_per_<unit>" and the generator's to a cpu_json()
  // object: CPU microseconds (user + system, /proc/<pid>/stat) per unit of work.
  // Returns a line for the human summary.
  static std::string per_unit(json::object& cpu, uint64_t units, const char* unit,
                              const char* plural) {
    const double gw = cpu.at("gateway_cpu_seconds").to_number<double>();
    const double self = cpu.at("generator_cpu_seconds").to_number<double>();
    const std::string suffix = std::string("_cpu_us_per_") + unit;
    json::value gw_per = nullptr, self_per = nullptr;
    if (units > 0 && gw >= 0) gw_per = gw * 1e6 / static_cast<double>(units);
    if (units > 0) self_per = self * 1e6 / static_cast<double>(units);
    cpu["gateway" + suffix] = gw_per;
    cpu["generator" + suffix] = self_per;
    char line[200];
    if (gw_per.is_double()) {
      std::snprintf(line, sizeof line,
                    "cpu per %s: gateway %.2f us, generator %.2f us (%" PRIu64 " %s)", unit,
                    gw_per.get_double(), self_per.get_double(), units, plural);
    } else {
      std::snprintf(line, sizeof line, "cpu per %s: gateway unknown (no --pid)", unit);
    }
    return line;
  }
  int64_t cpu_mark_ns = 0;
  double gw_cpu_mark = 0, self_cpu_mark = 0;

  double since_start() const { return static_cast<double>(now_ns() - t0) / kNs; }

  void progress(const char* phase) const {
    if (o.quiet) return;
    const Totals t = client.totals();
    std::fprintf(stderr,
                 "[%6.1fs] %-8s started %" PRIu64 " logged_in %" PRIu64 " failed %" PRIu64
                 " held %" PRIu64 " open %" PRIu64 " msgs %" PRIu64 " presence %" PRIu64 "\n",
                 since_start(), phase, t.started, t.logged_in, t.failures(), t.held, t.open_sockets,
                 t.msgs, t.presence);
  }

  // Polls `done` every 10 ms until it holds or `limit_s` passes; prints
  // progress once a second. Returns whether `done` held.
  template <class Pred>
  bool wait(double limit_s, const char* phase, Pred done) {
    const int64_t end = now_ns() + static_cast<int64_t>(limit_s * kNs);
    int64_t next_print = now_ns() + 1'000'000'000;
    while (!done()) {
      const int64_t now = now_ns();
      if (now >= end) return false;
      if (now >= next_print) {
        progress(phase);
        next_print += 1'000'000'000;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
  }

  struct Setup {
    double seconds = 0;
    uint64_t logged_in = 0;
    uint64_t failed = 0;
    std::string stopped;  // why setup stopped early, empty if it did not
  };

  // Runs `job` to completion (or early stop) and reports it under "setup".
  Setup setup(Job& job, const char* phase) {
    const Totals before = client.totals();
    const uint64_t max_failures = o.max_failures ? o.max_failures : job.count / 100 + 10;
    const int64_t start = now_ns();
    mark_cpu();
    client.begin(job);
    Setup s;
    const double limit = job.rate > 0
                             ? static_cast<double>(job.count) / job.rate + o.setup_timeout + 60
                             : o.setup_timeout + 600;
    bool done = wait(limit, phase, [&] {
      const Totals t = client.totals();
      if (t.setups_done() - before.setups_done() >= job.count) return true;
      if (t.setup_failed - before.setup_failed > max_failures) {
        s.stopped = "more than " + std::to_string(max_failures) + " setup failures";
        return true;
      }
      return false;
    });
    if (!done) s.stopped = "setup time limit";
    if (!s.stopped.empty()) {
      job.stop.store(true);
      // Let setups already started finish or time out.
      wait(o.setup_timeout + 1, phase, [&] {
        const Totals t = client.totals();
        return t.setups_done() - before.setups_done() >= job.next.load();
      });
    }
    const Totals t = client.totals();
    s.seconds = static_cast<double>(now_ns() - start) / kNs;
    s.logged_in = t.logged_in - before.logged_in;
    s.failed = t.setup_failed - before.setup_failed;
    json::object j{
        {"requested", job.count},
        {"started", t.started - before.started},
        {"logged_in", s.logged_in},
        {"failed", s.failed},
        {"seconds", s.seconds},
        {"logins_per_second", s.seconds > 0 ? static_cast<double>(s.logged_in) / s.seconds : 0}};
    if (!s.stopped.empty()) j["stopped_early"] = s.stopped;
    if (t.port_fallbacks) j["source_port_fallbacks"] = t.port_fallbacks;
    json::object cpu = cpu_json();
    const std::string per_setup = per_unit(cpu, s.logged_in, "setup", "setups");
    j["cpu"] = std::move(cpu);
    out["setup"] = std::move(j);
    std::printf("%s: %" PRIu64 " logged in (of %" PRIu64 " started) in %.2f s (%.0f/s), %" PRIu64
                " failed%s%s\n",
                phase, s.logged_in, t.started - before.started, s.seconds,
                s.seconds > 0 ? static_cast<double>(s.logged_in) / s.seconds : 0.0, s.failed,
                s.stopped.empty() ? "" : "; stopped early: ", s.stopped.c_str());
    std::printf("  %s\n  %s\n", cpu_line().c_str(), per_setup.c_str());
    return s;
  }

  // Closes every held connection (close frames unless --abrupt-teardown),
  // bounded by --close-timeout.
  void teardown() {
    client.close_held(!o.abrupt_teardown);
    if (!wait(o.close_timeout, "teardown", [&] { return client.totals().open_sockets == 0; })) {
      client.force_close_all();
      wait(5, "teardown", [&] { return client.totals().open_sockets == 0; });
    }
  }

  void report_failures() {
    const Totals t = client.totals();
    json::object fails;
    std::string line;
    for (std::size_t i = 0; i < t.fails.size(); ++i) {
      if (t.fails[i] == 0) continue;
      fails[fail_name(static_cast<Fail>(i))] = t.fails[i];
      line += std::string(line.empty() ? "" : ", ") + fail_name(static_cast<Fail>(i)) + " " +
              std::to_string(t.fails[i]);
    }
    if (t.last_server_close_code) out["last_server_close_code"] = t.last_server_close_code;
    out["failures"] = std::move(fails);
    if (!line.empty()) std::printf("failures: %s\n", line.c_str());
  }

  int finish(int status) {
    out["client_rss_kb"] = proc_memory(0).rss_kb;
    out["seconds"] = since_start();
    out["ok"] = status == 0;
    std::string line;
    write_json(line, out);
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
    if (!o.json_out.empty()) std::ofstream(o.json_out, std::ios::app) << line << "\n";
    return status;
  }
};

uint32_t spread_app(const Options& o, uint64_t i) {
  return o.app_base + static_cast<uint32_t>(i % std::max<uint32_t>(1, o.apps));
}

std::string run_tag() {
  char tag[32];
  std::snprintf(tag, sizeof tag, "%" PRIx64,
                static_cast<uint64_t>(now_ns()) ^ (static_cast<uint64_t>(getpid()) << 40));
  return tag;
}

std::optional<GatewayState> must_state(const Options& o) {
  std::string error;
  auto s = gateway_state(o, error);
  if (!s) std::fprintf(stderr, "imgate-bench: %s\n", error.c_str());
  return s;
}

// Waits (bounded) until /system/state is back to `baseline`; returns the last state.
std::optional<GatewayState> await_state(Run& run, const GatewayState& baseline, double limit_s) {
  std::optional<GatewayState> last;
  std::string error;
  run.wait(limit_s, "drain", [&] {
    last = gateway_state(run.o, error);
    if (last && *last == baseline) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(90));
    return false;
  });
  return last;
}

json::object diff_json(const GatewayState& now, const GatewayState& base) {
  return json::object{{"clientsLen", now.clients - base.clients},
                      {"usersLen", now.users - base.users},
                      {"roomsLen", now.rooms - base.rooms},
                      {"sessions", now.sessions - base.sessions}};
}

int64_t counter_delta(const GatewayState& now, const GatewayState& base, std::string_view key) {
  auto get = [&](const GatewayState& s) -> int64_t {
    const json::value* v = s.counters.if_contains(key);
    return v && v->is_number() ? v->to_number<int64_t>() : 0;
  };
  return get(now) - get(base);
}

// ---- messages (fanout / unicast) --------------------------------------------

struct Delivery {
  uint64_t expected = 0, received = 0;
  int64_t lost = 0;
  double seconds = 0;
};

// Sends the messages with `make`, waits for the deliveries, and reports.
Delivery push_and_measure(Run& run, const std::string& path, uint64_t per_ok,
                          Pusher::MakeBody make) {
  const Options& o = run.o;
  const uint64_t count = o.messages ? o.messages : static_cast<uint64_t>(o.rate * o.duration);
  const uint64_t msgs0 = run.client.totals().msgs;
  run.client.heartbeats(true);
  Pusher pusher(o, path, count, o.rate, std::move(make));
  run.mark_cpu();
  const double limit =
      (o.rate > 0 ? static_cast<double>(count) / o.rate : 0) + o.drain_timeout + 30;
  Pusher::Result res = pusher.run(limit, [&] { run.progress("send"); });

  Delivery d;
  d.expected = res.delivered_ok * per_ok;
  // Deliveries still arriving are late, not lost: wait while they progress,
  // until --drain-timeout passes without one (at most 10 drain timeouts).
  uint64_t last_seen = run.client.totals().msgs;
  int64_t last_progress = now_ns();
  const int64_t quiet_limit = static_cast<int64_t>(o.drain_timeout * kNs);
  run.wait(o.drain_timeout * 10, "drain", [&] {
    const uint64_t seen = run.client.totals().msgs;
    if (seen != last_seen) {
      last_seen = seen;
      last_progress = now_ns();
    }
    return seen - msgs0 >= d.expected || now_ns() - last_progress > quiet_limit;
  });
  // A little longer, to see duplicates or extra deliveries.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const Totals t = run.client.totals();
  d.received = t.msgs - msgs0;
  d.lost = static_cast<int64_t>(d.expected) - static_cast<int64_t>(d.received);
  const int64_t span_end = std::max<int64_t>(static_cast<int64_t>(t.last_delivery_ns), res.done_ns);
  d.seconds = static_cast<double>(span_end - res.first_ns) / kNs;
  const double send_seconds = static_cast<double>(res.last_ns - res.first_ns) / kNs;
  const Histogram latency = run.client.latency();
  json::object cpu_sending = run.cpu_json();
  const std::string cpu = run.cpu_line();
  const std::string per_delivery = Run::per_unit(cpu_sending, d.received, "delivery", "deliveries");
  run.out["cpu_while_sending"] = cpu_sending;

  run.out["messages"] = json::object{
      {"requested", count},
      {"sent", res.sent},
      {"send_seconds", send_seconds},
      {"send_rate", send_seconds > 0 ? static_cast<double>(res.sent - 1) / send_seconds : 0},
      {"target_rate", o.rate},
      {"answered_delivered", res.delivered_ok},
      {"answered_not_online", res.not_online},
      {"http_errors", res.errors},
      {"max_backlog", res.max_backlog},
      {"skipped", res.skipped},
      {"send_for", o.send_for},
      {"deadline_hit", res.deadline_hit},
      {"api_latency", latency_json(res.api_latency)}};
  run.out["deliveries"] =
      json::object{{"expected", d.expected},
                   {"received", d.received},
                   {"lost", d.lost > 0 ? d.lost : 0},
                   {"extra", d.lost < 0 ? -d.lost : 0},
                   {"reordered", t.reordered},
                   {"malformed", t.bad_msgs},
                   {"seconds", d.seconds},
                   {"per_second", d.seconds > 0 ? static_cast<double>(d.received) / d.seconds : 0},
                   {"gateway_cpu_us_per_delivery", cpu_sending.at("gateway_cpu_us_per_delivery")},
                   {"generator_cpu_us_per_delivery",
                    cpu_sending.at("generator_cpu_us_per_delivery")},
                   {"latency", latency_json(latency)}};
  std::printf("messages: %" PRIu64 " sent in %.2f s (%.0f/s, target %.0f/s), max backlog %" PRIu64
              ", %" PRIu64 " skipped, %" PRIu64 " not online, %" PRIu64 " HTTP errors; API %s\n",
              res.sent, send_seconds,
              send_seconds > 0 ? static_cast<double>(res.sent - 1) / send_seconds : 0.0, o.rate,
              res.max_backlog, res.skipped, res.not_online, res.errors,
              latency_line(res.api_latency).c_str());
  std::printf("deliveries: %" PRIu64 " of %" PRIu64 " expected (lost %" PRId64
              "), %.0f/s; reordered %" PRIu64 "\nlatency: %s\n",
              d.received, d.expected, d.lost,
              d.seconds > 0 ? static_cast<double>(d.received) / d.seconds : 0.0, t.reordered,
              latency_line(latency).c_str());
  std::printf("%s\n%s\n", cpu.c_str(), per_delivery.c_str());
  if (res.errors > 0 || res.deadline_hit) d.lost = std::max<int64_t>(d.lost, 1);  // not a clean run
  return d;
}

std::string form_body(const Options& o, uint32_t app, const std::string& user,
                      const std::string& tag, uint64_t no, int64_t sent_ns) {
  std::string body = "appID=" + std::to_string(app) + "&userID=" + user;
  if (o.msg_ids) body += "&msgID=" + tag + "-" + std::to_string(no);
  body += "&message=T" + std::to_string(sent_ns) + "." + std::to_string(no);
  return body;
}

}  // namespace

// ---- hold ------------------------------------------------------------------

int run_hold(const Options& o) {
  auto base = must_state(o);
  if (!base) return 2;
  Run run(o);
  const ProcMemory gw0 = proc_memory(o.gateway_pid);
  const ProcMemory self0 = proc_memory(0);
  const int64_t tcp0 = tcp_mem_pages();
  const int64_t slab0 = slab_kb();

  Job job;
  job.count = o.connections;
  job.rate = o.connect_rate;
  job.inflight = o.inflight;
  job.app_of = [&o](uint64_t i) { return spread_app(o, i / o.conns_per_user); };
  const Run::Setup setup = run.setup(job, "connect");

  run.client.heartbeats(true);
  run.wait(o.duration, "hold", [] { return false; });
  const Totals t = run.client.totals();
  const ProcMemory gw1 = proc_memory(o.gateway_pid);
  const ProcMemory self1 = proc_memory(0);
  const int64_t tcp1 = tcp_mem_pages();
  const int64_t slab1 = slab_kb();
  auto held_state = must_state(o);
  const uint64_t held = t.held;
  auto per_conn = [held](int64_t before, int64_t after, int64_t unit) -> json::value {
    if (held == 0 || before < 0 || after < 0) return nullptr;
    return static_cast<double>((after - before) * unit) / static_cast<double>(held);
  };
  json::object gateway{{"rss_before_kb", gw0.rss_kb},
                       {"rss_held_kb", gw1.rss_kb},
                       {"peak_rss_kb", gw1.hwm_kb},
                       {"bytes_per_connection", per_conn(gw0.rss_kb, gw1.rss_kb, 1024)}};
  if (held_state) gateway["state_held"] = state_json(*held_state);

  run.teardown();
  // Does memory go back after a mass disconnect? Sample the RSS once a second
  // after the last connection closed (client side).
  std::string series_line;
  if (o.gateway_pid && o.rss_after_teardown > 0) {
    const int64_t closed_ns = now_ns();
    json::array series;
    const int samples = static_cast<int>(o.rss_after_teardown);
    for (int k = 1; k <= samples; ++k) {
      const int64_t at = closed_ns + static_cast<int64_t>(k) * 1'000'000'000;
      run.wait(static_cast<double>(at - now_ns()) / kNs, "released", [] { return false; });
      const int64_t kb = proc_memory(o.gateway_pid).rss_kb;
      series.push_back(json::object{{"s", k}, {"rss_kb", kb}});
      if (k == 1 || k == 5 || k == samples || k % 10 == 0) {
        series_line += (series_line.empty() ? "" : ", ") + std::to_string(kb) + " kB at " +
                       std::to_string(k) + " s";
      }
    }
    gateway["rss_after_teardown_series"] = std::move(series);
  }
  if (auto after = await_state(run, *base, o.drain_timeout)) {
    gateway["state_after"] = state_json(*after);
    gateway["residue"] = diff_json(*after, *base);
  }
  gateway["rss_after_teardown_kb"] = proc_memory(o.gateway_pid).rss_kb;

  run.out["held"] = held;
  run.out["hold_seconds"] = o.duration;
  run.out["heartbeats"] = json::object{
      {"sent", t.heartbeats_sent}, {"answered", t.heartbeats_ok}, {"server_pings", t.pings}};
  run.out["presence_frames"] = t.presence;
  run.out["gateway"] = std::move(gateway);
  run.out["client"] =
      json::object{{"rss_before_kb", self0.rss_kb},
                   {"rss_held_kb", self1.rss_kb},
                   {"bytes_per_connection", per_conn(self0.rss_kb, self1.rss_kb, 1024)}};
  run.out["kernel_tcp"] =
      json::object{{"mem_pages_before", tcp0},
                   {"mem_pages_held", tcp1},
                   {"bytes_per_connection_both_ends", per_conn(tcp0, tcp1, 4096)}};
  run.out["kernel_slab"] =
      json::object{{"slab_kb_before", slab0},
                   {"slab_kb_held", slab1},
                   {"bytes_per_connection_both_ends", per_conn(slab0, slab1, 1024)}};
  run.report_failures();
  std::printf("held: %" PRIu64 " connections for %.0f s; heartbeats %" PRIu64 " sent / %" PRIu64
              " answered; presence frames %" PRIu64 "\n",
              held, o.duration, t.heartbeats_sent, t.heartbeats_ok, t.presence);
  if (o.gateway_pid && held) {
    std::printf("gateway RSS: %" PRId64 " kB -> %" PRId64 " kB = %.0f bytes per connection\n",
                gw0.rss_kb, gw1.rss_kb,
                static_cast<double>((gw1.rss_kb - gw0.rss_kb) * 1024) / static_cast<double>(held));
  }
  if (!series_line.empty()) {
    std::printf("gateway RSS after the last close: %s (idle before %" PRId64 " kB, held %" PRId64
                " kB)\n",
                series_line.c_str(), gw0.rss_kb, gw1.rss_kb);
  }
  if (held) {
    std::printf(
        "client RSS: %" PRId64 " kB -> %" PRId64
        " kB = %.0f bytes per connection; kernel (both "
        "ends): TCP buffers %.0f, slab %.0f bytes per connection\n",
        self0.rss_kb, self1.rss_kb,
        static_cast<double>((self1.rss_kb - self0.rss_kb) * 1024) / static_cast<double>(held),
        static_cast<double>((tcp1 - tcp0) * 4096) / static_cast<double>(held),
        static_cast<double>((slab1 - slab0) * 1024) / static_cast<double>(held));
  }
  const bool ok = setup.failed == 0 && setup.stopped.empty() && held == setup.logged_in &&
                  setup.logged_in == o.connections;
  return run.finish(ok ? 0 : 1);
}

// ---- fanout ----------------------------------------------------------------

int run_fanout(const Options& o) {
  if (!must_state(o)) return 2;
  Run run(o);
  Job job;
  job.count = o.connections;
  job.rate = o.connect_rate;
  job.inflight = o.inflight;
  job.app_of = [&o](uint64_t) { return o.app_base; };
  const Run::Setup setup = run.setup(job, "connect");

  // Every login announces itself to the room (enter): wait for that to stop.
  const int64_t settle_start = now_ns();
  uint64_t last_presence = run.client.totals().presence;
  int64_t quiet_since = now_ns();
  run.wait(o.settle_timeout, "settle", [&] {
    const uint64_t p = run.client.totals().presence;
    if (p != last_presence) {
      last_presence = p;
      quiet_since = now_ns();
    }
    return now_ns() - quiet_since > 500'000'000;
  });
  const double settle = static_cast<double>(now_ns() - settle_start) / kNs;
  const uint64_t members = run.client.totals().held;
  run.out["members"] = members;
  run.out["conns_per_user"] = o.conns_per_user;
  run.out["settle"] = json::object{{"presence_frames", last_presence}, {"seconds", settle}};
  std::printf("room %u: %" PRIu64 " members; %" PRIu64
              " enter pushes received while joining (%.1f s to settle)\n",
              o.app_base, members, last_presence, settle);

  const std::string tag = run_tag();
  Delivery d =
      push_and_measure(run, "/user/sendMessageAll", members, [&o, tag](uint64_t no, int64_t ns) {
        return form_body(o, o.app_base, o.sender, tag, no, ns);
      });
  run.teardown();
  run.report_failures();
  const bool ok = setup.failed == 0 && setup.stopped.empty() &&
                  run.client.totals().failures() == 0 && (d.lost == 0 || o.allow_loss);
  return run.finish(ok ? 0 : 1);
}

// ---- unicast ---------------------------------------------------------------

int run_unicast(const Options& o) {
  if (!must_state(o)) return 2;
  Run run(o);
  Job job;
  job.count = o.connections;
  job.rate = o.connect_rate;
  job.inflight = o.inflight;
  job.app_of = [&o](uint64_t i) { return spread_app(o, i / o.conns_per_user); };
  const Run::Setup setup = run.setup(job, "connect");
  run.out["members"] = run.client.totals().held;
  run.out["conns_per_user"] = o.conns_per_user;

  const std::string tag = run_tag();
  auto rng = std::make_shared<std::mt19937_64>(static_cast<uint64_t>(now_ns()));
  // User u holds connections u*K .. u*K+K-1, all in room spread_app(u).
  const uint64_t users = (o.connections + o.conns_per_user - 1) / o.conns_per_user;
  Delivery d = push_and_measure(
      run, "/user/sendMessage", o.conns_per_user, [&o, tag, rng, users](uint64_t no, int64_t ns) {
        const uint64_t u = (*rng)() % std::max<uint64_t>(1, users);
        return form_body(o, spread_app(o, u), o.user_prefix + std::to_string(u), tag, no, ns);
      });
  run.teardown();
  run.report_failures();
  const bool ok = setup.failed == 0 && setup.stopped.empty() &&
                  run.client.totals().failures() == 0 && (d.lost == 0 || o.allow_loss);
  return run.finish(ok ? 0 : 1);
}

// ---- churn -----------------------------------------------------------------

int run_churn(const Options& o) {
  auto base = must_state(o);
  if (!base) return 2;
  Run run(o);
  const ProcMemory gw0 = proc_memory(o.gateway_pid);
  const double abrupt = o.abrupt;
  Job job;
  job.count = static_cast<uint64_t>(o.rate * o.duration);
  job.rate = o.rate;
  job.inflight = o.churn_inflight;
  job.app_of = [&o](uint64_t i) { return spread_app(o, i / o.conns_per_user); };
  job.plan = [abrupt](uint64_t i) {
    const uint64_t h = mix(i);
    if (static_cast<double>(h & 0xffff) / 65536.0 >= abrupt) return Plan::kGraceful;
    static constexpr Plan kAbrupt[] = {Plan::kDropBeforeUpgrade, Plan::kDropBeforeLoginReply,
                                       Plan::kDropAfterLogin, Plan::kResetAfterLogin};
    return kAbrupt[(h >> 16) % 4];
  };
  const Run::Setup setup = run.setup(job, "churn");
  run.wait(o.close_timeout + 1, "closing", [&] { return run.client.totals().open_sockets == 0; });

  auto after = await_state(run, *base, o.drain_timeout);
  const Totals t = run.client.totals();
  json::object plans;
  for (std::size_t i = 0; i < t.plans_done.size(); ++i) {
    if (t.plans_done[i]) plans[plan_name(static_cast<Plan>(i))] = t.plans_done[i];
  }
  run.out["rate"] = o.rate;
  run.out["duration"] = o.duration;
  run.out["endings"] = std::move(plans);
  run.out["close_timeouts"] = t.close_timeouts;
  run.out["baseline"] = state_json(*base);
  bool clean = false;
  if (after) {
    run.out["after"] = state_json(*after);
    run.out["residue"] = diff_json(*after, *base);
    run.out["gateway_counters"] =
        json::object{{"connectionsOpened", counter_delta(*after, *base, "connectionsOpened")},
                     {"connectionsClosed", counter_delta(*after, *base, "connectionsClosed")},
                     {"logins", counter_delta(*after, *base, "logins")},
                     {"handshakeFailures", counter_delta(*after, *base, "handshakeFailures")}};
    clean = *after == *base;
    std::printf("gateway: opened %" PRId64 ", closed %" PRId64 ", logins %" PRId64
                ", handshake failures %" PRId64 "\nresidue after churn: clientsLen %+" PRId64
                ", usersLen %+" PRId64 ", roomsLen %+" PRId64 ", sessions %+" PRId64 "%s\n",
                counter_delta(*after, *base, "connectionsOpened"),
                counter_delta(*after, *base, "connectionsClosed"),
                counter_delta(*after, *base, "logins"),
                counter_delta(*after, *base, "handshakeFailures"), after->clients - base->clients,
                after->users - base->users, after->rooms - base->rooms,
                after->sessions - base->sessions, clean ? " (back to baseline)" : " (LEAK?)");
  }
  run.out["back_to_baseline"] = clean;
  run.out["gateway"] = json::object{{"rss_before_kb", gw0.rss_kb},
                                    {"rss_after_kb", proc_memory(o.gateway_pid).rss_kb}};
  std::string endings;
  for (std::size_t i = 0; i < t.plans_done.size(); ++i) {
    if (t.plans_done[i])
      endings += std::string(endings.empty() ? "" : ", ") + plan_name(static_cast<Plan>(i)) + " " +
                 std::to_string(t.plans_done[i]);
  }
  std::printf("churn endings: %s; close timeouts %" PRIu64 "\n", endings.c_str(), t.close_timeouts);
  run.report_failures();
  const bool ok = clean && setup.failed == 0 && setup.stopped.empty() && t.failures() == 0;
  return run.finish(ok ? 0 : 1);
}

}  // namespace bench
