// The HTTP API (spec §3, samples.md "HTTP") against the real binary: every
// route, the three ways of passing parameters, the error shape, msgID
// de-duplication, CORS, limits, keep-alive, /metrics, /healthz and the chat
// page. Pushes produced by the API are checked byte for byte on real
// WebSocket connections; "nothing was delivered" is proven by sending a
// marker afterwards and checking that the marker is the next frame (pushes to
// one connection are delivered in order).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <numeric>
#include <set>
#include <thread>

#include "gateway_process.hpp"
#include "raw_connection.hpp"
#include "ws_client.hpp"

namespace imgate::test {
namespace {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

constexpr std::string_view kJsonType = "application/json; charset=utf-8";
constexpr std::string_view kFormType = "application/x-www-form-urlencoded";
constexpr std::string_view kIllegal = "参数不合法";

// <repo>/web, derived from this file's path (<repo>/tests/integration/...).
std::string web_root() {
  namespace fs = std::filesystem;
  fs::path file = fs::absolute(__FILE__);
  return (file.parent_path().parent_path().parent_path() / "web").string();
}

// ---- A small HTTP/1.1 client: one TCP connection, several requests ----------

class HttpConn {
 public:
  explicit HttpConn(uint16_t port) : port_(port) {
    boost::system::error_code result = asio::error::timed_out;
    stream_.expires_after(5s);
    stream_.async_connect(asio::ip::tcp::endpoint(asio::ip::make_address_v4("127.0.0.1"), port),
                          [&](boost::system::error_code ec) { result = ec; });
    run();
    if (result) throw std::runtime_error("connect to HTTP port: " + result.message());
  }

  // Writes `req` and reads one response. The read runs concurrently with the
  // write, so a server that answers before reading the whole body (413) is
  // seen. Throws on errors and timeouts.
  Response send(Request req, Millis timeout = 5s) {
    if (!req.count(http::field::host)) {
      req.set(http::field::host, "127.0.0.1:" + std::to_string(port_));
    }
    req.prepare_payload();
    Response res;
    http::response_parser<http::string_body> parser;
    parser.body_limit(16 * 1024 * 1024);
    boost::system::error_code read_result = asio::error::timed_out;
    boost::system::error_code write_result = asio::error::timed_out;
    bool read_done = false, write_done = false;
    stream_.expires_after(timeout);
    http::async_write(stream_, req, [&](boost::system::error_code ec, std::size_t) {
      write_result = ec;
      write_done = true;
    });
    http::async_read(stream_, buffer_, parser, [&](boost::system::error_code ec, std::size_t) {
      read_result = ec;
      read_done = true;
      if (!write_done) stream_.socket().cancel();  // answered early: stop writing
    });
    run();
    if (!read_done || read_result) {
      throw std::runtime_error(std::string(req.method_string()) + " " + std::string(req.target()) +
                               ": " + read_result.message() +
                               (write_result ? " (write: " + write_result.message() + ")" : ""));
    }
    return parser.release();
  }

  // True if the server ends the connection (EOF or reset) within `timeout`.
  bool closed_by_server(Millis timeout = 3s) {
    boost::system::error_code result = asio::error::timed_out;
    char byte;
    stream_.expires_after(timeout);
    stream_.async_read_some(asio::buffer(&byte, 1),
                            [&](boost::system::error_code ec, std::size_t) { result = ec; });
    run();
    return result && result != beast::error::timeout && result != asio::error::timed_out;
  }

 private:
  void run() {
    ioc_.restart();
    ioc_.run();
  }

  uint16_t port_;
  asio::io_context ioc_;
  beast::tcp_stream stream_{ioc_};
  beast::flat_buffer buffer_;
};

Request make(http::verb verb, std::string_view target, std::string body = "",
             std::string_view content_type = "") {
  Request req{verb, target, 11};
  if (!content_type.empty()) req.set(http::field::content_type, content_type);
  req.body() = std::move(body);
  return req;
}

// One request on a fresh connection.
Response call(uint16_t port, Request req) {
  HttpConn conn(port);
  return conn.send(std::move(req));
}
Response get(uint16_t port, std::string_view target) {
  return call(port, make(http::verb::get, target));
}
Response post_form(uint16_t port, std::string_view target, std::string body) {
  return call(port, make(http::verb::post, target, std::move(body), kFormType));
}
Response post_json(uint16_t port, std::string_view target, std::string body) {
  return call(port, make(http::verb::post, target, std::move(body), "application/json"));
}

std::string header(const Response& res, http::field f) {
  return std::string(res[f]);
}

// The body of a JSON API answer: status 200, JSON content type, CORS "*",
// and {"code","msg","data"} exactly. Fails the test (and returns {}) otherwise.
json::object api_body(const Response& res) {
  SCOPED_TRACE(res.body());
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(header(res, http::field::content_type), kJsonType);
  EXPECT_EQ(header(res, http::field::access_control_allow_origin), "*");
  boost::system::error_code ec;
  json::value v = json::parse(res.body(), ec);
  if (ec || !v.is_object()) {
    ADD_FAILURE() << "not a JSON object: " << res.body();
    return {};
  }
  json::object& obj = v.as_object();
  EXPECT_EQ(obj.size(), 3u) << "expected exactly code, msg, data";
  EXPECT_TRUE(obj.contains("code") && obj.contains("msg") && obj.contains("data"));
  return std::move(obj);
}

// A successful answer: code 200, msg "Success"; returns data.
json::value ok_data(const Response& res) {
  json::object body = api_body(res);
  SCOPED_TRACE(res.body());
  EXPECT_EQ(body["code"], json::value(200));
  EXPECT_EQ(body["msg"], json::value("Success"));
  return body["data"];
}

// The parameter error: {"code":1001,"msg":"参数不合法","data":{"error":"<non-empty>"}}.
// Returns the error text.
std::string expect_bad_param(const Response& res) {
  json::object body = api_body(res);
  SCOPED_TRACE(res.body());
  EXPECT_EQ(body["code"], json::value(1001));
  EXPECT_EQ(body["msg"], json::value(kIllegal));
  const json::value& data = body["data"];
  EXPECT_TRUE(data.is_object() && data.get_object().size() == 1 &&
              data.get_object().contains("error") && data.at("error").is_string() &&
              !data.at("error").get_string().empty())
      << "data must be {\"error\":\"...\"}";
  return data.is_object() && data.get_object().contains("error") && data.at("error").is_string()
             ? std::string(data.at("error").get_string())
             : "";
}

// The push frame, byte for byte as upstream writes it.
std::string push_frame(std::string_view msg_id, std::string_view message, std::string_view from) {
  auto q = [](std::string_view s) { return json::serialize(json::string(s)); };
  return R"({"seq":)" + q(msg_id) +
         R"(,"cmd":"msg","response":{"code":200,"codeMsg":"Ok","data":{"target":"","type":"text","msg":)" +
         q(message) + R"(,"from":)" + q(from) + "}}}";
}

// Prometheus text exposition as "name{labels}" -> value.
std::map<std::string, double> parse_metrics(const std::string& text) {
  std::map<std::string, double> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty() || line[0] == '#') continue;
    const auto space = line.rfind(' ');
    if (space == std::string::npos) {
      ADD_FAILURE() << "bad metrics line: " << line;
      continue;
    }
    out[line.substr(0, space)] = std::strtod(line.c_str() + space + 1, nullptr);
  }
  return out;
}

