// Tls13Records against OpenSSL as the peer: a real TLS 1.3 handshake in
// memory (server context from TlsContext::load, the client is OpenSSL),
// application data through OpenSSL first (the upgrade request, the tickets),
// then the server side taken over. Every byte the client's OpenSSL accepts
// or produces after that shows the sequence numbers, keys and record format
// are right; wrong ones fail authentication.
#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "net/tls.hpp"
#include "net/tls13_records.hpp"

namespace imgate::test {
namespace {
namespace fs = std::filesystem;

class Tls13RecordsTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("imgate-tls13-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    const std::string cmd =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
        "-subj /CN=localhost -keyout '" + (dir_ / "k.pem").string() + "' -out '" +
        (dir_ / "c.pem").string() + "' >/dev/null 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    server_ctx_ = TlsContext::load((dir_ / "c.pem").string(), (dir_ / "k.pem").string());
    client_ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(client_ctx_, TLS1_3_VERSION);
    ASSERT_EQ(SSL_CTX_set_ciphersuites(client_ctx_, GetParam()), 1);
    server_ = SSL_new(server_ctx_->native_handle());
    client_ = SSL_new(client_ctx_);
    SSL_set_bio(server_, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
    SSL_set_bio(client_, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
    SSL_set_accept_state(server_);
    SSL_set_connect_state(client_);
    for (int i = 0; i < 10 && !(SSL_is_init_finished(server_) && SSL_is_init_finished(client_)); ++i) {
      SSL_do_handshake(client_);
      to_server(take(client_));
      SSL_do_handshake(server_);
      to_client(take(server_));
    }
    ASSERT_TRUE(SSL_is_init_finished(server_));
    ASSERT_TRUE(SSL_is_init_finished(client_));
  }
  void TearDown() override {
    SSL_free(client_);
    SSL_free(server_);
    SSL_CTX_free(client_ctx_);
    fs::remove_all(dir_);
  }

  // Bytes `ssl` wrote (its write BIO), and bytes into its read BIO.
  static std::string take(SSL* ssl) {
    std::string out;
    char buf[65536];
    int n;
    while ((n = BIO_read(SSL_get_wbio(ssl), buf, sizeof buf)) > 0) out.append(buf, n);
    return out;
  }
  void to_server(const std::string& bytes) { BIO_write(SSL_get_rbio(server_), bytes.data(), int(bytes.size())); }
  void to_client(const std::string& bytes) { BIO_write(SSL_get_rbio(client_), bytes.data(), int(bytes.size())); }
  // Everything the client's OpenSSL can read now.
  std::string client_reads() {
    std::string out;
    char buf[65536];
    int n;
    while ((n = SSL_read(client_, buf, sizeof buf)) > 0) out.append(buf, n);
    return out;
  }
  // Some application data through OpenSSL on both sides, as the HTTP phase
  // does (the upgrade request, the 101's predecessors).
  void exchange_through_openssl(int records_each_way) {
    char buf[4096];
    for (int i = 0; i < records_each_way; ++i) {
      ASSERT_GT(SSL_write(client_, "GET / HTTP/1.1\r\n\r\n", 18), 0);
      to_server(take(client_));
      ASSERT_EQ(SSL_read(server_, buf, sizeof buf), 18);
      ASSERT_GT(SSL_write(server_, "HTTP/1.1 200 OK\r\n\r\n", 19), 0);
      to_client(take(server_));
      ASSERT_EQ(client_reads(), "HTTP/1.1 200 OK\r\n\r\n");
    }
    to_client(take(server_));  // tickets, if still unsent
  }
  // Our records to the client: what it decrypts.
  std::string seal_to_client(Tls13Records& rec, const std::string& text) {
    std::vector<unsigned char> out(text.size() + 64 * Tls13Records::kOverhead + 1024);
    const iovec iov{const_cast<char*>(text.data()), text.size()};
    std::size_t taken = 0;
    const std::size_t n = rec.seal(&iov, 1, out.data(), out.size(), taken);
    EXPECT_EQ(taken, text.size());
    EXPECT_EQ(rec.error(), nullptr);
    to_client(std::string(reinterpret_cast<char*>(out.data()), n));
    return client_reads();
  }
  // The client's records to us: what we decrypt.
  std::string open_from_client(Tls13Records& rec, std::string wire, Tls13Records::Status want =
                                                                          Tls13Records::Status::kOk) {
    std::vector<unsigned char> out(1 << 17);
    const auto r = rec.open(reinterpret_cast<unsigned char*>(wire.data()), wire.size(), out.data(),
                            out.size());
    EXPECT_EQ(r.status, want) << (rec.error() ? rec.error() : "");
    EXPECT_EQ(r.consumed, wire.size());
    return std::string(reinterpret_cast<char*>(out.data()), r.produced);
  }

  fs::path dir_;
  TlsContextPtr server_ctx_;
  SSL_CTX* client_ctx_ = nullptr;
  SSL* server_ = nullptr;
  SSL* client_ = nullptr;
};

TEST_P(Tls13RecordsTest, TakesOverAfterTheHandshakeAndTheHttpPhaseBothWays) {
  exchange_through_openssl(3);
  auto rec = Tls13Records::take_over(server_);
  ASSERT_NE(rec, nullptr);
  EXPECT_EQ(seal_to_client(*rec, "HTTP/1.1 101 Switching Protocols\r\n\r\n"),
            "HTTP/1.1 101 Switching Protocols\r\n\r\n");
  for (int i = 0; i < 5; ++i) {
    const std::string msg = "frame " + std::to_string(i);
    ASSERT_GT(SSL_write(client_, msg.data(), int(msg.size())), 0);
    EXPECT_EQ(open_from_client(*rec, take(client_)), msg);
    EXPECT_EQ(seal_to_client(*rec, msg + " back"), msg + " back");
  }
}

TEST_P(Tls13RecordsTest, BigPayloadsSpanRecordsAndPartialRecordsWait) {
  exchange_through_openssl(1);
  auto rec = Tls13Records::take_over(server_);
  ASSERT_NE(rec, nullptr);
  std::string big(100'000, 'x');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = char('a' + i % 26);
  EXPECT_EQ(seal_to_client(*rec, big), big);  // 7 records of at most 2^14
  ASSERT_GT(SSL_write(client_, big.data(), int(big.size())), 0);
  std::string wire = take(client_);
  // Fed a byte short of everything: the last record waits, whole.
  std::vector<unsigned char> out(1 << 17);
  auto r = rec->open(reinterpret_cast<unsigned char*>(wire.data()), wire.size() - 1, out.data(),
                     out.size());
  EXPECT_EQ(r.status, Tls13Records::Status::kOk);
  EXPECT_LT(r.consumed, wire.size() - 1);
  std::string got(reinterpret_cast<char*>(out.data()), r.produced);
  got += open_from_client(*rec, wire.substr(r.consumed));
  EXPECT_EQ(got, big);
}

TEST_P(Tls13RecordsTest, AKeyUpdateTheClientAsksForIsAnsweredWithOurs) {
  exchange_through_openssl(1);
  auto rec = Tls13Records::take_over(server_);
  ASSERT_NE(rec, nullptr);
  ASSERT_EQ(SSL_key_update(client_, SSL_KEY_UPDATE_REQUESTED), 1);
  ASSERT_GT(SSL_write(client_, "after", 5), 0);  // sends the KeyUpdate first
  EXPECT_EQ(open_from_client(*rec, take(client_)), "after");
  EXPECT_TRUE(rec->key_update_due());
  EXPECT_EQ(seal_to_client(*rec, "answered"), "answered");  // our KeyUpdate, then the data
  EXPECT_FALSE(rec->key_update_due());
  ASSERT_GT(SSL_write(client_, "again", 5), 0);
  EXPECT_EQ(open_from_client(*rec, take(client_)), "again");
  ASSERT_EQ(SSL_key_update(client_, SSL_KEY_UPDATE_NOT_REQUESTED), 1);
  ASSERT_GT(SSL_write(client_, "quiet", 5), 0);
  EXPECT_EQ(open_from_client(*rec, take(client_)), "quiet");
  EXPECT_FALSE(rec->key_update_due());
}

TEST_P(Tls13RecordsTest, CloseNotifyBothWays) {
  exchange_through_openssl(1);
  auto rec = Tls13Records::take_over(server_);
  ASSERT_NE(rec, nullptr);
  unsigned char alert[Tls13Records::kOverhead + 2];
  const std::size_t n = rec->seal_close_notify(alert);
  to_client(std::string(reinterpret_cast<char*>(alert), n));
  char buf[16];
  EXPECT_EQ(SSL_read(client_, buf, sizeof buf), 0);
  EXPECT_EQ(SSL_get_error(client_, 0), SSL_ERROR_ZERO_RETURN);
  ASSERT_GT(SSL_write(client_, "last", 4), 0);
  SSL_shutdown(client_);
  EXPECT_EQ(open_from_client(*rec, take(client_), Tls13Records::Status::kClosed), "last");
}

TEST_P(Tls13RecordsTest, ATamperedRecordIsAFatalError) {
  exchange_through_openssl(1);
  auto rec = Tls13Records::take_over(server_);
  ASSERT_NE(rec, nullptr);
  ASSERT_GT(SSL_write(client_, "hello", 5), 0);
  std::string wire = take(client_);
  wire[wire.size() - 3] ^= 1;
  std::vector<unsigned char> out(1 << 17);
  const auto r = rec->open(reinterpret_cast<unsigned char*>(wire.data()), wire.size(), out.data(),
                           out.size());
  EXPECT_EQ(r.status, Tls13Records::Status::kError);
  EXPECT_EQ(r.produced, 0u);
  ASSERT_NE(rec->error(), nullptr);
  // A plaintext record (type 23 is the only one after the handshake) too.
  unsigned char plain[] = {22, 3, 3, 0, 20, 0};
  auto again = Tls13Records::take_over(server_);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->open(plain, sizeof plain, out.data(), out.size()).status,
            Tls13Records::Status::kError);
}

TEST_P(Tls13RecordsTest, AKeyUpdateDuringTheHttpPhaseLeavesTheConnectionToOpenSsl) {
  exchange_through_openssl(1);
  ASSERT_EQ(SSL_key_update(client_, SSL_KEY_UPDATE_NOT_REQUESTED), 1);
  ASSERT_GT(SSL_write(client_, "x", 1), 0);
  to_server(take(client_));
  char buf[8];
  ASSERT_EQ(SSL_read(server_, buf, sizeof buf), 1);
  EXPECT_EQ(Tls13Records::take_over(server_), nullptr);
}

INSTANTIATE_TEST_SUITE_P(Suites, Tls13RecordsTest,
                         ::testing::Values("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                           "TLS_CHACHA20_POLY1305_SHA256"),
                         [](const ::testing::TestParamInfo<const char*>& param) {
                           const std::string name = param.param;  // TLS_AES_128_GCM_SHA256 ...
                           if (name.find("AES_128") != std::string::npos) return std::string("Aes128Gcm");
                           if (name.find("AES_256") != std::string::npos) return std::string("Aes256Gcm");
                           return std::string("ChaCha20Poly1305");
                         });

}  // namespace
}  // namespace imgate::test
