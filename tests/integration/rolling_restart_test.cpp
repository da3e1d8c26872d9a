// Rolling restart (issue 11, item 5; docs/cluster.md "Rolling restart"): three nodes in Redis
// mode on one real redis-server, 45 users spread over them in one room, a backend pushing to
// the room and to single users all along. A node gets SIGTERM; its clients are closed with
// 1001 and log in again on a surviving node (the test plays the client, as
// web/imgate-client.js does: with its stream positions when history is on); the node is
// started again and rejoins.
//
// Checked throughout: /user/list of the nodes in service never lists a userID twice, nor a
// name that is no user of the test. Once the node is gone: every node lists exactly the users,
// Redis holds each user on exactly the node its client is on (nothing stale of the node that
// left), and the users who stayed, keeping a list from their enter / exit pushes as the chat
// page does, list everybody. Once it is back: it is registered, subscribed, and lists exactly
// the users. With history on each node in turn is rolled; without, one.
//
// What a push sent during the restart is guaranteed to do:
//  - history on (--history-size): it reaches each user exactly once. A moved client got the
//    pushes before the close on the old node and recovers the rest on the new one; across its
//    connections the offsets of its room stream and of its own stream are consecutive from its
//    first login to the last push, none twice, none missing.
//  - history off: a push sent while a user is between two connections is lost for that user
//    (nothing keeps it; upstream's behaviour), so for the moved users only "at most once" holds
//    for the pushes of their gap. Every other push reaches every user exactly once: those
//    delivered before the SIGTERM (a marker proves it), those sent once everybody is back, and
//    all pushes to the users of the nodes that stayed.
//
// Synchronisation: bounded polling (eventually, wait_exit) and markers: a room push published
// after the others reaches each node after them, so a client holding the marker holds every
// push answered before it was sent. The backend and the poller are paced (kPace); that sets the
// load, it synchronises nothing.
#include <algorithm>
#include <array>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "gateway_process.hpp"
#include "redis_process.hpp"
#include "stream_helpers.hpp"
#include "ws_client.hpp"

namespace imgate::test {
namespace {
namespace json = boost::json;
using Clock = std::chrono::steady_clock;
using Names = std::vector<std::string>;

constexpr std::size_t kNodes = 3;
constexpr int kUsers = 45;
constexpr uint32_t kApp = 101;
constexpr uint16_t kGoingAway = 1001;
constexpr auto kPace = 1ms;  // between two pushes of the backend; between two polls of a node
// Pushes answered while a stopped node's clients are away (the JS client waits 0.25-0.5 s before
// its first retry); about a third of the unicasts among them go to those clients.
constexpr std::size_t kPushesWhileAway = 40;

// Faults seen on the helper threads, asserted on the test thread.
class Faults {
 public:
  void add(std::string what) {
    std::lock_guard lock(mu_);
    list_.push_back(std::move(what));
  }
  std::vector<std::string> list() const {
    std::lock_guard lock(mu_);
    return list_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> list_;
};

// The HTTP ports the backend and the presence poller may use. A node is taken out of service
// before its SIGTERM, once the requests in flight to it are answered, and put back when it has
// rejoined: a request of theirs never meets a node on its way out, so any failure is a fault.
class Routes {
 public:
  void put(std::size_t node, uint16_t port) { ports_[node] = port; }

  testing::AssertionResult take_out(std::size_t node) {
    ports_[node] = 0;
    if (eventually([&] { return in_flight_[node] == 0; })) return testing::AssertionSuccess();
    return testing::AssertionFailure() << "requests to node " << node << " still in flight";
  }

  // Runs fn(port) if `node` is in service; false when it is not.
  bool use(std::size_t node, const std::function<void(uint16_t)>& fn) {
    if (ports_[node] == 0) return false;
    ++in_flight_[node];
    struct Done {
      std::atomic<int>& n;
      ~Done() { --n; }
    } done{in_flight_[node]};
    const uint16_t port = ports_[node];  // again, now that the request is announced
    if (port == 0) return false;
    fn(port);
    return true;
  }