using Users = std::vector<std::string>;

// The sorted userList of a /user/list answer, checking userCount against it.
Users user_list(uint16_t port, uint32_t app) {
  const Response res = get(port, "/user/list?appID=" + std::to_string(app));
  const json::value data = ok_data(res);
  Users users;
  if (!data.is_object() || !data.get_object().contains("userList") ||
      !data.at("userList").is_array()) {
    ADD_FAILURE() << "no userList: " << res.body();
    return users;
  }
  for (const auto& u : data.at("userList").get_array()) {
    if (u.is_string()) users.emplace_back(u.get_string());
  }
  EXPECT_EQ(data.at("userCount"), json::value(users.size())) << res.body();
  EXPECT_EQ(data.get_object().size(), 2u) << res.body();
  std::sort(users.begin(), users.end());
  return users;
}

// What a raw TCP client sees after writing `request` to 127.0.0.1:port: every
// byte until the server closes (at most `cap` bytes are kept, all are counted),
// and whether it closed within `timeout`.
struct RawExchange {
  std::string head;  // the first `cap` bytes
  std::size_t total = 0;
  bool closed = false;
};
RawExchange raw_exchange(uint16_t port, const std::string& request, Millis timeout = 3s,
                         std::size_t cap = 64 * 1024) {
  RawExchange out;
  const int fd = connect_loopback_nonblocking(port);
  const auto deadline = Clock::now() + timeout;
  std::size_t sent = 0;
  for (;;) {
    const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
    if (left <= Millis(0)) break;
    pollfd p{fd, static_cast<short>(POLLIN | (sent < request.size() ? POLLOUT : 0)), 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    if ((p.revents & POLLOUT) && sent < request.size()) {
      const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (n > 0) sent += static_cast<std::size_t>(n);
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      char buf[16384];
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        out.closed = true;
        break;
      }
      if (n > 0) {
        out.total += static_cast<std::size_t>(n);
        if (out.head.size() < cap)
          out.head.append(buf, std::min<std::size_t>(n, cap - out.head.size()));
      }
    }
  }
  ::close(fd);
  return out;
}

std::size_t count_of(std::string_view text, std::string_view what) {
  std::size_t n = 0;
  for (auto pos = text.find(what); pos != std::string_view::npos; pos = text.find(what, pos + 1))
    ++n;
  return n;
}

class HttpApiTest : public GatewayTest {
 protected:
  void SetUp() override { gw.start({{"--threads", "3"}, {"--web-root", web_root()}}); }

  uint16_t port() const { return gw.http_port(); }

  // A connected client logged in as (app, user).
  std::unique_ptr<WsClient> join(uint32_t app, std::string_view user) {
    auto c = std::make_unique<WsClient>();
    c->connect(gw.ws_port());
    EXPECT_EQ(c->login(app, user), 200) << user;
    return c;
  }

  Response send_message(std::string_view endpoint, uint32_t app, std::string_view user,
                        std::string_view msg_id, std::string_view message) {
    return post_form(port(), endpoint,
                     "appID=" + std::to_string(app) + "&userID=" + pct(user) +
                         "&msgID=" + pct(msg_id) + "&message=" + pct(message));
  }
};

// The next message `c` receives is exactly `expected`.
void expect_next_frame(WsClient& c, const std::string& expected, std::string_view who) {
  const auto text = c.read_text(3s);
  ASSERT_TRUE(text.has_value()) << who << ": no frame, expected " << expected;
  EXPECT_EQ(*text, expected) << who;
}

// No message arrives at `c` before its own ping answer, and nothing queued.
void expect_no_pushes(WsClient& c, std::string_view who) {
  const auto pushes = c.take_pushes();
  for (const auto& p : pushes) ADD_FAILURE() << who << " got " << json::serialize(p);
}

// ---- /user/list ---------------------------------------------------------------

TEST_F(HttpApiTest, UserListNamesEveryUserOfTheRoomOnce) {
  auto a1 = join(101, "alice");
  auto a2 = join(101, "alice");
  auto a3 = join(101, "alice");
  auto bob = join(101, "bob");
  auto ma = join(101, "马远");
  auto carol = join(102, "carol");

  EXPECT_EQ(user_list(port(), 101), (Users{"alice", "bob", "马远"}));
  EXPECT_EQ(user_list(port(), 102), (Users{"carol"}));

  // Exact shape of the empty room.
  const Response empty = get(port(), "/user/list?appID=103");
  EXPECT_EQ(empty.body(), R"({"code":200,"msg":"Success","data":{"userCount":0,"userList":[]}})");

  // alice stays listed while one of her connections remains.
  a1->drop();
  a2->drop();
  ASSERT_TRUE(gw.wait_for("two of alice's connections gone",
                          [](const State& s) { return s.clients_len() == 4; }));
  EXPECT_EQ(user_list(port(), 101), (Users{"alice", "bob", "马远"}));
  a3->drop();
  EXPECT_TRUE(eventually([&] {
    return user_list(port(), 101) == Users{"bob", "马远"};
  })) << "alice still listed after her last connection closed";
}

TEST_F(HttpApiTest, UserListRejectsMissingOrInvalidAppId) {
  const std::string error = expect_bad_param(get(port(), "/user/list"));
  EXPECT_NE(error.find("appID"), std::string::npos) << error;
  for (std::string_view target :
       {"/user/list?appID=", "/user/list?appID=abc", "/user/list?appID=-1",
        "/user/list?appID=4294967296", "/user/list?appID=101x", "/user/list?appID=1.5",
        "/user/list?appID=%20101"}) {
    SCOPED_TRACE(target);
    expect_bad_param(get(port(), target));
  }
  // The largest uint32 is a valid (empty) room.
  EXPECT_EQ(user_list(port(), 4294967295u), Users{});
}

// ---- /user/online ---------------------------------------------------------------

