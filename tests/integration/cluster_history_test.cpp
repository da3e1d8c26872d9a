// History in cluster mode (issue 10): streams kept in a real redis-server and shared by the
// nodes. A client cut off (TCP reset) on one node recovers its room and user streams on another
// with every missed push once and in order; history survives a node restart; an offline user gets
// its stored messages at another node; 100 concurrent recoveries under a push rate leave no gap
// and no duplicate; history is trimmed by size and, entry by entry, by age.
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <set>
#include <thread>

#include "gateway_process.hpp"
#include "stream_helpers.hpp"
#include "redis_process.hpp"
#include "tcp_proxy.hpp"
#include "ws_client.hpp"

namespace imgate::test {
namespace {
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

class ClusterHistoryTest : public testing::Test {
 protected:
  void SetUp() override {
    prefix_ = std::string("ith:") +
              testing::UnitTest::GetInstance()->current_test_info()->name() + ":";
    redis.start();
  }
  void TearDown() override {
    for (auto& n : nodes) {
      if (n.pid() > 0 && n.running()) {
        EXPECT_TRUE(n.wait_idle());
      }
    }
  }
  // Starts both nodes with flags() and `extra` (which wins), and waits until
  // both are subscribed (a room push published then reaches both).
  // `first` (optional): node 0's own flags, which win over `extra`.
  void start(const Flags& extra = {}, const Flags& first = {}) {
    Flags f = extra;
    f.merge(flags());
    Flags f0 = first;
    f0.insert(f.begin(), f.end());  // (merge() would move them out of f)
    nodes[0].start(f0);
    nodes[1].start(f);
    ASSERT_TRUE(both_up());
  }
  // Both nodes connected and subscribed, waiting at most 5 s.
  bool both_up() {
    return eventually([&] {
      for (auto& n : nodes) {
        const State state = n.state();  // find() points into it
        const auto* v = state.find({"imgate", "cluster", "redis"});
        if (!v || !v->is_string() || v->as_string() != "up") return false;
      }
      return true;
    });
  }
  Flags flags() const {
    return {{"--redis-addr", redis.addr()}, {"--redis-prefix", prefix_}, {"--node-ttl", "2"},
            {"--history-size", "200"}, {"--ip-upgrade-rate", "0"}};
  }
  json::object send_all(std::size_t node, std::string_view message) {
    return api(nodes[node].http_port(),
               "/user/sendMessageAll?appID=101&userID=backend&message=" + pct(message));
  }
  json::object send_to(std::size_t node, std::string_view user, std::string_view message) {
    return api(nodes[node].http_port(), "/user/sendMessage?appID=101&userID=" + pct(user) +
                                            "&message=" + pct(message));
  }
  bool offline(std::string_view user) {
    return api(nodes[0].http_port(), "/user/online?appID=101&userID=" + pct(user))
               .at("online") == false;
  }
  // The Redis list of app 101's room stream (docs/history.md "In Redis mode").
  std::string room_log() const { return prefix_ + "hist:room:101:log"; }
  int64_t room_log_length() const { return redis.command({"LLEN", room_log()}).integer; }
  // The offsets of the kept pushes /user/history answers (room stream of app 101).
  std::vector<uint64_t> kept_offsets(std::size_t node, std::string* epoch = nullptr) {
    const json::object h = api(nodes[node].http_port(), "/user/history?appID=101");
    if (epoch) *epoch = std::string(h.at("epoch").as_string());
    std::vector<uint64_t> out;
    for (const auto& m : h.at("messages").as_array()) {
      out.push_back(m.at("offset").to_number<uint64_t>());
    }
    return out;
  }

