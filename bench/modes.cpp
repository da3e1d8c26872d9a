#include "modes.hpp"

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <random>
#include <thread>

#include "client.hpp"
#include "http.hpp"
#include "measurement.hpp"
#include "probe.hpp"

namespace bench {

namespace {

uint64_t mix(uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
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
  std::optional<ApiProbe> probe;
  if (o.api_probe > 0) {
    probe.emplace(o, o.api_probe,
                  "appID=" + std::to_string(o.app_base) + "&userID=" + o.sender +
                      "-probe&message=probe");
  }
  Pusher::Result res = pusher.run(limit, [&] { run.progress("send"); });
  if (probe) {
    const ApiProbe::Result api = probe->stop();
    run.out["api_probe"] = json::object{{"rate", o.api_probe},
                                        {"errors", api.errors},
                                        {"system_state", latency_json(api.state)},
                                        {"send_message", latency_json(api.send)}};
    std::printf("API while sending (%.0f requests/s, %" PRIu64 " errors): /system/state %s; "
                "/user/sendMessage %s\n",
                o.api_probe, api.errors, latency_line(api.state).c_str(),
                latency_line(api.send).c_str());
  }

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

  json::object messages = messages_json(res, count, send_seconds, o.rate);
  messages["send_for"] = o.send_for;
  run.out["messages"] = std::move(messages);
  run.out["deliveries"] = json::object{
      {"expected", d.expected},
      {"received", d.received},
      {"lost", d.lost > 0 ? d.lost : 0},
      {"extra", d.lost < 0 ? -d.lost : 0},
      {"reordered", t.reordered},
      {"malformed", t.bad_msgs},
      {"seconds", d.seconds},
      {"per_second", d.seconds > 0 ? static_cast<double>(d.received) / d.seconds : 0},
      {"gateway_cpu_us_per_delivery", cpu_sending.at("gateway_cpu_us_per_delivery")},
      {"generator_cpu_us_per_delivery", cpu_sending.at("generator_cpu_us_per_delivery")},
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