TEST_F(HttpApiTest, UserOnlineLooksInOneAppOrInAnyApp) {
  auto huang = join(102, "黄帝");
  const std::string who = pct("黄帝");
  auto online = [&](std::string_view query) {
    return ok_data(get(port(), "/user/online?" + std::string(query)));
  };
  const json::value yes = json::object{{"online", true}, {"userID", "黄帝"}};
  const json::value no = json::object{{"online", false}, {"userID", "黄帝"}};
  EXPECT_EQ(online("appID=102&userID=" + who), yes);
  EXPECT_EQ(online("appID=101&userID=" + who), no) << "online in another app";
  EXPECT_EQ(online("appID=0&userID=" + who), yes) << "appID 0 means any app";
  EXPECT_EQ(online("userID=" + who), yes) << "no appID means any app";
  EXPECT_EQ(online("appID=102&userID=nobody"),
            json::value(json::object{{"online", false}, {"userID", "nobody"}}));
  // Byte-exact sample.
  EXPECT_EQ(get(port(), "/user/online?appID=102&userID=" + who).body(),
            R"({"code":200,"msg":"Success","data":{"online":true,"userID":"黄帝"}})");

  huang->drop();
  EXPECT_TRUE(eventually([&] { return online("userID=" + who) == no; }))
      << "still online after the only connection closed";
}

TEST_F(HttpApiTest, UserOnlineRejectsMissingUserIdAndBadAppId) {
  std::string error = expect_bad_param(get(port(), "/user/online?appID=101"));
  EXPECT_NE(error.find("userID"), std::string::npos) << error;
  expect_bad_param(get(port(), "/user/online?appID=101&userID="));
  expect_bad_param(get(port(), "/user/online"));
  expect_bad_param(get(port(), "/user/online?appID=x&userID=a"));
  expect_bad_param(get(port(), "/user/online?appID=-5&userID=a"));
  expect_bad_param(get(port(), "/user/online?appID=99999999999&userID=a"));
}

// ---- /user/sendMessage ----------------------------------------------------------

TEST_F(HttpApiTest, SendMessageReachesEveryConnectionOfTheUserExactly) {
  auto other = join(101, "bob");
  auto u1 = join(101, "黄帝");
  auto u2 = join(101, "黄帝");
  auto u3 = join(101, "黄帝");
  ASSERT_TRUE(other->next_push("enter").has_value());
  expect_no_pushes(*other, "bob (one enter for three connections)");
  for (auto* c : {u1.get(), u2.get(), u3.get()}) expect_no_pushes(*c, "黄帝");
  const State s = gw.state();
  const json::value* per_thread = s.find({"imgate", "connectionsPerThread"});
  ASSERT_TRUE(per_thread != nullptr && per_thread->is_array()) << s.dump();
  std::size_t busy = 0;
  for (const auto& n : per_thread->get_array()) busy += n.to_number<int64_t>() > 0;
  ASSERT_GE(busy, 2u) << "premise: the connections spread over several threads; " << s.dump();

  const Response res = send_message("/user/sendMessage", 101, "黄帝", "m-1", "hello");
  EXPECT_EQ(res.body(), R"({"code":200,"msg":"Success","data":{"sendResults":true}})");
  const std::string expected =
      R"({"seq":"m-1","cmd":"msg","response":{"code":200,"codeMsg":"Ok","data":{"target":"","type":"text","msg":"hello","from":"黄帝"}}})";
  EXPECT_EQ(push_frame("m-1", "hello", "黄帝"), expected);  // the helper itself
  expect_next_frame(*u1, expected, "connection 1");
  expect_next_frame(*u2, expected, "connection 2");
  expect_next_frame(*u3, expected, "connection 3");
  expect_no_pushes(*other, "bob");
  for (auto* c : {u1.get(), u2.get(), u3.get()}) expect_no_pushes(*c, "黄帝 (delivered once)");
}

TEST_F(HttpApiTest, SendMessageToOfflineUserReportsFalse) {
  auto alice = join(102, "alice");
  EXPECT_EQ(send_message("/user/sendMessage", 101, "nobody", "o-1", "x").body(),
            R"({"code":200,"msg":"Success","data":{"sendResults":false}})");
  // alice is online, but in app 102.
  EXPECT_EQ(send_message("/user/sendMessage", 101, "alice", "o-2", "x").body(),
            R"({"code":200,"msg":"Success","data":{"sendResults":false}})");
  expect_no_pushes(*alice, "alice");
}

TEST_F(HttpApiTest, DuplicateMsgIdIsAnsweredEmptyAndDeliversNothing) {
  auto u1 = join(101, "alice");
  auto u2 = join(101, "alice");
  auto u3 = join(101, "alice");

  EXPECT_EQ(ok_data(send_message("/user/sendMessage", 101, "alice", "dup-1", "first")),
            json::value(json::object{{"sendResults", true}}));
  for (auto* c : {u1.get(), u2.get(), u3.get()}) {
    expect_next_frame(*c, push_frame("dup-1", "first", "alice"), "first delivery");
  }
  // Same msgID, even with another message: nothing is sent.
  const Response dup = send_message("/user/sendMessage", 101, "alice", "dup-1", "second");
  EXPECT_EQ(dup.body(), R"({"code":200,"msg":"Success","data":{}})");
  api_body(dup);
  // The next frame each connection receives is the next message, not the duplicate.
  EXPECT_EQ(ok_data(send_message("/user/sendMessage", 101, "alice", "dup-2", "third")),
            json::value(json::object{{"sendResults", true}}));
  for (auto* c : {u1.get(), u2.get(), u3.get()}) {
    expect_next_frame(*c, push_frame("dup-2", "third", "alice"), "after the duplicate");
  }
  // Still remembered after other ids.
  EXPECT_EQ(send_message("/user/sendMessage", 101, "alice", "dup-1", "again").body(),
            R"({"code":200,"msg":"Success","data":{}})");
  for (auto* c : {u1.get(), u2.get(), u3.get()}) expect_no_pushes(*c, "alice");
}

