// Per-client limits against the real binary (issue 9 item 6): connections and
// upgrades per client address, messages per connection, and the client
// address behind trusted proxies (X-Forwarded-For). Each crossing is a close
// 1008 seen by the client, counted in /system/state and /metrics; every
// ending of a connection gives its address's place back.
#include <memory>
#include <string>
#include <vector>

#include "gateway_process.hpp"
#include "raw_connection.hpp"
#include "ws_client.hpp"

namespace imgate::test {
namespace {

constexpr uint8_t kText = 0x1;
constexpr uint8_t kBinary = 0x2;
constexpr uint8_t kClose = 0x8;
constexpr uint8_t kPing = 0x9;
constexpr uint8_t kPong = 0xa;

const char* const kTooManyConnections = "too many connections from this address";
const char* const kTooManyUpgrades = "too many connection attempts from this address";

int64_t number_at(const State& s, std::initializer_list<std::string_view> path) {
  const boost::json::value* v = s.find(path);
  return v && v->is_number() ? v->to_number<int64_t>() : -1;
}
int64_t limit_closes(const State& s, std::string_view limit) {
  return number_at(s, {"imgate", "counters", "limitCloses", limit});
}
int64_t client_connections(const State& s) {
  return number_at(s, {"imgate", "clientConnections"});
}
int64_t client_addresses(const State& s) {
  return number_at(s, {"imgate", "clientAddresses"});
}

std::string xff(std::string_view value) {
  return "X-Forwarded-For: " + std::string(value) + "\r\n";
}

class LimitsTest : public GatewayTest {
 protected:
  std::string metrics() const { return http_get(gw.http_port(), "/metrics").body; }

