// imgate-token-bench: what verifying a login token costs (docs/security.md).
//
//   imgate-token-bench [--count N]
//
// For HS256, ES256 and RS256 it mints N distinct valid tokens (sub and exp
// differ), then verifies each once with the gateway's TokenVerifier and prints
// the process CPU time (CLOCK_PROCESS_CPUTIME_ID: one thread, so CPU = the
// verification work) per verification, beside the wall time. This is the cost a
// login or refresh adds in token mode; nothing else of a login changes.
#include <time.h>

#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../tests/common/jwt_sign.hpp"
#include "security/token.hpp"

namespace {

using namespace std::chrono_literals;

double now_seconds(clockid_t clock) {
  timespec ts{};
  ::clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

int run(const char* alg, const imgate::TokenVerifier& verifier, const std::vector<std::string>& tokens) {
  const int64_t now = imgate::test::unix_now();
  const double cpu0 = now_seconds(CLOCK_PROCESS_CPUTIME_ID);
  const double wall0 = now_seconds(CLOCK_MONOTONIC);
  std::size_t ok = 0;
  for (const std::string& token : tokens) {
    imgate::TokenClaims claims;
    ok += verifier.verify(token, now, claims).empty();
  }
  const double cpu = now_seconds(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
  const double wall = now_seconds(CLOCK_MONOTONIC) - wall0;
  const double n = static_cast<double>(tokens.size());
  std::printf("%-6s tokens=%zu verified=%zu cpu_us_per_token=%.2f wall_us_per_token=%.2f "
              "token_bytes=%zu\n",
              alg, tokens.size(), ok, cpu / n * 1e6, wall / n * 1e6, tokens.front().size());
  return ok == tokens.size() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t count = 20000;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
      count = std::strtoul(argv[++i], nullptr, 10);
    } else {
      std::fprintf(stderr, "usage: %s [--count N]\n", argv[0]);
      return 2;
    }
  }
  if (count == 0) return 2;
  using imgate::test::mint;
  auto claims = [](std::size_t i) {
    return boost::json::object{{"sub", "user-" + std::to_string(i)},
                               {"exp", imgate::test::unix_now() + 3600 + static_cast<int64_t>(i % 60)},
                               {"appIDs", boost::json::array{101, 102}}};
  };
  auto ec = imgate::test::KeyPair::ec();
  auto rsa = imgate::test::KeyPair::rsa();
  std::vector<std::string> hs, es, rs;
  for (std::size_t i = 0; i < count; ++i) {
    hs.push_back(mint("HS256", claims(i)));
    es.push_back(mint("ES256", claims(i), "", ec.key.get()));
    rs.push_back(mint("RS256", claims(i), "", rsa.key.get()));
  }
  int status = 0;
  status |= run("HS256", imgate::TokenVerifier(imgate::test::kTestSecret, "", 30s), hs);
  status |= run("ES256", imgate::TokenVerifier("", ec.public_pem(), 30s), es);
  status |= run("RS256", imgate::TokenVerifier("", rsa.public_pem(), 30s), rs);
  return status;
}