TEST_F(HttpApiTest, DuplicateMsgIdIsDetectedAcrossBothEndpoints) {
  auto alice = join(101, "alice");
  auto bob = join(101, "bob");
  expect_no_pushes(*bob, "bob");
  (void)alice->next_push("enter");
  expect_no_pushes(*alice, "alice");

  // sendMessage first, then sendMessageAll with the same id.
  ASSERT_EQ(send_message("/user/sendMessage", 101, "alice", "x-1", "one").body(),
            R"({"code":200,"msg":"Success","data":{"sendResults":true}})");
  expect_next_frame(*alice, push_frame("x-1", "one", "alice"), "alice");
  EXPECT_EQ(send_message("/user/sendMessageAll", 101, "alice", "x-1", "two").body(),
            R"({"code":200,"msg":"Success","data":{}})");
  // sendMessageAll first, then sendMessage with the same id.
  ASSERT_EQ(send_message("/user/sendMessageAll", 101, "alice", "x-2", "three").body(),
            R"({"code":200,"msg":"Success","data":{"sendResults":true}})");
  expect_next_frame(*bob, push_frame("x-2", "three", "alice"), "bob");
  EXPECT_EQ(send_message("/user/sendMessage", 101, "bob", "x-2", "four").body(),
            R"({"code":200,"msg":"Success","data":{}})");

  // Markers: the duplicates never arrived.
  ASSERT_EQ(send_message("/user/sendMessage", 101, "bob", "x-3", "marker").body(),
            R"({"code":200,"msg":"Success","data":{"sendResults":true}})");
  expect_next_frame(*bob, push_frame("x-3", "marker", "bob"), "bob");
  ASSERT_EQ(send_message("/user/sendMessage", 101, "alice", "x-4", "marker").body(),
            R"({"code":200,"msg":"Success","data":{"sendResults":true}})");
  expect_next_frame(*alice, push_frame("x-4", "marker", "alice"), "alice");
}

TEST_F(HttpApiTest, MissingMsgIdMeansNoDeduplicationAndAGeneratedSeq) {
  auto alice = join(101, "alice");
  std::set<std::string> seqs;
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(ok_data(post_form(port(), "/user/sendMessage", "appID=101&userID=alice&message=hi")),
              json::value(json::object{{"sendResults", true}}));
    auto push = alice->read_json(3s);
    ASSERT_TRUE(push) << "delivery " << i;
    EXPECT_EQ(cmd_of(*push), "msg");
    EXPECT_EQ(data_of(*push),
              json::value(json::object{
                  {"target", ""}, {"type", "text"}, {"msg", "hi"}, {"from", "alice"}}));
    const std::string seq = seq_of(*push);
    EXPECT_FALSE(seq.empty());
    EXPECT_NE(seq, "<missing>");
    seqs.insert(seq);
  }
  EXPECT_EQ(seqs.size(), 2u) << "generated seqs must differ";
  // An empty msgID is the same as none.
  EXPECT_EQ(
      ok_data(post_form(port(), "/user/sendMessage", "appID=101&userID=alice&msgID=&message=e")),
      json::value(json::object{{"sendResults", true}}));
  auto push = alice->read_json(3s);
  ASSERT_TRUE(push);
  EXPECT_FALSE(seq_of(*push).empty());
}

TEST_F(HttpApiTest, SendEndpointsRejectMissingParameters) {
  auto alice = join(101, "alice");
  for (std::string_view endpoint : {"/user/sendMessage", "/user/sendMessageAll"}) {
    SCOPED_TRACE(endpoint);
    const std::string ep(endpoint);
    std::string error = expect_bad_param(post_form(port(), ep, "appID=101&userID=alice&msgID=p1"));
    EXPECT_NE(error.find("message"), std::string::npos) << error;
    expect_bad_param(post_form(port(), ep, "appID=101&userID=alice&msgID=p1&message="));
    error = expect_bad_param(post_form(port(), ep, "appID=101&msgID=p1&message=m"));
    EXPECT_NE(error.find("userID"), std::string::npos) << error;
    error = expect_bad_param(post_form(port(), ep, "userID=alice&msgID=p1&message=m"));
    EXPECT_NE(error.find("appID"), std::string::npos) << error;
    expect_bad_param(post_form(port(), ep, "appID=abc&userID=alice&msgID=p1&message=m"));
    expect_bad_param(post_form(port(), ep, "appID=-101&userID=alice&msgID=p1&message=m"));
    expect_bad_param(post_form(port(), ep, "appID=4294967397&userID=alice&msgID=p1&message=m"));
  }
  // None of the refused calls consumed msgID p1 or delivered anything.
  ASSERT_EQ(send_message("/user/sendMessage", 101, "alice", "p1", "ok").body(),
            R"({"code":200,"msg":"Success","data":{"sendResults":true}})");
  expect_next_frame(*alice, push_frame("p1", "ok", "alice"), "alice");
}

// ---- /user/sendMessageAll --------------------------------------------------------

TEST_F(HttpApiTest, SendMessageAllReachesTheRoomExceptTheSender) {
  auto alice = join(101, "alice");  // the API's userID, also connected
  auto bob1 = join(101, "bob");
  auto bob2 = join(101, "bob");
  auto carol = join(101, "carol");
  auto dave = join(102, "dave");  // another room
  for (auto* c : {alice.get(), bob1.get(), bob2.get(), carol.get(), dave.get()}) {
    (void)c->take_pushes();  // enter pushes of the setup
  }

  const Response res = send_message("/user/sendMessageAll", 101, "alice", "all-1", "大家好");
  EXPECT_EQ(res.body(), R"({"code":200,"msg":"Success","data":{"sendResults":true}})");
  const std::string expected =
      R"({"seq":"all-1","cmd":"msg","response":{"code":200,"codeMsg":"Ok","data":{"target":"","type":"text","msg":"大家好","from":"alice"}}})";
  expect_next_frame(*bob1, expected, "bob 1");
  expect_next_frame(*bob2, expected, "bob 2");
  expect_next_frame(*carol, expected, "carol");

  // Markers: alice (the sender) and dave (other room) did not get it.
  ASSERT_EQ(send_message("/user/sendMessage", 101, "alice", "all-2", "marker").body(),
            R"({"code":200,"msg":"Success","data":{"sendResults":true}})");
  expect_next_frame(*alice, push_frame("all-2", "marker", "alice"), "alice");
  ASSERT_EQ(send_message("/user/sendMessageAll", 102, "system", "all-3", "marker").body(),
            R"({"code":200,"msg":"Success","data":{"sendResults":true}})");
  expect_next_frame(*dave, push_frame("all-3", "marker", "system"), "dave");
  for (auto* c : {alice.get(), bob1.get(), bob2.get(), carol.get(), dave.get()}) {
    expect_no_pushes(*c, "after the markers");
  }
}

TEST_F(HttpApiTest, SendMessageAllToAnEmptyRoomSucceeds) {
  EXPECT_EQ(send_message("/user/sendMessageAll", 104, "x", "e-1", "nobody here").body(),
            R"({"code":200,"msg":"Success","data":{"sendResults":true}})");
}

// ---- parameters: query, form, JSON -------------------------------------------------

