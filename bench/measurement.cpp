#include "measurement.hpp"

#include <unistd.h>

#include <boost/json/serialize.hpp>
#include <cmath>

namespace bench {

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

json::object messages_json(const Pusher::Result& r, uint64_t requested, double send_seconds,
                           double target_rate) {
  return json::object{
      {"requested", requested},
      {"sent", r.sent},
      {"send_seconds", send_seconds},
      {"send_rate", send_seconds > 0 ? static_cast<double>(r.sent - 1) / send_seconds : 0},
      {"target_rate", target_rate},
      {"answered_delivered", r.delivered_ok},
      {"answered_not_online", r.not_online},
      {"http_errors", r.errors},
      {"max_backlog", r.max_backlog},
      {"skipped", r.skipped},
      {"deadline_hit", r.deadline_hit},
      {"api_latency", latency_json(r.api_latency)}};
}

std::string latency_line(const Histogram& h) {
  char line[200];
  std::snprintf(line, sizeof line,
                "p50 %.0f us, p90 %.0f us, p99 %.0f us, p99.9 %.0f us, max %.0f us",
                h.quantile(0.5) / 1e3, h.quantile(0.9) / 1e3, h.quantile(0.99) / 1e3,
                h.quantile(0.999) / 1e3, static_cast<double>(h.max()) / 1e3);
  return line;
}

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

std::string form_body(const Options& o, uint32_t app, const std::string& user,
                      const std::string& tag, uint64_t no, int64_t sent_ns) {
  std::string body = "appID=" + std::to_string(app) + "&userID=" + user;
  if (o.msg_ids) body += "&msgID=" + tag + "-" + std::to_string(no);
  const std::size_t text_start = body.size() + 9;  // after "&message="
  body += "&message=T" + std::to_string(sent_ns) + "." + std::to_string(no);
  if (const std::size_t text = body.size() - text_start; text < o.message_bytes) {
    body.append(o.message_bytes - text, 'x');  // parsing stops at the number
  }
  return body;
}

}  // namespace bench