  // fn(port) on the first node in service from `start` on; false when none is.
  bool use_any(std::size_t start, const std::function<void(uint16_t)>& fn) {
    for (std::size_t k = 0; k < kNodes; ++k) {
      if (use((start + k) % kNodes, fn)) return true;
    }
    return false;
  }

 private:
  std::array<std::atomic<uint16_t>, kNodes> ports_{};
  std::array<std::atomic<int>, kNodes> in_flight_{};
};

// A push the backend (or the test) sent and got answered.
struct Sent {
  std::string id;       // msgID, also the text
  std::string to;       // "" for the room, else the userID
  std::size_t index;    // order of the backend's requests (markers: the backend's count then)
  uint64_t offset = 0;  // history on: its offset in its stream
};

// GET of a push; its answer must be code 200 with sendResults (true, or false for a user with
// no connection) and, with history on, the push's offset. Throws on transport errors.
std::optional<std::string> push_error(uint16_t port, Sent& s, bool history) {
  const std::string target =
      (s.to.empty() ? "/user/sendMessageAll?userID=backend"
                    : "/user/sendMessage?userID=" + pct(s.to)) +
      "&appID=" + std::to_string(kApp) + "&msgID=" + pct(s.id) + "&message=" + pct(s.id);
  const HttpResponse r = http_get(port, target);
  json::error_code ec;
  const json::value v = json::parse(r.body, ec);
  const json::value* data = !ec && v.is_object() ? v.get_object().if_contains("data") : nullptr;
  if (r.status != 200 || !data || !data->is_object() || v.at("code") != json::value(200) ||
      !data->get_object().contains("sendResults")) {
    return target + " -> " + r.body;
  }
  if (history) {
    const json::value* offset = data->get_object().if_contains("offset");
    if (!offset || !offset->is_number()) return target + " -> no offset: " + r.body;
    s.offset = offset->to_number<uint64_t>();
  }
  return std::nullopt;
}

// The backend: one push every kPace, alternately to the room and to the next user, through the
// nodes in service in turn, until stopped.
class Backend {
 public:
  Backend(Routes& routes, Names users, bool history)
      : routes_(routes), users_(std::move(users)), history_(history) {}
  ~Backend() { stop(); }

  void start() {
    thread_ = std::thread([this] { run(); });
  }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // Pushes [0, answered()) are answered; pushes from started() on are not requested yet.
  std::size_t answered() const { return answered_; }
  std::size_t started() const { return started_; }
  std::vector<Sent> sent() const {
    std::lock_guard lock(mu_);
    return sent_;
  }
  Faults faults;

 private:
  void run() {
    auto next = Clock::now();
    for (std::size_t i = 0; !stop_; ++i) {
      next += kPace;
      std::this_thread::sleep_until(next);  // the push rate, not a synchronisation
      Sent s{"p-" + std::to_string(i), i % 2 ? users_[(i / 2) % users_.size()] : "", i};
      started_ = i + 1;
      const bool routed = routes_.use_any(i, [&](uint16_t port) {
        try {
          if (auto error = push_error(port, s, history_)) faults.add(*error);
        } catch (const std::exception& e) {
          faults.add(s.id + " through port " + std::to_string(port) + ": " + e.what());
        }
      });
      if (!routed) faults.add(s.id + ": no node in service");
      {
        std::lock_guard lock(mu_);
        sent_.push_back(std::move(s));
      }
      answered_ = i + 1;
    }
  }

  Routes& routes_;
  const Names users_;
  const bool history_;
  std::atomic<bool> stop_{false};
  std::atomic<std::size_t> answered_{0}, started_{0};
  mutable std::mutex mu_;
  std::vector<Sent> sent_;
  std::thread thread_;
};

// Polls /user/list of every node in service, every kPace, until stopped: a userID listed twice,
// a name that is no user, or a userCount that is not the list's length is a fault.
class PresencePoller {
 public:
  PresencePoller(Routes& routes, const Names& users)
      : routes_(routes), users_(users.begin(), users.end()) {}
  ~PresencePoller() { stop(); }

  void start() {
    thread_ = std::thread([this] { run(); });
  }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int64_t polls() const { return polls_; }
  int64_t incomplete() const { return incomplete_; }  // lists missing somebody (in a gap)
  Faults faults;