TEST_F(HttpApiTest, ParametersFromQueryStringOnGet) {
  auto huang = join(101, "黄帝");
  const Response res = get(port(), "/user/sendMessage?appID=101&userID=" + pct("黄帝") +
                                       "&msgID=q1&message=a+b%20c%26d%3De");
  EXPECT_EQ(ok_data(res), json::value(json::object{{"sendResults", true}}));
  expect_next_frame(*huang, push_frame("q1", "a b c&d=e", "黄帝"), "黄帝");
  // Query parameters on a POST without a body.
  const Response post = call(port(), make(http::verb::post, "/user/online?userID=" + pct("黄帝")));
  EXPECT_EQ(ok_data(post), json::value(json::object{{"online", true}, {"userID", "黄帝"}}));
}

// Upstream (Go net/http + url.ParseQuery) takes bytes that are not
// percent-encoded as they are: raw UTF-8 and punctuation such as | { } [ ] ^
// in the query string and in form bodies. `curl -d 'userID=黄帝&...'` sends
// exactly that (samples.md shows such bodies).
TEST_F(HttpApiTest, UnencodedUtf8AndPunctuationAreTakenAsIs) {
  auto huang = join(101, "黄帝");
  const Response query = get(port(), "/user/online?appID=101&userID=黄帝");
  EXPECT_EQ(ok_data(query), json::value(json::object{{"online", true}, {"userID", "黄帝"}}));
  const Response punct = get(port(), "/user/online?appID=101&userID=a|b[1]{x}^");
  EXPECT_EQ(ok_data(punct), json::value(json::object{{"online", false}, {"userID", "a|b[1]{x}^"}}));
  const Response form =
      post_form(port(), "/user/sendMessage", "appID=101&userID=黄帝&msgID=raw1&message=你好|[x]");
  EXPECT_EQ(ok_data(form), json::value(json::object{{"sendResults", true}}));
  if (form.body().find("sendResults") != std::string::npos) {
    expect_next_frame(*huang, push_frame("raw1", "你好|[x]", "黄帝"), "黄帝");
  }
}

TEST_F(HttpApiTest, ParametersFromFormBody) {
  auto huang = join(101, "黄帝");
  // '+' and %20 are spaces, UTF-8 percent-encoded, %2B is a literal plus.
  const Response res = post_form(port(), "/user/sendMessage",
                                 "appID=101&userID=%E9%BB%84%E5%B8%9D&msgID=f1"
                                 "&message=hello+big%20world%2B%E4%BD%A0%E5%A5%BD");
  EXPECT_EQ(ok_data(res), json::value(json::object{{"sendResults", true}}));
  expect_next_frame(*huang, push_frame("f1", "hello big world+你好", "黄帝"), "黄帝");

  // A charset parameter on the content type is fine.
  const Response with_charset =
      call(port(), make(http::verb::post, "/user/online", "appID=101&userID=%E9%BB%84%E5%B8%9D",
                        "application/x-www-form-urlencoded; charset=UTF-8"));
  EXPECT_EQ(ok_data(with_charset), json::value(json::object{{"online", true}, {"userID", "黄帝"}}));

  // Body values override the query string.
  const Response both =
      post_form(port(), "/user/online?appID=101&userID=ghost", "userID=%E9%BB%84%E5%B8%9D");
  EXPECT_EQ(ok_data(both), json::value(json::object{{"online", true}, {"userID", "黄帝"}}));
}

TEST_F(HttpApiTest, ParametersFromJsonBody) {
  auto huang = join(101, "黄帝");
  // appID as a number.
  Response res =
      post_json(port(), "/user/sendMessage",
                R"({"appID":101,"userID":"黄帝","msgID":"j1","message":"say \"hi\" <b>&"})");
  EXPECT_EQ(ok_data(res), json::value(json::object{{"sendResults", true}}));
  expect_next_frame(*huang, push_frame("j1", "say \"hi\" <b>&", "黄帝"), "黄帝");
  // appID as a string, extra and null fields ignored.
  res = post_json(
      port(), "/user/sendMessage",
      R"({"appID":"101","userID":"黄帝","msgID":"j2","message":"two","extra":null,"n":5})");
  EXPECT_EQ(ok_data(res), json::value(json::object{{"sendResults", true}}));
  expect_next_frame(*huang, push_frame("j2", "two", "黄帝"), "黄帝");
  // /user/list and /user/online read JSON too.
  res = post_json(port(), "/user/list", R"({"appID":101})");
  EXPECT_EQ(ok_data(res),
            json::value(json::object{{"userCount", 1}, {"userList", json::array{"黄帝"}}}));
  res = post_json(port(), "/user/online", R"({"userID":"黄帝"})");
  EXPECT_EQ(ok_data(res), json::value(json::object{{"online", true}, {"userID", "黄帝"}}));
  // Numeric appID that is not a uint32.
  expect_bad_param(post_json(port(), "/user/list", R"({"appID":-1})"));
  expect_bad_param(post_json(port(), "/user/list", R"({"appID":4294967296})"));
  expect_bad_param(post_json(port(), "/user/list", R"({"appID":101.5})"));
}

TEST_F(HttpApiTest, MalformedJsonBodyIsAParameterError) {
  auto alice = join(101, "alice");
  const std::vector<std::string> bodies{
      R"({"appID":101,"userID":"alice","msgID":"b1","message":"x")",
      "not json",
      "[1,2]",
      R"("string")",
      R"({"appID":101,"userID":{"nested":1},"msgID":"b2","message":"x"})",
      R"({"appID":[101],"userID":"alice","msgID":"b3","message":"x"})",
  };
  for (const std::string& body : bodies) {
    SCOPED_TRACE(body);
    expect_bad_param(post_json(port(), "/user/sendMessage", body));
  }
  expect_no_pushes(*alice, "alice");
}

// ---- limits -----------------------------------------------------------------------------

TEST_F(HttpApiTest, BodyOver64KiBIsRefusedWith413AndTheServerGoesOn) {
  auto alice = join(101, "alice");
  // Exactly 64 KiB is accepted.
  const std::string prefix = "appID=101&userID=alice&msgID=big1&message=";
  std::string body = prefix + std::string(64 * 1024 - prefix.size(), 'x');
  ASSERT_EQ(body.size(), 64u * 1024);
  Response res = post_form(port(), "/user/sendMessage", body);
  EXPECT_EQ(ok_data(res), json::value(json::object{{"sendResults", true}}));
  expect_next_frame(*alice, push_frame("big1", body.substr(prefix.size()), "alice"), "alice");

  // One byte more is not.
  body = "appID=101&userID=alice&msgID=big2&message=" + std::string(64 * 1024, 'y');
  {
    HttpConn conn(port());
    res = conn.send(make(http::verb::post, "/user/sendMessage", body, kFormType));
    EXPECT_EQ(res.result_int(), 413u) << res.body();
  }
  // The server still serves the next request.
  EXPECT_EQ(get(port(), "/healthz").result_int(), 200u);
  EXPECT_EQ(user_list(port(), 101), Users{"alice"});
  // And the refused message was neither delivered nor its msgID consumed.
  ASSERT_EQ(send_message("/user/sendMessage", 101, "alice", "big2", "small").body(),
            R"({"code":200,"msg":"Success","data":{"sendResults":true}})");
  expect_next_frame(*alice, push_frame("big2", "small", "alice"), "alice");
}

