#include <openssl/ssl.h>
#include <openssl/err.h>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
static double tnow() { timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec * 1e6 + t.tv_nsec / 1e3; }
static void pump(BIO* from, BIO* to) { char buf[65536]; int n; while ((n = BIO_read(from, buf, sizeof buf)) > 0) BIO_write(to, buf, n); }
#include <openssl/rand.h>
#include <openssl/core_names.h>
static unsigned char K[80];
static EVP_CIPHER* fetched;
static bool use_fetched;
static int tcb(SSL*, unsigned char* name, unsigned char* iv, EVP_CIPHER_CTX* c, EVP_MAC_CTX* m, int enc) {
  const EVP_CIPHER* ci = use_fetched ? fetched : EVP_aes_256_cbc();
  if (enc) { memcpy(name, K, 16); RAND_bytes(iv, 16); EVP_EncryptInit_ex(c, ci, nullptr, K+16, iv); }
  else { if (memcmp(name, K, 16)) return 0; EVP_DecryptInit_ex(c, ci, nullptr, K+16, iv); }
  char d[] = "SHA256"; OSSL_PARAM p[] = {OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, K+48, 32), OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, d, 0), OSSL_PARAM_construct_end()};
  EVP_MAC_CTX_set_params(m, p); return 1;
}
static void keylog(const SSL*, const char*) {}
static void msgcb(int, int, int, const void*, size_t, SSL*, void*) {}
int main(int argc, char** argv) {
  int N = atoi(argv[1]); std::string variant = argv[2]; const char* cert = argv[3]; const char* key = argv[4];
  SSL_CTX* sctx = SSL_CTX_new(TLS_server_method());
  SSL_CTX_set_min_proto_version(sctx, TLS1_2_VERSION);
  SSL_CTX_set_options(sctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(sctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_session_cache_mode(sctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(sctx, variant.find("notix") != std::string::npos ? 0 : 1);
  if (variant.find("cb") != std::string::npos) { SSL_CTX_set_keylog_callback(sctx, keylog); SSL_CTX_set_msg_callback(sctx, msgcb); }
  if (variant.find("p256") != std::string::npos) SSL_CTX_set1_groups_list(sctx, "P-256");
  if (variant.find("aes128") != std::string::npos) SSL_CTX_set_ciphersuites(sctx, "TLS_AES_128_GCM_SHA256");
  fetched = EVP_CIPHER_fetch(nullptr, "AES-256-CBC", nullptr); RAND_bytes(K, 80);
  if (variant.find("tcb") != std::string::npos) { use_fetched = variant.find("fetched") != std::string::npos; SSL_CTX_set_tlsext_ticket_key_evp_cb(sctx, tcb); }
  SSL_CTX_use_certificate_chain_file(sctx, cert); SSL_CTX_use_PrivateKey_file(sctx, key, SSL_FILETYPE_PEM);
  SSL_CTX* cctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_CLIENT);
  SSL_SESSION* sess = nullptr; bool resume = variant.find("resume") != std::string::npos;
  double server = 0; int reused = 0;
  for (int i = 0; i < N; ++i) {
    double t0 = tnow(); SSL* s = SSL_new(sctx); server += tnow() - t0;
    SSL* c = SSL_new(cctx);
    BIO *si = BIO_new(BIO_s_mem()), *so = BIO_new(BIO_s_mem()), *ci = BIO_new(BIO_s_mem()), *co = BIO_new(BIO_s_mem());
    SSL_set_bio(s, si, so); SSL_set_bio(c, ci, co); SSL_set_accept_state(s); SSL_set_connect_state(c);
    if (resume && sess) SSL_set_session(c, sess);
    for (int k = 0; k < 6; ++k) { SSL_do_handshake(c); pump(co, si); t0 = tnow(); SSL_do_handshake(s); server += tnow() - t0; pump(so, ci); }
    char b[64]; SSL_read(c, b, sizeof b);  // tickets
    if (SSL_session_reused(s)) ++reused;
    if (resume && !sess) sess = SSL_get1_session(c);
    SSL_set_shutdown(c, SSL_SENT_SHUTDOWN|SSL_RECEIVED_SHUTDOWN);
    SSL_free(c); t0 = tnow(); SSL_free(s); server += tnow() - t0;
  }
  printf("%-14s server CPU per handshake %.1f us (%d of %d resumed)\n", variant.c_str(), server / N, reused, N);
}