 private:
  void run() {
    auto next = Clock::now();
    while (!stop_) {
      for (std::size_t node = 0; node < kNodes; ++node) {
        routes_.use(node, [&](uint16_t port) { poll(node, port); });
      }
      next += kPace;
      std::this_thread::sleep_until(next);  // the poll rate, not a synchronisation
    }
  }

  void poll(std::size_t node, uint16_t port) {
    const std::string where = "node " + std::to_string(node) + " /user/list: ";
    try {
      const HttpResponse r = http_get(port, "/user/list?appID=" + std::to_string(kApp));
      json::error_code ec;
      const json::value v = json::parse(r.body, ec);
      const json::value* data = !ec && v.is_object() ? v.get_object().if_contains("data") : nullptr;
      const json::value* list =
          data && data->is_object() ? data->get_object().if_contains("userList") : nullptr;
      if (r.status != 200 || !list || !list->is_array() || v.at("code") != json::value(200)) {
        return faults.add(where + r.body);
      }
      std::set<std::string> seen;
      for (const auto& u : list->get_array()) {
        const std::string name = u.is_string() ? std::string(u.get_string()) : json::serialize(u);
        if (!seen.insert(name).second) faults.add(where + name + " listed twice: " + r.body);
        if (!users_.count(name)) faults.add(where + "not a user: " + name);
      }
      if (data->at("userCount") != json::value(list->get_array().size())) {
        faults.add(where + "userCount is not the list's length: " + r.body);
      }
      ++polls_;
      if (seen.size() < users_.size()) ++incomplete_;
    } catch (const std::exception& e) {
      faults.add(where + e.what());
    }
  }

  Routes& routes_;
  const std::set<std::string> users_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> polls_{0}, incomplete_{0};
  std::thread thread_;
};

// What a client received of one stream (history on), across its connections.
struct StreamLog {
  std::string epoch;  // "" until the stream has one
  uint64_t last = 0;  // offset of the last push received (or of the login position)
  std::vector<std::string> faults;
};

struct User {
  std::string name;
  std::size_t node = 0;  // where its current connection is
  std::unique_ptr<WsClient> ws;
  StreamLog room, own;
  std::map<std::string, int> seen;  // msgID -> times received
  // Backend indices [first, second) during which this user was between two connections.
  std::vector<std::pair<std::size_t, std::size_t>> gaps;
  // Who is online as its enter / exit pushes tell (as the chat page keeps its list).
  std::set<std::string> view;
};

class RollingRestartTest : public testing::Test {
 protected:
  void SetUp() override {
    prefix_ = std::string("itr:") +
              testing::UnitTest::GetInstance()->current_test_info()->name() + ":";
    redis.start();
  }

  void TearDown() override {
    if (poller_) poller_->stop();
    if (backend_) backend_->stop();
    for (User& u : users_) {
      if (u.ws && !u.ws->closed()) u.ws->close();
    }
    for (std::size_t i = 0; i < kNodes; ++i) {
      if (nodes_[i] && nodes_[i]->running()) {
        EXPECT_TRUE(nodes_[i]->wait_idle()) << "node " << i << ": connections or users left";
      }
    }
    // Nothing left in Redis but the registrations, msgIDs and history.
    std::vector<std::string> left;
    const bool clean = eventually([&] {
      left.clear();
      for (auto& key : redis.keys(prefix_ + "*")) {
        if (key != prefix_ + "nodes" && !key.starts_with(prefix_ + "msgid:") &&
            !key.starts_with(prefix_ + "hist:")) {
          left.push_back(key);
        }
      }
      return left.empty();
    });
    EXPECT_TRUE(clean) << "presence left in Redis: " << testing::PrintToString(left);
  }

  Flags flags() const {
    Flags f{{"--redis-addr", redis.addr()},  {"--redis-prefix", prefix_},
            {"--node-ttl", "2"},             {"--ip-upgrade-rate", "0"},
            {"--ip-max-connections", "0"},   {"--message-rate", "0"}};
    // Far more than a stream receives while a client is away (about kPushesWhileAway).
    if (history_) f["--history-size"] = "5000";
    return f;
  }

