// History, recovery and offline messages against the real binary in embedded mode (issue 10):
// stream offsets on pushes, recovery after a TCP reset with every missed push exactly once and in
// order, 100 concurrent recoveries under a high push rate without gap or duplicate, epoch change
// after a restart, trimming by size and age, the memory cap, offline delivery, /user/history.
#include <atomic>
#include <boost/json.hpp>
#include <thread>

#include "gateway_process.hpp"
#include "stream_helpers.hpp"
#include "ws_client.hpp"

namespace imgate::test {
namespace {
namespace json = boost::json;

json::object send_all(Gateway& gw, std::string_view message, uint32_t app = 101) {
  return api(gw, "/user/sendMessageAll?appID=" + std::to_string(app) +
                     "&userID=backend&message=" + pct(message));
}

json::object send_to(Gateway& gw, std::string_view user, std::string_view message,
                     uint32_t app = 101) {
  return api(gw, "/user/sendMessage?appID=" + std::to_string(app) + "&userID=" + pct(user) +
                     "&message=" + pct(message));
}

class HistoryTest : public GatewayTest {
 protected:
  void start(Flags extra = {}) {
    extra.emplace("--history-size", "100");
    gw.start(extra);
  }
};

TEST_F(HistoryTest, PushesCarryTheirStreamEpochAndConsecutiveOffsets) {
  start();
  WsClient a, b;
  a.connect(gw.ws_port());
  b.connect(gw.ws_port());
  ASSERT_EQ(login(a, "alice").at("code").to_number<int>(), 200);
  const json::object r = login(b, "bob");
  ASSERT_EQ(r.at("code").to_number<int>(), 200);
  EXPECT_EQ(r.at("data").at("room").at("offset").to_number<int>(), 0);
  for (int i = 1; i <= 3; ++i) {
    const json::object answer = send_all(gw, "m" + std::to_string(i));
    EXPECT_EQ(answer.at("offset").to_number<int>(), i);
  }
  auto got = msgs(b, 3);
  ASSERT_EQ(got.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(offset_of(got[i]), static_cast<uint64_t>(i + 1));
    EXPECT_EQ(push_data(got[i]).at("stream").as_string(), "room");
    EXPECT_EQ(epoch_of(got[i]), epoch_of(got[0]));
  }
  EXPECT_EQ(send_to(gw, "bob", "for bob").at("sendResults").as_bool(), true);
  auto mine = msgs(b, 1);
  ASSERT_EQ(mine.size(), 1u);
  EXPECT_EQ(push_data(mine[0]).at("stream").as_string(), "user");
  EXPECT_EQ(offset_of(mine[0]), 1u);
  EXPECT_EQ(msgs(a, 3).size(), 3u);
  EXPECT_EQ(msg_count(a.take_pushes()), 0u);  // bob's user stream is not alice's
}

TEST_F(HistoryTest, AClientCutOffMidStreamGetsEveryMissedPushOnceAndInOrder) {
  start();
  WsClient b;
  b.connect(gw.ws_port());
  ASSERT_EQ(login(b, "bob").at("code").to_number<int>(), 200);
  send_all(gw, "r1");
  send_all(gw, "r2");
  send_to(gw, "bob", "u1");
  auto seen = msgs(b, 3);
  ASSERT_EQ(seen.size(), 3u);
  const std::string room_epoch = epoch_of(seen[0]);
  const std::string user_epoch = epoch_of(seen[2]);
  b.reset();  // TCP reset (RST), no close frame
  ASSERT_TRUE(gw.wait_for("bob gone", [](const State& s) { return s.users_len() == 0; }));
  for (int i = 3; i <= 7; ++i) send_all(gw, "r" + std::to_string(i));
  const json::object stored = send_to(gw, "bob", "u2");
  EXPECT_EQ(stored.at("sendResults").as_bool(), false);
  EXPECT_EQ(stored.at("stored").as_bool(), true);
  WsClient back;
  back.connect(gw.ws_port());
  const json::object r = login(back, "bob",
                               json::object{{"room", pos(room_epoch, 2)}, {"user", pos(user_epoch, 1)}});
  ASSERT_EQ(r.at("code").to_number<int>(), 200);
  EXPECT_EQ(r.at("data").at("recovered").as_bool(), true);
  EXPECT_EQ(r.at("data").at("room").at("offset").to_number<int>(), 7);
  EXPECT_EQ(r.at("data").at("user").at("offset").to_number<int>(), 2);
  auto missed = msgs(back, 6);
  ASSERT_EQ(missed.size(), 6u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(offset_of(missed[i]), static_cast<uint64_t>(i + 3));
    EXPECT_EQ(push_data(missed[i]).at("msg").as_string(), "r" + std::to_string(i + 3));
  }
  EXPECT_EQ(push_data(missed[5]).at("msg").as_string(), "u2");
  // Live delivery continues after the recovered ones, exactly once.
  send_all(gw, "r8");
  auto live = msgs(back, 1);
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(offset_of(live[0]), 8u);
  EXPECT_EQ(msg_count(back.take_pushes()), 0u);
}

TEST_F(HistoryTest, HundredConcurrentRecoveriesUnderAHighPushRateLeaveNoGapAndNoDuplicate) {
  // 200 upgrades from 127.0.0.1 within a second or two: above the default per-address rate.
  start({{"--history-size", "5000"}, {"--threads", "2"}, {"--ip-upgrade-rate", "0"}});
  constexpr int kClients = 100;
  constexpr int kPushes = 1500;
  // Every client sees the stream's first push, then is cut off.
  std::vector<std::unique_ptr<WsClient>> first(kClients);
  for (int i = 0; i < kClients; ++i) {
    first[i] = std::make_unique<WsClient>();
    first[i]->connect(gw.ws_port());
    ASSERT_EQ(login(*first[i], "u" + std::to_string(i)).at("code").to_number<int>(), 200);
  }
  send_all(gw, "p0");
  std::string epoch;
  for (auto& c : first) {
    auto got = msgs(*c, 1);
    ASSERT_EQ(got.size(), 1u);
    epoch = epoch_of(got[0]);
    c->drop();
  }
  first.clear();
  ASSERT_TRUE(gw.wait_for("all gone", [](const State& s) { return s.users_len() == 0; }));
  // Pushes flow while the clients come back with recover data.
  std::atomic<int> sent{0};
  std::thread pusher([&] {
    for (int i = 1; i <= kPushes; ++i) {
      send_all(gw, "p" + std::to_string(i));
      sent.store(i);
    }
  });
  std::vector<std::unique_ptr<WsClient>> back(kClients);
  for (int i = 0; i < kClients; ++i) {
    back[i] = std::make_unique<WsClient>();
    back[i]->connect(gw.ws_port());
    const json::object r =
        login(*back[i], "u" + std::to_string(i), json::object{{"room", pos(epoch, 1)}});
    EXPECT_EQ(r.at("data").at("recovered").as_bool(), true) << i;
  }
  pusher.join();
  const uint64_t last = 1 + kPushes;
  for (int i = 0; i < kClients; ++i) {
    SCOPED_TRACE("client " + std::to_string(i));
    auto got = msgs(*back[i], kPushes, 10s);
    ASSERT_EQ(got.size(), static_cast<std::size_t>(kPushes));
    for (std::size_t k = 0; k < got.size(); ++k) {
      ASSERT_EQ(offset_of(got[k]), 2 + k) << "gap or duplicate";
    }
    EXPECT_EQ(offset_of(got.back()), last);
    EXPECT_EQ(msg_count(back[i]->take_pushes()), 0u) << "a duplicate after the last push";
  }
}

TEST_F(HistoryTest, ARestartChangesTheEpochAndRecoveryReportsIt) {
  start();
  WsClient b;
  b.connect(gw.ws_port());
  ASSERT_EQ(login(b, "bob").at("code").to_number<int>(), 200);
  send_all(gw, "before");
  auto got = msgs(b, 1);
  ASSERT_EQ(got.size(), 1u);
  const std::string old_epoch = epoch_of(got[0]);
  b.close();
  ASSERT_TRUE(gw.wait_idle());
  ASSERT_EQ(gw.terminate(), 0);
  Gateway again;
  again.start({{"--history-size", "100"}});
  api(again, "/user/sendMessageAll?appID=101&userID=backend&message=after");
  WsClient c;
  c.connect(again.ws_port());
  json::object data{{"appID", 101}, {"userID", "bob"},
                    {"recover", json::object{{"room", pos(old_epoch, 1)}}}};
  const json::object r = c.request("login", json::serialize(data)).at("response").as_object();
  EXPECT_EQ(r.at("data").at("recovered").as_bool(), false);
  EXPECT_NE(r.at("data").at("room").at("epoch").as_string(), old_epoch);
  EXPECT_EQ(r.at("data").at("room").at("offset").to_number<int>(), 1);
  EXPECT_EQ(msg_count(c.take_pushes()), 0u);  // another epoch's offsets mean nothing: none sent
  c.close();
  EXPECT_TRUE(again.wait_idle());
  again.terminate();
}

TEST_F(HistoryTest, HistoryIsTrimmedBySizeAndRecoveryThenSaysIncomplete) {
  start({{"--history-size", "3"}});
  for (int i = 1; i <= 5; ++i) send_all(gw, "m" + std::to_string(i));
  const json::object h = api(gw, "/user/history?appID=101");
  ASSERT_EQ(h.at("messages").as_array().size(), 3u);
  EXPECT_EQ(h.at("messages").as_array()[0].at("offset").to_number<int>(), 3);
  EXPECT_EQ(h.at("offset").to_number<int>(), 5);
  const std::string epoch(h.at("epoch").as_string());
  WsClient c;
  c.connect(gw.ws_port());
  const json::object r = login(c, "late", json::object{{"room", pos(epoch, 1)}});
  EXPECT_EQ(r.at("data").at("recovered").as_bool(), false);  // 2 is gone
  auto got = msgs(c, 3);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(offset_of(got[0]), 3u);
  EXPECT_EQ(offset_of(got[2]), 5u);
}

TEST_F(HistoryTest, HistoryIsTrimmedByAge) {
  start({{"--history-ttl", "0.3"}});
  send_all(gw, "short-lived");
  EXPECT_EQ(api(gw, "/user/history?appID=101").at("messages").as_array().size(), 1u);
  EXPECT_TRUE(eventually(
      [&] { return api(gw, "/user/history?appID=101").at("messages").as_array().empty(); }, 3s));
}

TEST_F(HistoryTest, TheMemoryCapEvictsTheOldestAndCountsIt) {
  start({{"--history-max-bytes", "1M"}, {"--history-size", "1000"}});
  const std::string big(7000, 'x');  // within the 8 KiB request line
  for (int i = 0; i < 300; ++i) {    // 2.1 MB of pushes
    api(gw, "/user/sendMessageAll?appID=" + std::to_string(101 + i % 4) +
                "&userID=backend&message=" + big);
  }
  const std::string metrics = http_get(gw.http_port(), "/metrics").body;
  auto gauge = [&](const std::string& name) {
    const auto at = metrics.find("\n" + name + " ");
    return at == std::string::npos ? -1.0 : std::stod(metrics.substr(at + name.size() + 2));
  };
  EXPECT_GT(gauge("imgate_history_evictions_total"), 100);
  EXPECT_LE(gauge("imgate_history_bytes"), 1024.0 * 1024);
  EXPECT_GT(gauge("imgate_history_pushes"), 10);
}

TEST_F(HistoryTest, AnOfflineUserGetsWhatWasStoredAtItsNextLogin) {
  start();
  const json::object answer = send_to(gw, "olga", "while you were away");
  EXPECT_EQ(answer.at("sendResults").as_bool(), false);
  EXPECT_EQ(answer.at("stored").as_bool(), true);
  {
    WsClient c;  // an upstream client: no recover data
    c.connect(gw.ws_port());
    const json::object r = login(c, "olga");
    EXPECT_EQ(r.at("data").at("offline").to_number<int>(), 1);
    auto got = msgs(c, 1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(push_data(got[0]).at("msg").as_string(), "while you were away");
    send_to(gw, "olga", "live");
    EXPECT_EQ(msgs(c, 1).size(), 1u);
    c.close();
  }
  ASSERT_TRUE(gw.wait_for("olga gone", [](const State& s) { return s.users_len() == 0; }));
  send_to(gw, "olga", "second absence");
  WsClient c;
  c.connect(gw.ws_port());
  const json::object r = login(c, "olga");
  EXPECT_EQ(r.at("data").at("offline").to_number<int>(), 1);  // only what came since
  auto got = msgs(c, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(push_data(got[0]).at("msg").as_string(), "second absence");
  EXPECT_EQ(msg_count(c.take_pushes()), 0u);
  // A second connection of a user already online gets no "offline" replay.
  WsClient tab;
  tab.connect(gw.ws_port());
  EXPECT_FALSE(login(tab, "olga").at("data").as_object().contains("offline"));
  EXPECT_EQ(msg_count(tab.take_pushes()), 0u);
}

TEST_F(HistoryTest, TheHistoryApiPagesByOffset) {
  start();
  for (int i = 1; i <= 5; ++i) send_all(gw, "m" + std::to_string(i), 102);
  send_to(gw, "ann", "a1", 102);
  json::object h = api(gw, "/user/history?appID=102&since=2&limit=2");
  ASSERT_EQ(h.at("messages").as_array().size(), 2u);
  EXPECT_EQ(h.at("messages").as_array()[0].at("offset").to_number<int>(), 3);
  EXPECT_EQ(h.at("messages").as_array()[0].at("msg").as_string(), "m3");
  EXPECT_EQ(h.at("messages").as_array()[1].at("from").as_string(), "backend");
  EXPECT_TRUE(h.at("complete").as_bool());
  h = api(gw, "/user/history?appID=102&userID=ann");
  ASSERT_EQ(h.at("messages").as_array().size(), 1u);
  EXPECT_EQ(h.at("messages").as_array()[0].at("msg").as_string(), "a1");
  h = api(gw, "/user/history?appID=102&since=1&epoch=other");
  EXPECT_FALSE(h.at("complete").as_bool());
  EXPECT_TRUE(h.at("messages").as_array().empty());
  const HttpResponse bad = http_get(gw.http_port(), "/user/history?appID=102&limit=x");
  EXPECT_NE(bad.body.find("\"code\":1001"), std::string::npos) << bad.body;
}

TEST_F(GatewayTest, WithoutHistoryPushesAndLoginsLookAsUpstream) {
  gw.start();
  WsClient b;
  b.connect(gw.ws_port());
  EXPECT_TRUE(login(b, "bob").at("data").is_null());
  http_get(gw.http_port(), "/user/sendMessageAll?appID=101&userID=x&message=hi");
  auto got = msgs(b, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(push_data(got[0]).size(), 4u);  // target, type, msg, from
  const HttpResponse h = http_get(gw.http_port(), "/user/history?appID=101");
  EXPECT_NE(h.body.find("\"code\":1009"), std::string::npos) << h.body;
}

}  // namespace
}  // namespace imgate::test
