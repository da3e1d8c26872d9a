#include "probe.hpp"

#include <unistd.h>

#include <boost/json/parse.hpp>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>

#include "http.hpp"

namespace bench {

namespace json = boost::json;

ProcMemory proc_memory(int pid) {
  ProcMemory m;
  std::ifstream in(pid ? "/proc/" + std::to_string(pid) + "/status"
                       : std::string("/proc/self/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) m.rss_kb = std::stoll(line.substr(6));
    if (line.rfind("VmHWM:", 0) == 0) m.hwm_kb = std::stoll(line.substr(6));
  }
  return m;
}

double cpu_seconds(int pid) {
  std::ifstream in(pid ? "/proc/" + std::to_string(pid) + "/stat" : std::string("/proc/self/stat"));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto paren = stat.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream fields(stat.substr(paren + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {  // fields 14 and 15: utime, stime (ticks)
    if (i == 14) utime = std::stod(field);
    if (i == 15) stime = std::stod(field);
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

int64_t tcp_mem_pages() {
  std::ifstream in("/proc/net/sockstat");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("TCP:", 0) != 0) continue;
    std::istringstream words(line);
    std::string word;
    while (words >> word) {
      if (word == "mem") {
        int64_t pages = -1;
        words >> pages;
        return pages;
      }
    }
  }
  return -1;
}

int64_t slab_kb() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Slab:", 0) == 0) return std::stoll(line.substr(5));
  }
  return -1;
}

double load_average() {
  std::ifstream in("/proc/loadavg");
  double load = -1;
  in >> load;
  return load;
}

namespace {
int64_t number_at(const json::object& obj, std::string_view key) {
  const json::value* v = obj.if_contains(key);
  if (!v) return -1;
  if (v->is_int64()) return v->get_int64();
  if (v->is_uint64()) return static_cast<int64_t>(v->get_uint64());
  return -1;
}
}  // namespace

std::optional<GatewayState> gateway_state(const Options& opts, std::string& error) {
  auto body = http_get(opts, opts.http_port, "/system/state", 5, error);
  if (!body) return std::nullopt;
  json::error_code ec;
  json::value root = json::parse(*body, ec);
  const json::object* data = nullptr;
  if (!ec && root.is_object()) {
    if (const json::value* d = root.get_object().if_contains("data"); d && d->is_object()) {
      data = &d->get_object();
    }
  }
  const json::value* manager = data ? data->if_contains("managerInfo") : nullptr;
  const json::value* own = data ? data->if_contains("imgate") : nullptr;
  if (!manager || !manager->is_object() || !own || !own->is_object()) {
    error = "unexpected /system/state body: " + body->substr(0, 200);
    return std::nullopt;
  }
  GatewayState s;
  s.clients = number_at(manager->get_object(), "clientsLen");
  s.users = number_at(manager->get_object(), "usersLen");
  s.rooms = number_at(own->get_object(), "roomsLen");
  s.sessions = number_at(own->get_object(), "sessions");
  if (const json::value* c = own->get_object().if_contains("counters"); c && c->is_object()) {
    s.counters = c->get_object();
  }
  return s;
}

std::optional<std::string> gateway_metrics(const Options& opts, std::string& error) {
  return http_get(opts, opts.http_port, "/metrics", 5, error);
}

double metric_value(std::string_view metrics, std::string_view name) {
  for (std::size_t pos = 0; pos < metrics.size();) {
    std::size_t eol = metrics.find('\n', pos);
    if (eol == std::string_view::npos) eol = metrics.size();
    const std::string_view line = metrics.substr(pos, eol - pos);
    if (line.size() > name.size() && line.starts_with(name) && line[name.size()] == ' ') {
      return std::strtod(std::string(line.substr(name.size() + 1)).c_str(), nullptr);
    }
    pos = eol + 1;
  }
  return -1;
}

json::object state_json(const GatewayState& s) {
  return json::object{{"clientsLen", s.clients},
                      {"usersLen", s.users},
                      {"roomsLen", s.rooms},
                      {"sessions", s.sessions}};
}

}  // namespace bench