  // A raw connection upgraded with `headers`; the upgrade itself always
  // completes (refusals by a limit come as a close frame after the 101).
  std::unique_ptr<RawConnection> upgrade(std::string_view headers = "") const {
    auto c = std::make_unique<RawConnection>();
    c->connect(gw.ws_port());
    EXPECT_EQ(c->upgrade("/acc", 3000ms, headers), 101u);
    return c;
  }
};

// A ping command gets its pong: the connection carries traffic.
::testing::AssertionResult carries_traffic(RawConnection& c) {
  if (!c.send_all(RawConnection::encode_frame(kText, make_request("p", "ping")))) {
    return ::testing::AssertionFailure() << "send failed";
  }
  for (int i = 0; i < 8; ++i) {
    const auto f = c.read_frame(3000ms);
    if (!f) return ::testing::AssertionFailure() << "no answer";
    if (f->opcode == kClose) return ::testing::AssertionFailure() << "closed " << f->close_code();
    if (f->opcode == kText && f->payload.find("pong") != std::string::npos) {
      return ::testing::AssertionSuccess();
    }
  }
  return ::testing::AssertionFailure() << "no pong";
}

// Reads until a close frame, which must carry `code`; answers it, waits for
// the server to close TCP and returns the close reason.
std::string closed_with(RawConnection& c, uint16_t code, Millis timeout = 3000ms) {
  for (int i = 0; i < 1000; ++i) {
    const auto f = c.read_frame(timeout);
    if (!f) {
      ADD_FAILURE() << "no close frame";
      return "";
    }
    if (f->opcode != kClose) continue;
    EXPECT_EQ(f->close_code(), code);
    c.send_all(RawConnection::encode_frame(kClose, f->payload.substr(0, 2)));
    EXPECT_TRUE(c.wait_closed()) << "the server kept the connection open";
    return f->payload.size() > 2 ? f->payload.substr(2) : "";
  }
  ADD_FAILURE() << "no close frame among the first 1000";
  return "";
}

TEST_F(LimitsTest, ConnectionsPerAddressAboveTheLimitAreClosedWith1008) {
  gw.start({{"--ip-max-connections", "2"}, {"--ip-upgrade-rate", "0"}});
  auto a = upgrade();
  auto b = upgrade();
  ASSERT_TRUE(carries_traffic(*a));
  ASSERT_TRUE(carries_traffic(*b));
  auto c = upgrade();
  EXPECT_EQ(closed_with(*c, 1008), kTooManyConnections);
  EXPECT_TRUE(carries_traffic(*a));  // the others are untouched
  // A WebSocket library sees the close code too (a browser also its reason).
  WsClient lib;
  lib.connect(gw.ws_port());
  EXPECT_EQ(lib.expect_closed(), 1008);
  State s = gw.state();
  EXPECT_EQ(limit_closes(s, "ipConnections"), 2) << s.dump();
  EXPECT_EQ(limit_closes(s, "ipUpgradeRate"), 0) << s.dump();
  EXPECT_EQ(s.closes_by_code(1008), 2) << s.dump();
  EXPECT_EQ(client_connections(s), 2) << s.dump();
  EXPECT_EQ(client_addresses(s), 1) << s.dump();
  EXPECT_NE(metrics().find("imgate_limit_closes_total{limit=\"ip_connections\"} 2"),
            std::string::npos)
      << metrics();
  // An ending gives the place back.
  a->close();
  ASSERT_TRUE(gw.wait_for("a's place given back",
                          [](const State& st) { return client_connections(st) == 1; }));
  auto d = upgrade();
  EXPECT_TRUE(carries_traffic(*d));
}

TEST_F(LimitsTest, UpgradesPerAddressAboveTheRateAreClosedWith1008) {
  // A burst of 3 and then one upgrade per 1000 s: the 4th is over the rate.
  gw.start(
      {{"--ip-upgrade-rate", "0.001"}, {"--ip-upgrade-burst", "3"}, {"--ip-max-connections", "0"}});
  std::vector<std::unique_ptr<RawConnection>> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(upgrade());
    ASSERT_TRUE(carries_traffic(*held.back())) << i;
  }
  auto over = upgrade();
  EXPECT_EQ(closed_with(*over, 1008), kTooManyUpgrades);
  // Closing connections gives no token back: the rate counts attempts.
  held.clear();
  ASSERT_TRUE(gw.wait_idle());
  auto again = upgrade();
  EXPECT_EQ(closed_with(*again, 1008), kTooManyUpgrades);
  const State s = gw.state();
  EXPECT_EQ(limit_closes(s, "ipUpgradeRate"), 2) << s.dump();
  EXPECT_EQ(limit_closes(s, "ipConnections"), 0) << s.dump();
  EXPECT_EQ(client_connections(s), 0) << s.dump();
  EXPECT_NE(metrics().find("imgate_limit_closes_total{limit=\"ip_upgrade_rate\"} 2"),
            std::string::npos)
      << metrics();
}

TEST_F(LimitsTest, MessagesAboveTheRateCloseTheConnectionWith1008) {
  gw.start({{"--message-rate", "0.001"}, {"--message-burst", "5"}});
  auto c = upgrade();
  // WebSocket pings are not messages.
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(c->send_all(RawConnection::encode_frame(kPing, "x")));
    const auto pong = c->read_frame();
    ASSERT_TRUE(pong && pong->opcode == kPong) << i;
  }
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(carries_traffic(*c)) << i;
  ASSERT_TRUE(c->send_all(RawConnection::encode_frame(kText, make_request("six", "ping"))));
  EXPECT_EQ(closed_with(*c, 1008), "message rate exceeded");
  ASSERT_TRUE(gw.wait_idle());  // unlinked from the registry
  // Each connection has its own bucket.
  auto d = upgrade();
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(carries_traffic(*d)) << i;
  const State s = gw.state();
  EXPECT_EQ(limit_closes(s, "messageRate"), 1) << s.dump();
  EXPECT_EQ(s.counter("messagesIn"), 11) << s.dump();
  const std::string m = metrics();
  EXPECT_NE(m.find("imgate_limit_closes_total{limit=\"message_rate\"} 1"), std::string::npos) << m;
  EXPECT_NE(m.find("imgate_connections_closed_total{reason=\"limit crossed\"} 1"),
            std::string::npos)
      << m;
}

TEST_F(LimitsTest, TheDefaultMessageLimitStopsAFlood) {
  gw.start();  // defaults: 100 messages per second, 200 at once
  auto c = upgrade();
  std::string flood;
  for (int i = 0; i < 1000; ++i)
    flood += RawConnection::encode_frame(kText, make_request("f", "ping"));
  ASSERT_TRUE(c->send_all(flood, 5000ms));
  EXPECT_EQ(closed_with(*c, 1008), "message rate exceeded");
  const State s = gw.state();
  EXPECT_EQ(limit_closes(s, "messageRate"), 1) << s.dump();
  EXPECT_GE(s.counter("messagesIn"), 201) << s.dump();
  EXPECT_LT(s.counter("messagesIn"), 1000) << s.dump();  // the rest is ignored
}

