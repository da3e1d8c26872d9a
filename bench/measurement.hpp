// One measurement of imgate-bench: the client, the JSON report being built,
// progress on stderr, CPU marks; and the helpers every mode shares (the gateway's
// /system/state, push bodies). Used by modes.cpp and history_modes.cpp.
#pragma once

#include <openssl/err.h>
#include <openssl/x509.h>

#include <boost/json/object.hpp>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "client.hpp"
#include "histogram.hpp"
#include "http.hpp"
#include "options.hpp"
#include "probe.hpp"

namespace bench {

namespace json = boost::json;

constexpr double kNs = 1e9;

// JSON with plain decimals (Boost.JSON writes doubles as 1.5E3).
void write_json(std::string& out, const json::value& v);
json::object latency_json(const Histogram& h);
std::string latency_line(const Histogram& h);
// The report's "messages" of a Pusher run: `requested` messages at `target_rate`
// per second, sent over `send_seconds`.
json::object messages_json(const Pusher::Result& r, uint64_t requested, double send_seconds,
                           double target_rate);

// One measurement: the client, the report being built, progress output.
class Run {
 public:
  explicit Run(const Options& opts) : o(opts), client(opts), t0(now_ns()) {
    out["mode"] = opts.mode_name;
    out["threads"] = client.threads();
    out["gateway_pid"] = opts.gateway_pid;
    out["load_average_before"] = load_average();
    if (opts.tls) {
      out["tls"] = json::object{
          {"ca", opts.tls_ca}, {"insecure", opts.tls_insecure}, {"resume", opts.tls_resume}};
    }
  }

  const Options& o;
  Client client;
  json::object out;
  int64_t t0;