  // Three nodes, every user logged in (user i on node i % 3), the backend and the poller running.
  void start(bool history) {
    history_ = history;
    for (std::size_t i = 0; i < kNodes; ++i) {
      nodes_[i] = std::make_unique<Gateway>();
      nodes_[i]->start(flags());
    }
    ASSERT_TRUE(cluster_ready());
    Names names;
    for (int i = 0; i < kUsers; ++i) {
      User u;
      u.name = "u" + std::to_string(i);
      names.push_back(u.name);
      users_.push_back(std::move(u));
    }
    for (std::size_t i = 0; i < users_.size(); ++i) {
      ASSERT_NO_FATAL_FAILURE(connect(users_[i], i % kNodes));
    }
    ASSERT_TRUE(presence_exact(running()));
    for (std::size_t i = 0; i < kNodes; ++i) routes_.put(i, nodes_[i]->http_port());
    backend_ = std::make_unique<Backend>(routes_, names, history_);
    poller_ = std::make_unique<PresencePoller>(routes_, names);
    backend_->start();
    poller_->start();
    // Traffic first: every user's own stream has a push before the first restart.
    ASSERT_TRUE(eventually([&] { return backend_->answered() >= 2 * users_.size(); }, 10s));
  }

  // One node out and back: SIGTERM, its clients closed with 1001 log in again on the other
  // nodes, presence settles, the node is started again and rejoins.
  void roll(std::size_t node) {
    SCOPED_TRACE("rolling node " + std::to_string(node));
    const std::size_t gap_begin = backend_->answered();
    marker();  // everything answered so far was delivered before the SIGTERM
    for (User& u : users_) {
      take_pushes(u);
      u.view = names();  // everybody is online, and every enter / exit so far was received
    }
    ASSERT_TRUE(routes_.take_out(node));
    const std::string leaving = node_ids_[node];
    const auto t0 = Clock::now();
    nodes_[node]->signal(SIGTERM);
    std::vector<std::size_t> survivors;
    for (std::size_t i = 0; i < kNodes; ++i) {
      if (i != node) survivors.push_back(i);
    }
    std::vector<User*> moved;
    for (User& u : users_) {
      if (u.node != node) continue;
      EXPECT_EQ(u.ws->expect_closed(5s), std::optional<uint16_t>(kGoingAway)) << u.name;
      drain(u);
      moved.push_back(&u);
    }
    RecordProperty("node" + std::to_string(node) + "_closed_ms", static_cast<int>(since(t0).count()));
    const std::size_t away = backend_->answered();
    ASSERT_TRUE(eventually([&] { return backend_->answered() >= away + kPushesWhileAway; }));
    for (std::size_t i = 0; i < moved.size(); ++i) {
      ASSERT_NO_FATAL_FAILURE(connect(*moved[i], survivors[i % survivors.size()]));
    }
    RecordProperty("node" + std::to_string(node) + "_moved_ms", static_cast<int>(since(t0).count()));
    EXPECT_EQ(nodes_[node]->wait_exit(10s), std::optional<int>(0)) << "clean exit";
    ASSERT_TRUE(presence_exact(survivors, leaving)) << since(t0).count() << " ms after SIGTERM";
    const std::size_t gap_end = backend_->started();
    for (User* u : moved) u->gaps.emplace_back(gap_begin, gap_end);
    // The enter / exit pushes of the move (exit then enter, or neither) left the lists of the
    // users who stayed complete. (A moved client starts over from /user/list, as the page does.)
    marker();
    for (User& u : users_) {
      take_pushes(u);
      if (std::find(moved.begin(), moved.end(), &u) == moved.end()) {
        EXPECT_EQ(u.view, names()) << u.name << ": online as its enter / exit pushes tell";
      }
    }

    stopped_.push_back(std::move(nodes_[node]));  // its log is printed if the test fails
    nodes_[node] = std::make_unique<Gateway>();
    nodes_[node]->start(flags());
    ASSERT_TRUE(cluster_ready()) << "the restarted node rejoins";
    EXPECT_NE(node_ids_[node], leaving) << "a new node id";
    routes_.put(node, nodes_[node]->http_port());
    ASSERT_TRUE(presence_exact(running()));
    RecordProperty("node" + std::to_string(node) + "_rolled_ms", static_cast<int>(since(t0).count()));
  }