// The client publish command (docs/security.md) is a message like any other: a flood of
// publishes is cut off at the burst, and only the publishes within it reach the room.
TEST_F(LimitsTest, PublishCountsAgainstTheMessageRate) {
  gw.start({{"--message-rate", "0.001"}, {"--message-burst", "5"}});
  WsClient listener;
  listener.connect(gw.ws_port());
  ASSERT_EQ(listener.login(101, "listener"), 200);
  auto a = upgrade();
  ASSERT_TRUE(a->send_all(RawConnection::encode_frame(
      kText, make_request("in", "login", R"({"appID":101,"userID":"publisher"})"))));
  const auto login = a->read_frame(3000ms);
  ASSERT_TRUE(login && login->opcode == kText);
  ASSERT_NE(login->payload.find("\"code\":200"), std::string::npos) << login->payload;
  // The login was message 1 of the burst of 5: 4 publishes fit, the 5th crosses the rate.
  std::string flood;
  for (int i = 0; i < 50; ++i) {
    flood += RawConnection::encode_frame(
        kText, make_request("p" + std::to_string(i), "publish",
                            R"({"message":"m)" + std::to_string(i) + R"(","msgID":"flood-)" +
                                std::to_string(i) + R"("})"));
  }
  ASSERT_TRUE(a->send_all(flood, 5000ms));
  int published = 0;
  for (;;) {
    const auto f = a->read_frame(3000ms);
    ASSERT_TRUE(f) << "no close frame after " << published << " publish answers";
    if (f->opcode == kClose) {
      EXPECT_EQ(f->close_code(), 1008);
      EXPECT_EQ(f->payload.substr(2), "message rate exceeded");
      break;
    }
    if (f->opcode == kText && f->payload.find("\"cmd\":\"publish\"") != std::string::npos) {
      EXPECT_NE(f->payload.find("\"code\":200"), std::string::npos) << f->payload;
      ++published;
    }
  }
  EXPECT_LE(published, 4);  // answers still on their way when the close came are dropped
  for (int i = 0; i < 4; ++i) {
    const auto push = listener.next_push("msg");
    ASSERT_TRUE(push) << "publish " << i << " did not arrive";
    EXPECT_EQ(push->at("response").at("data").at("msg").as_string(), "m" + std::to_string(i));
  }
  // Other pushes (the publisher's login announced to the room) may be queued; no msg.
  for (const auto& push : listener.take_pushes()) {
    EXPECT_NE(cmd_of(push), "msg") << "a publish over the rate reached the room: "
                                   << boost::json::serialize(push);
  }
  const State s = gw.state();
  EXPECT_EQ(limit_closes(s, "messageRate"), 1) << s.dump();
  EXPECT_NE(metrics().find("imgate_limit_closes_total{limit=\"message_rate\"} 1"), std::string::npos)
      << metrics();
}

TEST_F(LimitsTest, ForwardedForFromAnUntrustedPeerIsIgnored) {
  // 127.0.0.1 is not a trusted proxy: both upgrades are 127.0.0.1's.
  gw.start({{"--ip-max-connections", "1"},
            {"--ip-upgrade-rate", "0"},
            {"--trusted-proxies", "10.0.0.0/8,::1/128"}});
  auto a = upgrade(xff("203.0.113.1"));
  ASSERT_TRUE(carries_traffic(*a));
  auto b = upgrade(xff("203.0.113.2"));
  EXPECT_EQ(closed_with(*b, 1008), kTooManyConnections);
  const State s = gw.state();
  EXPECT_EQ(client_addresses(s), 1) << s.dump();
  EXPECT_EQ(limit_closes(s, "ipConnections"), 1) << s.dump();
}

TEST_F(LimitsTest, ForwardedForFromATrustedProxyGivesEachClientItsOwnBudget) {
  gw.start({{"--ip-max-connections", "1"},
            {"--ip-upgrade-rate", "0"},
            {"--trusted-proxies", "10.0.0.0/8,127.0.0.1/32"}});
  std::vector<std::unique_ptr<RawConnection>> open;
  for (const std::string& headers :
       {xff("203.0.113.1"), xff("203.0.113.2"),
        // What the client wrote itself is left of the trusted hops' entries.
        xff("198.51.100.7, 203.0.113.3, 10.1.2.3"),
        // Several header lines are one list.
        xff("198.51.100.8") + xff("10.0.0.9"),
        // IPv6 clients.
        xff("2001:db8::1"),
        // Unreadable: the peer (127.0.0.1) is the client.
        xff("not-an-address")}) {
    open.push_back(upgrade(headers));
    ASSERT_TRUE(carries_traffic(*open.back())) << headers;
  }
  State s = gw.state();
  EXPECT_EQ(client_addresses(s), 6) << s.dump();
  EXPECT_EQ(client_connections(s), 6) << s.dump();
  // The same clients again: their budgets are spent.
  for (const std::string& headers :
       {xff("203.0.113.1"), xff("10.0.0.1, 203.0.113.3"), xff("2001:db8::1"), std::string()}) {
    auto again = upgrade(headers);
    EXPECT_EQ(closed_with(*again, 1008), kTooManyConnections) << headers;
  }
  s = gw.state();
  EXPECT_EQ(limit_closes(s, "ipConnections"), 4) << s.dump();
  open.clear();
  EXPECT_TRUE(gw.wait_for("every address released", [](const State& st) {
    return client_connections(st) == 0 && client_addresses(st) == 0 && st.idle();
  }));
}

