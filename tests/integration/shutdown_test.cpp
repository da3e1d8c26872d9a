// Graceful shutdown: on SIGTERM / SIGINT imgate stops accepting, sends close
// 1001 ("going away") to every client and exits 0 within --shutdown-timeout,
// even when some peers never answer the close.
#include <memory>

#include "gateway_process.hpp"
#include "raw_connection.hpp"
#include "ws_client.hpp"

namespace imgate::test {
namespace {
using Clock = std::chrono::steady_clock;

constexpr uint16_t kGoingAway = 1001;

class ShutdownTest : public GatewayTest {
 protected:
  // Sends `sig`, waits for the exit and returns how long it took; the exit
  // status is left in gw.exit_status().
  Millis stop_with(int sig, Millis timeout = 10s) {
    const auto started = Clock::now();
    gw.terminate(sig, timeout);
    return std::chrono::duration_cast<Millis>(Clock::now() - started);
  }
};

TEST_F(ShutdownTest, SigtermClosesEveryClientWithGoingAwayAndExitsZero) {
  gw.start({{"--shutdown-timeout", "2"}});
  WsClient alice, bob, anonymous;
  alice.connect(gw.ws_port());
  bob.connect(gw.ws_port());
  anonymous.connect(gw.ws_port());
  ASSERT_EQ(alice.login(101, "alice"), 200);
  ASSERT_EQ(bob.login(102, "bob"), 200);
  std::vector<std::unique_ptr<WsClient>> many;
  for (int i = 0; i < 20; ++i) {
    many.push_back(std::make_unique<WsClient>());
    many.back()->connect(gw.ws_port());
    ASSERT_EQ(many.back()->login(101, "u" + std::to_string(i)), 200);
  }

  const Millis took = stop_with(SIGTERM);
  EXPECT_EQ(gw.exit_status(), 0) << "exit status";
  EXPECT_LT(took, 2s) << "every client answered the close, yet the exit waited for the deadline";
  for (WsClient* c : {&alice, &bob, &anonymous}) EXPECT_EQ(c->expect_closed(1s), kGoingAway);
  for (auto& c : many) EXPECT_EQ(c->expect_closed(1s), kGoingAway);
}

TEST_F(ShutdownTest, SigintBehavesLikeSigterm) {
  gw.start({{"--shutdown-timeout", "2"}});
  WsClient c;
  c.connect(gw.ws_port());
  ASSERT_EQ(c.login(101, "u"), 200);
  const Millis took = stop_with(SIGINT);
  EXPECT_EQ(gw.exit_status(), 0);
  EXPECT_LT(took, 2s);
  EXPECT_EQ(c.expect_closed(1s), kGoingAway);
}

TEST_F(ShutdownTest, IdleGatewayExitsPromptly) {
  gw.start({{"--shutdown-timeout", "5"}});
  const Millis took = stop_with(SIGTERM);
  EXPECT_EQ(gw.exit_status(), 0);
  EXPECT_LT(took, 1s);
}

TEST_F(ShutdownTest, TcpSessionStillInHttpHandshakeDoesNotHoldUpTheExit) {
  // Nothing to say "going away" to: such a session is simply closed.
  gw.start({{"--shutdown-timeout", "3"}, {"--handshake-timeout", "10"}});
  WsClient client;
  client.connect(gw.ws_port());
  RawConnection unupgraded;
  unupgraded.connect(gw.ws_port());
  ASSERT_TRUE(gw.wait_for("two sessions", [](const State& s) { return s.sessions() == 2; }));
  const Millis took = stop_with(SIGTERM);
  EXPECT_EQ(gw.exit_status(), 0);
  EXPECT_LT(took, 1500ms) << "waited for a session that never upgraded";
  EXPECT_EQ(client.expect_closed(1s), kGoingAway);
  EXPECT_TRUE(unupgraded.wait_closed(1s));
}

TEST_F(ShutdownTest, PeersThatNeverAnswerDoNotDelayExitBeyondShutdownTimeout) {
  // close-timeout is longer than shutdown-timeout: only the latter bounds the exit.
  gw.start({{"--shutdown-timeout", "1"}, {"--close-timeout", "10"}, {"--handshake-timeout", "10"}});
  WsClient cooperative;
  cooperative.connect(gw.ws_port());
  ASSERT_EQ(cooperative.login(101, "coop"), 200);
  RawConnection deaf;  // upgraded, never reads, never answers the close
  deaf.connect(gw.ws_port(), 4096);
  ASSERT_EQ(deaf.upgrade(), 101u);
  WsClient silent(WsClientOptions{.auto_read = false});  // upgraded, logged in, not reading
  silent.connect(gw.ws_port());
  ASSERT_EQ(silent.login(101, "silent"), 200);
  RawConnection unupgraded;  // TCP only, still in the HTTP handshake
  unupgraded.connect(gw.ws_port());
  ASSERT_TRUE(gw.wait_for("four sessions", [](const State& s) { return s.sessions() == 4; }));

  const Millis took = stop_with(SIGTERM);
  EXPECT_EQ(gw.exit_status(), 0);
  EXPECT_LT(took, 2500ms) << "exit not bounded by --shutdown-timeout 1";
  EXPECT_EQ(cooperative.expect_closed(1s), kGoingAway);
  EXPECT_TRUE(deaf.wait_closed(1s));
  EXPECT_TRUE(unupgraded.wait_closed(1s));
  EXPECT_TRUE(silent.expect_closed(1s).has_value());
}

TEST_F(ShutdownTest, NoNewConnectionsAreAcceptedOnceShutdownBegins) {
  // A deaf peer keeps the gateway draining for up to 1.5 s after SIGTERM.
  gw.start({{"--shutdown-timeout", "1.5"}, {"--close-timeout", "10"}});
  RawConnection deaf;
  deaf.connect(gw.ws_port(), 4096);
  ASSERT_EQ(deaf.upgrade(), 101u);
  WsClient watcher;
  watcher.connect(gw.ws_port());

  gw.signal(SIGTERM);
  ASSERT_EQ(watcher.expect_closed(3s), kGoingAway) << "shutdown did not begin";
  WsClient late;
  EXPECT_TRUE(late.try_connect(gw.ws_port(), 2s)) << "upgraded a connection during shutdown";
  EXPECT_EQ(gw.wait_exit(5s), 0);
}

TEST_F(ShutdownTest, ExitIsBoundedWhenAWriteToAPeerIsStuck) {
  // The peer floods pings without reading until its receive window and the
  // server's socket buffer are full: the close frame can never be written.
  // No message limit: the flood's answers must fill the buffers.
  gw.start({{"--shutdown-timeout", "1"},
            {"--close-timeout", "10"},
            {"--send-queue-bytes", "67108864"},
            {"--message-rate", "0"}});
  RawConnection stuck;
  stuck.connect(gw.ws_port(), 4096);
  ASSERT_EQ(stuck.upgrade(), 101u);
  std::string chunk;
  for (int i = 0; i < 1000; ++i)
    chunk += RawConnection::encode_frame(0x1, make_request("f", "ping"));
  // Flood until the writes stall (buffers full both ways) or 100k requests.
  const FloodResult flood = stuck.flood(
      chunk, 100, [] { return false; }, 500ms);
  ASSERT_TRUE(flood.stalled || flood.error == 0) << "errno " << flood.error;
  WsClient cooperative;
  cooperative.connect(gw.ws_port());

  const Millis took = stop_with(SIGTERM);
  EXPECT_EQ(gw.exit_status(), 0);
  EXPECT_LT(took, 2500ms) << "exit not bounded by --shutdown-timeout 1";
  EXPECT_EQ(cooperative.expect_closed(1s), kGoingAway);
  EXPECT_TRUE(stuck.wait_closed(3s));
}

TEST_F(ShutdownTest, RepeatedSignalsDuringTheDrainStillExitZero) {
  gw.start({{"--shutdown-timeout", "1"}, {"--close-timeout", "10"}});
  RawConnection deaf;  // keeps the drain going until the deadline
  deaf.connect(gw.ws_port(), 4096);
  ASSERT_EQ(deaf.upgrade(), 101u);
  WsClient watcher;
  watcher.connect(gw.ws_port());
  gw.signal(SIGTERM);
  ASSERT_EQ(watcher.expect_closed(3s), kGoingAway);
  gw.signal(SIGTERM);
  gw.signal(SIGINT);
  EXPECT_EQ(gw.wait_exit(5s), 0);
}

}  // namespace
}  // namespace imgate::test
