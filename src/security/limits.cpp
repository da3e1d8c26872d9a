#include "security/limits.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <unordered_map>

namespace imgate {
namespace {

constexpr uint8_t kV4Prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
// A full stripe is swept whole at most this often (each sweep visits every
// entry of the stripe under its lock).
constexpr uint64_t kFullSweepIntervalNs = 10'000'000;  // 10 ms
// Entries visited per admission by the incremental sweep: more than the one
// entry an admission can add, so that lapsed entries are reclaimed faster
// than new addresses arrive.
constexpr std::size_t kSweepStep = 2;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Splits on commas; empty (or blank) items are skipped, as in HTTP lists.
std::vector<std::string_view> split(std::string_view list) {
  std::vector<std::string_view> items;
  while (true) {
    const std::size_t comma = list.find(',');
    if (const std::string_view item = trim(list.substr(0, comma)); !item.empty()) {
      items.push_back(item);
    }
    if (comma == std::string_view::npos) return items;
    list.remove_prefix(comma + 1);
  }
}

// The first `bits` bits of a and b are equal.
bool same_prefix(const IpAddress& a, const IpAddress& b, unsigned bits) {
  const unsigned bytes = bits / 8;
  if (!std::equal(a.begin(), a.begin() + bytes, b.begin())) return false;
  if (const unsigned rest = bits % 8; rest != 0) {
    const auto mask = static_cast<uint8_t>(0xff << (8 - rest));
    return (a[bytes] & mask) == (b[bytes] & mask);
  }
  return true;
}

uint64_t mix(uint64_t x) {  // murmur3's finaliser
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

uint64_t hash_of(const IpAddress& key, uint64_t seed) {
  uint64_t hi = 0;
  uint64_t lo = 0;
  for (int i = 0; i < 8; ++i) hi = (hi << 8) | key[static_cast<std::size_t>(i)];
  for (int i = 8; i < 16; ++i) lo = (lo << 8) | key[static_cast<std::size_t>(i)];
  return mix(hi ^ seed) ^ mix(lo + 0x9e3779b97f4a7c15ULL * (seed | 1));
}

// What an address is counted by: IPv6 by its /64, IPv4 as it is.
IpAddress key_of(const IpAddress& address) {
  IpAddress key = address;
  if (!is_ipv4(key)) std::fill(key.begin() + 8, key.end(), uint8_t{0});
  return key;
}

}  // namespace

// ---- addresses ---------------------------------------------------------------

bool is_ipv4(const IpAddress& address) {
  return std::equal(std::begin(kV4Prefix), std::end(kV4Prefix), address.begin());
}

std::optional<IpAddress> parse_ip(std::string_view text) {
  text = trim(text);
  if (text.empty() || text.size() > 45) return std::nullopt;  // INET6_ADDRSTRLEN - 1
  const std::string s(text);
  IpAddress out{};
  if (::inet_pton(AF_INET, s.c_str(), out.data() + 12) == 1) {
    std::copy(std::begin(kV4Prefix), std::end(kV4Prefix), out.begin());
    return out;
  }
  if (::inet_pton(AF_INET6, s.c_str(), out.data()) == 1) return out;
  return std::nullopt;
}

std::string to_string(const IpAddress& address) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (is_ipv4(address)) {
    ::inet_ntop(AF_INET, address.data() + 12, buf, sizeof buf);
  } else {
    ::inet_ntop(AF_INET6, address.data(), buf, sizeof buf);
  }
  return buf;
}

CidrSet CidrSet::parse(std::string_view list) {
  CidrSet set;
  for (const std::string_view item : split(list)) {
    const std::size_t slash = item.find('/');
    const auto address = parse_ip(item.substr(0, slash));
    if (!address) {
      throw std::invalid_argument("\"" + std::string(item) + "\": not an IPv4 or IPv6 network");
    }
    const unsigned family_bits = is_ipv4(*address) ? 32 : 128;
    unsigned prefix = family_bits;
    if (slash != std::string_view::npos) {
      const std::string_view digits = item.substr(slash + 1);
      if (digits.empty() || digits.size() > 3 ||
          !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        throw std::invalid_argument("\"" + std::string(item) + "\": bad prefix length");
      }
      prefix = static_cast<unsigned>(std::stoul(std::string(digits)));
      if (prefix > family_bits) {
        throw std::invalid_argument("\"" + std::string(item) + "\": prefix longer than " +
                                    std::to_string(family_bits) + " bits");
      }
    }
    const unsigned bits = prefix + (128 - family_bits);
    IpAddress base{};  // the address with its host bits cleared
    for (unsigned i = 0; i < 16; ++i) {
      if (i * 8 + 8 <= bits) {
        base[i] = (*address)[i];
      } else if (i * 8 < bits) {
        base[i] = static_cast<uint8_t>((*address)[i] & (0xff << (8 - (bits - i * 8))));
      }
    }
    if (base != *address) {
      throw std::invalid_argument("\"" + std::string(item) + "\": host bits set (the network is " +
                                  to_string(base) + "/" + std::to_string(prefix) + ")");
    }
    set.networks_.push_back({base, static_cast<uint8_t>(bits)});
  }
  return set;
}

bool CidrSet::contains(const IpAddress& address) const {
  return std::any_of(networks_.begin(), networks_.end(),
                     [&](const Network& n) { return same_prefix(n.base, address, n.bits); });
}

IpAddress client_address(const IpAddress& peer, std::string_view forwarded,
                         const CidrSet& trusted) {
  if (trusted.empty() || !trusted.contains(peer)) return peer;
  const std::vector<std::string_view> hops = split(forwarded);
  std::optional<IpAddress> leftmost;
  for (auto it = hops.rbegin(); it != hops.rend(); ++it) {
    const auto hop = parse_ip(*it);
    if (!hop) return peer;  // a list we cannot read is a list we cannot trust
    if (!trusted.contains(*hop)) return *hop;
    leftmost = hop;
  }
  return leftmost.value_or(peer);
}

// ---- token bucket ------------------------------------------------------------

TokenBucket::TokenBucket(double rate, uint64_t burst) {
  if (!(rate > 0)) return;
  interval_ns_ = std::max<uint64_t>(1, static_cast<uint64_t>(std::llround(1e9 / rate)));
  tolerance_ns_ = interval_ns_ * (std::max<uint64_t>(burst, 1) - 1);
}

// ---- client table ------------------------------------------------------------

namespace {
struct Entry {
  IpAddress key{};
  uint32_t connections = 0;
  bool used = false;
  uint64_t bucket = 0;  // TokenBucket state of the address's upgrades
};

struct KeyHash {
  uint64_t seed = 0;
  std::size_t operator()(const IpAddress& key) const { return hash_of(key, seed); }
};
}  // namespace

struct ClientTable::Stripe {
  std::mutex mutex;
  std::unordered_map<IpAddress, uint32_t, KeyHash> index;  // key -> entries[i]
  std::vector<Entry> entries;
  std::vector<uint32_t> free;  // unused entries
  std::size_t cursor = 0;      // the incremental sweep's position
  std::size_t connections = 0;
  uint64_t last_full_sweep = 0;

