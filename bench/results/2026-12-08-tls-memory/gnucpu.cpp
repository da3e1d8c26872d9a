#include <gnutls/gnutls.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <ctime>
static double tnow() { timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec * 1e6 + t.tv_nsec / 1e3; }
struct Pipe { std::string buf; };
struct Ends { Pipe* in; Pipe* out; };
static ssize_t push(gnutls_transport_ptr_t p, const void* d, size_t n) { ((Ends*)p)->out->buf.append((const char*)d, n); return n; }
static ssize_t pull(gnutls_transport_ptr_t p, void* d, size_t n) { auto* e = (Ends*)p; if (e->in->buf.empty()) { errno = EAGAIN; return -1; } size_t k = std::min(n, e->in->buf.size()); memcpy(d, e->in->buf.data(), k); e->in->buf.erase(0, k); return k; }
int main(int argc, char** argv) {
  int N = atoi(argv[1]);
  gnutls_global_init();
  gnutls_certificate_credentials_t sc, cc;
  gnutls_certificate_allocate_credentials(&sc); gnutls_certificate_allocate_credentials(&cc);
  if (gnutls_certificate_set_x509_key_file(sc, "cert.pem", "key.pem", GNUTLS_X509_FMT_PEM) < 0) { puts("cert"); return 1; }
  gnutls_priority_t prio; gnutls_priority_init(&prio, "NORMAL", nullptr);
  double server = 0; const char* ver = "";
  for (int i = 0; i < N; ++i) {
    Pipe a, b; Ends se{&a, &b}, ce{&b, &a};
    gnutls_session_t s, c;
    double t0 = tnow();
    gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NONBLOCK); gnutls_priority_set(s, prio); gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, sc);
    gnutls_transport_set_ptr(s, &se); gnutls_transport_set_push_function(s, push); gnutls_transport_set_pull_function(s, pull);
    server += tnow() - t0;
    gnutls_init(&c, GNUTLS_CLIENT | GNUTLS_NONBLOCK); gnutls_priority_set(c, prio); gnutls_credentials_set(c, GNUTLS_CRD_CERTIFICATE, cc);
    gnutls_transport_set_ptr(c, &ce); gnutls_transport_set_push_function(c, push); gnutls_transport_set_pull_function(c, pull);
    int rs = GNUTLS_E_AGAIN, rc = GNUTLS_E_AGAIN;
    for (int k = 0; k < 10 && (rs < 0 || rc < 0); ++k) { if (rc < 0) rc = gnutls_handshake(c); if (rs < 0) { t0 = tnow(); rs = gnutls_handshake(s); server += tnow() - t0; } }
    if (rs < 0 || rc < 0) { printf("handshake failed %d %d\n", rs, rc); return 1; }
    ver = gnutls_protocol_get_name(gnutls_protocol_get_version(s));
    t0 = tnow(); gnutls_deinit(s); server += tnow() - t0; gnutls_deinit(c);
  }
  printf("GnuTLS %s: %s, server CPU per handshake %.1f us\n", gnutls_check_version(nullptr), ver, server / N);
}
