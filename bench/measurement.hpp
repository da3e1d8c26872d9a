// One measurement of imgate-bench: the client, the JSON report being built,
// progress on stderr, CPU marks; and the helpers every mode shares (the gateway's
// /system/state, push bodies). Used by modes.cpp and history_modes.cpp.
#pragma once

#include <boost/json/object.hpp>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <thread>

#include "client.hpp"
#include "histogram.hpp"
#include "options.hpp"
#include "probe.hpp"

namespace bench {

namespace json = boost::json;

constexpr double kNs = 1e9;

// JSON with plain decimals (Boost.JSON writes doubles as 1.5E3).
void write_json(std::string& out, const json::value& v);
json::object latency_json(const Histogram& h);
std::string latency_line(const Histogram& h);

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

// appID of user (or connection) i when members are spread over --apps rooms.
uint32_t spread_app(const Options& o, uint64_t i);
// A tag unique to this run, for msgIDs.
std::string run_tag();
// /system/state, or nullopt after printing why.
std::optional<GatewayState> must_state(const Options& o);
// Waits (bounded) until /system/state is back to `baseline`; returns the last state.
std::optional<GatewayState> await_state(Run& run, const GatewayState& baseline, double limit_s);
// The form body of push `no` to (app, user): its text "T<send time ns>.<no>",
// padded with 'x' to --message-bytes.
std::string form_body(const Options& o, uint32_t app, const std::string& user,
                      const std::string& tag, uint64_t no, int64_t sent_ns);

}  // namespace bench
