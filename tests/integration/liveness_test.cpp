// Liveness (spec §4, imgate): server pings idle connections, any frame from
// the client refreshes liveness, a connection silent for heartbeat-timeout is
// closed and forgotten exactly once; TCP sessions that never upgrade are
// closed after handshake-timeout.
#include <algorithm>
#include <thread>

#include "gateway_process.hpp"
#include "raw_connection.hpp"
#include "ws_client.hpp"

namespace imgate::test {
namespace {

using Clock = std::chrono::steady_clock;

constexpr Millis kHeartbeatTimeout{800};
constexpr Millis kPingInterval{200};

class LivenessTest : public GatewayTest {
 protected:
  void SetUp() override {
    gw.start({{"--heartbeat-timeout", "0.8"},
              {"--ping-interval", "0.2"},
              {"--close-timeout", "0.5"},
              {"--handshake-timeout", "0.5"}});
  }

  // A logged-in client that does not read after its login response: nobody
  // answers the server's pings.
  std::unique_ptr<WsClient> silent_user(std::string_view user) {
    auto c = std::make_unique<WsClient>(WsClientOptions{.auto_read = false});
    c->connect(gw.ws_port());
    EXPECT_EQ(c->login(101, user), 200);
    return c;
  }
};

// Waits until `c` has received `n` more server pings than `baseline`:
// evidence that time has passed while the server was watching `c`.
testing::AssertionResult received_pings(const WsClient& c, std::size_t baseline, std::size_t n,
                                        Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  while (c.pings_received() < baseline + n) {
    if (Clock::now() > deadline) {
      return testing::AssertionFailure()
             << "only " << c.pings_received() - baseline << " of " << n << " server pings arrived";
    }
    std::this_thread::sleep_for(10ms);  // polling interval, bounded by the deadline
  }
  return testing::AssertionSuccess();
}

TEST_F(LivenessTest, SilentLoggedInPeerIsClosedOnceAndAnnouncedAsLeaving) {
  WsClient bob;
  bob.connect(gw.ws_port());
  ASSERT_EQ(bob.login(101, "bob"), 200);
  auto dead = silent_user("dead");
  ASSERT_TRUE(bob.next_push("enter"));

  ASSERT_TRUE(gw.wait_for(
      "the silent peer timed out",
      [](const State& s) {
        return s.counter("heartbeatTimeouts") == 1 && s.clients_len() == 1 && s.users_len() == 1;
      },
      5s));
  const auto exit = bob.next_push("exit", 3s);
  ASSERT_TRUE(exit) << "no exit for the timed-out user";
  EXPECT_EQ(data_of(*exit).at("from").as_string(), "dead");
  EXPECT_TRUE(dead->expect_closed(3s).has_value()) << "the server did not close the silent peer";

  // Counted once, not once per sweep: let several more timeout periods pass.
  const std::size_t pings = bob.pings_received();
  ASSERT_TRUE(received_pings(bob, pings, 3 * kHeartbeatTimeout / kPingInterval, 5s));
  const State s = gw.state();
  EXPECT_EQ(s.counter("heartbeatTimeouts"), 1) << s.dump();
  EXPECT_EQ(s.clients_len(), 1) << s.dump();
  EXPECT_FALSE(bob.closed()) << "the attentive client was closed too";
  EXPECT_TRUE(bob.take_pushes().empty()) << "duplicate exit";
}

TEST_F(LivenessTest, ReadingClientThatSendsNothingSurvivesManyTimeoutPeriods) {
  // Reading answers the server's pings with pongs (Beast does it for us);
  // that alone must keep the connection, for more than three timeout periods.
  WsClient quiet;
  quiet.connect(gw.ws_port());
  ASSERT_EQ(quiet.login(101, "quiet"), 200);
  ASSERT_TRUE(received_pings(quiet, 0, 3 * kHeartbeatTimeout / kPingInterval + 2, 6s));
  EXPECT_FALSE(quiet.closed());
  const State s = gw.state();
  EXPECT_EQ(s.counter("heartbeatTimeouts"), 0) << s.dump();
  EXPECT_EQ(s.clients_len(), 1) << s.dump();
  EXPECT_EQ(s.users_len(), 1) << s.dump();
  quiet.expect_pong();
}

TEST_F(LivenessTest, PingFramesOrAnyMessageAloneKeepConnectionsAlive) {
  // Neither client reads (so neither answers server pings); one sends
  // WebSocket pings, the other a refused heartbeat (not logged in: 1000).
  // A third, fully silent client shows the timeout was active meanwhile.
  WsClient pinger(WsClientOptions{.auto_read = false});
  WsClient talker(WsClientOptions{.auto_read = false});
  WsClient silent(WsClientOptions{.auto_read = false});
  pinger.connect(gw.ws_port());
  talker.connect(gw.ws_port());
  silent.connect(gw.ws_port());

  const auto until = Clock::now() + 3 * kHeartbeatTimeout;
  while (Clock::now() < until) {
    ASSERT_FALSE(pinger.send_ping_frame());
    ASSERT_FALSE(talker.send_text(make_request("hb", "heartbeat")));
    std::this_thread::sleep_for(kPingInterval);  // pacing of the client's own traffic
  }
  const State s = gw.state();
  EXPECT_EQ(s.counter("heartbeatTimeouts"), 1)
      << "only the silent client should time out; " << s.dump();
  EXPECT_EQ(s.clients_len(), 2) << s.dump();
  EXPECT_TRUE(silent.expect_closed(3s).has_value());
  // Both survivors are still served: their earlier answers are queued first.
  const auto first = talker.read_json();
  ASSERT_TRUE(first);
  EXPECT_EQ(code_of(*first), 1000);
  pinger.start_reading();
  talker.start_reading();
  pinger.expect_pong();
  talker.expect_pong();
}

TEST_F(LivenessTest, EachTimedOutConnectionIsCountedExactlyOnce) {
  WsClient observer;
  observer.connect(gw.ws_port());
  ASSERT_EQ(observer.login(101, "observer"), 200);
  std::vector<std::unique_ptr<WsClient>> silent_users;
  for (int i = 0; i < 3; ++i) silent_users.push_back(silent_user("s" + std::to_string(i)));
  // Two peers that upgrade by hand and then never send or read a byte.
  RawConnection raw1, raw2;
  for (RawConnection* raw : {&raw1, &raw2}) {
    raw->connect(gw.ws_port());
    ASSERT_EQ(raw->upgrade(), 101u);
  }
  ASSERT_TRUE(gw.wait_for(
      "five timeouts, only the observer left",
      [](const State& s) {
        return s.counter("heartbeatTimeouts") == 5 && s.clients_len() == 1 && s.users_len() == 1 &&
               s.sessions() == 1;
      },
      6s));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(observer.next_push("exit", 3s)) << "exit " << i;
  EXPECT_TRUE(raw1.wait_closed());
  EXPECT_TRUE(raw2.wait_closed());

  const std::size_t pings = observer.pings_received();
  ASSERT_TRUE(received_pings(observer, pings, 3 * kHeartbeatTimeout / kPingInterval, 5s));
  const State s = gw.state();
  EXPECT_EQ(s.counter("heartbeatTimeouts"), 5) << s.dump();
  EXPECT_EQ(s.counter("connectionsClosed"), 5) << s.dump();
  for (const auto& p : observer.take_pushes()) EXPECT_NE(cmd_of(p), "exit") << "duplicate exit";
}

TEST_F(LivenessTest, TimedOutConnectionOfUserWithAnotherLiveOneKeepsUserOnline) {
  // spec §5 cause 5: losing one of a user's connections must not log the user off.
  WsClient bob;
  bob.connect(gw.ws_port());
  ASSERT_EQ(bob.login(101, "bob"), 200);
  WsClient alice_live;
  alice_live.connect(gw.ws_port());
  ASSERT_EQ(alice_live.login(101, "alice"), 200);
  auto alice_dead = silent_user("alice");
  ASSERT_TRUE(bob.next_push("enter"));

  ASSERT_TRUE(gw.wait_for(
      "alice's silent connection timed out",
      [](const State& s) {
        return s.counter("heartbeatTimeouts") == 1 && s.clients_len() == 2 && s.users_len() == 2;
      },
      5s, true));
  EXPECT_TRUE(alice_dead->expect_closed(3s).has_value());
  const auto pushes = bob.take_pushes();
  for (const auto& p : pushes) EXPECT_NE(cmd_of(p), "exit") << "alice left while still connected";
  auto users = gw.state(true).users();
  std::sort(users.begin(), users.end());
  EXPECT_EQ(users, (std::vector<std::string>{"101_alice", "101_bob"}));
  alice_live.expect_pong();
  EXPECT_EQ(code_of(alice_live.request("heartbeat")), 200);
}

TEST_F(LivenessTest, TcpSessionsThatNeverUpgradeAreClosedAfterHandshakeTimeout) {
  RawConnection idle;     // connects and sends nothing
  RawConnection partial;  // sends half a request and stops
  idle.connect(gw.ws_port());
  partial.connect(gw.ws_port());
  ASSERT_TRUE(partial.send_all("GET /acc HTTP/1.1\r\nHost: 127.0.0.1\r\n"));
  ASSERT_TRUE(gw.wait_for("two sessions, no client", [](const State& s) {
    return s.sessions() == 2 && s.clients_len() == 0;
  }));
  EXPECT_TRUE(idle.wait_closed(3s)) << "idle TCP session not closed";
  EXPECT_TRUE(partial.wait_closed(3s)) << "half-sent handshake not closed";
  ASSERT_TRUE(gw.wait_idle());
  const State s = gw.state();
  EXPECT_EQ(s.counter("handshakeFailures"), 2) << s.dump();
  EXPECT_EQ(s.counter("connectionsOpened"), 0) << s.dump();
  EXPECT_EQ(s.counter("heartbeatTimeouts"), 0) << s.dump();

  // The handshake timeout does not apply once upgraded.
  WsClient c;
  c.connect(gw.ws_port());
  ASSERT_TRUE(received_pings(c, 0, 2 * 500ms / kPingInterval, 3s));
  EXPECT_FALSE(c.closed());
  c.expect_pong();
}

}  // namespace
}  // namespace imgate::test
