// Per-client limits (docs/security.md "Per-client limits"): which address a
// client has (the TCP peer, or X-Forwarded-For behind trusted proxies), a
// token bucket small enough to sit in every connection, and the node-wide
// table of addresses that bounds connections and upgrades per address.
//
// Time is passed in (nanoseconds of a monotonic clock, e.g. steady_clock), so
// every decision can be tested without sleeping.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace imgate {

// An IPv6 address; IPv4 addresses are held IPv4-mapped (::ffff:a.b.c.d), so
// that one form covers both families and dual-stack sockets.
using IpAddress = std::array<uint8_t, 16>;

// "192.0.2.1" or "2001:db8::1" (spaces around it allowed; no port, no
// brackets). nullopt when it is neither.
std::optional<IpAddress> parse_ip(std::string_view text);
// The textual form: dotted quad for IPv4-mapped addresses, else RFC 5952.
std::string to_string(const IpAddress& address);
bool is_ipv4(const IpAddress& address);

// The clock reading the limits take: nanoseconds since the clock's epoch.
inline uint64_t to_ns(std::chrono::steady_clock::time_point t) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

// A set of networks ("10.0.0.0/8", "::1/128"; a bare address is a /32 or
// /128). Immutable after parsing; safe to read from any thread.
class CidrSet {
 public:
  // Comma-separated networks; empty items are skipped. Throws
  // std::invalid_argument naming the bad item (malformed, prefix too long,
  // host bits set).
  static CidrSet parse(std::string_view list);

  bool empty() const { return networks_.empty(); }
  std::size_t size() const { return networks_.size(); }
  bool contains(const IpAddress& address) const;

 private:
  struct Network {
    IpAddress base;
    uint8_t bits;  // of the 128-bit form: an IPv4 /8 is 96 + 8
  };
  std::vector<Network> networks_;
};

// The client's address: `peer` (the TCP peer), unless it is in `trusted`;
// then the X-Forwarded-For list (`forwarded`: the header's values joined with
// commas, in order) is read from the right, skipping trusted addresses, and
// the first untrusted one is the client. A malformed entry on the way means
// the list cannot be trusted: the peer. When every entry is trusted, the
// leftmost one. Without trusted proxies the header is never read.
IpAddress client_address(const IpAddress& peer, std::string_view forwarded, const CidrSet& trusted);

// A token bucket of `burst` tokens refilled at `rate` per second, in its GCRA
// form (ITU-T I.371 virtual scheduling): the whole state of one bucket is one
// uint64_t, the time at which it would be full again (0: full). Disabled
// (rate 0) it allows everything.
class TokenBucket {
 public:
  TokenBucket() = default;
  // rate in tokens per second (0: off), burst >= 1 when rate > 0.
  TokenBucket(double rate, uint64_t burst);

  bool enabled() const { return interval_ns_ != 0; }
  // Takes one token from the bucket `state` at `now_ns`; false (state
  // unchanged) when it is empty.
  bool take(uint64_t& state, uint64_t now_ns) const {
    if (!enabled()) return true;
    const uint64_t start = state > now_ns ? state : now_ns;
    if (start - now_ns > tolerance_ns_) return false;
    state = start + interval_ns_;
    return true;
  }
  // All `burst` tokens are back.
  static bool full(uint64_t state, uint64_t now_ns) { return state <= now_ns; }

 private:
  uint64_t interval_ns_ = 0;   // one token's worth of time: 1 s / rate
  uint64_t tolerance_ns_ = 0;  // (burst - 1) intervals
};

// Connections and upgrades per client address, for the whole node (every
// event loop). An address is counted by its /128 (IPv4: its /32), except
// IPv6 addresses, which count by their /64: one subscriber usually owns a
// whole /64, so a finer key would give one host 2^64 budgets.
//
// Bounded: an entry exists while its address has connections or its upgrade
// bucket is not full yet; at most `capacity` entries (an address that would
// need one more is refused). Entries are removed when their last connection
// ends with a full bucket, and otherwise by sweeps: a few entries per
// admission, the whole stripe when it is full, and sweep().
//
// Thread safety: every function may be called from any thread; the table is
// split into stripes by a seeded hash of the address, each with its own mutex,
// held for a few map operations (never across I/O).
class ClientTable {
 public:
  struct Limits {
    std::size_t max_connections = 0;  // per address; 0: unlimited
    TokenBucket upgrades;             // per address; disabled: unlimited
    std::size_t capacity = 1 << 20;   // addresses tracked at most
  };
  enum class Verdict : uint8_t {
    kAdmitted,
    kTooManyConnections,  // the address already holds max_connections
    kUpgradeRate,         // the address's upgrade bucket is empty
    kTableFull,           // a new address and no room for it
  };
  struct Admission {
    Verdict verdict = Verdict::kAdmitted;
    // Admitted and counted: the handle to release() when the connection
    // ends, never 0. 0 otherwise (and when nothing is limited at all).
    uint32_t slot = 0;
  };

  explicit ClientTable(Limits limits, uint64_t seed = 0);
  ~ClientTable();
  ClientTable(const ClientTable&) = delete;
  ClientTable& operator=(const ClientTable&) = delete;

  // True when any limit is on; otherwise admit() admits without counting.
  bool active() const { return limits_.max_connections != 0 || limits_.upgrades.enabled(); }

  // An upgrade from `address` at `now_ns`: takes an upgrade token, then
  // counts the connection if the address holds fewer than max_connections.
  // `token_paid`: the connection's TLS handshake took the token already
  // (take_handshake()); only the connection count is checked.
  Admission admit(const IpAddress& address, uint64_t now_ns, bool token_paid = false);
  // A TLS handshake from `address` on the WebSocket port is about to start:
  // it takes an upgrade token (false: the bucket is empty, or the table full,
  // and the handshake must not run). The upgrade that may follow on the same
  // connection then passes token_paid.
  bool take_handshake(const IpAddress& address, uint64_t now_ns);
  // The connection admitted with `slot` ended (exactly once per admitted
  // connection; 0 is ignored).
  void release(uint32_t slot, uint64_t now_ns);

  // Visits up to `visits` entries of every stripe (continuing where the last
  // sweep stopped) and removes those without connections whose bucket is
  // full. The server calls it once a second.
  void sweep(uint64_t now_ns, std::size_t visits);

  // Entries (addresses tracked) and counted connections, summed over the
  // stripes (each exact, the sum a moment's snapshot).
  std::size_t addresses() const;
  std::size_t connections() const;

  static constexpr std::size_t kStripes = 64;

 private:
  struct Stripe;
  Stripe& stripe_of(const IpAddress& key, std::size_t& index) const;

  Limits limits_;
  uint64_t seed_;
  std::size_t stripe_capacity_;
  std::unique_ptr<Stripe[]> stripes_;
};

const char* to_string(ClientTable::Verdict verdict);

}  // namespace imgate