  RedisServer redis;  // first: destroyed after the nodes
  std::string prefix_;
  Gateway nodes[2];
};

// Waits on the clock (no push or read meanwhile) until `t`.
testing::AssertionResult wait_until(Clock::time_point t) {
  if (eventually([&] { return Clock::now() >= t; },
                 std::chrono::duration_cast<Millis>(t - Clock::now()) + 1s)) {
    return testing::AssertionSuccess();
  }
  return testing::AssertionFailure() << "the clock did not reach the deadline";
}

TEST_F(ClusterHistoryTest, ACutOffClientRecoversOnAnotherNodeOnceAndInOrder) {
  start();
  WsClient a;
  a.connect(nodes[0].ws_port());
  ASSERT_EQ(login(a, "bob").at("code").to_number<int>(), 200);
  EXPECT_EQ(send_all(1, "r1").at("offset").to_number<int>(), 1);
  EXPECT_EQ(send_to(1, "bob", "u1").at("offset").to_number<int>(), 1);
  const auto [room_epoch, user_epoch] = stream_epochs(msgs(a, 2), 1);
  ASSERT_FALSE(room_epoch.empty());
  ASSERT_FALSE(user_epoch.empty());
  a.reset();  // TCP reset (RST), no close frame
  ASSERT_TRUE(nodes[0].wait_for("bob gone", [](const State& s) { return s.users_len() == 0; }));
  ASSERT_TRUE(eventually([&] { return offline("bob"); }));
  // Through both nodes while bob is away: room pushes r2..r4, user pushes u2, u3 (stored).
  for (int i = 2; i <= 4; ++i) send_all(i % 2, "r" + std::to_string(i));
  for (int i = 2; i <= 3; ++i) {
    const json::object stored = send_to(i % 2, "bob", "u" + std::to_string(i));
    EXPECT_EQ(stored.at("sendResults").as_bool(), false);
    EXPECT_EQ(stored.at("stored").as_bool(), true);
    EXPECT_EQ(stored.at("offset").to_number<int>(), i);
  }
  WsClient b;
  b.connect(nodes[1].ws_port());
  const json::object r = login(
      b, "bob", json::object{{"room", pos(room_epoch, 1)}, {"user", pos(user_epoch, 1)}});
  ASSERT_EQ(r.at("code").to_number<int>(), 200);
  EXPECT_EQ(r.at("data").at("recovered").as_bool(), true);
  EXPECT_EQ(r.at("data").at("room").at("offset").to_number<int>(), 4);
  EXPECT_EQ(r.at("data").at("user").at("offset").to_number<int>(), 3);
  // Room stream first, then the user stream, each in offset order.
  auto missed = msgs(b, 5);
  ASSERT_EQ(missed.size(), 5u);
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE("room push " + std::to_string(i));
    EXPECT_EQ(push_data(missed[i]).at("stream").as_string(), "room");
    EXPECT_EQ(offset_of(missed[i]), static_cast<uint64_t>(i + 2));
    EXPECT_EQ(push_data(missed[i]).at("msg").as_string(), "r" + std::to_string(i + 2));
    EXPECT_EQ(epoch_of(missed[i]), room_epoch);
  }
  for (int i = 3; i < 5; ++i) {
    SCOPED_TRACE("user push " + std::to_string(i));
    EXPECT_EQ(push_data(missed[i]).at("stream").as_string(), "user");
    EXPECT_EQ(offset_of(missed[i]), static_cast<uint64_t>(i - 1));
    EXPECT_EQ(push_data(missed[i]).at("msg").as_string(), "u" + std::to_string(i - 1));
    EXPECT_EQ(epoch_of(missed[i]), user_epoch);
  }
  // Live delivery continues after the recovered ones, exactly once.
  send_all(0, "r5");
  auto live = msgs(b, 1);
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(offset_of(live[0]), 5u);
  send_to(0, "bob", "u4");
  live = msgs(b, 1);
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(push_data(live[0]).at("stream").as_string(), "user");
  EXPECT_EQ(offset_of(live[0]), 4u);
  EXPECT_EQ(msg_count(b.take_pushes()), 0u);
}

TEST_F(ClusterHistoryTest, HistorySurvivesANodeRestart) {
  start();
  for (int i = 1; i <= 3; ++i) send_all(0, "m" + std::to_string(i));
  const json::object before = api(nodes[0].http_port(), "/user/history?appID=101");
  ASSERT_EQ(before.at("messages").as_array().size(), 3u);
  ASSERT_EQ(nodes[0].terminate(), 0);
  Gateway again;
  again.start(flags());
  ASSERT_TRUE(again.wait_for("redis up", [](const State& s) {
    const auto* v = s.find({"imgate", "cluster", "redis"});
    return v && v->is_string() && v->as_string() == "up";
  }));
  const json::object after = api(again.http_port(), "/user/history?appID=101");
  EXPECT_EQ(after.at("epoch"), before.at("epoch"));
  ASSERT_EQ(after.at("messages").as_array().size(), 3u);
  EXPECT_EQ(after.at("messages").as_array()[2].at("msg").as_string(), "m3");
  WsClient c;
  c.connect(again.ws_port());
  const json::object r =
      login(c, "late", json::object{{"room", pos(std::string(before.at("epoch").as_string()), 1)}});
  EXPECT_EQ(r.at("data").at("recovered").as_bool(), true);
  auto got = msgs(c, 2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(offset_of(got[0]), 2u);
  c.close();
  EXPECT_TRUE(again.wait_idle());
  again.terminate();
}

TEST_F(ClusterHistoryTest, AnOfflineUserGetsItsStoredMessagesAtAnyNode) {
  start();
  const json::object stored = api(nodes[0].http_port(),
                                  "/user/sendMessage?appID=101&userID=olga&message=stored");
  EXPECT_EQ(stored.at("sendResults").as_bool(), false);
  EXPECT_EQ(stored.at("stored").as_bool(), true);
  {
    WsClient c;
    c.connect(nodes[1].ws_port());
    const json::object r = login(c, "olga");
    EXPECT_EQ(r.at("data").at("offline").to_number<int>(), 1);
    auto got = msgs(c, 1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(push_data(got[0]).at("msg").as_string(), "stored");
    // Delivered live once she is online (on whichever node she is).
    api(nodes[0].http_port(), "/user/sendMessage?appID=101&userID=olga&message=live");
    EXPECT_EQ(msgs(c, 1).size(), 1u);
    c.close();
  }
  ASSERT_TRUE(eventually([&] {
    return api(nodes[0].http_port(), "/user/online?appID=101&userID=olga").at("online") == false;
  }));
  api(nodes[1].http_port(), "/user/sendMessage?appID=101&userID=olga&message=second");
  WsClient c;
  c.connect(nodes[0].ws_port());
  const json::object r = login(c, "olga");
  EXPECT_EQ(r.at("data").at("offline").to_number<int>(), 1);  // only what came since she left
  auto got = msgs(c, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(push_data(got[0]).at("msg").as_string(), "second");
}

TEST_F(ClusterHistoryTest,
       HundredConcurrentRecoveriesOnTheOtherNodeUnderAPushRateLeaveNoGapAndNoDuplicate) {
  constexpr int kClients = 100;
  constexpr int kMinPushes = 300;  // per node, at least
  start({{"--history-size", "20000"}});
  std::vector<std::unique_ptr<WsClient>> first(kClients);
  for (int i = 0; i < kClients; ++i) {
    first[i] = std::make_unique<WsClient>();
    first[i]->connect(nodes[i % 2].ws_port());
    ASSERT_EQ(login(*first[i], "u" + std::to_string(i)).at("code").to_number<int>(), 200);
  }
  send_all(0, "p0");
  std::string epoch;
  for (auto& c : first) {
    auto got = msgs(*c, 1);
    ASSERT_EQ(got.size(), 1u);
    epoch = epoch_of(got[0]);
    c->drop();
  }
  first.clear();
  for (auto& n : nodes) {
    ASSERT_TRUE(n.wait_for("all gone", [](const State& s) { return s.users_len() == 0; }));
  }
  std::vector<std::unique_ptr<WsClient>> back(kClients);
  for (int i = 0; i < kClients; ++i) {
    back[i] = std::make_unique<WsClient>();
    back[i]->connect(nodes[(i + 1) % 2].ws_port());  // the other node
  }
  // One pusher per node, from before the first login until after the last
  // recovery is answered (and kMinPushes each at least).
  std::atomic<int> sent{0};
  std::atomic<bool> recovered_all{false};
  auto pusher = [&](std::size_t node) {
    for (int mine = 0; mine < kMinPushes || !recovered_all.load(); ++mine) {
      send_all(node, "p" + std::to_string(node) + "-" + std::to_string(mine));
      sent.fetch_add(1);
    }
  };
  std::thread pushers[] = {std::thread(pusher, 0), std::thread(pusher, 1)};
  struct Join {  // also when an assertion below returns early
    std::atomic<bool>& stop;
    std::thread (&threads)[2];
    ~Join() {
      stop.store(true);
      for (auto& t : threads) {
        if (t.joinable()) t.join();
      }
    }
  } join{recovered_all, pushers};
  ASSERT_TRUE(eventually([&] { return sent.load() >= 20; }));
  // All logins at once: 100 recoveries in flight together, on both nodes.
  for (int i = 0; i < kClients; ++i) {
    const std::string user = "u" + std::to_string(i);
    const std::string data = login_data(user, json::object{{"room", pos(epoch, 1)}});
    ASSERT_FALSE(back[i]->send_text(make_request("r-" + user, "login", data)));
  }
  std::set<uint64_t> tops;  // the room's last offset when each recovery read it
  for (int i = 0; i < kClients; ++i) {
    const auto reply = back[i]->next_push("login", 10s);
    ASSERT_TRUE(reply.has_value()) << "no login reply for client " << i;
    EXPECT_EQ(code_of(*reply), 200) << i;
    const json::object& data = reply->at("response").at("data").as_object();
    EXPECT_EQ(data.at("recovered").as_bool(), true) << i;
    tops.insert(data.at("room").at("offset").to_number<uint64_t>());
  }
  // Pushes were stored between the recoveries' reads, not only before or after them.
  EXPECT_GT(tops.size(), 1u);
  recovered_all.store(true);
  for (auto& t : pushers) t.join();
  const uint64_t pushes = static_cast<uint64_t>(sent.load());
  for (int i = 0; i < kClients; ++i) {
    SCOPED_TRACE("client " + std::to_string(i));
    auto got = msgs(*back[i], pushes, 10s);
    ASSERT_EQ(got.size(), pushes);
    for (std::size_t k = 0; k < got.size(); ++k) {
      ASSERT_EQ(offset_of(got[k]), 2 + k) << "gap or duplicate";
    }
    EXPECT_EQ(msg_count(back[i]->take_pushes()), 0u) << "a duplicate after the last push";
  }
}

TEST_F(ClusterHistoryTest, HistoryIsTrimmedBySizeAndRecoveryThenSaysIncomplete) {
  start({{"--history-size", "5"}});
  for (int i = 1; i <= 8; ++i) send_all(i % 2, "m" + std::to_string(i));
  const json::object h = api(nodes[0].http_port(), "/user/history?appID=101");
  const json::array& kept = h.at("messages").as_array();
  ASSERT_EQ(kept.size(), 5u);
  for (std::size_t k = 0; k < kept.size(); ++k) {
    EXPECT_EQ(kept[k].at("offset").to_number<uint64_t>(), 4 + k);
    EXPECT_EQ(kept[k].at("msg").as_string(), "m" + std::to_string(4 + k));
  }
  EXPECT_EQ(h.at("offset").to_number<int>(), 8);
  EXPECT_EQ(room_log_length(), 5);
  const std::string epoch(h.at("epoch").as_string());
  EXPECT_FALSE(
      api(nodes[1].http_port(), "/user/history?appID=101&since=1").at("complete").as_bool());
  WsClient c;
  c.connect(nodes[1].ws_port());
  const json::object r = login(c, "late", json::object{{"room", pos(epoch, 1)}});
  EXPECT_EQ(r.at("data").at("recovered").as_bool(), false);  // 2 and 3 are gone
  EXPECT_EQ(r.at("data").at("room").at("epoch").as_string(), epoch);
  EXPECT_EQ(r.at("data").at("room").at("offset").to_number<int>(), 8);
  auto got = msgs(c, 5);  // the ones still kept
  ASSERT_EQ(got.size(), 5u);
  for (std::size_t k = 0; k < got.size(); ++k) EXPECT_EQ(offset_of(got[k]), 4 + k);
  EXPECT_EQ(msg_count(c.take_pushes()), 0u);
}

TEST_F(ClusterHistoryTest, HistoryIsTrimmedByAgeEntryByEntry) {
  // A stream kept alive by newer pushes still loses its pushes older than
  // --history-ttl: dropped when the stream is read and when it is appended to.
  constexpr auto kTtl = 1000ms;
  start({{"--history-ttl", "1"}});
  const std::string epoch(send_all(0, "old1").at("epoch").as_string());
  send_all(1, "old2");
  const Clock::time_point old_at = Clock::now();  // offsets 1 and 2 are stored by now
  ASSERT_TRUE(wait_until(old_at + kTtl / 2));
  send_all(0, "new3");  // keeps the stream's keys for another kTtl
  const Clock::time_point new3_at = Clock::now();
  ASSERT_TRUE(wait_until(old_at + kTtl + 100ms));
  // 1 and 2 are older than kTtl; 3 is not (stored after old_at + kTtl / 2).
  EXPECT_EQ(room_log_length(), 3);  // nothing read or appended since
  std::string now_epoch;
  EXPECT_EQ(kept_offsets(1, &now_epoch), std::vector<uint64_t>{3});
  EXPECT_EQ(now_epoch, epoch);  // the same stream, not a new one after its keys expired
  EXPECT_EQ(room_log_length(), 1);  // the read dropped them
  {
    WsClient c;
    c.connect(nodes[0].ws_port());
    const json::object r = login(c, "late", json::object{{"room", pos(epoch, 1)}});
    EXPECT_EQ(r.at("data").at("recovered").as_bool(), false);  // 2 is gone
    EXPECT_EQ(r.at("data").at("room").at("epoch").as_string(), epoch);
    EXPECT_EQ(r.at("data").at("room").at("offset").to_number<int>(), 3);
    auto got = msgs(c, 1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(offset_of(got[0]), 3u);
    EXPECT_EQ(msg_count(c.take_pushes()), 0u);
    c.close();
  }
  send_all(1, "new4");
  ASSERT_TRUE(wait_until(new3_at + kTtl + 100ms));
  send_all(0, "new5");  // 3 is older than kTtl now, 4 is not
  EXPECT_EQ(room_log_length(), 2);  // the append dropped 3
  const RespValue head = redis.command({"LINDEX", room_log(), "0"});
  EXPECT_EQ(json::parse(head.str).at("o").to_number<int>(), 4) << head.dump();
  EXPECT_EQ(kept_offsets(0), (std::vector<uint64_t>{4, 5}));
}

// Issue 16: node 0 talks to Redis through a relay that loses the reply to the
// script storing one push (the script ran: stored, published). The node cannot
// know whether it ran, so it must neither deliver the push to its own clients
// a second time (it reaches them through Redis when it ran) nor answer that it
// was "delivered on this node only" (docs/history.md: then not kept), but say
// the outcome is unknown.
TEST_F(ClusterHistoryTest, APushWhoseReplyIsLostIsAnsweredUnknownAndNeverDoubled) {
  TcpProxy relay(redis.port());
  start({}, {{"--redis-addr", relay.addr()}});
  WsClient alice, bob;
  alice.connect(nodes[0].ws_port());
  bob.connect(nodes[1].ws_port());
  ASSERT_EQ(login(alice, "alice").at("code").to_number<int>(), 200);
  ASSERT_EQ(login(bob, "bob").at("code").to_number<int>(), 200);
  relay.cut_reply_to("lost-reply-1");
  const json::object answer = send_all(0, "lost-reply-1");
  EXPECT_EQ(relay.cuts(), 1);
  EXPECT_EQ(answer.at("sendResults"), false) << json::serialize(answer);
  ASSERT_TRUE(answer.contains("sendResultsErr")) << json::serialize(answer);
  const std::string err(answer.at("sendResultsErr").as_string());
  EXPECT_NE(err.find("may have been delivered"), std::string::npos) << err;
  EXPECT_EQ(err.find("delivered on this node only"), std::string::npos) << err;
  EXPECT_FALSE(answer.contains("offset")) << json::serialize(answer);
  // It ran: kept, with an offset, and delivered through Redis.
  const json::object kept = api(nodes[1].http_port(), "/user/history?appID=101");
  ASSERT_EQ(kept.at("messages").as_array().size(), 1u) << json::serialize(kept);
  EXPECT_EQ(kept.at("messages").as_array()[0].at("msg"), "lost-reply-1");
  // Each client gets it at most once (bob exactly once), before a marker.
  ASSERT_TRUE(eventually([&] {
    const State s = nodes[0].state();
    const auto* v = s.find({"imgate", "cluster", "redis"});
    return v && v->is_string() && v->as_string() == "up";
  }));
  send_all(1, "marker");
  for (WsClient* c : {&alice, &bob}) {
    std::size_t copies = 0;
    for (;;) {
      const auto got = msgs(*c, 1);
      if (got.empty()) break;
      const auto text = push_data(got[0]).at("msg").as_string();
      if (text == "marker") break;
      if (text == "lost-reply-1") ++copies;
    }
    EXPECT_LE(copies, 1u) << (c == &alice ? "alice" : "bob") << " got it twice";
    if (c == &bob) {
      EXPECT_EQ(copies, 1u);
    }
  }
}

// Redis restarted from a snapshot older than its last writes (issue 16, item 2): the pushes
// stored after the SAVE were acknowledged and are gone, and the stream must not hand their
// offsets out again in the same epoch: the restarted server is another incarnation, so the
// stream goes on in a new epoch and a client at the lost top is told recovered:false.
TEST_F(ClusterHistoryTest, ARedisRestartFromAnOlderSnapshotChangesTheEpochAndNamesNoPositionTwice) {
  start();
  WsClient w;
  w.connect(nodes[1].ws_port());
  ASSERT_EQ(w.login(101, "watch"), 200);
  PositionBook book;
  // A room push through `node`, its position recorded; nullopt when not stored.
  auto push = [&](std::size_t node, const std::string& text) -> std::optional<Position> {
    const HttpResponse r = http_get(nodes[node].http_port(),
                                    "/user/sendMessageAll?appID=101&userID=backend&message=" +
                                        pct(text));
    boost::system::error_code ec;
    const json::value v = json::parse(r.body, ec);
    if (ec || !v.is_object() || !v.at("data").is_object()) return std::nullopt;
    auto at = stored_at(v.at("data").as_object());
    if (at) book.see(*at, text, "the answer through node " + std::to_string(node));
    return at;
  };
  auto receive_until = [&](const std::string& text) {
    for (;;) {
      auto p = w.next_push("msg", 5s);
      if (!p) return false;
      book.see_push(*p, "the client");
      if (push_data(*p).at("msg").as_string() == text) return true;
    }
  };
  for (int i = 1; i <= 3; ++i) ASSERT_TRUE(push(i % 2, "saved " + std::to_string(i)));
  ASSERT_EQ(redis.command({"SAVE"}).str, "OK");
  std::optional<Position> lost;
  for (int i = 4; i <= 6; ++i) ASSERT_TRUE(lost = push(i % 2, "lost " + std::to_string(i)));
  ASSERT_EQ(lost->second, 6u);
  ASSERT_TRUE(receive_until("lost 6"));

  redis.kill();
  redis.start();  // loads the snapshot: the stream's top is 3 again
  ASSERT_EQ(redis.command({"HGET", prefix_ + "hist:room:101:meta", "top"}).str, "3")
      << "premise: the snapshot lacks the last 3 pushes";
  int next = 7;
  ASSERT_TRUE(eventually([&] { return push(0, "after " + std::to_string(next++)).has_value(); },
                         10s))
      << "pushes were never stored again";
  ASSERT_TRUE(both_up());  // node 1 subscribed again: the client there gets node 0's pushes
  std::optional<Position> after;
  for (int i = 0; i < 3; ++i, ++next) ASSERT_TRUE(after = push(next % 2, "after " + std::to_string(next)));
  ASSERT_TRUE(receive_until("after " + std::to_string(next - 1)));
  EXPECT_NE(after->first, lost->first) << "the stream lost pushes 4-6 in the same epoch";

  WsClient c;
  c.connect(nodes[0].ws_port());
  const json::object r = login(c, "late", json::object{{"room", pos(lost->first, 6)}});
  ASSERT_EQ(r.at("code").to_number<int>(), 200);
  EXPECT_EQ(r.at("data").at("recovered").as_bool(), false);
  EXPECT_EQ(r.at("data").at("room").at("epoch").as_string(), after->first);
}

// The offline start after a lost tail: a user who was delivered offsets that the restarted Redis
// no longer has leaves; the mark recorded is the stream's surviving top, from which it goes on (in
// a new epoch), so the next push stored for the user is its offline message, not skipped as if
// already delivered.
TEST_F(ClusterHistoryTest, AUserWhoLeavesAfterALostTailGetsTheNextStoredPushOffline) {
  start();
  const std::string meta = prefix_ + "hist:user:101:lily:meta";
  auto online_now = [&] {
    return http_get(nodes[0].http_port(), "/user/online?appID=101&userID=lily").body.find(
               "\"online\":true") != std::string::npos;
  };
  WsClient lily;
  lily.connect(nodes[1].ws_port());
  ASSERT_EQ(lily.login(101, "lily"), 200);
  ASSERT_TRUE(eventually(online_now));
  send_to(0, "lily", "u1");
  ASSERT_EQ(msgs(lily, 1).size(), 1u);
  ASSERT_EQ(redis.command({"SAVE"}).str, "OK");
  send_to(0, "lily", "u2");
  send_to(0, "lily", "u3");
  ASSERT_EQ(msgs(lily, 2).size(), 2u);  // delivered up to offset 3

  redis.kill();
  redis.start();  // loads the snapshot: lily's stream ends at 1
  ASSERT_EQ(redis.command({"HGET", meta, "top"}).str, "1") << "premise: u2 and u3 are lost";
  ASSERT_TRUE(both_up());
  ASSERT_TRUE(eventually(online_now)) << "lily's presence was never published again";
  lily.close();
  ASSERT_TRUE(eventually([&] { return redis.command({"HEXISTS", meta, "left"}).integer == 1; }))
      << "no offline start recorded";
  EXPECT_EQ(redis.command({"HGET", meta, "left"}).str, "1");  // the surviving top, not 3

  const json::object stored = send_to(0, "lily", "u4");
  EXPECT_EQ(stored.at("stored").as_bool(), true);
  WsClient again;
  again.connect(nodes[0].ws_port());
  const json::object r = login(again, "lily");
  EXPECT_EQ(r.at("data").at("offline").to_number<int>(), 1);
  auto got = msgs(again, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(push_data(got[0]).at("msg").as_string(), "u4");
}

}  // namespace
}  // namespace imgate::test
