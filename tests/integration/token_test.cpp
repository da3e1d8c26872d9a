// Login tokens against the real binary (issue 9, items 1-3, 6): login with HS256 / ES256 / RS256
// tokens, each refusal answered 1003 with its reason over the wire, the failed-login limit
// (close 1008), refresh before and after expiry, the 4001 close at expiry, the publish
// command, and the secret read from --auth-hmac-secret-file. Tokens are minted in the test
// (tests/common/jwt_sign.hpp) and, in MintTokenTest, by scripts/mint-token with keys
// made by the openssl CLI.
#include <sys/wait.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "../common/jwt_sign.hpp"
#include "gateway_process.hpp"
#include "ws_client.hpp"

namespace imgate::test {
namespace {
namespace json = boost::json;

std::string login_data(std::string_view token, uint32_t app, std::string_view user) {
  return json::serialize(json::object{{"serviceToken", token}, {"appID", app}, {"userID", user}});
}

// The response part {"code","codeMsg","data"} of a request.
json::object reply(WsClient& c, std::string_view cmd, const std::string& data) {
  return c.request(cmd, data).at("response").as_object();
}

int64_t code_of(const json::object& r) { return r.at("code").to_number<int64_t>(); }

std::string error_of(const json::object& r) {
  const json::value* data = r.if_contains("data");
  if (!data || !data->is_object() || !data->as_object().contains("error")) return "";
  return std::string(data->as_object().at("error").as_string());
}

// A file in a fresh temporary folder, removed with the object.
struct TempFile {
  explicit TempFile(std::string_view text) {
    path = std::filesystem::temp_directory_path() /
           ("imgate-key-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + ".pem");
    std::ofstream(path) << text;
  }
  ~TempFile() { std::filesystem::remove(path); }
  std::filesystem::path path;
  static inline int counter = 0;
};

class TokenTest : public GatewayTest {
 protected:
  void start_hmac(Flags extra = {}) {
    extra.emplace("--auth-hmac-secret", kTestSecret);
    gw.start(extra);
  }
  std::string metrics() { return http_get(gw.http_port(), "/metrics").body; }
};

TEST_F(TokenTest, AValidTokenLogsInAndTheReplyCarriesItsExpiry) {
  start_hmac();
  WsClient c;
  c.connect(gw.ws_port());
  const auto claims = claims_for("alice", 600);
  const json::object r = reply(c, "login", login_data(mint("HS512", claims), 101, "alice"));
  EXPECT_EQ(code_of(r), 200);
  EXPECT_EQ(r.at("data").at("exp").to_number<int64_t>(), claims.at("exp").to_number<int64_t>());
  EXPECT_TRUE(gw.wait_for("alice online", [](const State& s) { return s.users_len() == 1; }));
  EXPECT_NE(http_get(gw.http_port(), "/user/online?appID=101&userID=alice").body.find("\"online\":true"),
            std::string::npos);
}

TEST_F(TokenTest, EveryRefusalIs1003WithItsReasonAndTheConnectionStaysUsable) {
  start_hmac({{"--max-failed-logins", "0"}});
  const int64_t now = unix_now();
  auto with = [&](json::object extra) {
    json::object claims{{"sub", "alice"}, {"exp", now + 600}};
    for (const auto& kv : extra) claims[kv.key()] = kv.value();
    return claims;
  };
  const std::string claims_text = json::serialize(claims_for("alice"));
  const std::string good = hs256("alice");
  struct Case {
    std::string what, token, error;
  };
  const std::vector<Case> cases = {
      {"no token", "", "token required"},
      {"alg none", signing_input(R"({"alg":"none"})", claims_text) + ".", "algorithm none is not allowed"},
      {"bad signature", mint("HS256", claims_for("alice"), "wrong-secret-wrong-secret-wrong-secret"),
       "bad signature"},
      {"expired", mint("HS256", with({{"exp", now - 120}})), "token expired"},
      {"nbf in the future", mint("HS256", with({{"nbf", now + 600}})), "token not yet valid (nbf)"},
      {"sub mismatch", hs256("mallory"), "token sub does not match userID"},
      {"room not granted", mint("HS256", with({{"appIDs", json::array{102, 103}}})),
       "appID not granted by the token"},
      {"malformed base64", "%%%." + good.substr(good.find('.') + 1), "token header is not base64url JSON"},
      {"malformed JSON", base64url_encode("{\"alg\":\"HS256\"") + good.substr(good.find('.')),
       "token header is not base64url JSON"},
      {"missing sub", mint("HS256", {{"exp", now + 600}}), "sub claim missing"},
      {"missing exp", mint("HS256", {{"sub", "alice"}}), "exp claim missing"},
      {"two parts", "abc.def", "token is not a compact JWS (header.payload.signature)"},
  };
  WsClient c;
  c.connect(gw.ws_port());
  for (const Case& k : cases) {
    SCOPED_TRACE(k.what);
    const json::object r = reply(c, "login", login_data(k.token, 101, "alice"));
    EXPECT_EQ(code_of(r), 1003);
    EXPECT_EQ(r.at("codeMsg").as_string(), "未授权");
    EXPECT_EQ(error_of(r), k.error);
  }
  c.expect_pong();
  EXPECT_EQ(gw.state().users_len(), 0);
  EXPECT_EQ(gw.state().counter("tokenRejections"), static_cast<int64_t>(cases.size()));
  EXPECT_NE(metrics().find("imgate_token_rejections_total " + std::to_string(cases.size())),
            std::string::npos);
  EXPECT_EQ(code_of(reply(c, "login", login_data(good, 101, "alice"))), 200);
}

TEST_F(TokenTest, AnUnconfiguredAppIdIsRefusedWithAReason) {
  start_hmac({{"--app-ids", "101,102"}});
  WsClient c;
  c.connect(gw.ws_port());
  for (const uint32_t app : {103u, 999u, 0u}) {
    SCOPED_TRACE(app);
    const json::object r = reply(c, "login", login_data(hs256("alice"), app, "alice"));
    EXPECT_EQ(code_of(r), 1003);
    EXPECT_EQ(r.at("codeMsg").as_string(), "未授权");
    EXPECT_EQ(error_of(r), "appID is not configured");
  }
  EXPECT_EQ(gw.state().counter("tokenRejections"), 0);
  EXPECT_EQ(code_of(reply(c, "login", login_data(hs256("alice"), 102, "alice"))), 200);
}

TEST_F(TokenTest, A64KiBTokenIsRefusedAsTooLarge) {
  start_hmac({{"--max-message-bytes", "256K"}});
  auto claims = claims_for("alice");
  claims["pad"] = std::string(64 * 1024, 'p');
  WsClient c;
  c.connect(gw.ws_port());
  const json::object r = reply(c, "login", login_data(mint("HS256", claims), 101, "alice"));
  EXPECT_EQ(code_of(r), 1003);
  EXPECT_EQ(error_of(r), "token too large");
}

TEST_F(TokenTest, PublicKeysVerifyEs256AndRs256AndNeverServeAsHmacSecrets) {
  auto ec = KeyPair::ec();
  TempFile pem(ec.public_pem());
  gw.start({{"--auth-public-key", pem.path.string()}});
  WsClient c;
  c.connect(gw.ws_port());
  // HS256 "signed" with the public key's PEM: the confusion attack.
  json::object r = reply(c, "login", login_data(mint("HS256", claims_for("alice"), ec.public_pem()),
                                                101, "alice"));
  EXPECT_EQ(code_of(r), 1003);
  EXPECT_EQ(error_of(r), "HS256 is not allowed: no HMAC secret configured");
  auto rsa = KeyPair::rsa();
  r = reply(c, "login", login_data(mint("RS256", claims_for("alice"), "", rsa.key.get()), 101, "alice"));
  EXPECT_EQ(error_of(r), "RS256 is not allowed: no RSA public key configured");
  r = reply(c, "login", login_data(mint("ES256", claims_for("alice"), "", ec.key.get()), 101, "alice"));
  EXPECT_EQ(code_of(r), 200);
}

TEST_F(TokenTest, Rs256WithAnRsaPublicKey) {
  auto rsa = KeyPair::rsa();
  TempFile pem(rsa.public_pem());
  gw.start({{"--auth-public-key", pem.path.string()}});
  WsClient c;
  c.connect(gw.ws_port());
  EXPECT_EQ(code_of(reply(c, "login", login_data(mint("RS256", claims_for("bob"), "", rsa.key.get()),
                                                 102, "bob"))),
            200);
}

TEST_F(TokenTest, UnusableKeysStopTheGatewayAtStartUp) {
  TempFile junk("-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n");
  EXPECT_THROW(gw.start({{"--auth-public-key", junk.path.string()}}), std::runtime_error);
  EXPECT_EQ(gw.exit_status(), 2);
  EXPECT_NE(gw.log().find("--auth-public-key is not a PEM public key"), std::string::npos) << gw.log();
  gw.signal(SIGTERM);  // exited as it should: not an unexpected exit
  Gateway short_secret;
  EXPECT_THROW(short_secret.start({{"--auth-hmac-secret", "too-short"}}), std::runtime_error);
  EXPECT_EQ(short_secret.exit_status(), 2);
  EXPECT_NE(short_secret.log().find("at least 32 bytes"), std::string::npos) << short_secret.log();
}

// docs/configuration.md: "one trailing newline (\n or \r\n) is dropped" from the secret file,
// so a file written by `openssl rand -hex 32 > secret` or an editor holds the secret itself.
TEST_F(TokenTest, TheSecretFileIsReadWithoutItsTrailingNewline) {
  TempFile secret(kTestSecret + "\n");
  gw.start({{"--auth-hmac-secret-file", secret.path.string()}});
  WsClient c;
  c.connect(gw.ws_port());
  // Signed with the newline: not the secret the gateway holds.
  json::object r = reply(c, "login", login_data(mint("HS256", claims_for("alice"), kTestSecret + "\n"),
                                                101, "alice"));
  EXPECT_EQ(code_of(r), 1003);
  EXPECT_EQ(error_of(r), "bad signature");
  r = reply(c, "login", login_data(mint("HS256", claims_for("alice"), kTestSecret), 101, "alice"));
  EXPECT_EQ(code_of(r), 200);
  EXPECT_TRUE(r.at("data").as_object().contains("exp"));
}

TEST_F(TokenTest, OnlyOneTrailingNewlineOfTheSecretFileIsDropped) {
  // CRLF (a file from a Windows editor) counts as one newline; a second newline stays.
  TempFile crlf(kTestSecret + "\r\n");
  gw.start({{"--auth-hmac-secret-file", crlf.path.string()}});
  WsClient c;
  c.connect(gw.ws_port());
  EXPECT_EQ(code_of(reply(c, "login", login_data(mint("HS256", claims_for("alice"), kTestSecret), 101,
                                                 "alice"))),
            200);
  Gateway two_newlines;
  TempFile doubled(kTestSecret + "\n\n");
  two_newlines.start({{"--auth-hmac-secret-file", doubled.path.string()}});
  WsClient d;
  d.connect(two_newlines.ws_port());
  json::object r = reply(d, "login", login_data(mint("HS256", claims_for("bob"), kTestSecret), 101, "bob"));
  EXPECT_EQ(error_of(r), "bad signature");
  r = reply(d, "login", login_data(mint("HS256", claims_for("bob"), kTestSecret + "\n"), 101, "bob"));
  EXPECT_EQ(code_of(r), 200);
}

// An empty (or newline-only), missing or too short secret file stops the gateway: exit 2
// with a message naming the option and the file.
TEST(TokenSecretFile, AnEmptyMissingOrShortSecretFileStopsStartUp) {
  TempFile empty("");
  TempFile newline_only("\n");
  TempFile too_short("short-secret\n");
  const std::string missing =
      (std::filesystem::temp_directory_path() / ("imgate-no-such-secret-" + std::to_string(::getpid())))
          .string();
  const std::pair<std::string, std::string> cases[] = {
      {empty.path.string(), "--auth-hmac-secret-file " + empty.path.string() + " is empty"},
      {newline_only.path.string(), "--auth-hmac-secret-file " + newline_only.path.string() + " is empty"},
      {missing, "cannot read --auth-hmac-secret-file " + missing},
      {too_short.path.string(), "must be at least 32 bytes"},
  };
  for (const auto& [path, message] : cases) {
    SCOPED_TRACE(path);
    Gateway gw;
    EXPECT_THROW(gw.start({{"--auth-hmac-secret-file", path}}), std::runtime_error);
    EXPECT_EQ(gw.exit_status(), 2);
    EXPECT_NE(gw.log().find(message), std::string::npos) << gw.log();
  }
}

TEST_F(TokenTest, TheFifthRefusedLoginClosesWith1008) {
  start_hmac();  // default --max-failed-logins 5
  WsClient c;
  c.connect(gw.ws_port());
  for (int i = 1; i <= 4; ++i) {
    EXPECT_EQ(code_of(reply(c, "login", login_data("x.y.z", 101, "alice"))), 1003) << i;
  }
  // The fifth refusal is answered, then the connection is closed.
  EXPECT_EQ(code_of(reply(c, "login", login_data(hs256("bob"), 101, "alice"))), 1003);
  EXPECT_EQ(c.expect_closed(), 1008);
  EXPECT_TRUE(gw.wait_for("the limit counted", [](const State& s) {
    const json::value* v = s.find({"imgate", "counters", "limitCloses", "failedLogins"});
    return v && v->to_number<int64_t>() == 1;
  }));
  EXPECT_NE(metrics().find("imgate_limit_closes_total{limit=\"failed_logins\"} 1"), std::string::npos);
}

TEST_F(TokenTest, AConnectionWhoseTokenExpiresIsClosedWith4001) {
  start_hmac({{"--auth-leeway", "0"}});
  WsClient c;
  c.connect(gw.ws_port());
  ASSERT_EQ(code_of(reply(c, "login", login_data(hs256("alice", 1), 101, "alice"))), 200);
  EXPECT_EQ(c.expect_closed(5s), 4001);
  EXPECT_TRUE(gw.wait_for("alice gone", [](const State& s) { return s.users_len() == 0; }));
  EXPECT_NE(metrics().find("imgate_connections_closed_total{reason=\"token expired\"} 1"),
            std::string::npos);
}

TEST_F(TokenTest, ARefreshBeforeExpiryKeepsTheConnectionOpen) {
  start_hmac({{"--auth-leeway", "0"}});
  WsClient c;
  c.connect(gw.ws_port());
  ASSERT_EQ(code_of(reply(c, "login", login_data(hs256("alice", 2), 101, "alice"))), 200);
  const auto fresh = claims_for("alice", 600);
  const json::object r = reply(c, "refresh", json::serialize(json::object{
                                                 {"serviceToken", mint("HS256", fresh)}}));
  ASSERT_EQ(code_of(r), 200);
  EXPECT_EQ(r.at("data").at("exp").to_number<int64_t>(), fresh.at("exp").to_number<int64_t>());
  // Past the first token's expiry (+ a tick) the connection is still served.
  EXPECT_EQ(c.expect_closed(3500ms), std::nullopt);
  c.expect_pong();
  EXPECT_EQ(gw.state().counter("tokenRefreshes"), 1);
}

TEST_F(TokenTest, ARefreshWithAnExpiredOrForeignTokenIsRefusedAndExpiryStillCloses) {
  start_hmac({{"--auth-leeway", "0"}});
  WsClient c;
  c.connect(gw.ws_port());
  EXPECT_EQ(code_of(reply(c, "refresh", json::serialize(json::object{{"serviceToken", hs256("alice")}}))),
            1000);  // not logged in yet
  ASSERT_EQ(code_of(reply(c, "login", login_data(hs256("alice", 2), 101, "alice"))), 200);
  json::object r = reply(c, "refresh", json::serialize(json::object{{"serviceToken", hs256("alice", -10)}}));
  EXPECT_EQ(code_of(r), 1003);
  EXPECT_EQ(error_of(r), "token expired");
  r = reply(c, "refresh", json::serialize(json::object{{"serviceToken", hs256("bob", 600)}}));
  EXPECT_EQ(error_of(r), "token sub does not match userID");
  EXPECT_EQ(c.expect_closed(5s), 4001);
}

TEST_F(TokenTest, PublishReachesTheOwnRoomOnceAndHonoursMsgIdDeduplication) {
  start_hmac({{"--api-key", "k-0123456789abcdef"}});  // the HTTP path is closed to browsers
  WsClient a, b, other;
  for (WsClient* c : {&a, &b, &other}) c->connect(gw.ws_port());
  ASSERT_EQ(code_of(reply(a, "login", login_data(hs256("alice"), 101, "alice"))), 200);
  ASSERT_EQ(code_of(reply(b, "login", login_data(hs256("bob"), 101, "bob"))), 200);
  ASSERT_EQ(code_of(reply(other, "login", login_data(hs256("carol"), 102, "carol"))), 200);
  a.take_pushes();
  b.take_pushes();
  other.take_pushes();
  const std::string data = R"({"message":"hello room","msgID":"pub-1"})";
  json::object r = reply(a, "publish", data);
  EXPECT_EQ(code_of(r), 200);
  EXPECT_EQ(r.at("data").at("sendResults").as_bool(), true);
  auto push = b.next_push("msg");
  ASSERT_TRUE(push);
  EXPECT_EQ(push->at("seq").as_string(), "pub-1");
  const auto& pd = push->at("response").at("data").as_object();
  EXPECT_EQ(pd.at("msg").as_string(), "hello room");
  EXPECT_EQ(pd.at("from").as_string(), "alice");
  EXPECT_EQ(pd.at("type").as_string(), "text");
  // Same msgID again: answered with empty data, nothing pushed.
  r = reply(a, "publish", data);
  EXPECT_EQ(code_of(r), 200);
  EXPECT_TRUE(r.at("data").as_object().empty());
  EXPECT_TRUE(b.take_pushes().empty());
  EXPECT_TRUE(a.take_pushes().empty());      // not to the sender
  EXPECT_TRUE(other.take_pushes().empty());  // not to another room
  EXPECT_NE(metrics().find("imgate_msgid_duplicates_total 1\n"), std::string::npos);
  EXPECT_EQ(code_of(reply(a, "publish", R"({"message":""})")), 1001);
}

// The users command (docs/security.md): in secure mode, where GET /user/list needs the API key,
// a logged-in page still learns who is online in its own room, and only there.
TEST_F(TokenTest, UsersListsTheOwnRoomWithoutTheApiKey) {
  start_hmac({{"--api-key", "k-0123456789abcdef"}});
  EXPECT_EQ(http_get(gw.http_port(), "/user/list?appID=101").status, 401u);
  WsClient a, b, other, anonymous;
  for (WsClient* c : {&a, &b, &other, &anonymous}) c->connect(gw.ws_port());
  EXPECT_EQ(code_of(reply(anonymous, "users", "{}")), 1000);  // not logged in
  ASSERT_EQ(code_of(reply(a, "login", login_data(hs256("alice"), 101, "alice"))), 200);
  ASSERT_EQ(code_of(reply(other, "login", login_data(hs256("carol"), 102, "carol"))), 200);
  ASSERT_EQ(code_of(reply(b, "login", login_data(hs256("bob"), 101, "bob"))), 200);
  // bob, who came later, learns that alice is there (and not carol, in room 102).
  const json::value expected = json::parse(R"({"userCount":2,"userList":["alice","bob"]})");
  json::object r = reply(b, "users", "{}");
  EXPECT_EQ(code_of(r), 200);
  EXPECT_EQ(r.at("codeMsg").as_string(), "Success");
  EXPECT_EQ(r.at("data"), expected);
  EXPECT_EQ(reply(a, "users", R"({"appID":101})").at("data"), expected);
  EXPECT_EQ(reply(other, "users", "{}").at("data"),
            json::parse(R"({"userCount":1,"userList":["carol"]})"));
  r = reply(b, "users", R"({"appID":102})");  // another room: refused
  EXPECT_EQ(code_of(r), 1003);
  EXPECT_EQ(error_of(r), "only the connection's own room");
  EXPECT_EQ(code_of(reply(b, "users", R"("x")")), 1001);
}

// A client's msgIDs are de-duplicated in its own scope (room and user): a logged-in client
// cannot use up a backend's msgID, nor another user's, while its own retries stay de-duplicated.
TEST_F(TokenTest, APublishedMsgIdIsScopedToItsSenderAndNeverSuppressesABackendsPush) {
  gw.start();
  WsClient a, b;
  a.connect(gw.ws_port());
  b.connect(gw.ws_port());
  ASSERT_EQ(a.login(103, "a"), 200);
  ASSERT_EQ(b.login(103, "b"), 200);
  a.take_pushes();
  b.take_pushes();
  const auto backend_send = [&] {
    const HttpResponse res = http_get(
        gw.http_port(), "/user/sendMessageAll?appID=103&userID=backend&msgID=m-x&message=from%20backend");
    return json::parse(res.body).as_object();
  };
  const std::string data = R"({"message":"from a","msgID":"m-x"})";
  EXPECT_EQ(reply(a, "publish", data).at("data").at("sendResults").as_bool(), true);
  ASSERT_TRUE(b.next_push("msg"));
  // The backend's push with the same msgID still goes out, to both.
  EXPECT_EQ(backend_send().at("data").at("sendResults").as_bool(), true);
  for (WsClient* c : {&a, &b}) {
    auto push = c->next_push("msg");
    ASSERT_TRUE(push);
    EXPECT_EQ(push->at("response").at("data").at("msg").as_string(), "from backend");
  }
  // Another user's publish with that msgID too.
  EXPECT_EQ(reply(b, "publish", R"({"message":"from b","msgID":"m-x"})").at("data").at("sendResults").as_bool(),
            true);
  auto push = a.next_push("msg");
  ASSERT_TRUE(push);
  EXPECT_EQ(push->at("response").at("data").at("msg").as_string(), "from b");
  // Retries are still duplicates, each in its own scope.
  EXPECT_TRUE(reply(a, "publish", data).at("data").as_object().empty());
  EXPECT_TRUE(backend_send().at("data").as_object().empty());
  EXPECT_TRUE(a.take_pushes().empty());
  EXPECT_TRUE(b.take_pushes().empty());
}

TEST_F(TokenTest, PublishWorksWithoutTokensTooAndNeedsALogin) {
  gw.start();
  WsClient a, b;
  a.connect(gw.ws_port());
  b.connect(gw.ws_port());
  EXPECT_EQ(code_of(reply(a, "publish", R"({"message":"early"})")), 1000);
  ASSERT_EQ(a.login(103, "a"), 200);
  ASSERT_EQ(b.login(103, "b"), 200);
  b.take_pushes();
  EXPECT_EQ(code_of(reply(a, "publish", R"({"message":"no token needed"})")), 200);
  auto push = b.next_push("msg");
  ASSERT_TRUE(push);
  EXPECT_EQ(push->at("response").at("data").at("msg").as_string(), "no token needed");
}

// ---- scripts/mint-token ---------------------------------------------------------------------

namespace fs = std::filesystem;

// The repository, from this file's path (tests/integration/token_test.cpp).
const fs::path kRepo = fs::absolute(fs::path(__FILE__)).parent_path().parent_path().parent_path();

struct Output {
  int status = -1;  // exit status, -1 if the command did not exit normally
  std::string text;
};

// Runs `command` through the shell; stdout (and, with `with_stderr`, stderr).
Output run(const std::string& command, bool with_stderr = false) {
  Output out;
  FILE* p = ::popen((command + (with_stderr ? " 2>&1" : " 2>/dev/null")).c_str(), "r");
  if (!p) return out;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, p)) out.text += buf;
  const int status = ::pclose(p);
  if (WIFEXITED(status)) out.status = WEXITSTATUS(status);
  return out;
}

std::string quoted(const fs::path& path) { return "'" + path.string() + "'"; }

// The decoded header of a compact JWS.
json::object header_of(const std::string& token) {
  std::string decoded;
  if (!base64url_decode(token.substr(0, token.find('.')), decoded)) return {};
  json::error_code ec;
  json::value v = json::parse(decoded, ec);
  return !ec && v.is_object() ? v.as_object() : json::object{};
}

// Keys made by the openssl CLI, as docs/security.md shows, in a fresh folder, and the
// gateway started with a public key from there; tokens minted by scripts/mint-token.
class MintTokenTest : public GatewayTest {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "imgate-mint-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    ASSERT_TRUE(fs::is_regular_file(kRepo / "scripts" / "mint-token")) << kRepo;
  }
  void TearDown() override {
    GatewayTest::TearDown();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // `name`.pem (private) and `name`.pub.pem; false when the openssl CLI failed.
  bool make_ec_key(const std::string& name) {
    return run("openssl ecparam -name prime256v1 -genkey -noout -out " + quoted(dir_ / (name + ".pem")) +
               " && openssl ec -in " + quoted(dir_ / (name + ".pem")) + " -pubout -out " +
               quoted(dir_ / (name + ".pub.pem")))
               .status == 0;
  }
  bool make_rsa_key(const std::string& name) {
    return run("openssl genrsa -out " + quoted(dir_ / (name + ".pem")) + " 2048 && openssl rsa -in " +
               quoted(dir_ / (name + ".pem")) + " -pubout -out " + quoted(dir_ / (name + ".pub.pem")))
               .status == 0;
  }
  fs::path key(const std::string& name) const { return dir_ / (name + ".pem"); }
  fs::path public_key(const std::string& name) const { return dir_ / (name + ".pub.pem"); }

  // scripts/mint-token `args`; the token (its one output line without the newline).
  std::string mint_token(const std::string& args) {
    const Output out = run(quoted(kRepo / "scripts" / "mint-token") + " " + args, true);
    EXPECT_EQ(out.status, 0) << "mint-token " << args << ": " << out.text;
    EXPECT_TRUE(out.text.ends_with('\n')) << out.text;
    std::string token = out.text;
    if (!token.empty() && token.back() == '\n') token.pop_back();
    EXPECT_EQ(std::count(token.begin(), token.end(), '.'), 2) << token;
    return token;
  }

  json::object login_with(const std::string& token, uint32_t app, std::string_view user) {
    WsClient c;
    c.connect(gw.ws_port());
    return reply(c, "login", login_data(token, app, user));
  }

  fs::path dir_;
};

TEST_F(MintTokenTest, Es256TokensFromTheScriptLogInWithTheEcPublicKey) {
  ASSERT_TRUE(make_ec_key("ec")) << "openssl CLI failed";
  ASSERT_TRUE(make_ec_key("other")) << "openssl CLI failed";
  gw.start({{"--auth-public-key", public_key("ec").string()}});
  const int64_t before = unix_now();
  const std::string token = mint_token("--key " + quoted(key("ec")) + " --sub bob --ttl 600");
  EXPECT_EQ(header_of(token).at("alg").as_string(), "ES256");  // chosen from the key
  const json::object r = login_with(token, 101, "bob");
  ASSERT_EQ(code_of(r), 200);
  const int64_t exp = r.at("data").at("exp").to_number<int64_t>();
  EXPECT_GE(exp, before + 600);
  EXPECT_LE(exp, unix_now() + 600);
  // --alg ES256 spelled out gives the same kind of token; another P-256 key does not verify.
  EXPECT_EQ(code_of(login_with(mint_token("--key " + quoted(key("ec")) + " --alg ES256 --sub bob"), 101,
                               "bob")),
            200);
  const json::object forged = login_with(mint_token("--key " + quoted(key("other")) + " --sub bob"), 101, "bob");
  EXPECT_EQ(code_of(forged), 1003);
  EXPECT_EQ(error_of(forged), "bad signature");
}

TEST_F(MintTokenTest, Rs256TokensFromTheScriptLogInWithTheRsaPublicKey) {
  ASSERT_TRUE(make_rsa_key("rsa")) << "openssl CLI failed";
  ASSERT_TRUE(make_ec_key("ec")) << "openssl CLI failed";
  gw.start({{"--auth-public-key", public_key("rsa").string()}});
  const std::string token = mint_token("--key " + quoted(key("rsa")) + " --sub dave");
  EXPECT_EQ(header_of(token).at("alg").as_string(), "RS256");
  EXPECT_EQ(code_of(login_with(token, 102, "dave")), 200);
  // The RSA key verifies RS256 only.
  const json::object es = login_with(mint_token("--key " + quoted(key("ec")) + " --sub dave"), 102, "dave");
  EXPECT_EQ(error_of(es), "ES256 is not allowed: no EC P-256 public key configured");
}

TEST_F(MintTokenTest, AppIdsLimitTheRoomsTheTokenMayLogInTo) {
  ASSERT_TRUE(make_ec_key("ec")) << "openssl CLI failed";
  gw.start({{"--auth-public-key", public_key("ec").string()}});
  const std::string token = mint_token("--key " + quoted(key("ec")) + " --sub carol --app-ids 101,102");
  EXPECT_EQ(code_of(login_with(token, 101, "carol")), 200);
  EXPECT_EQ(code_of(login_with(token, 102, "carol")), 200);
  const json::object r = login_with(token, 103, "carol");  // configured, not granted
  EXPECT_EQ(code_of(r), 1003);
  EXPECT_EQ(error_of(r), "appID not granted by the token");
}

TEST_F(MintTokenTest, NbfInTheFutureIsRefusedAsNotYetValid) {
  ASSERT_TRUE(make_ec_key("ec")) << "openssl CLI failed";
  gw.start({{"--auth-public-key", public_key("ec").string()}});  // leeway 30 s
  const json::object r =
      login_with(mint_token("--key " + quoted(key("ec")) + " --sub erin --nbf-in 600"), 101, "erin");
  EXPECT_EQ(code_of(r), 1003);
  EXPECT_EQ(error_of(r), "token not yet valid (nbf)");
  // An nbf in the past (and one within the leeway) is fine.
  EXPECT_EQ(code_of(login_with(mint_token("--key " + quoted(key("ec")) + " --sub erin --nbf-in -60"), 101,
                               "erin")),
            200);
  EXPECT_EQ(code_of(login_with(mint_token("--key " + quoted(key("ec")) + " --sub erin --nbf-in 10"), 101,
                               "erin")),
            200);
}

// The script reads a secret file as the gateway does: `openssl rand -hex 32 > secret` ends
// in a newline, which neither takes as part of the secret (docs/security.md's example).
TEST_F(MintTokenTest, Hs256TokensFromTheSameSecretFileAsTheGateway) {
  ASSERT_EQ(run("openssl rand -hex 32 > " + quoted(dir_ / "secret")).status, 0);
  gw.start({{"--auth-hmac-secret-file", (dir_ / "secret").string()}});
  const std::string token = mint_token("--secret-file " + quoted(dir_ / "secret") + " --sub frank");
  EXPECT_EQ(header_of(token).at("alg").as_string(), "HS256");
  EXPECT_EQ(code_of(login_with(token, 101, "frank")), 200);
}

// The gateway refuses an HMAC secret under 32 bytes at start-up; the script refuses to mint
// with one (exit 1, the same reason) instead of printing a token no gateway accepts.
TEST_F(MintTokenTest, ASecretTheGatewayRefusesIsRefusedByTheScriptToo) {
  const std::string short_secret(31, 's');
  const std::string script = quoted(kRepo / "scripts" / "mint-token");
  const Output refused = run(script + " --secret " + short_secret + " --sub gina", true);
  EXPECT_EQ(refused.status, 1) << refused.text;
  EXPECT_NE(refused.text.find("at least 32 bytes"), std::string::npos) << refused.text;
  EXPECT_EQ(refused.text.find("eyJ"), std::string::npos) << "no token printed: " << refused.text;
  // A file holding 31 bytes and a newline is 31 bytes to both.
  std::ofstream(dir_ / "short") << short_secret << '\n';
  const Output from_file =
      run(script + " --secret-file " + quoted(dir_ / "short") + " --sub gina", true);
  EXPECT_EQ(from_file.status, 1) << from_file.text;
  EXPECT_NE(from_file.text.find("at least 32 bytes"), std::string::npos) << from_file.text;
  EXPECT_THROW(gw.start({{"--auth-hmac-secret-file", (dir_ / "short").string()}}), std::runtime_error);
  EXPECT_EQ(gw.exit_status(), 2);
  EXPECT_NE(gw.log().find("at least 32 bytes"), std::string::npos) << gw.log();
  gw.signal(SIGTERM);  // exited as it should: not an unexpected exit
  // 32 bytes: minted, and the gateway takes the token.
  Gateway accepting;
  accepting.start({{"--auth-hmac-secret", short_secret + "s"}});
  WsClient c;
  c.connect(accepting.ws_port());
  const std::string token = mint_token("--secret " + short_secret + "s --sub gina");
  EXPECT_EQ(code_of(reply(c, "login", login_data(token, 101, "gina"))), 200);
}

}  // namespace
}  // namespace imgate::test