TEST_F(HttpApiTest, HeaderOver8KiBIsRefusedWith431) {
  HttpConn conn(port());
  Request req = make(http::verb::get, "/user/list?appID=101");
  req.set("X-Padding", std::string(9 * 1024, 'p'));
  const Response res = conn.send(std::move(req));
  EXPECT_EQ(res.result_int(), 431u) << res.body();
  EXPECT_EQ(get(port(), "/user/list?appID=101").result_int(), 200u);
}

// After a 413 the rest of the request cannot be parsed: the server answers
// once and closes the connection (it must not parse the left-over bytes as
// further requests, nor answer the same bytes again and again).
TEST_F(HttpApiTest, After413TheServerAnswersOnceAndCloses) {
  const std::string big_body(70 * 1024, 'x');
  const std::string oversized_body =
      "POST /user/online HTTP/1.1\r\nHost: 127.0.0.1\r\n"
      "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: " +
      std::to_string(big_body.size()) + "\r\n\r\n" + big_body;
  const std::string oversized_header =
      "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + std::string(9 * 1024, 'p') +
      "\r\n\r\n" + "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  for (const std::string* request : {&oversized_body, &oversized_header}) {
    SCOPED_TRACE(request == &oversized_body ? "body over 64 KiB" : "header over 8 KiB");
    const RawExchange ex = raw_exchange(port(), *request);
    const std::string status = request == &oversized_body ? "HTTP/1.1 413" : "HTTP/1.1 431";
    EXPECT_EQ(ex.head.rfind(status, 0), 0u) << ex.head.substr(0, 200);
    EXPECT_EQ(count_of(ex.head, "HTTP/1.1 "), 1u)
        << "responses after the 413; " << ex.total << " bytes received";
    EXPECT_TRUE(ex.closed) << "connection still open after the 413; " << ex.total
                           << " bytes received";
    EXPECT_LT(ex.total, 1024u);
  }
  EXPECT_EQ(get(port(), "/healthz").result_int(), 200u);
}

// ---- headers, CORS, 404 -----------------------------------------------------------------

TEST_F(HttpApiTest, JsonAnswersCarryContentTypeAndCorsHeaders) {
  for (const Response& res :
       {get(port(), "/user/list?appID=101"), get(port(), "/user/list"),
        post_form(port(), "/user/sendMessageAll", "appID=101&userID=a&msgID=h1&message=m"),
        get(port(), "/system/state")}) {
    SCOPED_TRACE(res.body());
    EXPECT_EQ(res.result_int(), 200u);
    EXPECT_EQ(header(res, http::field::content_type), kJsonType);
    EXPECT_EQ(header(res, http::field::access_control_allow_origin), "*");
    EXPECT_EQ(header(res, http::field::access_control_allow_methods),
              "POST, GET, OPTIONS, PUT, DELETE,UPDATE");
    EXPECT_EQ(header(res, http::field::access_control_allow_credentials), "true");
    EXPECT_NE(header(res, http::field::access_control_allow_headers).find("Content-Type"),
              std::string::npos);
  }
}

TEST_F(HttpApiTest, OptionsPreflightAnswers204WithCorsHeaders) {
  for (std::string_view target : {"/user/sendMessageAll", "/user/list?appID=101"}) {
    SCOPED_TRACE(target);
    Request req = make(http::verb::options, target);
    req.set(http::field::origin, "https://chat.example");
    req.set(http::field::access_control_request_method, "POST");
    req.set(http::field::access_control_request_headers, "Content-Type");
    const Response res = call(port(), std::move(req));
    EXPECT_EQ(res.result_int(), 204u);
    EXPECT_EQ(header(res, http::field::access_control_allow_origin), "*");
    EXPECT_NE(header(res, http::field::access_control_allow_methods).find("POST"),
              std::string::npos);
    EXPECT_NE(header(res, http::field::access_control_allow_headers).find("Content-Type"),
              std::string::npos);
    EXPECT_TRUE(res.body().empty()) << res.body();
  }
}

TEST_F(HttpApiTest, UnknownPathsAndMethodsGet404PlainText) {
  for (const Response& res : {get(port(), "/nope"), get(port(), "/user/lists"),
                              call(port(), make(http::verb::post, "/")),
                              get(port(), "/user/list/extra?appID=101"),
                              call(port(), make(http::verb::put, "/user/list?appID=101")),
                              call(port(), make(http::verb::delete_, "/user/sendMessage"))}) {
    EXPECT_EQ(res.result_int(), 404u);
    EXPECT_EQ(res.body(), "404 page not found");
    EXPECT_EQ(header(res, http::field::content_type).rfind("text/plain", 0), 0u)
        << header(res, http::field::content_type);
  }
}

TEST(HttpApiCors, CorsOriginIsConfigurable) {
  Gateway gw;
  gw.start({{"--cors-origin", "https://chat.example"}});
  const Response res = get(gw.http_port(), "/user/list?appID=101");
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(header(res, http::field::access_control_allow_origin), "https://chat.example");
  const Response pre = call(gw.http_port(), make(http::verb::options, "/user/sendMessage"));
  EXPECT_EQ(pre.result_int(), 204u);
  EXPECT_EQ(header(pre, http::field::access_control_allow_origin), "https://chat.example");
}

// ---- /system/state -------------------------------------------------------------------------

