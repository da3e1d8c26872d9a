// The modes of a many-node run (bench/run cluster), one process per role, so
// that each stays below its descriptor limit:
//   members: holds -n connections on one node and counts what reaches them,
//            reporting a phase on each `mark` command read from stdin;
//   push:    room or cross-node unicast pushes, spread over the nodes' HTTP APIs;
//   offline: SIGKILLs a node and polls a survivor (/user/online, /user/list)
//            until that node's users are gone.
#include <signal.h>

#include <algorithm>
#include <boost/json/parse.hpp>
#include <cinttypes>
#include <cstdio>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>

#include "client.hpp"
#include "http.hpp"
#include "measurement.hpp"
#include "modes.hpp"
#include "probe.hpp"

namespace bench {

namespace {

// One more JSON line on stdout and in --json-out: a phase, before the run's
// final line (Run::finish).
void emit(const Options& o, const json::object& line) {
  std::string text;
  write_json(text, line);
  std::printf("%s\n", text.c_str());
  std::fflush(stdout);
  if (!o.json_out.empty()) std::ofstream(o.json_out, std::ios::app) << text << "\n";
}

// The histogram as [[upper bound ns, count], ...], so that the phases of
// several processes can be merged into one set of quantiles.
json::array buckets_json(const Histogram& h) {
  json::array out;
  h.for_each_bucket([&out](uint64_t upper, uint64_t count) {
    out.push_back(json::array{upper, count});
  });
  return out;
}

json::object failures_json(const Totals& t) {
  json::object fails;
  for (std::size_t i = 0; i < t.fails.size(); ++i) {
    if (t.fails[i]) fails[fail_name(static_cast<Fail>(i))] = t.fails[i];
  }
  return fails;
}

}  // namespace

// ---- members ---------------------------------------------------------------

// Commands, one a line on stdin:
//   mark NAME [EXPECTED]  report the deliveries since the last mark as phase
//                         NAME; with EXPECTED, first wait until that many
//                         arrived or --drain-timeout passes without one
//   end (or end of input) close the connections and finish
int run_members(const Options& o) {
  if (!must_state(o)) return 2;
  Run run(o);
  const ProcMemory gw0 = proc_memory(o.gateway_pid);
  const ProcMemory self0 = proc_memory(0);
  Job job;
  job.count = o.connections;
  job.rate = o.connect_rate;
  job.inflight = o.inflight;
  job.app_of = [&o](uint64_t i) { return spread_app(o, i / o.conns_per_user); };
  const Run::Setup setup = run.setup(job, "connect");
  run.client.heartbeats(true);

  const Totals held = run.client.totals();
  const ProcMemory gw1 = proc_memory(o.gateway_pid);
  const ProcMemory self1 = proc_memory(0);
  auto per_conn = [&held](int64_t before, int64_t after) -> json::value {
    if (held.held == 0 || before < 0 || after < 0) return nullptr;
    return static_cast<double>((after - before) * 1024) / static_cast<double>(held.held);
  };
  emit(o, json::object{{"mode", "members"},
                       {"phase", "setup"},
                       {"held", held.held},
                       {"setup", run.out.at("setup")},
                       {"gateway_rss_before_kb", gw0.rss_kb},
                       {"gateway_rss_held_kb", gw1.rss_kb},
                       {"gateway_bytes_per_connection", per_conn(gw0.rss_kb, gw1.rss_kb)},
                       {"client_bytes_per_connection", per_conn(self0.rss_kb, self1.rss_kb)},
                       {"failures", failures_json(held)}});

  Totals at_mark = held;
  run.client.reset_latency();
  run.mark_cpu();
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream words(line);
    std::string command, phase;
    words >> command >> phase;
    if (command == "end") break;
    if (command != "mark" || phase.empty()) {
      std::fprintf(stderr, "imgate-bench members: unknown command '%s' (mark NAME [N], end)\n",
                   line.c_str());
      continue;
    }
    uint64_t expected = 0;
    const bool expecting = static_cast<bool>(words >> expected);
    const int64_t wait_start = now_ns();
    if (expecting) {
      uint64_t last_seen = run.client.totals().msgs;
      int64_t last_progress = now_ns();
      const auto quiet_limit = static_cast<int64_t>(o.drain_timeout * kNs);
      run.wait(o.drain_timeout * 10, "drain", [&] {
        const uint64_t seen = run.client.totals().msgs;
        if (seen != last_seen) {
          last_seen = seen;
          last_progress = now_ns();
        }
        return seen - at_mark.msgs >= expected || now_ns() - last_progress > quiet_limit;
      });
    }
    const Totals t = run.client.totals();
    const Histogram latency = run.client.latency();
    const uint64_t got = t.msgs - at_mark.msgs;
    json::object report{{"mode", "members"},
                        {"phase", phase},
                        {"held", t.held},
                        {"deliveries", got},
                        {"wait_seconds", static_cast<double>(now_ns() - wait_start) / kNs},
                        {"presence_frames", t.presence - at_mark.presence},
                        {"reordered", t.reordered - at_mark.reordered},
                        {"malformed", t.bad_msgs - at_mark.bad_msgs},
                        {"latency", latency_json(latency)},
                        {"latency_buckets", buckets_json(latency)},
                        {"gateway_rss_kb", proc_memory(o.gateway_pid).rss_kb},
                        {"client_rss_kb", proc_memory(0).rss_kb},
                        {"cpu", run.cpu_json()},
                        {"failures", failures_json(t)}};
    if (expecting) {
      report["expected"] = expected;
      report["lost"] = expected > got ? expected - got : 0;
      report["extra"] = got > expected ? got - expected : 0;
    }
    if (got) report["last_delivery_ns"] = t.last_delivery_ns;
    emit(o, report);
    at_mark = t;
    run.client.reset_latency();
    run.mark_cpu();
  }

