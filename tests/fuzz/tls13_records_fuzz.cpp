// libFuzzer target of the TLS 1.3 record layer (net/tls13_records.cpp), the
// part of a wss connection's input path before the frame parser.
//
// Two Tls13Records with mirrored secrets play client and server. The input
// drives, in turn:
//  - sealed traffic: payloads sealed by one end, optionally one bit flipped,
//    fed to the other end in chunks split where the input says (as the
//    socket delivers them). Without a flip, what comes out must be exactly
//    the payloads, in order; with a flip, the end must report an error and
//    have produced no byte beyond the records before the flipped one;
//  - raw bytes straight into open() (headers, lengths, garbage).
// In every case open() consumes whole records only and never writes past its
// output. Sanitizers catch the rest.
#include <cstddef>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "net/tls13_records.hpp"

namespace {

using imgate::Tls13Records;

[[noreturn]] void mismatch(const char* what) {
  std::fprintf(stderr, "tls13_records_fuzz: %s\n", what);
  std::abort();
}

// Feeds `wire` to `rec` in chunks whose sizes come from `splits`, as the
// transport does (an incomplete record waits for the next chunk). Returns the
// plaintext; `failed` tells whether open() reported an error.
std::string feed(Tls13Records& rec, const std::string& wire, const uint8_t* splits,
                 std::size_t split_count, bool& failed, std::size_t* left = nullptr) {
  std::string out, pending;
  std::vector<unsigned char> plain(64 * 1024);
  std::size_t at = 0, k = 0;
  failed = false;
  while (at < wire.size() && !failed) {
    const std::size_t chunk =
        std::min<std::size_t>(wire.size() - at, split_count ? 1 + splits[k++ % split_count] * 67 : wire.size());
    pending.append(wire, at, chunk);
    at += chunk;
    const auto r = rec.open(reinterpret_cast<unsigned char*>(pending.data()), pending.size(),
                            plain.data(), plain.size());
    if (r.consumed > pending.size() || r.produced > plain.size()) mismatch("open() overran");
    out.append(reinterpret_cast<char*>(plain.data()), r.produced);
    pending.erase(0, r.consumed);
    if (r.status == Tls13Records::Status::kError) failed = true;
    if (r.status == Tls13Records::Status::kClosed) break;
  }
  if (!failed && !pending.empty() && pending.size() >= Tls13Records::kMaxRecord) {
    mismatch("a whole record was left unread");
  }
  if (left) *left = pending.size();
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  if (size < 4) return 0;
  static const uint16_t kSuites[] = {0x1301, 0x1302, 0x1303};
  const uint16_t suite = kSuites[data[0] % 3];
  const std::size_t secret_len = suite == 0x1302 ? 48 : 32;
  unsigned char a[48], b[48];
  for (std::size_t i = 0; i < 48; ++i) {
    a[i] = static_cast<unsigned char>(i * 7 + data[1]);
    b[i] = static_cast<unsigned char>(i * 13 + 1);
  }
  auto server = Tls13Records::from_secrets(suite, a, b, secret_len);
  auto client = Tls13Records::from_secrets(suite, b, a, secret_len);
  if (!server || !client) mismatch("from_secrets failed");
  const uint8_t mode = data[2];
  const uint8_t* body = data + 3;
  const std::size_t body_size = size - 3;

  if (mode % 4 == 3) {  // raw bytes into open()
    bool failed = false;
    const std::string wire(reinterpret_cast<const char*>(body), body_size);
    const std::string out = feed(*server, wire, body, std::min<std::size_t>(body_size, 8), failed);
    if (!out.empty()) mismatch("unauthenticated bytes produced plaintext");
    return 0;
  }
  // Sealed traffic: the body is cut into payloads by its own bytes.
  std::vector<std::string> payloads;
  for (std::size_t at = 0; at < body_size;) {
    const std::size_t len = std::min<std::size_t>(body_size - at, 1 + body[at] * 97u);
    payloads.emplace_back(reinterpret_cast<const char*>(body) + at, len);
    at += len;
  }
  Tls13Records& sender = mode % 2 ? *server : *client;
  Tls13Records& receiver = mode % 2 ? *client : *server;
  std::string wire, expected;
  std::vector<std::size_t> record_ends;  // wire offsets where records end
  std::vector<std::size_t> plain_ends;   // plaintext produced by then
  std::vector<unsigned char> out(70 * 1024);
  for (const auto& p : payloads) {
    // Repeated to reach multi-record sizes when the input says so.
    std::string text = p;
    if (mode & 0x10) while (text.size() < 40'000) text += p;
    const iovec iov{text.data(), text.size()};
    std::size_t taken = 0;
    const std::size_t n = sender.seal(&iov, 1, out.data(), out.size(), taken);
    if (sender.error() || taken != text.size()) mismatch("seal() did not take the payload");
    // Record boundaries of what was sealed: headers give the lengths.
    for (std::size_t at = 0; at < n;) {
      const std::size_t len = 5 + (std::size_t(out[at + 3]) << 8 | out[at + 4]);
      if (len - 5 > Tls13Records::kMaxPlaintext + 1 + 16) mismatch("seal() made a record too large");
      at += len;
      record_ends.push_back(wire.size() + at);
    }
    wire.append(reinterpret_cast<char*>(out.data()), n);
    std::size_t plain_so_far = expected.size();
    for (std::size_t i = plain_ends.size(); i < record_ends.size(); ++i) {
      plain_so_far = std::min(plain_so_far + Tls13Records::kMaxPlaintext, expected.size() + text.size());
      plain_ends.push_back(plain_so_far);
    }
    expected += text;
  }
  const bool flip = mode & 0x20;
  std::size_t flipped_record = record_ends.size();
  if (flip && !wire.empty()) {
    const std::size_t pos = (std::size_t(data[1]) * 131 + body_size) % wire.size();
    wire[pos] ^= static_cast<char>(1u << (data[0] % 8));
    for (flipped_record = 0; record_ends[flipped_record] <= pos; ++flipped_record) {
    }
  }
  bool failed = false;
  std::size_t left = 0;
  const std::string got =
      feed(receiver, wire, body, std::min<std::size_t>(body_size, 16), failed, &left);
  if (!flip || wire.empty()) {
    if (failed) mismatch("sealed traffic failed to open");
    if (got != expected) mismatch("opened plaintext differs from what was sealed");
  } else {
    // A damaged record fails authentication, or (a length made longer)
    // waits for bytes that never come; it never passes.
    if (!failed && left == 0) mismatch("a flipped bit went unnoticed");
    const std::size_t before = flipped_record == 0 ? 0 : plain_ends[flipped_record - 1];
    if (got.size() > before || got != expected.substr(0, got.size())) {
      mismatch("plaintext beyond the damaged record came out");
    }
  }
  return 0;
}