TEST_F(HttpApiTest, SystemStateHasUpstreamAndImgateFields) {
  auto a1 = join(101, "alice");
  auto a2 = join(101, "alice");
  auto huang = join(102, "黄帝");
  WsClient anonymous;
  anonymous.connect(gw.ws_port());

  ASSERT_TRUE(gw.wait_for("four connections, two users", [](const State& st) {
    return st.clients_len() == 4 && st.users_len() == 2;
  }));
  const Response res = get(port(), "/system/state");
  const json::value data = ok_data(res);
  ASSERT_TRUE(data.is_object()) << res.body();
  const State s(data.get_object());
  SCOPED_TRACE(s.dump());
  ASSERT_NE(s.find({"numCPU"}), nullptr);
  EXPECT_GE(s.find({"numCPU"})->to_number<int64_t>(), 1);
  ASSERT_NE(s.find({"numGoroutine"}), nullptr);
  EXPECT_GE(s.find({"numGoroutine"})->to_number<int64_t>(), 1);
  for (std::string_view chan :
       {"chanBroadcastLen", "chanLoginLen", "chanRegisterLen", "chanUnregisterLen"}) {
    const json::value* v = s.find({"managerInfo", chan});
    ASSERT_NE(v, nullptr) << chan;
    EXPECT_EQ(*v, json::value(0)) << chan;
  }
  EXPECT_EQ(s.clients_len(), 4);
  EXPECT_EQ(s.users_len(), 2);
  EXPECT_EQ(s.find({"managerInfo", "clients"}), nullptr) << "lists only with isDebug=true";
  EXPECT_EQ(s.find({"managerInfo", "users"}), nullptr) << "lists only with isDebug=true";

  const json::value* version = s.find({"imgate", "version"});
  ASSERT_NE(version, nullptr);
  EXPECT_EQ(*version, json::value(IMGATE_VERSION));
  EXPECT_EQ(s.threads(), 3);
  const json::value* per_thread = s.find({"imgate", "connectionsPerThread"});
  ASSERT_TRUE(per_thread != nullptr && per_thread->is_array());
  ASSERT_EQ(per_thread->get_array().size(), 3u);
  int64_t sum = 0;
  for (const auto& n : per_thread->get_array()) sum += n.to_number<int64_t>();
  EXPECT_EQ(sum, 4);
  const json::value* uptime = s.find({"imgate", "uptimeSeconds"});
  ASSERT_TRUE(uptime != nullptr && uptime->is_number());
  const double up1 = uptime->to_number<double>();
  EXPECT_GE(up1, 0.0);
  EXPECT_LT(up1, 600.0);
  // Uptime moves forward.
  EXPECT_TRUE(eventually([&] {
    const State now = gw.state();  // keep it alive while `later` points into it
    const json::value* later = now.find({"imgate", "uptimeSeconds"});
    return later != nullptr && later->to_number<double>() > up1;
  }));

  const State debug = gw.state(true);
  SCOPED_TRACE(debug.dump());
  const auto clients = debug.clients();
  EXPECT_EQ(clients.size(), 4u);
  const std::set<std::string> distinct(clients.begin(), clients.end());
  EXPECT_EQ(distinct.size(), 4u) << "client ids must be distinct";
  auto users = debug.users();
  std::sort(users.begin(), users.end());
  EXPECT_EQ(users, (Users{"101_alice", "102_黄帝"}));
  // isDebug other than "true" gives no lists.
  const json::value plain = ok_data(get(port(), "/system/state?isDebug=false"));
  EXPECT_FALSE(plain.at("managerInfo").get_object().contains("users"));
}

// ---- /metrics, /healthz ------------------------------------------------------------------

TEST_F(HttpApiTest, MetricsCountersMoveWithEvents) {
  const Response before_res = get(port(), "/metrics");
  EXPECT_EQ(before_res.result_int(), 200u);
  EXPECT_EQ(header(before_res, http::field::content_type).rfind("text/plain; version=0.0.4", 0), 0u)
      << header(before_res, http::field::content_type);
  EXPECT_NE(before_res.body().find("# TYPE imgate_logins_total counter"), std::string::npos);
  EXPECT_NE(before_res.body().find("# TYPE imgate_push_latency_seconds histogram"),
            std::string::npos);
  auto before = parse_metrics(before_res.body());
  EXPECT_EQ(before["imgate_logins_total"], 0);
  EXPECT_EQ(before["imgate_connections_open"], 0);
  EXPECT_EQ(before["imgate_msgid_duplicates_total"], 0);
  EXPECT_EQ(before["imgate_push_latency_seconds_count"], 0);
  EXPECT_EQ(before.count(R"(imgate_http_requests_total{route="/user/list",status="200"})"), 0u);

  auto alice = join(101, "alice");
  auto bob = join(101, "bob");
  for (int i = 0; i < 3; ++i) get(port(), "/user/list?appID=101");
  get(port(), "/user/list");  // 1001 is still HTTP 200
  get(port(), "/no/such/path");
  ASSERT_EQ(ok_data(send_message("/user/sendMessage", 101, "alice", "mx-1", "hi")),
            json::value(json::object{{"sendResults", true}}));
  ASSERT_TRUE(alice->next_push("msg", 3s).has_value()) << "mx-1 not delivered";
  EXPECT_EQ(send_message("/user/sendMessage", 101, "alice", "mx-1", "hi").body(),
            R"({"code":200,"msg":"Success","data":{}})");

  std::map<std::string, double> after;
  EXPECT_TRUE(eventually([&] {
    after = parse_metrics(get(port(), "/metrics").body());
    return after["imgate_push_latency_seconds_count"] > 0;
  })) << "imgate_push_latency_seconds_count stayed 0";
  EXPECT_EQ(after["imgate_logins_total"], 2);
  EXPECT_EQ(after["imgate_connections_open"], 2);
  EXPECT_EQ(after["imgate_users"], 2);
  EXPECT_EQ(after["imgate_msgid_duplicates_total"], 1);
  EXPECT_EQ(after[R"(imgate_http_requests_total{route="/user/list",status="200"})"], 4);
  EXPECT_EQ(after[R"(imgate_http_requests_total{route="other",status="404"})"], 1);
  EXPECT_EQ(after[R"(imgate_http_requests_total{route="/user/sendMessage",status="200"})"], 2);
  EXPECT_GE(after[R"(imgate_http_requests_total{route="/metrics",status="200"})"], 1);
  EXPECT_GE(after["imgate_pushes_total"], 1);
  EXPECT_EQ(after[R"(imgate_push_latency_seconds_bucket{le="+Inf"})"],
            after["imgate_push_latency_seconds_count"]);
  EXPECT_EQ(after.count("imgate_msgid_evictions_total"), 1u);
  EXPECT_EQ(after.count("imgate_uptime_seconds"), 1u);

  bob->drop();
  EXPECT_TRUE(eventually([&] {
    return parse_metrics(get(port(), "/metrics").body())["imgate_connections_open"] == 1;
  })) << "imgate_connections_open did not drop to 1";
}

TEST_F(HttpApiTest, HealthzAnswersOk) {
  const Response res = get(port(), "/healthz");
  EXPECT_EQ(res.result_int(), 200u);
  std::string body = res.body();
  while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.pop_back();
  EXPECT_EQ(body, "ok");
  EXPECT_EQ(header(res, http::field::content_type).rfind("text/plain", 0), 0u);
}

// ---- chat page and assets --------------------------------------------------------------------