  run.teardown();
  run.report_failures();
  run.out["held"] = held.held;
  const bool ok = setup.failed == 0 && setup.stopped.empty() && setup.logged_in == o.connections;
  return run.finish(ok ? 0 : 1);
}

// ---- push ------------------------------------------------------------------

// One Pusher per node (--node-http-ports, else --http-port), each sending its
// share of the messages at its share of the rate, in its own thread.
int run_push(const Options& o) {
  std::vector<uint16_t> ports = o.node_http_ports;
  if (ports.empty()) ports.push_back(o.http_port);
  const std::size_t nodes = ports.size();
  if (o.cross_node && (nodes < 2 || o.node_users == 0)) {
    std::fprintf(stderr, "imgate-bench push --cross-node: needs two --node-http-ports or more "
                         "and --node-users\n");
    return 2;
  }
  Run run(o);
  const uint64_t count = o.messages ? o.messages : static_cast<uint64_t>(o.rate * o.duration);
  const std::string path = o.cross_node ? "/user/sendMessage" : "/user/sendMessageAll";
  const std::string tag = run_tag();
  const double limit =
      (o.rate > 0 ? static_cast<double>(count) / o.rate : 0) + o.drain_timeout + 30;
  std::vector<Options> per(nodes, o);
  std::vector<std::vector<uint64_t>> to(nodes, std::vector<uint64_t>(nodes, 0));  // [from][to]
  std::vector<Pusher::Result> results(nodes);
  std::vector<std::thread> threads;
  run.mark_cpu();
  for (std::size_t i = 0; i < nodes; ++i) {
    per[i].http_port = ports[i];
    const uint64_t share = count / nodes + (i < count % nodes ? 1 : 0);
    threads.emplace_back([&, i, share] {
      std::mt19937_64 rng(static_cast<uint64_t>(now_ns()) + i);
      // Pushes are numbered across the senders (msgID and text): sender i
      // sends i + 1, i + 1 + nodes, ...
      Pusher::MakeBody make = [&, i](uint64_t no, int64_t ns) {
        const uint64_t global = (no - 1) * nodes + i + 1;
        if (!o.cross_node) return form_body(per[i], o.app_base, o.sender, tag, global, ns);
        const std::size_t target = (i + 1 + rng() % (nodes - 1)) % nodes;
        const uint64_t user = rng() % o.node_users;
        ++to[i][target];
        return form_body(per[i], spread_app(o, user),
                         o.user_prefix + std::to_string(target) + "-" + std::to_string(user), tag,
                         global, ns);
      };
      Pusher pusher(per[i], path, share, o.rate / static_cast<double>(nodes), make);
      results[i] =
          pusher.run(limit, i == 0 ? std::function<void()>([&run] { run.progress("send"); })
                                   : std::function<void()>());
    });
  }
  for (std::thread& t : threads) t.join();

  Pusher::Result all;
  json::array from_node, to_node;
  for (std::size_t i = 0; i < nodes; ++i) {
    const Pusher::Result& r = results[i];
    all.sent += r.sent;
    all.delivered_ok += r.delivered_ok;
    all.not_online += r.not_online;
    all.errors += r.errors;
    all.reconnects += r.reconnects;
    all.skipped += r.skipped;
    all.max_backlog = std::max(all.max_backlog, r.max_backlog);
    all.deadline_hit = all.deadline_hit || r.deadline_hit;
    if (r.first_ns && (all.first_ns == 0 || r.first_ns < all.first_ns)) all.first_ns = r.first_ns;
    all.last_ns = std::max(all.last_ns, r.last_ns);
    all.done_ns = std::max(all.done_ns, r.done_ns);
    all.api_latency.merge(r.api_latency);
    from_node.push_back(r.sent);
    uint64_t received = 0;
    for (std::size_t from = 0; from < nodes; ++from) received += to[from][i];
    to_node.push_back(received);
  }
  const double send_seconds = static_cast<double>(all.last_ns - all.first_ns) / kNs;
  json::object cpu = run.cpu_json();
  const std::string per_message = Run::per_unit(cpu, all.sent, "message", "messages");
  run.out["path"] = path;
  run.out["nodes"] = nodes;
  json::object messages = messages_json(all, count, send_seconds, o.rate);
  messages["first_ns"] = all.first_ns;
  messages["last_ns"] = all.last_ns;
  messages["done_ns"] = all.done_ns;
  run.out["messages"] = std::move(messages);
  run.out["from_node"] = std::move(from_node);
  if (o.cross_node) run.out["to_node"] = std::move(to_node);
  run.out["cpu"] = std::move(cpu);
  std::printf("%s: %" PRIu64 " sent through %zu nodes in %.2f s (%.0f/s, target %.0f/s), %" PRIu64
              " skipped, %" PRIu64 " not online, %" PRIu64 " HTTP errors; API %s\n%s\n",
              path.c_str(), all.sent, nodes, send_seconds,
              send_seconds > 0 ? static_cast<double>(all.sent - 1) / send_seconds : 0.0, o.rate,
              all.skipped, all.not_online, all.errors, latency_line(all.api_latency).c_str(),
              per_message.c_str());
  const bool ok = all.errors == 0 && !all.deadline_hit && all.not_online == 0;
  return run.finish(ok ? 0 : 1);
}

