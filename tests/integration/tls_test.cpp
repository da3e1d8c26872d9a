// TLS (--tls-cert / --tls-key): wss:// on the WebSocket port and https:// on
// the HTTP port, against the real binary with a self-signed certificate made
// by the openssl CLI at test start. Covers the data path over TLS (login,
// ping, pushes, big messages both ways, send-queue overflow), a plain client
// on the TLS port, the shared-port case, and SIGHUP reloading the
// certificate for new connections while open ones keep working.
#include <netinet/in.h>
#include <openssl/rand.h>
#include <sys/socket.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gateway_process.hpp"
#include "raw_connection.hpp"
#include "tls_client.hpp"
#include "ws_client.hpp"

namespace imgate::test {
namespace {
namespace fs = std::filesystem;
namespace json = boost::json;

// A self-signed P-256 certificate for CN=localhost in `dir`; false if the
// openssl CLI failed.
bool make_certificate(const fs::path& dir, const std::string& name) {
  const std::string cmd =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
      "-subj /CN=localhost -keyout '" + (dir / (name + ".key")).string() + "' -out '" +
      (dir / (name + ".crt")).string() + "' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

// SHA-256 of a PEM certificate (DER), hex, as TlsClient::peer_fingerprint.
std::string fingerprint_of(const fs::path& crt) {
  const std::string cmd = "openssl x509 -in '" + crt.string() +
                          "' -noout -fingerprint -sha256 | sed 's/.*=//; s/://g' | tr A-F a-f";
  std::string out;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[256];
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    ::pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string login_request(std::string_view user) {
  return make_request("1", "login", R"({"appID":101,"userID":")" + std::string(user) + R"("})");
}

class TlsTest : public GatewayTest {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "imgate-tls-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    ASSERT_TRUE(make_certificate(dir_, "a")) << "openssl CLI failed";
    cert_ = dir_ / "server.crt";
    key_ = dir_ / "server.key";
    fs::copy_file(dir_ / "a.crt", cert_);
    fs::copy_file(dir_ / "a.key", key_);
  }
  void TearDown() override {
    GatewayTest::TearDown();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void start(Flags flags = {}) {
    flags["--tls-cert"] = cert_.string();
    flags["--tls-key"] = key_.string();
    gw.start(flags);
  }

  // Connects, upgrades and logs in as `user` (fails the test otherwise).
  void join(TlsClient& c, std::string_view user, uint16_t port = 0, int receive_buffer = 0) {
    ASSERT_TRUE(c.connect(port ? port : gw.ws_port(), receive_buffer)) << "TLS connect failed";
    ASSERT_EQ(c.upgrade(), 101u);
    ASSERT_TRUE(c.send_text(login_request(user)));
    const auto reply = c.recv_text();
    ASSERT_TRUE(reply) << "no login reply";
    EXPECT_EQ(code_of(json::parse(*reply).as_object()), 200) << *reply;
  }

  // ping -> pong over `c`.
  // (Pushes that arrive first are skipped.)
  static void expect_pong(TlsClient& c) {
    ASSERT_TRUE(c.send_text(make_request("p", "ping")));
    for (int skipped = 0; skipped < 1000; ++skipped) {
      const auto reply = c.recv_text();
      ASSERT_TRUE(reply) << "no ping reply";
      const json::object envelope = json::parse(*reply).as_object();
      if (cmd_of(envelope) != "ping") continue;
      EXPECT_EQ(data_of(envelope), json::value("pong")) << reply->substr(0, 200);
      return;
    }
    ADD_FAILURE() << "no ping reply among 1000 messages";
  }

  // Replaces the served files (as an operator would, by rename) with `name`'s.
  void install(const std::string& name) {
    fs::copy_file(dir_ / (name + ".crt"), dir_ / "next.crt", fs::copy_options::overwrite_existing);
    fs::copy_file(dir_ / (name + ".key"), dir_ / "next.key", fs::copy_options::overwrite_existing);
    fs::rename(dir_ / "next.crt", cert_);
    fs::rename(dir_ / "next.key", key_);
  }

  // A new connection's view of the server certificate ("" if it failed).
  std::string served_fingerprint() {
    TlsClient c;
    return c.connect(gw.ws_port()) ? c.peer_fingerprint() : "";
  }

  fs::path dir_;
  fs::path cert_;  // what the gateway serves (--tls-cert)
  fs::path key_;
};

TEST_F(TlsTest, WssLoginPingAndAnHttpsPushArrive) {
  start();
  TlsClient alice;
  join(alice, "alice");
  EXPECT_EQ(alice.peer_fingerprint(), fingerprint_of(cert_));
  expect_pong(alice);

  // The HTTP API over https; a push from it arrives over wss.
  const HttpResponse res = https_request(gw.http_port(), "POST", "/user/sendMessageAll",
                                         "appID=101&userID=backend&msgID=tls-1&message=hello%20tls");
  EXPECT_EQ(res.status, 200u);
  EXPECT_EQ(res.body, R"({"code":200,"msg":"Success","data":{"sendResults":true}})");
  const auto push = alice.recv_text();
  ASSERT_TRUE(push) << "no push over wss";
  const json::object envelope = json::parse(*push).as_object();
  EXPECT_EQ(cmd_of(envelope), "msg") << *push;
  EXPECT_NE(push->find("hello tls"), std::string::npos) << *push;

  const State s = gw.state();  // over https
  EXPECT_EQ(s.clients_len(), 1) << s.dump();
  EXPECT_EQ(s.users_len(), 1) << s.dump();
  EXPECT_TRUE(alice.close()) << "no clean close handshake over wss";
  EXPECT_TRUE(gw.wait_idle());
}

TEST_F(TlsTest, EveryHttpsRouteWorksAndPlainHttpIsRefused) {
  start();
  const HttpResponse health = https_request(gw.http_port(), "GET", "/healthz");
  EXPECT_EQ(health.status, 200u);
  const HttpResponse list = https_request(gw.http_port(), "GET", "/user/list?appID=101");
  EXPECT_EQ(list.status, 200u) << list.body;
  const HttpResponse metrics = https_request(gw.http_port(), "GET", "/metrics");
  EXPECT_EQ(metrics.status, 200u);
  EXPECT_NE(metrics.body.find("imgate_"), std::string::npos);
  EXPECT_THROW(http_get(gw.http_port(), "/healthz", 2s), std::runtime_error);
  // Still serving after the plain request.
  EXPECT_EQ(https_request(gw.http_port(), "GET", "/healthz").status, 200u);
}

TEST_F(TlsTest, PlainWebSocketClientOnTheTlsPortFailsCleanly) {
  start();
  {
    RawConnection plain;
    plain.connect(gw.ws_port());
    EXPECT_NE(plain.upgrade("/acc", 3000ms), 101u);
    EXPECT_TRUE(plain.wait_closed(5s)) << "the server kept a failed TLS handshake open";
  }
  {
    WsClient beast_plain;  // a real plain ws:// client
    EXPECT_TRUE(beast_plain.try_connect(gw.ws_port(), 3s));
  }
  ASSERT_TRUE(gw.running());
  TlsClient ok;
  join(ok, "after-plain");
  expect_pong(ok);
  EXPECT_TRUE(ok.close());
  EXPECT_TRUE(gw.wait_for("handshake failures counted, nothing left", [](const State& s) {
    return s.counter("handshakeFailures") >= 2 && s.idle();
  }));
}

TEST_F(TlsTest, BigMessagesBothWays) {
  start({{"--max-message-bytes", "128K"}});
  TlsClient c;
  join(c, "big");
  // 60 KiB client message (several TLS records), answered by a ~60 KiB error
  // echo? The ping reply is small; the big reply comes from a push below.
  const std::string big(60 * 1024, 'x');
  ASSERT_TRUE(c.send_text(make_request("b", "ping", "\"" + big + "\"")));
  const auto reply = c.recv_text();
  ASSERT_TRUE(reply) << "no reply to a 60 KiB message";
  EXPECT_EQ(seq_of(json::parse(*reply).as_object()), "b") << reply->substr(0, 200);

  // Big pushes, several back to back (gathered into one TLS write and split
  // over records).
  const std::string message(60 * 1024, 'y');
  TlsClient other;
  join(other, "other");
  (void)c.recv_text(1s);  // other's enter push
  for (int i = 0; i < 3; ++i) {
    const HttpResponse res = https_request(
        gw.http_port(), "POST", "/user/sendMessageAll",
        "appID=101&userID=backend&msgID=big-" + std::to_string(i) + "&message=" + message);
    ASSERT_EQ(res.status, 200u) << res.body;
  }
  for (int i = 0; i < 3; ++i) {
    const auto push = c.recv_text();
    ASSERT_TRUE(push) << "big push " << i << " missing";
    EXPECT_GT(push->size(), message.size());
    EXPECT_NE(push->find("big-" + std::to_string(i)), std::string::npos);
  }
  expect_pong(c);
  EXPECT_TRUE(c.close());
  EXPECT_TRUE(other.close());
}

TEST_F(TlsTest, SlowReaderOverTlsIsClosedWith1008) {
  start({{"--send-queue-bytes", "65536"}, {"--close-timeout", "0.5"}});
  TlsClient watcher;
  join(watcher, "watcher");
  {
    TlsClient slow;
    join(slow, "slow", 0, 4096);  // never reads from here on
    (void)watcher.recv_text(1s);  // slow's enter
    const std::string message(30000, 'z');
    int posts = 0;
    bool overflowed = false;
    while (posts < 600 && !overflowed) {
      const HttpResponse res = https_request(
          gw.http_port(), "POST", "/user/sendMessageAll",
          "appID=101&userID=backend&msgID=flood-" + std::to_string(posts) + "&message=" + message);
      ASSERT_EQ(res.status, 200u) << res.body;
      ++posts;
      if (posts % 10 == 0) overflowed = gw.state().counter("sendQueueOverflows") >= 1;
      // The attentive watcher keeps up.
      const auto push = watcher.recv_text();
      ASSERT_TRUE(push) << "the watcher missed push " << posts;
    }
    ASSERT_TRUE(overflowed) << "no overflow after " << posts << " pushes of 30000 bytes";
    EXPECT_TRUE(gw.wait_for("the slow reader is gone", [](const State& s) {
      return s.closes_by_code(1008) >= 1 && s.clients_len() == 1 && s.users_len() == 1;
    }));
  }
  expect_pong(watcher);
  EXPECT_TRUE(watcher.close());
}

TEST_F(TlsTest, SighupServesTheNewCertificateToNewConnectionsOnly) {
  ASSERT_TRUE(make_certificate(dir_, "b"));
  start();
  const std::string fp_a = fingerprint_of(dir_ / "a.crt");
  const std::string fp_b = fingerprint_of(dir_ / "b.crt");
  ASSERT_FALSE(fp_a.empty());
  ASSERT_NE(fp_a, fp_b);

  TlsClient open;
  join(open, "early");
  EXPECT_EQ(open.peer_fingerprint(), fp_a);

  install("b");
  ASSERT_EQ(::kill(gw.pid(), SIGHUP), 0);
  EXPECT_TRUE(eventually([&] { return served_fingerprint() == fp_b; }, 5s))
      << "new connections never saw the new certificate";
  // The connection opened before keeps working on its old session.
  expect_pong(open);
  TlsClient late;
  join(late, "late");
  EXPECT_EQ(late.peer_fingerprint(), fp_b);
  expect_pong(late);
  EXPECT_EQ(https_request(gw.http_port(), "GET", "/healthz").status, 200u);

  // A broken file: logged, the previous certificate stays.
  {
    std::ofstream(dir_ / "next.crt") << "not a certificate\n";
    fs::rename(dir_ / "next.crt", cert_);
  }
  ASSERT_EQ(::kill(gw.pid(), SIGHUP), 0);
  EXPECT_TRUE(eventually([&] { return gw.log().find("TLS reload failed") != std::string::npos; }, 5s))
      << gw.log();
  EXPECT_EQ(served_fingerprint(), fp_b);
  ASSERT_TRUE(gw.running());
  expect_pong(open);
  expect_pong(late);
  EXPECT_TRUE(open.close());
  EXPECT_TRUE(late.close());
  EXPECT_TRUE(gw.wait_idle());
}

TEST_F(TlsTest, SharedPortServesWssAndHttps) {
  const uint16_t port = free_port();
  start({{"--ws-port", std::to_string(port)}, {"--http-port", std::to_string(port)}});
  ASSERT_EQ(gw.ws_port(), gw.http_port());
  TlsClient c;
  join(c, "shared");
  expect_pong(c);
  const HttpResponse res = https_request(gw.http_port(), "POST", "/user/sendMessageAll",
                                         "appID=101&userID=backend&msgID=s-1&message=shared");
  EXPECT_EQ(res.status, 200u) << res.body;
  const auto push = c.recv_text();
  ASSERT_TRUE(push);
  EXPECT_NE(push->find("shared"), std::string::npos);
  EXPECT_TRUE(c.close());
  // On a shared port every HTTP request is a session of the WebSocket
  // listener, the /system/state request itself included.
  EXPECT_TRUE(gw.wait_for("only the state request left", [](const State& s) {
    return s.clients_len() == 0 && s.users_len() == 0 && s.sessions() == 1;
  }));
  EXPECT_EQ(gw.terminate(), 0);
}

TEST_F(TlsTest, ShutdownClosesWssConnectionsWith1001) {
  start();
  TlsClient c;
  join(c, "bye");
  gw.signal(SIGTERM);
  EXPECT_FALSE(c.recv_text(5s));
  EXPECT_EQ(c.close_code(), 1001);
  EXPECT_EQ(gw.wait_exit(10s), 0);
}

// A session ticket from a first connection (read after the 101: TLS 1.3
// sends it after the handshake); null when none came.
SSL_SESSION* ticket_from(uint16_t port) {
  TlsClient c;
  if (!c.connect(port) || c.upgrade() != 101u) return nullptr;
  SSL_SESSION* session = c.session();
  if (session && ::SSL_SESSION_is_resumable(session) != 1) {
    ::SSL_SESSION_free(session);
    return nullptr;
  }
  return session;
}

// Connects offering `session`; whether the server resumed it (the
// connection must work either way: a ticket it cannot use means a full
// handshake, not a failure).
bool resumes(uint16_t port, SSL_SESSION* session) {
  TlsClient c;
  EXPECT_TRUE(c.connect(port, 0, 5s, session)) << "TLS connect failed";
  EXPECT_EQ(c.upgrade(), 101u);
  return c.resumed();
}

// `count` ticket keys of 160 hex digits (`openssl rand -hex 80`).
std::vector<std::string> ticket_keys(int count) {
  std::vector<std::string> keys;
  for (int i = 0; i < count; ++i) {
    unsigned char bytes[80];
    ::RAND_bytes(bytes, sizeof bytes);
    std::string hex;
    for (const unsigned char b : bytes) {
      static const char* digits = "0123456789abcdef";
      hex += digits[b >> 4];
      hex += digits[b & 15];
    }
    keys.push_back(hex);
  }
  return keys;
}

void write_keys(const fs::path& file, const std::vector<std::string>& keys) {
  const fs::path next = file.string() + ".next";
  {
    std::ofstream out(next, std::ios::trunc);
    out << "# imgate session ticket keys, newest first\n\n";
    for (const auto& key : keys) out << key << "\n";
  }
  fs::rename(next, file);
}

TEST_F(TlsTest, ASessionTicketResumesTheSessionAlsoAfterASighupReload) {
  start();
  SSL_SESSION* session = ticket_from(gw.ws_port());
  ASSERT_NE(session, nullptr) << "no resumable session ticket";
  EXPECT_TRUE(resumes(gw.ws_port(), session));
  // A resumed connection is a working wss connection (its record layer
  // taken over like any other).
  TlsClient c;
  ASSERT_TRUE(c.connect(gw.ws_port(), 0, 5s, session));
  EXPECT_TRUE(c.resumed());
  ASSERT_EQ(c.upgrade(), 101u);
  ASSERT_TRUE(c.send_text(login_request("resumed")));
  ASSERT_TRUE(c.recv_text());
  expect_pong(c);
  // The reload makes a new OpenSSL context; the generated ticket keys stay.
  ASSERT_EQ(::kill(gw.pid(), SIGHUP), 0);
  EXPECT_TRUE(eventually([&] { return gw.log().find("reloaded from") != std::string::npos; }, 5s));
  EXPECT_TRUE(resumes(gw.ws_port(), session)) << "a reload lost the ticket keys";
  ::SSL_SESSION_free(session);
  expect_pong(c);
  EXPECT_TRUE(c.close());
}

TEST_F(TlsTest, GatewaysWithTheSameTicketKeyFileResumeEachOthersSessionsAndRotationKeepsOldTickets) {
  const fs::path keys_file = dir_ / "tickets.keys";
  const auto keys = ticket_keys(2);
  write_keys(keys_file, {keys[0]});
  start({{"--tls-ticket-key-file", keys_file.string()}});
  Gateway other;
  other.start({{"--tls-cert", cert_.string()},
               {"--tls-key", key_.string()},
               {"--tls-ticket-key-file", keys_file.string()}});
  Gateway stranger;  // generated keys of its own
  stranger.start({{"--tls-cert", cert_.string()}, {"--tls-key", key_.string()}});

  SSL_SESSION* session = ticket_from(gw.ws_port());
  ASSERT_NE(session, nullptr);
  EXPECT_TRUE(resumes(other.ws_port(), session)) << "the other node could not read the ticket";
  EXPECT_FALSE(resumes(stranger.ws_port(), session)) << "a node with other keys resumed it";

  // Rotation: a new first key, the old one kept for decryption.
  write_keys(keys_file, {keys[1], keys[0]});
  ASSERT_EQ(::kill(other.pid(), SIGHUP), 0);
  EXPECT_TRUE(eventually([&] { return other.log().find("session ticket keys from") != std::string::npos; }, 5s));
  EXPECT_TRUE(resumes(other.ws_port(), session)) << "an old ticket stopped working at the rotation";
  // New tickets come under the new key: the first gateway (old file) cannot
  // read them until it reloads too.
  SSL_SESSION* fresh = ticket_from(other.ws_port());
  ASSERT_NE(fresh, nullptr);
  EXPECT_FALSE(resumes(gw.ws_port(), fresh));
  ASSERT_EQ(::kill(gw.pid(), SIGHUP), 0);
  EXPECT_TRUE(eventually([&] { return resumes(gw.ws_port(), fresh); }, 5s));

  // The old key removed: its tickets mean a full handshake, which works.
  write_keys(keys_file, {keys[1]});
  const auto reloads = [](Gateway& g) {
    std::size_t n = 0;
    for (std::size_t at = 0; (at = g.log().find("session ticket keys from", at)) != std::string::npos; ++at) ++n;
    return n;
  };
  const std::size_t before = reloads(other);
  ASSERT_EQ(::kill(other.pid(), SIGHUP), 0);
  EXPECT_TRUE(eventually([&] { return reloads(other) > before; }, 5s));
  EXPECT_FALSE(resumes(other.ws_port(), session));
  EXPECT_TRUE(resumes(other.ws_port(), fresh));

  // A broken file on reload: logged, the keys in use stay.
  {
    std::ofstream(keys_file, std::ios::trunc) << "not a key\n";
  }
  ASSERT_EQ(::kill(other.pid(), SIGHUP), 0);
  EXPECT_TRUE(eventually([&] { return other.log().find("TLS reload failed") != std::string::npos; }, 5s))
      << other.log();
  EXPECT_NE(other.log().find("line 1: not a key"), std::string::npos) << other.log();
  EXPECT_TRUE(resumes(other.ws_port(), fresh));
  ::SSL_SESSION_free(fresh);
  ::SSL_SESSION_free(session);
  EXPECT_EQ(other.terminate(), 0);
  EXPECT_EQ(stranger.terminate(), 0);
}

TEST_F(TlsTest, ATicketKeyFileThatIsNoneStopsStartUp) {
  const fs::path keys_file = dir_ / "tickets.keys";
  {
    std::ofstream(keys_file) << "# nothing but a comment\n";
  }
  EXPECT_THROW(start({{"--tls-ticket-key-file", keys_file.string()}}), std::runtime_error);
  gw.signal(SIGTERM);
  EXPECT_NE(gw.log().find("no key"), std::string::npos) << gw.log();
}

TEST_F(TlsTest, TlsHandshakesTakeTheAddressesUpgradeTokensAndAnUpgradeAfterOneTakesNoMore) {
  // Three tokens, one more every 100 s: the test never sees a refill.
  start({{"--ip-upgrade-rate", "0.01"}, {"--ip-upgrade-burst", "3"}});
  TlsClient handshake_only;
  ASSERT_TRUE(handshake_only.connect(gw.ws_port()));  // token 1, no upgrade
  TlsClient alice, bob;
  join(alice, "alice");  // token 2: handshake and upgrade together
  join(bob, "bob");      // token 3
  TlsClient refused;
  EXPECT_FALSE(refused.connect(gw.ws_port())) << "a fourth handshake ran";
  const State s = gw.state();
  const boost::json::value* refusals = s.find({"imgate", "counters", "limitCloses", "ipUpgradeRate"});
  ASSERT_NE(refusals, nullptr) << s.dump();
  EXPECT_EQ(refusals->to_number<int64_t>(), 1) << s.dump();
  expect_pong(alice);
  expect_pong(bob);
  EXPECT_TRUE(alice.close());
  EXPECT_TRUE(bob.close());
}

TEST_F(TlsTest, AClientThatNeverFinishesItsTlsHandshakeIsCutAfterTheHandshakeTimeout) {
  start({{"--handshake-timeout", "1"}});
  TlsClient established;
  join(established, "stays");
  RawConnection silent, partial;
  const auto began = std::chrono::steady_clock::now();
  silent.connect(gw.ws_port());
  partial.connect(gw.ws_port());
  // The start of a ClientHello record that never goes on.
  ASSERT_TRUE(partial.send_all(std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11)));
  EXPECT_TRUE(silent.wait_closed(5s)) << "a silent TCP connection was never cut";
  EXPECT_TRUE(partial.wait_closed(5s)) << "a half-sent ClientHello was never cut";
  const auto took = std::chrono::steady_clock::now() - began;
  EXPECT_GE(took, 900ms) << "cut before the handshake timeout";
  // The established connection is not affected.
  expect_pong(established);
  EXPECT_TRUE(established.close());
  EXPECT_TRUE(gw.wait_idle());
}

TEST_F(TlsTest, AFrameSplitAcrossTlsRecordsAtAnyByteArrives) {
  start();
  TlsClient c;
  join(c, "split");
  // Each write_all is one TLS record: the frame's bytes come in two records
  // split at every position, header and mask included.
  const std::string frame = RawConnection::encode_frame(0x1, make_request("p", "ping"));
  for (std::size_t k = 1; k < frame.size(); ++k) {
    ASSERT_TRUE(c.write_all(std::string_view(frame).substr(0, k)));
    ASSERT_TRUE(c.write_all(std::string_view(frame).substr(k)));
    const auto reply = c.recv_text();
    ASSERT_TRUE(reply) << "no reply with the split at byte " << k;
    EXPECT_EQ(cmd_of(json::parse(*reply).as_object()), "ping") << *reply;
  }
  // And one record per byte.
  for (const char byte : frame) ASSERT_TRUE(c.write_all(std::string_view(&byte, 1)));
  expect_pong(c);
  EXPECT_TRUE(c.close());
}

TEST_F(TlsTest, BadCertificateStopsStartUp) {
  {
    std::ofstream(cert_, std::ios::trunc) << "garbage\n";
  }
  EXPECT_THROW(start(), std::runtime_error);
  gw.signal(SIGTERM);  // exited as it should: not an unexpected exit
  EXPECT_NE(gw.log().find("TLS certificate"), std::string::npos) << gw.log();
}

}  // namespace
}  // namespace imgate::test