  // The end: the backend stops, a last marker, then what each user received is checked
  // against what was sent.
  void finish() {
    backend_->stop();
    poller_->stop();
    marker();
    for (User& u : users_) take_pushes(u);  // no msg may follow the marker
    EXPECT_EQ(backend_->faults.list(), std::vector<std::string>{});
    EXPECT_EQ(poller_->faults.list(), std::vector<std::string>{});
    EXPECT_GT(poller_->polls(), 0);
    RecordProperty("list_polls", static_cast<int>(poller_->polls()));
    RecordProperty("list_polls_missing_a_user", static_cast<int>(poller_->incomplete()));
    RecordProperty("enter_exit_pushes", presence_pushes_);

    std::vector<Sent> sent = backend_->sent();
    sent.insert(sent.end(), markers_.begin(), markers_.end());
    uint64_t room_top = 0;
    std::map<std::string, uint64_t> own_top;
    for (const Sent& s : sent) {
      if (s.to.empty()) room_top = std::max(room_top, s.offset);
      else own_top[s.to] = std::max(own_top[s.to], s.offset);
    }
    int lost = 0;  // history off: pushes of a gap that never reached their moved user
    for (User& u : users_) {
      SCOPED_TRACE(u.name);
      std::set<std::string> expected;
      std::vector<std::string> wrong;  // "<msgID> x<times>" for each push not received as it must
      for (const Sent& s : sent) {
        if (!s.to.empty() && s.to != u.name) continue;
        expected.insert(s.id);
        const auto it = u.seen.find(s.id);
        const int times = it == u.seen.end() ? 0 : it->second;
        const bool in_gap = std::any_of(u.gaps.begin(), u.gaps.end(), [&](const auto& g) {
          return s.index >= g.first && s.index < g.second;
        });
        lost += !history_ && in_gap && times == 0;
        const bool at_most_once = !history_ && in_gap;  // nothing keeps a push of the gap
        if (times > 1 || (times == 0 && !at_most_once)) {
          wrong.push_back(s.id + " x" + std::to_string(times) + (in_gap ? " (in its gap)" : ""));
        }
      }
      for (const auto& [id, times] : u.seen) {
        if (!expected.count(id)) wrong.push_back(id + " x" + std::to_string(times) + " (not for it)");
      }
      EXPECT_EQ(wrong.size(), 0u) << "first ones: "
                                  << testing::PrintToString(std::vector<std::string>(
                                         wrong.begin(), wrong.begin() + std::min<std::size_t>(wrong.size(), 8)));
      if (history_) {
        EXPECT_EQ(u.room.faults, std::vector<std::string>{});
        EXPECT_EQ(u.own.faults, std::vector<std::string>{});
        EXPECT_EQ(u.room.last, room_top) << "the room stream up to its last push";
        EXPECT_EQ(u.own.last, own_top[u.name]) << "the user's stream up to its last push";
      }
    }
    RecordProperty("pushes", static_cast<int>(sent.size()));
    if (!history_) RecordProperty("pushes_lost_in_gaps", lost);
  }

  // ---- clients ----

  // A new connection of `u` on `node`, logged in; with history, recovering from what it got.
  void connect(User& u, std::size_t node) {
    const bool again = u.ws != nullptr;
    u.ws = std::make_unique<WsClient>();
    u.ws->connect(nodes_[node]->ws_port());
    u.node = node;
    json::value recover = nullptr;
    if (history_ && again) {
      recover = json::object{{"room", pos(u.room.epoch, u.room.last)},
                             {"user", pos(u.own.epoch, u.own.last)}};
    }
    const json::object r = login(*u.ws, u.name, recover, kApp);
    ASSERT_EQ(r.at("code").to_number<int>(), 200) << u.name << ": " << json::serialize(r);
    if (!history_) return;
    const json::object& data = r.at("data").as_object();
    if (again) {
      const json::value* recovered = data.if_contains("recovered");
      EXPECT_TRUE(recovered && *recovered == json::value(true)) << u.name << ": " << json::serialize(r);
      return;
    }
    for (auto [log, name] : {std::pair{&u.room, "room"}, std::pair{&u.own, "user"}}) {
      log->epoch = data.at(name).at("epoch").as_string();
      log->last = data.at(name).at("offset").to_number<uint64_t>();
    }
  }

