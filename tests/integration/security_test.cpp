// Access control and HTTP hygiene against the real binary (issue 9 items 4, 5, 7):
// API keys on /user/* (and with --protect-metrics on /system/state and /metrics),
// the WebSocket Origin allow-list, and the answers to malformed, oversized and
// unsupported requests. Requests are written byte for byte on raw sockets.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <filesystem>
#include <fstream>

#include "gateway_process.hpp"

namespace imgate::test {
namespace {
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

struct Exchange {
  unsigned status = 0;
  std::string text;     // everything received
  bool closed = false;  // the server ended the connection
  std::string header(std::string_view name) const {
    const std::string key = "\r\n" + std::string(name) + ": ";
    const auto pos = text.find(key);
    if (pos == std::string::npos) return "";
    const auto start = pos + key.size();
    return text.substr(start, text.find("\r\n", start) - start);
  }
  std::string body() const {
    const auto pos = text.find("\r\n\r\n");
    return pos == std::string::npos ? "" : text.substr(pos + 4);
  }
};

// Writes `request` on a fresh connection and reads until the server closes or
// `quiet` passes without data (keep-alive). The status is the first response's.
Exchange raw_call(uint16_t port, const std::string& request, Millis quiet = 1500ms) {
  Exchange out;
  const int fd = connect_loopback_nonblocking(port);
  std::size_t sent = 0;
  for (;;) {
    pollfd p{fd, static_cast<short>(POLLIN | (sent < request.size() ? POLLOUT : 0)), 0};
    if (::poll(&p, 1, static_cast<int>(quiet.count())) <= 0) break;
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
      if (n > 0) out.text.append(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  if (out.text.rfind("HTTP/1.", 0) == 0 && out.text.size() > 12) {
    out.status = static_cast<unsigned>(std::stoul(out.text.substr(9, 3)));
  }
  return out;
}

std::string get_request(std::string_view target, std::string_view extra_headers = "") {
  return "GET " + std::string(target) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
         std::string(extra_headers) + "\r\n";
}

// The status of a request sent with Connection: close (no wait for a keep-alive timeout).
unsigned status_of(uint16_t port, std::string_view target, std::string_view extra_headers = "") {
  return raw_call(port, get_request(target, std::string(extra_headers) + "Connection: close\r\n")).status;
}

std::string upgrade_request(std::string_view origin_header) {
  return "GET /acc HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
         std::string(origin_header) + "\r\n";
}

constexpr const char* kKeyA = "alpha-0123456789";
constexpr const char* kKeyB = "beta-key-xyz";

// Every /user/* route, with parameters it accepts; "/user/unknown" stands for any other path.
struct UserRoute {
  const char* path;
  const char* params;  // the query string of a GET, the form body of a POST
};
const UserRoute kUserRoutes[] = {
    {"/user/list", "appID=101"},
    {"/user/online", "userID=alice"},
    {"/user/sendMessage", "appID=101&userID=alice&message=hi"},
    {"/user/sendMessageAll", "appID=101&userID=alice&message=hi"},
    {"/user/history", "appID=101&userID=alice"},
    {"/user/unknown", "appID=101"},
};

std::string post_request(std::string_view path, std::string_view form,
                         std::string_view extra_headers = "") {
  return "POST " + std::string(path) +
         " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
         "Content-Length: " + std::to_string(form.size()) + "\r\n" + std::string(extra_headers) +
         "\r\n" + std::string(form);
}

// The same call of `route` as a GET (parameters in the query) or a POST (in a form body).
std::string route_request(const UserRoute& route, bool post, std::string_view extra_headers = "") {
  if (post) return post_request(route.path, route.params, extra_headers);
  return get_request(std::string(route.path) + "?" + route.params, extra_headers);
}

// A 401 in the upstream error shape, with WWW-Authenticate, closing the connection.
void expect_unauthorized(const Exchange& ex) {
  SCOPED_TRACE(ex.text);
  EXPECT_EQ(ex.status, 401u);
  EXPECT_EQ(ex.header("WWW-Authenticate"), "Bearer");
  EXPECT_EQ(ex.header("Content-Type"), "application/json; charset=utf-8");
  EXPECT_TRUE(ex.closed) << "connection left open after 401";
  boost::system::error_code ec;
  const json::value v = json::parse(ex.body(), ec);
  ASSERT_FALSE(ec) << "not JSON";
  ASSERT_TRUE(v.is_object());
  const auto& obj = v.as_object();
  EXPECT_EQ(obj.size(), 3u);
  EXPECT_EQ(obj.at("code"), json::value(1003));
  EXPECT_TRUE(obj.at("msg").is_string());
  ASSERT_TRUE(obj.at("data").is_object());
  EXPECT_TRUE(obj.at("data").as_object().at("error").is_string());
}

class ApiKeyTest : public GatewayTest {
 protected:
  // History on, so that /user/history answers 200 with the right key.
  void SetUp() override {
    gw.start({{"--api-key", std::string(kKeyA) + "," + kKeyB}, {"--history-size", "100"}});
  }
  uint16_t port() const { return gw.http_port(); }
};

TEST_F(ApiKeyTest, EveryUserRouteNeedsAValidKey) {
  // Missing key; wrong keys (same length, shorter, longer) in either header; empty; another scheme.
  const char* const refused[] = {
      "",
      "Authorization: Bearer alpha-0123456780\r\n",
      "Authorization: Bearer alpha\r\n",
      "X-API-Key: beta-key-xyZ\r\n",
      "X-API-Key: alpha-0123456789-and-more\r\n",
      "Authorization: Bearer \r\n",
      "Authorization: Basic YWxwaGE=\r\n",
  };
  // Either key, either header, header names and the scheme in any case.
  const char* const accepted[] = {
      "Authorization: Bearer alpha-0123456789\r\n",
      "authorization: bearer beta-key-xyz\r\n",
      "X-API-Key: alpha-0123456789\r\n",
      "x-api-key: beta-key-xyz\r\n",
  };
  int expected_rejections = 0;
  for (const UserRoute& route : kUserRoutes) {
    for (const bool post : {false, true}) {
      SCOPED_TRACE(std::string(post ? "POST " : "GET ") + route.path);
      for (const char* headers : refused) {
        SCOPED_TRACE(headers);
        expect_unauthorized(raw_call(port(), route_request(route, post, headers)));
        ++expected_rejections;
      }
      const bool known = std::string_view(route.path) != "/user/unknown";
      for (const char* headers : accepted) {
        SCOPED_TRACE(headers);
        const Exchange ex =
            raw_call(port(), route_request(route, post, std::string(headers) + "Connection: close\r\n"));
        EXPECT_EQ(ex.status, known ? 200u : 404u);
        // The route's own answer, not only its status.
        if (known) {
          EXPECT_NE(ex.body().find("\"code\":200"), std::string::npos) << ex.body();
        }
      }
    }
  }
  EXPECT_EQ(gw.state().counter("apiKeyRejections"), expected_rejections);
}

TEST_F(ApiKeyTest, AValidKeyKeepsTheConnectionAlive) {
  const std::string req = get_request("/user/list?appID=101", "X-API-Key: beta-key-xyz\r\n");
  const Exchange ex = raw_call(port(), req + req, 800ms);
  EXPECT_EQ(ex.status, 200u);
  EXPECT_FALSE(ex.closed);
  std::size_t answers = 0;
  for (auto pos = ex.text.find("HTTP/1.1 200"); pos != std::string::npos;
       pos = ex.text.find("HTTP/1.1 200", pos + 1)) {
    ++answers;
  }
  EXPECT_EQ(answers, 2u);
}

TEST_F(ApiKeyTest, HealthPageStateAndMetricsStayOpenWithoutProtectMetrics) {
  EXPECT_EQ(status_of(port(), "/healthz"), 200u);
  EXPECT_EQ(status_of(port(), "/system/state"), 200u);
  EXPECT_EQ(status_of(port(), "/metrics"), 200u);
  EXPECT_NE(status_of(port(), "/home/index"), 401u);
  EXPECT_NE(status_of(port(), "/web/imgate.js"), 401u);
  // A CORS preflight carries no credentials.
  EXPECT_EQ(raw_call(port(), "OPTIONS /user/list HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").status, 204u);
}

// Not a GatewayTest: its idle check reads /system/state without a key.
TEST(ApiKeyProtectMetrics, StateAndMetricsNeedAKeyToo) {
  Gateway gw;
  gw.start({{"--api-key", kKeyA}, {"--protect-metrics", "true"}});
  for (const char* route : {"/system/state", "/metrics"}) {
    SCOPED_TRACE(route);
    expect_unauthorized(raw_call(gw.http_port(), get_request(route)));
    expect_unauthorized(raw_call(gw.http_port(), get_request(route, "X-API-Key: wrong\r\n")));
    EXPECT_EQ(status_of(gw.http_port(), route, "X-API-Key: alpha-0123456789\r\n"), 200u);
  }
  EXPECT_EQ(status_of(gw.http_port(), "/healthz"), 200u);
  const Exchange metrics =
      raw_call(gw.http_port(), get_request("/metrics", "Authorization: Bearer alpha-0123456789\r\nConnection: close\r\n"));
  EXPECT_NE(metrics.text.find("imgate_api_key_rejections_total 4"), std::string::npos) << metrics.text;
}

TEST(ApiKeyFile, KeysComeFromTheFileOneALine) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("imgate-keys-" + std::to_string(::getpid()) + ".txt");
  std::ofstream(path) << "# gateway keys\n\nfile-key-one\n  file-key-two  \n";
  Gateway gw;
  gw.start({{"--api-key-file", path.string()}});
  const uint16_t port = gw.http_port();
  expect_unauthorized(raw_call(port, get_request("/user/list?appID=101")));
  expect_unauthorized(raw_call(port, get_request("/user/list?appID=101", "X-API-Key: # gateway keys\r\n")));
  EXPECT_EQ(status_of(port, "/user/list?appID=101", "X-API-Key: file-key-one\r\n"), 200u);
  EXPECT_EQ(status_of(port, "/user/list?appID=101", "Authorization: Bearer file-key-two\r\n"), 200u);
  std::filesystem::remove(path);
}

TEST(ApiKeyDefault, WithoutAKeyEverythingIsOpen) {
  Gateway gw;
  gw.start();
  for (const UserRoute& route : kUserRoutes) {
    for (const bool post : {false, true}) {
      const Exchange ex =
          raw_call(gw.http_port(), route_request(route, post, "Connection: close\r\n"));
      EXPECT_NE(ex.status, 401u) << (post ? "POST " : "GET ") << route.path;
      EXPECT_NE(ex.status, 0u) << (post ? "POST " : "GET ") << route.path;
    }
  }
}

// ---- Origin allow-list ---------------------------------------------------------------------

class OriginTest : public GatewayTest {};

TEST_F(OriginTest, OnlyListedOriginsMayUpgrade) {
  gw.start({{"--allowed-origins", "https://chat.example.com, https://*.example.org"}});
  const std::pair<const char*, unsigned> cases[] = {
      {"Origin: https://chat.example.com\r\n", 101},
      {"Origin: HTTPS://Chat.Example.com:443\r\n", 101},
      {"Origin: https://a.example.org\r\n", 101},
      {"Origin: https://a.b.example.org\r\n", 101},
      {"", 101},  // no Origin: not a browser
      {"Origin: https://example.org\r\n", 403},
      {"Origin: https://evil-example.org\r\n", 403},
      {"Origin: https://example.org.evil.net\r\n", 403},
      {"Origin: https://chat.example.com.evil.net\r\n", 403},
      {"Origin: https://evilchat.example.com\r\n", 403},
      {"Origin: http://chat.example.com\r\n", 403},
      {"Origin: https://chat.example.com:8443\r\n", 403},
      {"Origin: http://a.example.org\r\n", 403},
      {"Origin: https://.example.org\r\n", 403},
      {"Origin: null\r\n", 403},
      {"Origin: \r\n", 403},
  };
  int refused = 0;
  for (const auto& [header, status] : cases) {
    SCOPED_TRACE(header);
    const Exchange ex = raw_call(gw.ws_port(), upgrade_request(header), 500ms);
    EXPECT_EQ(ex.status, status) << ex.text.substr(0, 200);
    if (status == 403) {
      ++refused;
      EXPECT_TRUE(ex.closed) << "connection left open after 403";
      EXPECT_EQ(ex.header("Content-Type"), "text/plain; charset=utf-8");
      EXPECT_EQ(ex.text.find("\r\nUpgrade:"), std::string::npos);
    }
  }
  EXPECT_EQ(gw.state().counter("originRejections"), refused);
  const HttpResponse metrics = http_get(gw.http_port(), "/metrics");
  EXPECT_NE(metrics.body.find("imgate_origin_rejections_total " + std::to_string(refused)),
            std::string::npos);
}

TEST_F(OriginTest, AnyOriginByDefault) {
  gw.start();
  EXPECT_EQ(raw_call(gw.ws_port(), upgrade_request("Origin: https://anything.test\r\n"), 500ms).status, 101u);
  EXPECT_EQ(raw_call(gw.ws_port(), upgrade_request("Origin: null\r\n"), 500ms).status, 101u);
  EXPECT_EQ(gw.state().counter("originRejections"), 0);
}

// ---- HTTP hygiene ---------------------------------------------------------------------------

class HttpHygieneTest : public GatewayTest {
 protected:
  void SetUp() override { gw.start(); }
};

void expect_refusal(const Exchange& ex, unsigned status) {
  SCOPED_TRACE(ex.text.substr(0, 300));
  EXPECT_EQ(ex.status, status);
  EXPECT_TRUE(ex.closed) << "connection left open";
  EXPECT_EQ(ex.header("Connection"), "close");
  // One answer only: nothing after the refused request is parsed.
  EXPECT_EQ(ex.text.find("HTTP/1.1", 1), std::string::npos);
}

TEST_F(HttpHygieneTest, MalformedRequestsGet400AndAClose) {
  const std::string follow = get_request("/healthz");
  const std::string malformed[] = {
      "GARBAGE\r\n\r\n",
      "GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n",
      "GET /healthz HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
      "GET /healthz HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n",
      "POST /user/online HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
      "POST /user/online HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
      "POST /user/online HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
  };
  for (const uint16_t port : {gw.http_port(), gw.ws_port()}) {
    for (const std::string& request : malformed) {
      SCOPED_TRACE(request);
      expect_refusal(raw_call(port, request + follow), 400);
    }
  }
}

TEST_F(HttpHygieneTest, OversizedHeadersGet431AndAClose) {
  for (const uint16_t port : {gw.http_port(), gw.ws_port()}) {
    expect_refusal(raw_call(port, get_request("/healthz", "X-Pad: " + std::string(9 * 1024, 'p') + "\r\n") +
                                      get_request("/healthz")),
                   431);
  }
}

TEST_F(HttpHygieneTest, UnsupportedTransferCodingGets501AndAClose) {
  // "gzip, chunked": the parser takes the chunked body (here empty), the gzip stays undecoded.
  for (const char* coding : {"gzip", "gzip, chunked", "identity"}) {
    SCOPED_TRACE(coding);
    const std::string body = std::string_view(coding).ends_with("chunked") ? "0\r\n\r\n" : "";
    expect_refusal(raw_call(gw.http_port(), "POST /user/online HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " +
                                               std::string(coding) + "\r\n\r\n" + body),
                   501);
  }
  // chunked itself is fine.
  const Exchange ok = raw_call(gw.http_port(),
                               "POST /user/online HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                               "Content-Type: application/x-www-form-urlencoded\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n9\r\nuserID=al\r\n0\r\n\r\n");
  EXPECT_EQ(ok.status, 200u) << ok.text;
}

TEST_F(HttpHygieneTest, BodyOverTheLimitGets413AndAClose) {
  const std::string body(70 * 1024, 'x');
  expect_refusal(raw_call(gw.http_port(), "POST /user/online HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                                              std::to_string(body.size()) + "\r\n\r\n" + body),
                 413);
}

}  // namespace
}  // namespace imgate::test