  bool removable(const Entry& e, uint64_t now) const {
    return e.used && e.connections == 0 && TokenBucket::full(e.bucket, now);
  }
  void remove(uint32_t i) {
    index.erase(entries[i].key);
    entries[i] = Entry{};
    free.push_back(i);
  }
  void sweep(std::size_t visits, uint64_t now) {
    for (std::size_t n = 0; n < visits && !entries.empty(); ++n) {
      if (cursor >= entries.size()) cursor = 0;
      if (removable(entries[cursor], now)) remove(static_cast<uint32_t>(cursor));
      ++cursor;
    }
  }
  // The entry of `key` (added when new, after a few sweep steps); nullopt
  // when it is new and the stripe is full.
  std::optional<uint32_t> entry_for(const IpAddress& key, std::size_t capacity, uint64_t now) {
    sweep(kSweepStep, now);
    if (auto it = index.find(key); it != index.end()) return it->second;
    if (index.size() >= capacity && now - last_full_sweep >= kFullSweepIntervalNs) {
      last_full_sweep = now;
      sweep(entries.size(), now);
    }
    if (index.size() >= capacity) return std::nullopt;
    return add(key, capacity);
  }
  uint32_t add(const IpAddress& key, std::size_t capacity) {
    uint32_t i;
    if (!free.empty()) {
      i = free.back();
      free.pop_back();
    } else {
      if (entries.size() == entries.capacity()) {
        entries.reserve(std::min(std::max<std::size_t>(16, entries.size() * 2), capacity));
      }
      i = static_cast<uint32_t>(entries.size());
      entries.emplace_back();
    }
    entries[i].key = key;
    entries[i].used = true;
    index.emplace(key, i);
    return i;
  }
};

ClientTable::ClientTable(Limits limits, uint64_t seed)
    : limits_(limits),
      seed_(seed),
      stripe_capacity_(std::max<std::size_t>(1, (limits.capacity + kStripes - 1) / kStripes)),
      stripes_(new Stripe[kStripes]) {
  // Slots are (entry + 1) * kStripes + stripe in 32 bits.
  stripe_capacity_ = std::min<std::size_t>(stripe_capacity_, (uint64_t{1} << 32) / kStripes - 2);
  for (std::size_t i = 0; i < kStripes; ++i) {
    stripes_[i].index = decltype(Stripe::index)(0, KeyHash{seed_});
  }
}

ClientTable::~ClientTable() = default;

ClientTable::Stripe& ClientTable::stripe_of(const IpAddress& key, std::size_t& index) const {
  index = static_cast<std::size_t>(hash_of(key, seed_ ^ 0x5bd1e995) % kStripes);
  return stripes_[index];
}

bool ClientTable::take_handshake(const IpAddress& address, uint64_t now_ns) {
  if (!limits_.upgrades.enabled()) return true;
  const IpAddress key = key_of(address);
  std::size_t stripe_index = 0;
  Stripe& s = stripe_of(key, stripe_index);
  const std::lock_guard lock(s.mutex);
  const auto i = s.entry_for(key, stripe_capacity_, now_ns);
  if (!i) return false;
  const bool taken = limits_.upgrades.take(s.entries[*i].bucket, now_ns);
  if (s.removable(s.entries[*i], now_ns)) s.remove(*i);  // nothing left to remember
  return taken;
}

ClientTable::Admission ClientTable::admit(const IpAddress& address, uint64_t now_ns,
                                          bool token_paid) {
  if (!active()) return {};
  const IpAddress key = key_of(address);
  std::size_t stripe_index = 0;
  Stripe& s = stripe_of(key, stripe_index);
  const std::lock_guard lock(s.mutex);
  const auto found = s.entry_for(key, stripe_capacity_, now_ns);
  if (!found) return {Verdict::kTableFull, 0};
  const uint32_t i = *found;
  Entry& e = s.entries[i];
  Verdict verdict = Verdict::kAdmitted;
  if (!token_paid && !limits_.upgrades.take(e.bucket, now_ns)) {
    verdict = Verdict::kUpgradeRate;
  } else if (limits_.max_connections != 0 && e.connections >= limits_.max_connections) {
    verdict = Verdict::kTooManyConnections;
  }
  if (verdict != Verdict::kAdmitted) {
    if (s.removable(e, now_ns)) s.remove(i);
    return {verdict, 0};
  }
  ++e.connections;
  ++s.connections;
  return {Verdict::kAdmitted, static_cast<uint32_t>((i + 1) * kStripes + stripe_index)};
}

void ClientTable::release(uint32_t slot, uint64_t now_ns) {
  if (slot == 0) return;
  Stripe& s = stripes_[slot % kStripes];
  const uint32_t i = slot / kStripes - 1;
  const std::lock_guard lock(s.mutex);
  if (i >= s.entries.size() || !s.entries[i].used || s.entries[i].connections == 0) return;
  --s.entries[i].connections;
  --s.connections;
  if (s.removable(s.entries[i], now_ns)) s.remove(i);
}

void ClientTable::sweep(uint64_t now_ns, std::size_t visits) {
  for (std::size_t i = 0; i < kStripes; ++i) {
    const std::lock_guard lock(stripes_[i].mutex);
    stripes_[i].sweep(std::min(visits, stripes_[i].entries.size()), now_ns);
  }
}

std::size_t ClientTable::addresses() const {
  std::size_t n = 0;
  for (std::size_t i = 0; i < kStripes; ++i) {
    const std::lock_guard lock(stripes_[i].mutex);
    n += stripes_[i].index.size();
  }
  return n;
}

std::size_t ClientTable::connections() const {
  std::size_t n = 0;
  for (std::size_t i = 0; i < kStripes; ++i) {
    const std::lock_guard lock(stripes_[i].mutex);
    n += stripes_[i].connections;
  }
  return n;
}

const char* to_string(ClientTable::Verdict verdict) {
  switch (verdict) {
    case ClientTable::Verdict::kAdmitted:
      return "admitted";
    case ClientTable::Verdict::kTooManyConnections:
      return "too many connections from this address";
    case ClientTable::Verdict::kUpgradeRate:
      return "too many connection attempts from this address";
    case ClientTable::Verdict::kTableFull:
      return "too many client addresses";
  }
  return "unknown";
}

}  // namespace imgate
