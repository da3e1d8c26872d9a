// Limits: the per-connection send queue (a peer that does not read is closed
// with 1008 once its queue passes --send-queue-bytes, and nobody else waits
// for it) and the global --max-connections.
#include <cerrno>
#include <future>

#include "gateway_process.hpp"
#include "raw_connection.hpp"
#include "ws_client.hpp"

namespace imgate::test {
namespace {
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

constexpr uint8_t kText = 0x1;

class BackpressureTest : public GatewayTest {};

// `n` ping requests as masked text frames, back to back.
std::string ping_frames(int n) {
  const std::string frame = RawConnection::encode_frame(kText, make_request("f", "ping"));
  std::string out;
  out.reserve(frame.size() * n);
  for (int i = 0; i < n; ++i) out += frame;
  return out;
}

TEST_F(BackpressureTest, SlowReaderIsClosedWhileOthersKeepBeingServed) {
  // One loop thread: the slow reader and the fast client share it.
  // No message limit: the flood must overflow the send queue, not the rate.
  gw.start({{"--threads", "1"},
            {"--send-queue-bytes", "65536"},
            {"--close-timeout", "0.5"},
            {"--message-rate", "0"}});
  WsClient fast;
  fast.connect(gw.ws_port());
  ASSERT_EQ(fast.login(101, "fast"), 200);

  // A peer with a tiny receive window that never reads, flooding pings so
  // that their pongs pile up on the server (at most 200k requests).
  RawConnection slow;
  slow.connect(gw.ws_port(), 4096);
  ASSERT_EQ(slow.upgrade(), 101u);
  const std::string chunk = ping_frames(1000);
  auto flood = std::async(std::launch::async, [&] {
    return slow.flood(
        chunk, 200, [] { return false; }, 10s);
  });

  // While the flood runs, the other client's requests are answered promptly.
  const auto deadline = Clock::now() + 20s;
  int pongs = 0;
  while (flood.wait_for(0ms) != std::future_status::ready && Clock::now() < deadline) {
    fast.expect_pong(1s);  // throws if the answer takes longer
    ++pongs;
  }
  ASSERT_EQ(flood.wait_for(5s), std::future_status::ready) << "flood did not end";
  const FloodResult result = flood.get();
  // The flood ends with a reset once the server gives up on the peer, or
  // completes if the server kept draining it meanwhile; it never stalls.
  EXPECT_FALSE(result.stalled) << "the server neither read nor closed the slow peer";
  EXPECT_TRUE(result.error == 0 || result.error == ECONNRESET || result.error == EPIPE)
      << "errno " << result.error;
  EXPECT_TRUE(slow.wait_closed(5s)) << "the slow peer was not disconnected";

  ASSERT_TRUE(gw.wait_for("the slow peer is gone", [](const State& s) {
    return s.counter("sendQueueOverflows") == 1 && s.clients_len() == 1 && s.sessions() == 1;
  }));
  const State s = gw.state();
  EXPECT_GE(s.closes_by_code(1008), 1) << s.dump();
  EXPECT_EQ(s.users_len(), 1) << s.dump();
  fast.expect_pong(1s);
  EXPECT_GT(pongs, 0) << "the flood ended before the other client was checked";
  RecordProperty("fast_client_pongs_during_flood", pongs);
}

TEST_F(BackpressureTest, SlowReaderThatIsLoggedInIsAnnouncedAsLeaving) {
  gw.start({{"--send-queue-bytes", "16384"}, {"--close-timeout", "0.5"}});
  WsClient observer;
  observer.connect(gw.ws_port());
  ASSERT_EQ(observer.login(101, "observer"), 200);
  RawConnection slow;
  slow.connect(gw.ws_port(), 4096);
  ASSERT_EQ(slow.upgrade(), 101u);
  ASSERT_TRUE(slow.send_all(RawConnection::encode_frame(
      kText, make_request("l", "login", R"({"appID":101,"userID":"slow"})"))));
  ASSERT_TRUE(observer.next_push("enter", 3s));

  const std::string chunk = ping_frames(1000);
  const FloodResult result = slow.flood(
      chunk, 200, [] { return false; }, 10s);
  EXPECT_FALSE(result.stalled) << "the server neither read nor closed the slow peer";
  EXPECT_TRUE(slow.wait_closed(5s)) << "the slow peer was not disconnected";
  const auto exit = observer.next_push("exit", 5s);
  ASSERT_TRUE(exit) << "no exit for the slow user";
  EXPECT_EQ(data_of(*exit).at("from").as_string(), "slow");
  EXPECT_TRUE(gw.wait_for("one overflow, only the observer left", [](const State& s) {
    return s.counter("sendQueueOverflows") == 1 && s.users_len() == 1 && s.clients_len() == 1;
  }));
}

TEST_F(BackpressureTest, OverflowOnOneOfAUsersConnectionsKeepsTheUserOnline) {
  gw.start({{"--send-queue-bytes", "16384"}, {"--close-timeout", "0.5"}});
  WsClient observer, alice;
  observer.connect(gw.ws_port());
  alice.connect(gw.ws_port());
  ASSERT_EQ(observer.login(101, "observer"), 200);
  ASSERT_EQ(alice.login(101, "alice"), 200);
  ASSERT_TRUE(observer.next_push("enter", 3s));
  RawConnection slow_alice;
  slow_alice.connect(gw.ws_port(), 4096);
  ASSERT_EQ(slow_alice.upgrade(), 101u);
  ASSERT_TRUE(slow_alice.send_all(RawConnection::encode_frame(
      kText, make_request("l", "login", R"({"appID":101,"userID":"alice"})"))));
  ASSERT_TRUE(gw.wait_for("alice twice", [](const State& s) { return s.clients_len() == 3; }));

  const FloodResult result = slow_alice.flood(
      ping_frames(1000), 200, [] { return false; }, 10s);
  EXPECT_FALSE(result.stalled);
  EXPECT_TRUE(slow_alice.wait_closed(5s));
  ASSERT_TRUE(gw.wait_for("alice's slow connection gone, alice still online", [](const State& s) {
    return s.counter("sendQueueOverflows") == 1 && s.clients_len() == 2 && s.users_len() == 2;
  }));
  for (const auto& push : observer.take_pushes()) {
    EXPECT_NE(cmd_of(push), "exit") << "alice announced as leaving while still connected";
  }
  alice.expect_pong();
}

TEST_F(BackpressureTest, FastReaderReceivesALargeBurstInOrderWithoutOverflow) {
  gw.start({{"--send-queue-bytes", "65536"}, {"--message-rate", "0"}});  // a burst above 200
  WsClient c;  // keeps reading on its own thread
  c.connect(gw.ws_port());
  constexpr int kRequests = 3000;  // ~250 KB of answers, several times the queue cap
  // At most kWindow requests unanswered (~25 KB of answers, below the cap even
  // if the kernel buffered nothing): the reader keeps up by construction, not
  // by being scheduled in time, so any overflow is the queue's accounting.
  constexpr int kWindow = 300;
  int answered = 0;
  const auto read_one = [&] {
    const auto res = c.read_json(3s);
    ASSERT_TRUE(res) << "answer " << answered << " missing; closed: " << c.closed();
    ASSERT_EQ(seq_of(*res), std::to_string(answered));
    ++answered;
  };
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_FALSE(c.send_text(make_request(std::to_string(i), "ping"))) << "request " << i;
    if (i + 1 - answered >= kWindow) {
      ASSERT_NO_FATAL_FAILURE(read_one());
    }
  }
  while (answered < kRequests) ASSERT_NO_FATAL_FAILURE(read_one());
  const State s = gw.state();
  EXPECT_EQ(s.counter("sendQueueOverflows"), 0) << s.dump();
  EXPECT_EQ(s.counter("messagesIn"), kRequests) << s.dump();
}

TEST_F(BackpressureTest, ConnectionsBeyondMaxConnectionsAreNotUpgraded) {
  gw.start({{"--max-connections", "2"}});
  WsClient a, b;
  a.connect(gw.ws_port());
  b.connect(gw.ws_port());
  ASSERT_EQ(a.login(101, "a"), 200);

  WsClient third;
  EXPECT_TRUE(third.try_connect(gw.ws_port(), 3s)) << "a third connection was upgraded";
  EXPECT_NE(third.handshake_status(), 101u);
  ASSERT_TRUE(gw.wait_for("still two connections", [](const State& s) {
    return s.clients_len() == 2 && s.sessions() == 2;
  }));
  const State s = gw.state();
  EXPECT_EQ(s.counter("connectionsOpened"), 2) << s.dump();
  a.expect_pong();
  b.expect_pong();

  // A freed slot can be used again.
  a.drop();
  ASSERT_TRUE(gw.wait_for("one connection left", [](const State& st) {
    return st.clients_len() == 1 && st.sessions() == 1 && st.users_len() == 0;
  }));
  WsClient again;
  again.connect(gw.ws_port());
  EXPECT_EQ(again.login(101, "again"), 200);
  EXPECT_EQ(gw.state().clients_len(), 2);
}

}  // namespace
}  // namespace imgate::test