TEST_F(HttpApiTest, HomeIndexServesTheChatPageForTheRoom) {
  const Response res = get(port(), "/home/index?appID=102");
  ASSERT_EQ(res.result_int(), 200u) << res.body();
  EXPECT_EQ(header(res, http::field::content_type), "text/html; charset=utf-8");
  EXPECT_EQ(header(res, http::field::access_control_allow_origin), "") << "no CORS on the page";
  const std::string& page = res.body();
  EXPECT_NE(page.find("<html"), std::string::npos);
  EXPECT_NE(page.find(R"("appID":"102")"), std::string::npos);
  const std::string ws_url = "ws://127.0.0.1:" + std::to_string(gw.ws_port()) + "/acc";
  EXPECT_NE(page.find(R"("wsUrl":")" + ws_url + "\""), std::string::npos) << ws_url;
  EXPECT_EQ(page.find("{{"), std::string::npos) << "a placeholder was left in the page";

  for (std::string_view target : {"/home/index?appID=999", "/home/index", "/home/index?appID=x"}) {
    SCOPED_TRACE(target);
    const Response fallback = get(port(), target);
    EXPECT_EQ(fallback.result_int(), 200u);
    EXPECT_NE(fallback.body().find(R"("appID":"101")"), std::string::npos) << "falls back to 101";
  }
}

TEST_F(HttpApiTest, RootRedirectsToTheChatPageKeepingTheQuery) {
  for (auto [target, location] : {std::pair{"/", "/home/index"},
                                  std::pair{"/?appID=102", "/home/index?appID=102"}}) {
    SCOPED_TRACE(target);
    const Response res = get(port(), target);
    EXPECT_EQ(res.result_int(), 302u) << res.body();
    ASSERT_EQ(header(res, http::field::location), location);
    const Response page = get(port(), location);
    EXPECT_EQ(page.result_int(), 200u);
    EXPECT_NE(page.body().find("<html"), std::string::npos);
  }
}

TEST_F(HttpApiTest, WebAssetsAreServedAndNothingElse) {
  const Response js = get(port(), "/web/imgate-client.js");
  ASSERT_EQ(js.result_int(), 200u);
  EXPECT_EQ(header(js, http::field::content_type).rfind("text/javascript", 0), 0u)
      << header(js, http::field::content_type);
  EXPECT_NE(js.body().find("ImgateClient"), std::string::npos);
  const Response css = get(port(), "/web/chat.css");
  EXPECT_EQ(css.result_int(), 200u);
  EXPECT_EQ(header(css, http::field::content_type).rfind("text/css", 0), 0u);

  for (std::string_view target : {"/web/../x", "/web/../CMakeLists.txt", "/web/nope.js", "/web/",
                                  "/web/sub/imgate-client.js", "/web/%2e%2e/README.md"}) {
    SCOPED_TRACE(target);
    const Response res = get(port(), target);
    EXPECT_EQ(res.result_int(), 404u) << res.body();
    EXPECT_EQ(res.body(), "404 page not found");
  }
}

// ---- keep-alive
// -----------------------------------------------------------------------------------

TEST_F(HttpApiTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  auto alice = join(101, "alice");
  HttpConn conn(port());
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    Response res = conn.send(make(http::verb::get, "/user/list?appID=101"));
    EXPECT_EQ(res.body(),
              R"({"code":200,"msg":"Success","data":{"userCount":1,"userList":["alice"]}})");
    EXPECT_TRUE(res.keep_alive());
    res = conn.send(make(http::verb::post, "/user/sendMessage",
                         "appID=101&userID=alice&msgID=k" + std::to_string(round) + "&message=m",
                         kFormType));
    EXPECT_EQ(res.body(), R"({"code":200,"msg":"Success","data":{"sendResults":true}})");
    expect_next_frame(*alice, push_frame("k" + std::to_string(round), "m", "alice"), "alice");
    res = conn.send(
        make(http::verb::post, "/user/online", R"({"userID":"alice"})", "application/json"));
    EXPECT_EQ(ok_data(res), json::value(json::object{{"online", true}, {"userID", "alice"}}));
    expect_bad_param(conn.send(make(http::verb::get, "/user/list")));
    EXPECT_EQ(conn.send(make(http::verb::options, "/user/list")).result_int(), 204u);
    EXPECT_EQ(conn.send(make(http::verb::get, "/missing")).result_int(), 404u);
    EXPECT_EQ(conn.send(make(http::verb::get, "/healthz")).result_int(), 200u);
    EXPECT_EQ(conn.send(make(http::verb::get, "/system/state?isDebug=true")).result_int(), 200u);
  }
  // Connection: close is honoured.
  Request last = make(http::verb::get, "/healthz");
  last.set(http::field::connection, "close");
  const Response res = conn.send(std::move(last));
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_FALSE(res.keep_alive());
  EXPECT_TRUE(conn.closed_by_server()) << "the server kept a Connection: close session open";
}

// An answer bigger than the socket takes at once (a 6 MiB file, more than the
// kernel's largest send buffer, to a client with a 4 KiB receive buffer): the
// gateway writes what fits and the rest as the client reads; the body arrives
// whole, and the connection then serves its next request.
TEST(HttpAnswerTest, AnAnswerTheSocketCannotTakeAtOnceArrivesWholeAndTheConnectionGoesOn) {
  namespace fs = std::filesystem;
  const fs::path root =
      fs::temp_directory_path() / ("imgate-big-answer-" + std::to_string(::getpid()));
  fs::create_directories(root);
  std::string big(6 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) {
    big[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);
  }
  std::ofstream(root / "big.txt", std::ios::binary) << big;
  std::ofstream(root / "index.html") << "<!doctype html>\n";  // else the embedded pages are served
  Gateway gw;
  gw.start({{"--web-root", root.string()}});
  RawConnection raw;
  raw.connect(gw.http_port(), 4096);
  ASSERT_EQ(raw.exchange("GET /web/big.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 10s), 200u);
  EXPECT_NE(raw.head().find("Content-Length: " + std::to_string(big.size())), std::string::npos)
      << raw.head();
  ASSERT_TRUE(raw.receive_at_least(big.size(), 30s)) << "got " << raw.buffered() << " bytes";
  EXPECT_TRUE(raw.take(big.size()) == big) << "the body differs from the file";
  EXPECT_EQ(raw.buffered(), 0u);
  ASSERT_EQ(raw.exchange("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 5s), 200u);
  ASSERT_TRUE(raw.receive_at_least(3));
  EXPECT_EQ(raw.take(3), "ok\n");
  fs::remove_all(root);
}

}  // namespace
}  // namespace imgate::test
