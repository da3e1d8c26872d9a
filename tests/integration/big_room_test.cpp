// A big room's fan-out goes out in slices (docs/architecture.md, "Big rooms in slices"): while a
// gateway pushes to a room of 3,000 members, /system/state and /user/sendMessage keep answering,
// and every member gets every push exactly once, in order, with each unicast in its place (after
// the room pushes answered before it was sent, before the ones sent after its answer). No timing
// is asserted: the latency figures are bench/run's (bench/README.md).
#include <boost/json.hpp>
#include <memory>
#include <string>
#include <vector>

#include "gateway_process.hpp"
#include "raw_connection.hpp"
#include "ws_client.hpp"

namespace imgate::test {
namespace {
namespace json = boost::json;

constexpr uint8_t kText = 0x1;
constexpr int kMembers = 3000;
constexpr int kRounds = 20;

class BigRoomTest : public GatewayTest {};

// A logged-in member of room 101 on a raw socket (3,000 of them on the test thread).
std::unique_ptr<RawConnection> member(uint16_t port, const std::string& user) {
  auto c = std::make_unique<RawConnection>();
  c->connect(port);
  if (c->upgrade() != 101u) return nullptr;
  const std::string login = R"({"appID":101,"userID":")" + user + R"("})";
  if (!c->send_all(RawConnection::encode_frame(kText, make_request("l", "login", login)))) {
    return nullptr;
  }
  while (auto frame = c->read_frame(5s)) {
    if (frame->opcode != kText) continue;
    const json::value v = json::parse(frame->payload);
    if (cmd_of(v.as_object()) == "login") return code_of(v.as_object()) == 200 ? std::move(c) : nullptr;
  }
  return nullptr;
}

// The data of a successful API answer ({"code":200,...}); a failure otherwise.
json::object ok_data(const HttpResponse& res) {
  EXPECT_EQ(res.status, 200u) << res.body;
  const json::value v = json::parse(res.body);
  EXPECT_EQ(v.at("code"), json::value(200)) << res.body;
  return v.at("data").is_object() ? v.at("data").as_object() : json::object{};
}

// What a member has received so far; read as it arrives, so that no socket holds much unread
// (loopback TCP drops and retransmits with back-off when the machine's socket memory runs short).
struct Inbox {
  std::vector<std::string> texts;  // msg pushes, in order
  bool pinged = false;             // the ping request that closes the reading went out
  bool done = false;               // its answer came back

  // Reads what `c` has until `deadline`; after `count` msg pushes, sends a ping request and
  // reads up to its answer, so that a duplicate queued with the others shows up as an extra.
  void read(RawConnection& c, std::size_t count, std::chrono::steady_clock::time_point deadline) {
    while (!done) {
      if (texts.size() >= count && !pinged) {
        pinged = c.send_all(RawConnection::encode_frame(kText, make_request("p", "ping")));
        if (!pinged) return;
      }
      const auto left =
          std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
      const auto frame = c.read_frame(std::max(left, Millis(0)));
      if (!frame) return;
      if (frame->opcode != kText) continue;
      const json::object envelope = json::parse(frame->payload).as_object();
      if (cmd_of(envelope) == "ping") done = true;
      if (cmd_of(envelope) == "msg") texts.emplace_back(data_of(envelope).at("msg").as_string());
    }
  }
};

int64_t metric(uint16_t port, std::string_view name) {
  const HttpResponse res = http_get(port, "/metrics");
  const std::string line = "\n" + std::string(name) + " ";
  const auto at = res.body.find(line);
  if (at == std::string::npos) return -1;
  return std::stoll(res.body.substr(at + line.size()));
}

TEST_F(BigRoomTest, TheApiAnswersDuringABigFanoutAndEveryMemberGetsEveryPushOnceInOrder) {
  // Quiet room: 3,000 logins would otherwise push 4.5 million enter frames.
  gw.start({{"--app-ids", "101"},
            {"--quiet-app-ids", "101"},
            {"--ip-max-connections", "0"},
            {"--ip-upgrade-rate", "0"},
            {"--heartbeat-timeout", "120"},
            {"--ping-interval", "60"}});
  std::vector<std::unique_ptr<RawConnection>> members;
  for (int i = 0; i < kMembers; ++i) {
    members.push_back(member(gw.ws_port(), "u" + std::to_string(i)));
    ASSERT_TRUE(members.back()) << "member " << i;
  }
  ASSERT_EQ(gw.state().clients_len(), kMembers);

  // What each member must receive, in this order, and what it did.
  std::vector<std::vector<std::string>> expected(kMembers);
  std::vector<Inbox> inboxes(kMembers);
  const auto now = [] { return std::chrono::steady_clock::now(); };
  for (int round = 1; round <= kRounds; ++round) {
    const std::string text = "r" + std::to_string(round);
    const json::object room = ok_data(http_post_form(
        gw.http_port(), "/user/sendMessageAll", "appID=101&userID=sender&message=" + text));
    EXPECT_EQ(room.at("sendResults"), json::value(true));
    for (auto& e : expected) e.push_back(text);
    // Meanwhile (the fan-out just accepted is going out): the API answers.
    EXPECT_EQ(gw.state().clients_len(), kMembers) << "round " << round;
    const int target = (round * 149) % kMembers;
    const std::string unicast = "u" + std::to_string(round);
    const json::object one = ok_data(http_post_form(
        gw.http_port(), "/user/sendMessage",
        "appID=101&userID=u" + std::to_string(target) + "&message=" + unicast));
    EXPECT_EQ(one.at("sendResults"), json::value(true));
    expected[target].push_back(unicast);
    // What arrived so far (no waiting: the deadline is now).
    for (int i = 0; i < kMembers; ++i) inboxes[i].read(*members[i], kRounds + 1, now());
  }

  // One deadline for all: the members' sockets fill in parallel.
  const auto deadline = now() + 60s;
  for (int i = 0; i < kMembers; ++i) {
    inboxes[i].read(*members[i], expected[i].size(), deadline);
    ASSERT_EQ(inboxes[i].texts, expected[i]) << "member u" << i;
    ASSERT_TRUE(inboxes[i].done) << "member u" << i << ": no answer to the closing ping";
  }
  // It did go out in slices: 1,500 members per thread, 256 per turn.
  EXPECT_GT(metric(gw.http_port(), "imgate_fanout_slices_total"), 0);
  EXPECT_EQ(metric(gw.http_port(), "imgate_room_pushes_in_flight"), 0);
  members.clear();
}

}  // namespace
}  // namespace imgate::test
