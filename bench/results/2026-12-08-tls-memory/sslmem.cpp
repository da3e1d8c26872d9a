#include <algorithm>
#include <string>
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/crypto.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <map>
#include <malloc.h>
static long live = 0, count_live = 0;
struct Info{size_t n; const char* f; int l;}; static std::map<void*,Info>* where;
static bool track = false;
static void* m(size_t n, const char* fi, int li) { void* p = malloc(n); if (track) { live += malloc_usable_size(p); count_live++; (*where)[p]={malloc_usable_size(p),fi,li}; } return p; }
static void* r(void* p, size_t n, const char* fi, int li) { if (track && p) { live -= malloc_usable_size(p); where->erase(p);} void* q = realloc(p, n); if (track) { live += malloc_usable_size(q); if(!p) count_live++; (*where)[q]={malloc_usable_size(q),fi,li};} return q; }
static void f(void* p, const char*, int) { if (track && p) { live -= malloc_usable_size(p); count_live--; where->erase(p);} free(p); }
// pump records between two SSLs
static void pump(SSL* a, BIO* a_out, SSL* b, BIO* b_in) {
  char buf[65536]; int n;
  while ((n = BIO_read(a_out, buf, sizeof buf)) > 0) BIO_write(b_in, buf, n);
}
int main(int argc, char** argv) {
  int N = argc > 1 ? atoi(argv[1]) : 1000;
  int tickets = argc > 2 ? atoi(argv[2]) : 1;
  const char* group = argc > 3 ? argv[3] : nullptr;
  where = new std::map<void*,Info>; CRYPTO_set_mem_functions(m, r, f);
  SSL_CTX* sctx = SSL_CTX_new(TLS_server_method());
  SSL_CTX_set_min_proto_version(sctx, TLS1_2_VERSION);
  SSL_CTX_set_options(sctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(sctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_session_cache_mode(sctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(sctx, tickets);
  if (group) SSL_CTX_set1_groups_list(sctx, group);
  SSL_CTX_use_certificate_chain_file(sctx, "cert.pem");
  SSL_CTX_use_PrivateKey_file(sctx, "key.pem", SSL_FILETYPE_PEM);
  SSL_CTX* cctx = SSL_CTX_new(TLS_client_method());
  std::vector<SSL*> servers;
  long before = 0;
  for (int i = 0; i < N; ++i) {
    SSL* s = SSL_new(sctx); SSL* c = SSL_new(cctx);
    BIO *s_in = BIO_new(BIO_s_mem()), *s_out = BIO_new(BIO_s_mem());
    BIO *c_in = BIO_new(BIO_s_mem()), *c_out = BIO_new(BIO_s_mem());
    SSL_set_bio(s, s_in, s_out); SSL_set_bio(c, c_in, c_out);
    SSL_set_accept_state(s); SSL_set_connect_state(c);
    for (int k = 0; k < 10; ++k) {
      SSL_do_handshake(c); pump(c, c_out, s, s_in);
      SSL_do_handshake(s); pump(s, s_out, c, c_in);
    }
    // app data both ways, then drain
    char buf[256]; SSL_write(c, "hello", 5); pump(c, c_out, s, s_in); SSL_read(s, buf, sizeof buf);
    SSL_write(s, "world", 5); pump(s, s_out, c, c_in); SSL_read(c, buf, sizeof buf);
    SSL_read(s, buf, sizeof buf);
    SSL_free(c);
    servers.push_back(s);
    if (i == 0) { track = true; before = live; }
  }
  printf("N=%d tickets=%d: live bytes per server SSL (tracked after the first): %.0f B, allocations %.1f; version %s cipher %s\n",
    N, tickets, double(live - before) / (N - 1) , double(count_live) / (N-1), SSL_get_version(servers[1]), SSL_get_cipher(servers[1]));
  track=false; std::map<std::pair<std::string,int>,std::pair<long,long>> agg;
  for (auto& [p,i]: *where) { auto& a=agg[{i.f?i.f:"?",i.l}]; a.first+=i.n; a.second++; }
  std::vector<std::pair<long,std::string>> v; for (auto& [k,a]: agg) v.push_back({a.first, k.first+":"+std::to_string(k.second)+" x"+std::to_string(a.second/(N-1.0)).substr(0,4)});
  std::sort(v.rbegin(), v.rend()); for (int i=0;i<25 && i<(int)v.size();++i) printf("%8.0f %s\n", v[i].first/(N-1.0), v[i].second.c_str());
  return 0;
}