  // Notes a msg push `u` received.
  void take(User& u, const json::object& push) {
    if (cmd_of(push) != "msg") return;
    ++u.seen[seq_of(push)];
    if (!history_) return;
    const json::object& data = push_data(push);
    const json::value* stream = data.if_contains("stream");
    StreamLog& log = stream && stream->is_string() && stream->get_string() == "user" ? u.own : u.room;
    if (!stream || !data.contains("epoch") || !data.contains("offset")) {
      log.faults.push_back("no stream position: " + json::serialize(push));
      return;
    }
    const std::string epoch(data.at("epoch").as_string());
    const uint64_t offset = data.at("offset").to_number<uint64_t>();
    if (log.epoch.empty()) log.epoch = epoch;  // the stream began after the login
    if (epoch != log.epoch || offset != log.last + 1) {
      log.faults.push_back(seq_of(push) + ": " + epoch + "/" + std::to_string(offset) +
                           " after " + log.epoch + "/" + std::to_string(log.last));
    }
    log.last = std::max(log.last, offset);
  }

  // The pushes `u` received and did not read yet, in order (a ping round trip collects them).
  void take_pushes(User& u) {
    for (const auto& p : u.ws->take_pushes()) {
      const json::value data = data_of(p);
      const json::value* from = data.is_object() ? data.get_object().if_contains("from") : nullptr;
      const std::string who = from && from->is_string() ? std::string(from->get_string()) : "?";
      if (cmd_of(p) == "enter") u.view.insert(who);
      if (cmd_of(p) == "exit") u.view.erase(who);
      presence_pushes_ += cmd_of(p) == "enter" || cmd_of(p) == "exit";
      take(u, p);
    }
  }

  // Everything a closed connection received (it keeps its messages readable).
  void drain(User& u) {
    while (auto p = u.ws->next_push("msg", 1s)) take(u, *p);
  }

  // A room push through a node in service; every user reads up to it.
  void marker() {
    Sent s{"marker-" + std::to_string(markers_.size()), "", backend_->started()};
    std::optional<std::string> error;
    ASSERT_TRUE(routes_.use_any(0, [&](uint16_t port) { error = push_error(port, s, history_); }));
    ASSERT_FALSE(error) << *error;
    markers_.push_back(s);
    for (User& u : users_) {
      bool found = false;
      while (!found) {
        auto p = u.ws->next_push("msg", 5s);
        if (!p) break;
        take(u, *p);
        found = seq_of(*p) == s.id;
      }
      EXPECT_TRUE(found) << u.name << ": " << s.id << " did not arrive";
    }
  }

  // ---- cluster ----

  std::set<std::string> names() const {
    std::set<std::string> out;
    for (const User& u : users_) out.insert(u.name);
    return out;
  }

  std::vector<std::size_t> running() {
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i < kNodes; ++i) {
      if (nodes_[i] && nodes_[i]->running()) out.push_back(i);
    }
    return out;
  }

  std::string cluster_field(std::size_t node, std::string_view field) const {
    const State s = nodes_[node]->state();
    const json::value* v = s.find({"imgate", "cluster", field});
    return v != nullptr && v->is_string() ? std::string(v->get_string()) : "";
  }