// ---- offline ---------------------------------------------------------------

namespace {

// The userIDs of room --app-base listed by the node on `port` that start with
// --user-prefix; nullopt (with `error`) if the answer is not a list. Up to 60 s:
// a room of 10^6 users is a ~15 MB answer from a node on busy cores.
std::optional<std::vector<std::string>> listed_users(const Options& o, uint16_t port,
                                                     std::string& error) {
  const auto body =
      http_get(o, port, "/user/list?appID=" + std::to_string(o.app_base), 60, error);
  if (!body) return std::nullopt;
  boost::system::error_code ec;
  const json::value v = json::parse(*body, ec);
  const json::value* list = nullptr;
  if (!ec && v.is_object()) {
    if (const json::value* data = v.get_object().if_contains("data"); data && data->is_object()) {
      list = data->get_object().if_contains("userList");
    }
  }
  if (!list || !list->is_array()) {
    error = "/user/list: no data.userList in " + body->substr(0, 120);
    return std::nullopt;
  }
  std::vector<std::string> ids;
  for (const json::value& u : list->get_array()) {
    if (u.is_string() && u.get_string().starts_with(o.user_prefix)) {
      ids.emplace_back(u.get_string());
    }
  }
  return ids;
}

// How many of `users` /user/online (room --app-base) calls online; nullopt on an error.
std::optional<std::size_t> online_users(const Options& o, const std::vector<std::string>& users,
                                        std::string& error) {
  std::size_t n = 0;
  for (const std::string& user : users) {
    const auto body = http_get(o, o.http_port,
                               "/user/online?appID=" + std::to_string(o.app_base) +
                                   "&userID=" + user,
                               10, error);
    if (!body) return std::nullopt;
    if (body->find("\"online\":true") != std::string::npos) {
      ++n;
    } else if (body->find("\"online\":false") == std::string::npos) {
      error = "/user/online: " + body->substr(0, 120);
      return std::nullopt;
    }
  }
  return n;
}

}  // namespace