  // CPU used by the gateway, by this generator and by each --cpu-pid process
  // since the last mark(): shows which side saturated the cores during a phase.
  void mark_cpu() {
    cpu_mark_ns = now_ns();
    gw_cpu_mark = cpu_seconds(o.gateway_pid);
    self_cpu_mark = cpu_seconds(0);
    watched_cpu_marks.clear();
    for (const WatchedProcess& p : o.cpu_pids) watched_cpu_marks.push_back(cpu_seconds(p.pid));
  }
  json::object cpu_json() const {
    const double wall = static_cast<double>(now_ns() - cpu_mark_ns) / kNs;
    const double gw = o.gateway_pid ? cpu_seconds(o.gateway_pid) - gw_cpu_mark : -1;
    const double self = cpu_seconds(0) - self_cpu_mark;
    json::object j{{"wall_seconds", wall},
                   {"gateway_cpu_seconds", gw},
                   {"generator_cpu_seconds", self},
                   {"gateway_cores", wall > 0 && gw >= 0 ? gw / wall : -1},
                   {"generator_cores", wall > 0 ? self / wall : -1}};
    for (std::size_t i = 0; i < o.cpu_pids.size() && i < watched_cpu_marks.size(); ++i) {
      const double now = cpu_seconds(o.cpu_pids[i].pid);
      const double used = now >= 0 && watched_cpu_marks[i] >= 0 ? now - watched_cpu_marks[i] : -1;
      j[o.cpu_pids[i].name + "_cpu_seconds"] = used;
      j[o.cpu_pids[i].name + "_cores"] = wall > 0 && used >= 0 ? used / wall : -1;
    }
    return j;
  }
  std::string cpu_line() const {
    const json::object c = cpu_json();
    char line[160];
    std::snprintf(line, sizeof line, "cpu: gateway %.2f cores, generator %.2f cores",
                  c.at("gateway_cores").to_number<double>(),
                  c.at("generator_cores").to_number<double>());
    std::string text = line;
    for (const WatchedProcess& p : o.cpu_pids) {
      std::snprintf(line, sizeof line, ", %s %.2f cores", p.name.c_str(),
                    c.at(p.name + "_cores").to_number<double>());
      text += line;
    }
    std::snprintf(line, sizeof line, " (over %.1f s)", c.at("wall_seconds").to_number<double>());
    return text + line;
  }
  // Adds "<name>_cpu_us_per_<unit>" to a cpu_json() object for every
  // "<name>_cpu_seconds" in it (gateway, generator, each --cpu-pid): CPU
  // microseconds (user + system, /proc/<pid>/stat) per unit of work.
  // Returns a line for the human summary.
  static std::string per_unit(json::object& cpu, uint64_t units, const char* unit,
                              const char* plural) {
    const std::string seconds_suffix = "_cpu_seconds";
    const std::string suffix = std::string("_cpu_us_per_") + unit;
    std::vector<std::pair<std::string, json::value>> per;  // gateway, generator, then the others
    for (const auto& [key, value] : cpu) {
      const std::string k(key);
      if (k.size() <= seconds_suffix.size() ||
          k.compare(k.size() - seconds_suffix.size(), std::string::npos, seconds_suffix) != 0) {
        continue;
      }
      const double used = value.to_number<double>();
      json::value v = nullptr;
      if (units > 0 && used >= 0) v = used * 1e6 / static_cast<double>(units);
      per.emplace_back(k.substr(0, k.size() - seconds_suffix.size()), v);
    }
    std::string text = std::string("cpu per ") + unit + ":";
    char part[120];
    for (const auto& [name, v] : per) {
      cpu[name + suffix] = v;
      if (v.is_double()) {
        std::snprintf(part, sizeof part, " %s %.2f us,", name.c_str(), v.get_double());
      } else {
        std::snprintf(part, sizeof part, " %s unknown%s,", name.c_str(),
                      name == "gateway" ? " (no --pid)" : "");
      }
      text += part;
    }
    if (text.back() == ',') text.pop_back();
    std::snprintf(part, sizeof part, " (%" PRIu64 " %s)", units, plural);
    return text + part;
  }
  int64_t cpu_mark_ns = 0;
  double gw_cpu_mark = 0, self_cpu_mark = 0;
  std::vector<double> watched_cpu_marks;  // by o.cpu_pids

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
    std::string tls_line;
    if (o.tls) {
      // With --tls-resume every setup but each worker's first is offered a
      // session: gateway_cpu_us_per_setup is then the cost of a resumed one.
      const uint64_t full = t.tls_full - before.tls_full;
      const uint64_t resumed = t.tls_resumed - before.tls_resumed;
      j["tls"] = json::object{{"full_handshakes", full},
                              {"resumed_handshakes", resumed},
                              {"version", t.tls_version ? t.tls_version : ""},
                              {"cipher", t.tls_cipher ? t.tls_cipher : ""}};
      char line[200];
      std::snprintf(
          line, sizeof line, "  TLS handshakes: %" PRIu64 " full, %" PRIu64 " resumed (%s, %s)\n",
          full, resumed, t.tls_version ? t.tls_version : "-", t.tls_cipher ? t.tls_cipher : "-");
      tls_line = line;
    }
    json::object cpu = cpu_json();
    const std::string per_setup = per_unit(cpu, s.logged_in, "setup", "setups");
    j["cpu"] = std::move(cpu);
    out["setup"] = std::move(j);
    std::printf("%s: %" PRIu64 " logged in (of %" PRIu64 " started) in %.2f s (%.0f/s), %" PRIu64
                " failed%s%s\n",
                phase, s.logged_in, t.started - before.started, s.seconds,
                s.seconds > 0 ? static_cast<double>(s.logged_in) / s.seconds : 0.0, s.failed,
                s.stopped.empty() ? "" : "; stopped early: ", s.stopped.c_str());
    std::printf("  %s\n  %s\n%s", cpu_line().c_str(), per_setup.c_str(), tls_line.c_str());
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
    if (t.tls_last_error || t.tls_last_verify) {
      char error[256] = "";
      if (t.tls_last_error) ERR_error_string_n(t.tls_last_error, error, sizeof error);
      const char* verify = t.tls_last_verify
                               ? X509_verify_cert_error_string(static_cast<long>(t.tls_last_verify))
                               : "";
      out["tls_last_error"] = error;
      out["tls_last_verify_error"] = verify;
      std::printf("last TLS handshake failure: %s%s%s\n", error, *verify ? "; certificate: " : "",
                  verify);
    }
  }

  int finish(int status) {
    out["client_rss_kb"] = proc_memory(0).rss_kb;
    out["seconds"] = since_start();
    if (o.tls) {
      const Totals t = client.totals();
      json::object& tls = out["tls"].as_object();
      tls["full_handshakes"] = t.tls_full;
      tls["resumed_handshakes"] = t.tls_resumed;
    }
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