  // Every running node says Redis is up, is registered, and is subscribed to the room channel
  // and its node channel.
  testing::AssertionResult cluster_ready() {
    std::string last;
    const bool ready = eventually([&] {
      const auto up = running();
      for (std::size_t i : up) {
        if (cluster_field(i, "redis") != "up") {
          last = "node " + std::to_string(i) + ": redis not up";
          return false;
        }
        node_ids_[i] = cluster_field(i, "nodeId");
      }
      const RespValue registered = redis.command({"ZCARD", prefix_ + "nodes"});
      if (registered.integer != static_cast<int64_t>(up.size())) {
        last = "registered nodes: " + registered.dump();
        return false;
      }
      // The room channel is subscribed on demand (before a login there is answered).
      std::vector<std::string> numsub{"PUBSUB", "NUMSUB"};
      for (std::size_t i : up) numsub.push_back(prefix_ + "ch:node:" + node_ids_[i]);
      const RespValue subs = redis.command(numsub);
      for (std::size_t k = 1; k < subs.elements.size(); k += 2) {
        if (subs.elements[k].integer != 1) {
          last = "subscriptions: " + subs.dump();
          return false;
        }
      }
      return true;
    }, 10s);
    if (ready) return testing::AssertionSuccess();
    return testing::AssertionFailure() << "cluster not ready: " << last;
  }

  // Within 5 s: /user/list of each node of `ask` is exactly the users; Redis lists them in the
  // room and holds each on exactly the node of its connection; `gone` (a node that left) is
  // neither registered nor holds anybody.
  testing::AssertionResult presence_exact(const std::vector<std::size_t>& ask,
                                          const std::string& gone = "") {
    Names all;
    for (const User& u : users_) all.push_back(u.name);
    std::sort(all.begin(), all.end());
    std::string last;
    const bool exact = eventually([&] {
      for (std::size_t node : ask) {
        const json::object data = api(nodes_[node]->http_port(), "/user/list?appID=101");
        Names listed;
        for (const auto& v : data.at("userList").as_array()) listed.emplace_back(v.as_string());
        std::sort(listed.begin(), listed.end());
        if (listed != all) {
          last = "node " + std::to_string(node) + " lists " + testing::PrintToString(listed);
          return false;
        }
      }
      if (!gone.empty()) {
        if (!redis.command({"ZSCORE", prefix_ + "nodes", gone}).nil ||
            redis.command({"EXISTS", prefix_ + "node:" + gone + ":users"}).integer != 0) {
          last = "node " + gone + " still registered or holding users";
          return false;
        }
      }
      Names room;
      for (auto& e : redis.command({"SMEMBERS", prefix_ + "room:101"}).elements) room.push_back(e.str);
      std::sort(room.begin(), room.end());
      if (room != all) {
        last = "room in Redis: " + testing::PrintToString(room);
        return false;
      }
      for (const User& u : users_) {
        std::vector<std::string> holders;
        for (auto& e : redis.command({"HKEYS", prefix_ + "user:101:" + u.name}).elements) {
          holders.push_back(e.str);
        }
        if (holders != std::vector<std::string>{node_ids_[u.node]}) {
          last = u.name + " held by " + testing::PrintToString(holders) + ", its connection is on " +
                 node_ids_[u.node];
          return false;
        }
      }
      return true;
    });
    if (exact) return testing::AssertionSuccess();
    return testing::AssertionFailure() << "presence not exact: " << last;
  }

  RedisServer redis;  // first: destroyed after the nodes
  std::string prefix_;
  bool history_ = false;
  std::vector<std::unique_ptr<Gateway>> stopped_;
  std::array<std::unique_ptr<Gateway>, kNodes> nodes_;
  std::array<std::string, kNodes> node_ids_;
  Routes routes_;
  std::vector<User> users_;
  std::vector<Sent> markers_;
  int presence_pushes_ = 0;  // enter / exit pushes received since the first restart
  std::unique_ptr<Backend> backend_;  // after routes_: stopped before it goes
  std::unique_ptr<PresencePoller> poller_;
};

TEST_F(RollingRestartTest, WithHistoryEveryPushReachesEachUserOnceWhileEachNodeInTurnRestarts) {
  ASSERT_NO_FATAL_FAILURE(start(true));
  for (std::size_t node : {2, 1, 0}) ASSERT_NO_FATAL_FAILURE(roll(node));
  finish();
}

TEST_F(RollingRestartTest, WithoutHistoryPushesDuringTheGapAreAtMostOnceAndAllOthersExactlyOnce) {
  ASSERT_NO_FATAL_FAILURE(start(false));
  ASSERT_NO_FATAL_FAILURE(roll(2));
  finish();
}

}  // namespace
}  // namespace imgate::test