// /user/list of a room of 100,000+ users is a large SMEMBERS on every poll;
// the node's users leave in one reap script, so the loop polls /user/online
// for three of them (the first, middle and last listed) and, once all three
// are offline, confirms with /user/list that none is left (if some are, it
// polls /user/list from then on).
int run_offline(const Options& o) {
  Run run(o);
  std::string error;
  const auto before = listed_users(o, o.http_port, error);
  if (!before) {
    std::fprintf(stderr, "imgate-bench offline: %s\n", error.c_str());
    return 2;
  }
  std::vector<std::string> probes;
  if (!before->empty()) {
    probes = {before->front(), (*before)[before->size() / 2], before->back()};
  }
  run.out["listed_before"] = before->size();
  run.mark_cpu();
  const int64_t t0 = now_ns();
  if (o.kill_pid && ::kill(o.kill_pid, SIGKILL) != 0) {
    std::perror("imgate-bench offline: kill");
    return 2;
  }
  // An answer reflects Redis at some moment between the request and the
  // response: the users left after the last request that still found one and
  // before the first response that found none.
  json::array series;  // every change: {"ms": since the kill, "probes_online" or "listed": n}
  Histogram poll_time;
  uint64_t polls = 0, errors = 0, last = UINT64_MAX;
  int64_t last_seen_ns = t0, gone_ns = 0;
  const int64_t end = t0 + static_cast<int64_t>(o.duration * kNs);
  auto note = [&](const char* what, uint64_t n, int64_t at) {
    if (n == last) return;
    series.push_back(json::object{{"ms", static_cast<double>(at - t0) / 1e6}, {what, n}});
    last = n;
  };
  while (now_ns() < end && !before->empty()) {
    const int64_t asked = now_ns();
    ++polls;
    if (!probes.empty()) {
      const auto n = online_users(o, probes, error);
      const int64_t answered = now_ns();
      poll_time.record(static_cast<uint64_t>(answered - asked));
      if (!n) {
        ++errors;
      } else if (*n > 0) {
        note("probes_online", *n, answered);
        last_seen_ns = asked;
      } else {
        note("probes_online", 0, answered);
        probes.clear();  // confirm with the whole list, right now
        gone_ns = answered;
        last = UINT64_MAX;
        continue;
      }
    } else {
      const auto ids = listed_users(o, o.http_port, error);
      const int64_t answered = now_ns();
      poll_time.record(static_cast<uint64_t>(answered - asked));
      if (!ids) {
        ++errors;
      } else {
        note("listed", ids->size(), answered);
        if (ids->empty()) {
          if (gone_ns == 0) gone_ns = answered;  // else: the probes' answer, confirmed
          break;
        }
        gone_ns = 0;
        last_seen_ns = asked;
      }
    }
    if (polls % static_cast<uint64_t>(std::max(1.0, 1.0 / o.poll_interval)) == 0) {
      run.progress("offline");
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(o.poll_interval));
  }
  if (last != 0) gone_ns = 0;  // never confirmed by an empty list
  // Everywhere: every other node answers from the same Redis; ask each once.
  json::array others;
  bool everywhere = gone_ns != 0;
  for (const uint16_t port : o.node_http_ports) {
    if (port == o.http_port) continue;
    const auto ids = listed_users(o, port, error);
    others.push_back(json::object{{"http_port", port},
                                  {"listed", ids ? json::value(ids->size()) : nullptr}});
    everywhere = everywhere && ids && ids->empty();
  }
  run.out["killed_pid"] = o.kill_pid;
  run.out["offline"] = json::object{
      {"gone", gone_ns != 0},
      {"seconds", gone_ns ? json::value(static_cast<double>(gone_ns - t0) / kNs) : nullptr},
      {"last_listed_seconds", static_cast<double>(last_seen_ns - t0) / kNs},
      {"polls", polls},
      {"poll_errors", errors},
      {"poll_time", latency_json(poll_time)},
      {"series", std::move(series)},
      {"other_nodes", std::move(others)},
      {"everywhere", everywhere}};
  run.out["cpu"] = run.cpu_json();
  if (gone_ns) {
    std::printf("offline: the %zu users of '%s' unlisted %.2f s after the kill (still "
                "listed at %.2f s); %" PRIu64 " polls, each %s\n",
                before->size(), o.user_prefix.c_str(), static_cast<double>(gone_ns - t0) / kNs,
                static_cast<double>(last_seen_ns - t0) / kNs, polls,
                latency_line(poll_time).c_str());
  } else {
    std::printf("offline: the users of '%s' (%zu before the kill) still listed after %.0f s\n",
                o.user_prefix.c_str(), before->size(), o.duration);
  }
  return run.finish(everywhere ? 0 : 1);
}

}  // namespace bench
