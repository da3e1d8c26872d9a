// The modes that need a gateway with history on (docs/history.md):
//   recovery: members drop at once, pushes go to the room meanwhile, all come
//             back with data.recover; how long until every one has all it missed;
//   fill:     pushes to empty rooms, for the memory each kept push costs.
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <thread>

#include "client.hpp"
#include "http.hpp"
#include "measurement.hpp"
#include "modes.hpp"
#include "probe.hpp"

namespace bench {

namespace {

constexpr const char* kRoomPush = "/user/sendMessageAll";

// Sends `count` room pushes as fast as the API answers (rate 0), bounded.
Pusher::Result push_all(Run& run, uint64_t count, const Pusher::MakeBody& make) {
  Pusher pusher(run.o, kRoomPush, count, 0, make);
  const double limit = static_cast<double>(count) / 1000.0 + run.o.drain_timeout + 30;
  return pusher.run(limit, [&] { run.progress("push"); });
}

json::object pushes_json(const Pusher::Result& r) {
  return json::object{{"sent", r.sent},
                      {"answered", r.delivered_ok + r.not_online},
                      {"http_errors", r.errors},
                      {"deadline_hit", r.deadline_hit},
                      {"seconds", static_cast<double>(r.done_ns - r.first_ns) / kNs},
                      {"last_offset", r.max_offset},
                      {"epoch", r.epoch},
                      {"api_latency", latency_json(r.api_latency)}};
}

// Milliseconds at quantile q of sorted nanosecond values.
double ms_at(const std::vector<int64_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  const auto i = static_cast<std::size_t>(q * static_cast<double>(sorted.size() - 1) + 0.5);
  return static_cast<double>(sorted[std::min(i, sorted.size() - 1)]) / 1e6;
}

// What the reconnected clients got, checked against what each one missed.
struct RecoveryCheck {
  uint64_t expected = 0, received = 0, duplicates = 0, gaps = 0, foreign = 0;
  uint64_t recovered_true = 0, recovered_false = 0, recovered_absent = 0;
  uint64_t caught_up = 0, wrong_clients = 0;  // wrong: any count off, or not recovered: true
  std::vector<int64_t> catch_up_ns;           // per client, from the first reconnect
};

RecoveryCheck check_recovery(const StreamTracker& tracker, const std::vector<uint64_t>& missed,
                             int64_t start_ns) {
  RecoveryCheck c;
  for (std::size_t i = 0; i < tracker.seen.size(); ++i) {
    const StreamSeen& s = tracker.seen[i];
    c.expected += missed[i];
    c.received += s.received;
    c.duplicates += s.duplicates;
    c.gaps += s.gaps;
    c.foreign += s.foreign;
    if (s.recovered == 1) {
      ++c.recovered_true;
    } else if (s.recovered == 0) {
      ++c.recovered_false;
    } else {
      ++c.recovered_absent;
    }
    if (s.caught_up_ns) {
      ++c.caught_up;
      c.catch_up_ns.push_back(s.caught_up_ns - start_ns);
    }
    const bool right = s.received == missed[i] && s.duplicates == 0 && s.gaps == 0 &&
                       s.foreign == 0 && s.recovered == 1 && s.caught_up_ns != 0;
    if (!right) ++c.wrong_clients;
  }
  std::sort(c.catch_up_ns.begin(), c.catch_up_ns.end());
  return c;
}

}  // namespace

// ---- recovery --------------------------------------------------------------

int run_recovery(const Options& o) {
  auto base = must_state(o);
  if (!base) return 2;
  Run run(o);
  StreamTracker tracker;
  tracker.seen.resize(o.connections);
  const auto room = [&o](uint64_t) { return o.app_base; };
  const std::string tag = run_tag();
  // Each batch numbers its pushes from 1: its own msgID prefix, or the
  // gateway's de-duplication answers the second batch's first push as a repeat.
  auto make_batch = [&o, &tag](std::string batch) {
    return [&o, id = tag + batch](uint64_t no, int64_t ns) {
      return form_body(o, o.app_base, o.sender, id, no, ns);
    };
  };

  // 1. -n members log in and each receives a first push: its position.
  Job join;
  join.count = o.connections;
  join.rate = o.connect_rate;
  join.inflight = o.inflight;
  join.app_of = room;
  join.streams = &tracker;
  const Run::Setup setup = run.setup(join, "connect");
  const uint64_t members = run.client.totals().held;
  run.out["members"] = members;
  const uint64_t seen0 = run.client.totals().stream_msgs;
  const Pusher::Result first = push_all(run, 1, make_batch("f"));
  const bool all_first = run.wait(
      o.drain_timeout, "first", [&] { return run.client.totals().stream_msgs - seen0 >= members; });
  run.out["first_push"] = pushes_json(first);
  if (!all_first) {
    const Totals t = run.client.totals();
    std::printf(
        "first push: reached %" PRIu64 " of %" PRIu64 " members with an offset (%" PRIu64
        " msg pushes in all)%s\n",
        t.stream_msgs - seen0, members, t.msgs,
        t.msgs > 0 && t.stream_msgs == 0 ? ": no offsets, is history on (--history-size)?" : "");
  }

  // 2. All drop at once (FIN, no close frame); the gateway must have seen it.
  run.client.close_held(false);
  run.wait(o.close_timeout, "drop", [&] { return run.client.totals().open_sockets == 0; });
  const auto after_drop = await_state(run, *base, o.drain_timeout);
  const bool dropped = after_drop && *after_drop == *base;

  // 3. --missed pushes while nobody is there.
  const Pusher::Result missed_pushes = push_all(run, o.missed, make_batch("m"));
  run.out["missed_pushes"] = pushes_json(missed_pushes);
  run.client.sync();  // the workers' writes to `tracker` are visible from here
  const uint64_t target = missed_pushes.max_offset;
  std::vector<uint64_t> missed(tracker.seen.size(), 0);
  uint64_t positioned = 0;
  for (std::size_t i = 0; i < tracker.seen.size(); ++i) {
    StreamSeen& s = tracker.seen[i];
    if (s.offset > 0) ++positioned;
    missed[i] = target > s.offset ? target - s.offset : 0;
    s.received = s.duplicates = s.gaps = s.foreign = 0;
    s.caught_up_ns = 0;
    s.recovered = -1;
  }
  tracker.target.store(target);

  // 4. All come back at once, each with its position: the recovery.
  Job back;
  back.count = o.connections;
  back.rate = o.connect_rate;
  back.inflight = o.inflight;
  back.app_of = room;
  back.streams = &tracker;
  back.recovering = true;
  back.source_offset = o.connections;  // new source ports, as a reconnecting client gets
  back.ws_port = o.reconnect_ws_port;  // another node (cluster mode), or the same
  back.login_extra = [&tracker](uint64_t i) {
    const StreamSeen& s = tracker.seen[i];
    return R"(,"recover":{"room":{"epoch":")" + s.epoch + R"(","offset":)" +
           std::to_string(s.offset) + "}}";
  };
  json::value join_setup = run.out["setup"];
  const uint64_t caught0 = run.client.totals().caught_up;
  const Run::Setup re = run.setup(back, "reconnect");  // marks the CPU at the first reconnect
  const uint64_t back_in = run.client.totals().held;
  const bool all_caught_up = run.wait(o.drain_timeout, "recover", [&] {
    return run.client.totals().caught_up - caught0 >= back_in;
  });
  json::object cpu = run.cpu_json();
  const std::string cpu_line = run.cpu_line();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // duplicates, late extras
  run.client.sync();
  const RecoveryCheck c = check_recovery(tracker, missed, back.start_ns);
  const double seconds =
      c.catch_up_ns.empty() ? 0 : static_cast<double>(c.catch_up_ns.back()) / kNs;
  // The gateway's CPU over the recovery (connect, upgrade, login, replay), per
  // client and per replayed push.
  const std::string per_client = Run::per_unit(cpu, c.caught_up, "client", "clients");
  const double gw_cpu = cpu.at("gateway_cpu_seconds").to_number<double>();
  json::value per_push = nullptr;
  if (gw_cpu >= 0 && c.received > 0) per_push = gw_cpu * 1e6 / static_cast<double>(c.received);
  cpu["gateway_cpu_us_per_push"] = per_push;
  run.out["reconnect_setup"] = std::move(run.out["setup"]);
  run.out["setup"] = std::move(join_setup);

  run.out["recovery"] = json::object{
      {"clients", o.connections},
      {"reconnect_ws_port", o.reconnect_ws_port ? o.reconnect_ws_port : o.ws_port},
      {"positioned", positioned},
      {"logged_in", re.logged_in},
      {"caught_up", c.caught_up},
      {"all_caught_up", all_caught_up},
      {"seconds", seconds},
      {"per_client_ms", json::object{{"p50", ms_at(c.catch_up_ns, 0.5)},
                                     {"p90", ms_at(c.catch_up_ns, 0.9)},
                                     {"p99", ms_at(c.catch_up_ns, 0.99)},
                                     {"max", ms_at(c.catch_up_ns, 1.0)}}},
      {"pushes_expected", c.expected},
      {"pushes_received", c.received},
      {"pushes_per_second", seconds > 0 ? static_cast<double>(c.received) / seconds : 0},
      {"duplicates", c.duplicates},
      {"gaps", c.gaps},
      {"foreign_epoch", c.foreign},
      {"recovered_true", c.recovered_true},
      {"recovered_false", c.recovered_false},
      {"recovered_absent", c.recovered_absent},
      {"wrong_clients", c.wrong_clients},
      {"gateway_cpu_us_per_client", cpu.at("gateway_cpu_us_per_client")},
      {"gateway_cpu_us_per_push", per_push},
      {"cpu", cpu}};
  std::printf("first push: epoch %s offset %" PRIu64 ", %" PRIu64 " of %" PRIu64
              " members have a position; dropped all (gateway back to baseline: %s)\n",
              first.epoch.c_str(), first.max_offset, positioned, members, dropped ? "yes" : "no");
  std::printf("missed: %" PRIu64 " pushes sent in %.3f s (last offset %" PRIu64 "), %" PRIu64
              " HTTP errors\n",
              missed_pushes.sent,
              static_cast<double>(missed_pushes.done_ns - missed_pushes.first_ns) / kNs, target,
              missed_pushes.errors);
  std::printf("recovery: %" PRIu64
              " of %u clients caught up in %.3f s from the first reconnect "
              "(per client p50 %.1f ms, p99 %.1f ms); %" PRIu64 " of %" PRIu64
              " missed pushes received, %" PRIu64 " duplicates, %" PRIu64 " gaps, %" PRIu64
              " of another epoch; recovered true %" PRIu64 ", false %" PRIu64 ", absent %" PRIu64
              "; %" PRIu64 " clients wrong\n",
              c.caught_up, o.connections, seconds, ms_at(c.catch_up_ns, 0.5),
              ms_at(c.catch_up_ns, 0.99), c.received, c.expected, c.duplicates, c.gaps, c.foreign,
              c.recovered_true, c.recovered_false, c.recovered_absent, c.wrong_clients);
  std::printf("  %s\n  %s\n", cpu_line.c_str(), per_client.c_str());
  if (per_push.is_double()) {
    std::printf("  gateway cpu per replayed push: %.2f us (connect + login included)\n",
                per_push.get_double());
  }

  run.teardown();
  run.report_failures();
  const bool ok = setup.failed == 0 && setup.stopped.empty() && re.failed == 0 &&
                  re.stopped.empty() && members == o.connections && all_first && dropped &&
                  missed_pushes.errors == 0 && !missed_pushes.deadline_hit &&
                  c.received == c.expected && c.expected == uint64_t{o.connections} * o.missed &&
                  c.wrong_clients == 0 && all_caught_up && run.client.totals().failures() == 0;
  return run.finish(ok ? 0 : 1);
}

// ---- fill ------------------------------------------------------------------

namespace {

struct HistoryGauges {
  double streams = -1, pushes = -1, bytes = -1, evictions = -1;
};

HistoryGauges history_gauges(const Options& o) {
  std::string error;
  HistoryGauges g;
  const auto metrics = gateway_metrics(o, error);
  if (!metrics) {
    std::fprintf(stderr, "imgate-bench: %s\n", error.c_str());
    return g;
  }
  g.streams = metric_value(*metrics, "imgate_history_streams");
  g.pushes = metric_value(*metrics, "imgate_history_pushes");
  g.bytes = metric_value(*metrics, "imgate_history_bytes");
  g.evictions = metric_value(*metrics, "imgate_history_evictions_total");
  return g;
}

json::object gauges_json(const HistoryGauges& g) {
  return json::object{
      {"streams", g.streams}, {"pushes", g.pushes}, {"bytes", g.bytes}, {"evictions", g.evictions}};
}

}  // namespace

int run_fill(const Options& o) {
  if (!must_state(o)) return 2;
  Run run(o);
  const uint32_t rooms = std::max<uint32_t>(1, o.apps);
  const uint64_t count = o.messages ? o.messages : uint64_t{rooms} * 100;
  const std::string tag = run_tag();
  // Warm up the API path (its buffers are not history), then the baseline.
  push_all(run, 1, [&o, &tag](uint64_t no, int64_t ns) {
    return form_body(o, o.app_base, o.sender, tag + "w", no, ns);
  });
  const HistoryGauges g0 = history_gauges(o);
  const ProcMemory gw0 = proc_memory(o.gateway_pid);
  run.mark_cpu();
  Pusher pusher(o, kRoomPush, count, o.rate, [&o, &tag, rooms](uint64_t no, int64_t ns) {
    return form_body(o, o.app_base + static_cast<uint32_t>((no - 1) % rooms), o.sender, tag, no,
                     ns);
  });
  const double limit =
      (o.rate > 0 ? static_cast<double>(count) / o.rate : static_cast<double>(count) / 1000.0) +
      o.drain_timeout + 30;
  const Pusher::Result res = pusher.run(limit, [&] { run.progress("fill"); });
  json::object cpu = run.cpu_json();
  const std::string per_message =
      Run::per_unit(cpu, res.delivered_ok + res.not_online, "message", "messages");
  const ProcMemory gw1 = proc_memory(o.gateway_pid);
  const HistoryGauges g1 = history_gauges(o);

  const double kept = g1.pushes >= 0 && g0.pushes >= 0 ? g1.pushes - g0.pushes : -1;
  const double rss_delta =
      gw0.rss_kb >= 0 && gw1.rss_kb >= 0 ? static_cast<double>(gw1.rss_kb - gw0.rss_kb) * 1024 : -1;
  auto per = [](double total, double n) -> json::value {
    if (total < 0 || n <= 0) return nullptr;
    return total / n;
  };
  const double sent = static_cast<double>(res.sent);
  const json::value rss_per_kept = per(rss_delta, kept);
  const json::value metric_per_kept = per(g1.bytes - g0.bytes, kept);
  run.out["fill"] = json::object{
      {"rooms", rooms},
      {"message_bytes", o.message_bytes},
      {"requested", count},
      {"pushes", pushes_json(res)},
      {"per_second", res.done_ns > res.first_ns
                         ? sent / (static_cast<double>(res.done_ns - res.first_ns) / kNs)
                         : 0}};
  run.out["history_before"] = gauges_json(g0);
  run.out["history_after"] = gauges_json(g1);
  run.out["gateway"] = json::object{{"rss_before_kb", gw0.rss_kb},
                                    {"rss_after_kb", gw1.rss_kb},
                                    {"rss_delta_bytes", rss_delta},
                                    {"stored_pushes", kept},
                                    {"rss_bytes_per_message", per(rss_delta, sent)},
                                    {"rss_bytes_per_stored_push", rss_per_kept},
                                    {"metric_bytes_per_stored_push", metric_per_kept}};
  run.out["cpu_while_sending"] = cpu;
  std::printf("fill: %" PRIu64 " pushes (%u rooms, %u-byte texts) in %.2f s, %" PRIu64
              " HTTP errors\n",
              res.sent, rooms, o.message_bytes,
              static_cast<double>(res.done_ns - res.first_ns) / kNs, res.errors);
  std::printf("history: %.0f -> %.0f pushes kept, %.0f -> %.0f bytes counted, %.0f evictions\n",
              g0.pushes, g1.pushes, g0.bytes, g1.bytes, g1.evictions);
  std::printf("gateway RSS: %" PRId64 " kB -> %" PRId64 " kB = %.0f bytes per push sent",
              gw0.rss_kb, gw1.rss_kb, sent > 0 ? rss_delta / sent : 0.0);
  if (rss_per_kept.is_double()) {
    std::printf(", %.0f per stored push (imgate_history_bytes: %.0f per stored push)",
                rss_per_kept.get_double(),
                metric_per_kept.is_double() ? metric_per_kept.get_double() : -1.0);
  }
  std::printf("\n%s\n", per_message.c_str());
  run.report_failures();
  const bool ok = res.errors == 0 && !res.deadline_hit && res.sent == count;
  return run.finish(ok ? 0 : 1);
}

}  // namespace bench