TEST_F(LimitsTest, EveryEndingGivesTheAddressItsPlaceBack) {
  // Two connections per address; a round opens two (so the previous round's
  // must all have been released), then ends both one way.
  gw.start({{"--ip-max-connections", "2"},
            {"--ip-upgrade-rate", "0"},
            {"--message-rate", "0.001"},
            {"--message-burst", "3"},
            {"--heartbeat-timeout", "1"},
            {"--ping-interval", "0.5"}});
  const auto round = [&](const char* ending, const std::function<void(RawConnection&)>& end) {
    std::vector<std::unique_ptr<RawConnection>> pair;
    for (int i = 0; i < 2; ++i) {
      pair.push_back(upgrade());
      ASSERT_TRUE(carries_traffic(*pair.back())) << ending << ": the place was not given back";
    }
    for (auto& c : pair) end(*c);
    pair.clear();
    ASSERT_TRUE(
        gw.wait_for(ending, [](const State& s) { return client_connections(s) == 0 && s.idle(); }));
  };
  round("client close", [](RawConnection& c) {
    ASSERT_TRUE(c.send_all(RawConnection::encode_frame(kClose, std::string("\x03\xe8", 2))));
    ASSERT_TRUE(c.wait_closed());
  });
  round("abrupt drop", [](RawConnection& c) { c.close(); });
  round("protocol error", [](RawConnection& c) {
    ASSERT_TRUE(c.send_all(RawConnection::encode_frame(kBinary, "bin")));
    EXPECT_EQ(closed_with(c, 1003), "binary messages are not supported");
  });
  round("message rate", [](RawConnection& c) {
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(c.send_all(RawConnection::encode_frame(kText, make_request("m", "ping"))));
    }
    EXPECT_EQ(closed_with(c, 1008), "message rate exceeded");
  });
  round("heartbeat timeout", [](RawConnection& c) { closed_with(c, 1001, 5000ms); });
  round("refused upgrade next to it", [&](RawConnection&) {
    auto third = upgrade();
    EXPECT_EQ(closed_with(*third, 1008), kTooManyConnections);
  });
  round("nothing leaked", [](RawConnection& c) { c.close(); });
  EXPECT_EQ(client_addresses(gw.state()), 0);
}

// The users command (docs/security.md) costs one message like any other: a flood of them is cut
// off at the burst, so one client cannot make the gateway list its room without bound.
TEST_F(LimitsTest, UsersCountsAgainstTheMessageRate) {
  gw.start({{"--message-rate", "0.001"}, {"--message-burst", "5"}});
  auto a = upgrade();
  ASSERT_TRUE(a->send_all(RawConnection::encode_frame(
      kText, make_request("in", "login", R"({"appID":101,"userID":"asker"})"))));
  const auto login = a->read_frame(3000ms);
  ASSERT_TRUE(login && login->opcode == kText);
  ASSERT_NE(login->payload.find("\"code\":200"), std::string::npos) << login->payload;
  // The login was message 1 of the burst of 5: 4 users commands fit, the 5th crosses the rate.
  std::string flood;
  for (int i = 0; i < 50; ++i) {
    flood += RawConnection::encode_frame(kText, make_request("u" + std::to_string(i), "users"));
  }
  ASSERT_TRUE(a->send_all(flood, 5000ms));
  int answered = 0;
  for (;;) {
    const auto f = a->read_frame(3000ms);
    ASSERT_TRUE(f) << "no close frame after " << answered << " users answers";
    if (f->opcode == kClose) {
      EXPECT_EQ(f->close_code(), 1008);
      EXPECT_EQ(f->payload.substr(2), "message rate exceeded");
      break;
    }
    if (f->opcode == kText && f->payload.find("\"cmd\":\"users\"") != std::string::npos) {
      EXPECT_NE(f->payload.find(R"("userList":["asker"])"), std::string::npos) << f->payload;
      ++answered;
    }
  }
  EXPECT_LE(answered, 4);  // answers still on their way when the close came are dropped
  const State s = gw.state();
  EXPECT_EQ(limit_closes(s, "messageRate"), 1) << s.dump();
  EXPECT_EQ(s.counter("messagesIn"), 6) << s.dump();  // login, 4 users, the one over the rate
}

}  // namespace
}  // namespace imgate::test
