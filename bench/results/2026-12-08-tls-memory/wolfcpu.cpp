#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/memory.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>
#include <malloc.h>
#include <ctime>
static double tnow() { timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec * 1e6 + t.tv_nsec / 1e3; }
static double server_us = 0;
static long live = 0; static bool track = false;
static void* m(size_t n) { void* p = malloc(n); if (track && p) live += malloc_usable_size(p); return p; }
static void f(void* p) { if (track && p) live -= malloc_usable_size(p); free(p); }
static void* r(void* p, size_t n) { if (track && p) live -= malloc_usable_size(p); void* q = realloc(p, n); if (track && q) live += malloc_usable_size(q); return q; }
struct Pipe { std::string buf; };
struct Ends { Pipe* in; Pipe* out; };
static int io_recv(WOLFSSL*, char* b, int sz, void* ctx) { auto* e = (Ends*)ctx; if (e->in->buf.empty()) return WOLFSSL_CBIO_ERR_WANT_READ; int n = std::min<int>(sz, e->in->buf.size()); memcpy(b, e->in->buf.data(), n); e->in->buf.erase(0, n); return n; }
static int io_send(WOLFSSL*, char* b, int sz, void* ctx) { auto* e = (Ends*)ctx; e->out->buf.append(b, sz); return sz; }
int main(int argc, char** argv) {
  int N = argc > 1 ? atoi(argv[1]) : 1000;
  wolfSSL_SetAllocators(m, f, r);
  wolfSSL_Init();
  WOLFSSL_CTX* sctx = wolfSSL_CTX_new(wolfSSLv23_server_method());
  wolfSSL_CTX_SetMinVersion(sctx, WOLFSSL_TLSV1_2);
  if (wolfSSL_CTX_use_certificate_chain_file(sctx, "cert.pem") != 1) { puts("cert"); return 1; }
  if (wolfSSL_CTX_use_PrivateKey_file(sctx, "key.pem", WOLFSSL_FILETYPE_PEM) != 1) { puts("key"); return 1; }
  wolfSSL_CTX_SetIORecv(sctx, io_recv); wolfSSL_CTX_SetIOSend(sctx, io_send);
  wolfSSL_CTX_set_session_cache_mode(sctx, WOLFSSL_SESS_CACHE_OFF);
  WOLFSSL_CTX* cctx = wolfSSL_CTX_new(wolfSSLv23_client_method());
  wolfSSL_CTX_set_verify(cctx, WOLFSSL_VERIFY_NONE, nullptr);
  wolfSSL_CTX_SetIORecv(cctx, io_recv); wolfSSL_CTX_SetIOSend(cctx, io_send);
  std::vector<WOLFSSL*> servers; long before = 0;
  for (int i = 0; i < N; ++i) {
    auto* a = new Pipe; auto* b = new Pipe;  // a: client->server, b: server->client
    auto* se = new Ends{a, b}; auto* ce = new Ends{b, a};
    double t0 = tnow(); WOLFSSL* s = wolfSSL_new(sctx); server_us += tnow() - t0; WOLFSSL* c = wolfSSL_new(cctx);
    wolfSSL_SetIOReadCtx(s, se); wolfSSL_SetIOWriteCtx(s, se);
    wolfSSL_SetIOReadCtx(c, ce); wolfSSL_SetIOWriteCtx(c, ce);
    for (int k = 0; k < 10; ++k) { wolfSSL_connect(c); double t1 = tnow(); wolfSSL_accept(s); server_us += tnow() - t1; }
    char buf[256]; wolfSSL_write(c, "hello", 5); wolfSSL_read(s, buf, sizeof buf);
    wolfSSL_write(s, "world", 5); wolfSSL_read(c, buf, sizeof buf);
    wolfSSL_read(s, buf, sizeof buf);
    if (i == 1) printf("%s %s\n", wolfSSL_get_version(s), wolfSSL_get_cipher(s));
    wolfSSL_free(c); wolfSSL_FreeArrays(s);
    servers.push_back(s);
    if (i == 0) { track = true; before = live; }
  }
  printf("wolfSSL live bytes per server session: %.0f; server CPU per handshake %.1f us\n", double(live - before) / (N - 1), server_us / N);
}
