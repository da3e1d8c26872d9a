// security/limits: addresses and networks, the client address behind trusted
// proxies, the token bucket, and the per-address table. Time is injected
// (nanoseconds), so nothing sleeps.
#include "security/limits.hpp"

#include <gtest/gtest.h>

#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

namespace imgate {
namespace {

constexpr uint64_t kSecond = 1'000'000'000;
constexpr uint64_t kT0 = 1000 * kSecond;  // an arbitrary monotonic "now"

IpAddress ip(std::string_view text) {
  const auto a = parse_ip(text);
  if (!a) throw std::invalid_argument(std::string(text));
  return *a;
}

// ---- addresses and networks ---------------------------------------------------

TEST(IpAddressTest, ParsesBothFamiliesAndPrintsThemBack) {
  EXPECT_EQ(to_string(ip("192.0.2.1")), "192.0.2.1");
  EXPECT_TRUE(is_ipv4(ip("192.0.2.1")));
  EXPECT_EQ(to_string(ip(" 2001:DB8::1\t")), "2001:db8::1");
  EXPECT_FALSE(is_ipv4(ip("::1")));
  // The mapped form of an IPv4 address is that address (dual-stack sockets).
  EXPECT_EQ(ip("::ffff:10.1.2.3"), ip("10.1.2.3"));
}

TEST(IpAddressTest, RejectsWhatIsNotAnAddress) {
  for (const char* bad : {"", " ", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.4:80", "[::1]",
                          "::1:80:", "example.com", "1.2.3.4/8", "unknown", "01.2.3.4x"}) {
    EXPECT_FALSE(parse_ip(bad)) << bad;
  }
}

TEST(CidrSetTest, MatchesIpv4AndIpv6Networks) {
  const CidrSet set =
      CidrSet::parse("10.0.0.0/8, 127.0.0.1/32,::1/128,2001:db8:a::/48,192.168.4.0/22");
  EXPECT_EQ(set.size(), 5u);
  EXPECT_TRUE(set.contains(ip("10.255.1.2")));
  EXPECT_FALSE(set.contains(ip("11.0.0.1")));
  EXPECT_TRUE(set.contains(ip("127.0.0.1")));
  EXPECT_FALSE(set.contains(ip("127.0.0.2")));
  EXPECT_TRUE(set.contains(ip("::1")));
  EXPECT_FALSE(set.contains(ip("::2")));
  EXPECT_TRUE(set.contains(ip("2001:db8:a:ffff::9")));
  EXPECT_FALSE(set.contains(ip("2001:db8:b::1")));
  EXPECT_TRUE(set.contains(ip("192.168.7.255")));  // /22: 192.168.4.0 - 192.168.7.255
  EXPECT_FALSE(set.contains(ip("192.168.8.0")));
  EXPECT_FALSE(set.contains(ip("192.168.3.255")));
  // An IPv4 network never matches an IPv6 address with the same low bits.
  EXPECT_FALSE(set.contains(ip("::a00:1")));
}

TEST(CidrSetTest, BareAddressesAndEmptyItems) {
  const CidrSet set = CidrSet::parse(" 192.0.2.7 ,, ::1 ,");
  EXPECT_EQ(set.size(), 2u);
  EXPECT_TRUE(set.contains(ip("192.0.2.7")));
  EXPECT_FALSE(set.contains(ip("192.0.2.8")));
  EXPECT_TRUE(CidrSet::parse("").empty());
  EXPECT_TRUE(CidrSet::parse("0.0.0.0/0").contains(ip("203.0.113.9")));
  EXPECT_FALSE(CidrSet::parse("0.0.0.0/0").contains(ip("2001:db8::1")));
  EXPECT_TRUE(CidrSet::parse("::/0").contains(ip("2001:db8::1")));
}

TEST(CidrSetTest, RejectsMalformedNetworksNamingThem) {
  for (const char* bad : {"10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/x", "10.0.0.0/-1",
                          "10.0.0.1/8", "2001:db8::1/64", "nonsense", "10.0.0.0/8/8"}) {
    try {
      CidrSet::parse(std::string("127.0.0.1/32,") + bad);
      ADD_FAILURE() << bad << " accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    }
  }
}

// ---- client address -------------------------------------------------------------

TEST(ClientAddressTest, WithoutTrustedProxiesTheHeaderIsIgnored) {
  EXPECT_EQ(client_address(ip("127.0.0.1"), "203.0.113.5", CidrSet{}), ip("127.0.0.1"));
}

TEST(ClientAddressTest, AnUntrustedPeerCannotForgeItsAddress) {
  const CidrSet trusted = CidrSet::parse("10.0.0.0/8");
  EXPECT_EQ(client_address(ip("198.51.100.1"), "203.0.113.5", trusted), ip("198.51.100.1"));
}

TEST(ClientAddressTest, TheFirstUntrustedHopFromTheRightIsTheClient) {
  const CidrSet trusted = CidrSet::parse("10.0.0.0/8,::1/128");
  // The client may prepend anything; only what trusted proxies appended counts.
  EXPECT_EQ(client_address(ip("10.0.0.1"), "1.1.1.1, 203.0.113.5, 10.0.0.7", trusted),
            ip("203.0.113.5"));
  EXPECT_EQ(client_address(ip("::1"), "2001:db8::5", trusted), ip("2001:db8::5"));
  // Several header lines arrive joined with commas, in order.
  EXPECT_EQ(client_address(ip("10.0.0.1"), "198.51.100.9,10.1.1.1", trusted), ip("198.51.100.9"));
}

TEST(ClientAddressTest, MalformedHopsFallBackToThePeer) {
  const CidrSet trusted = CidrSet::parse("10.0.0.0/8");
  EXPECT_EQ(client_address(ip("10.0.0.1"), "203.0.113.5, garbage", trusted), ip("10.0.0.1"));
  EXPECT_EQ(client_address(ip("10.0.0.1"), "203.0.113.5:4711", trusted), ip("10.0.0.1"));
  // Beyond the first untrusted hop nothing is read.
  EXPECT_EQ(client_address(ip("10.0.0.1"), "garbage, 203.0.113.5", trusted), ip("203.0.113.5"));
}

TEST(ClientAddressTest, AllTrustedOrNoHeader) {
  const CidrSet trusted = CidrSet::parse("10.0.0.0/8");
  EXPECT_EQ(client_address(ip("10.0.0.1"), "", trusted), ip("10.0.0.1"));
  EXPECT_EQ(client_address(ip("10.0.0.1"), " , ", trusted), ip("10.0.0.1"));
  EXPECT_EQ(client_address(ip("10.0.0.1"), "10.9.9.9, 10.0.0.2", trusted), ip("10.9.9.9"));
}

// ---- token bucket ---------------------------------------------------------------

TEST(TokenBucketTest, BurstThenRate) {
  const TokenBucket bucket(10, 3);  // 10 per second, 3 at once
  uint64_t state = 0;
  EXPECT_TRUE(bucket.take(state, kT0));
  EXPECT_TRUE(bucket.take(state, kT0));
  EXPECT_TRUE(bucket.take(state, kT0));
  EXPECT_FALSE(bucket.take(state, kT0));
  EXPECT_FALSE(TokenBucket::full(state, kT0));
  // One token comes back every 100 ms.
  EXPECT_FALSE(bucket.take(state, kT0 + kSecond / 10 - 1));
  EXPECT_TRUE(bucket.take(state, kT0 + kSecond / 10));
  EXPECT_FALSE(bucket.take(state, kT0 + kSecond / 10));
  // Full again (3 tokens) 300 ms after the last take, and not more than full.
  EXPECT_TRUE(TokenBucket::full(state, kT0 + 4 * kSecond / 10));
  const uint64_t later = kT0 + 100 * kSecond;
  EXPECT_TRUE(bucket.take(state, later));
  EXPECT_TRUE(bucket.take(state, later));
  EXPECT_TRUE(bucket.take(state, later));
  EXPECT_FALSE(bucket.take(state, later));
}

TEST(TokenBucketTest, SteadyRateAtTheLimitIsAllowedForever) {
  const TokenBucket bucket(100, 1);
  uint64_t state = 0;
  for (uint64_t i = 0; i < 10'000; ++i) {
    ASSERT_TRUE(bucket.take(state, kT0 + i * (kSecond / 100))) << i;
  }
  EXPECT_FALSE(bucket.take(state, kT0 + 10'000 * (kSecond / 100) - 1));
}

TEST(TokenBucketTest, FractionalRatesAndOff) {
  const TokenBucket slow(0.5, 1);  // one every 2 s
  uint64_t state = 0;
  EXPECT_TRUE(slow.take(state, kT0));
  EXPECT_FALSE(slow.take(state, kT0 + kSecond));
  EXPECT_TRUE(slow.take(state, kT0 + 2 * kSecond));
  const TokenBucket off;
  EXPECT_FALSE(off.enabled());
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(off.take(state, kT0));
  EXPECT_FALSE(TokenBucket(0, 5).enabled());
}

TEST(TokenBucketTest, StateIsEightBytes) {
  static_assert(sizeof(uint64_t) == 8);  // what a connection stores
  EXPECT_EQ(sizeof(TokenBucket), 16u);   // the shared parameters
}

// ---- client table ---------------------------------------------------------------

ClientTable::Limits limits(std::size_t max_connections, double rate = 0, uint64_t burst = 0,
                           std::size_t capacity = 1 << 20) {
  ClientTable::Limits l;
  l.max_connections = max_connections;
  l.upgrades = TokenBucket(rate, burst);
  l.capacity = capacity;
  return l;
}

TEST(ClientTableTest, NothingLimitedNothingCounted) {
  ClientTable table(limits(0));
  EXPECT_FALSE(table.active());
  const auto a = table.admit(ip("192.0.2.1"), kT0);
  EXPECT_EQ(a.verdict, ClientTable::Verdict::kAdmitted);
  EXPECT_EQ(a.slot, 0u);
  EXPECT_EQ(table.addresses(), 0u);
  table.release(0, kT0);  // ignored
}

TEST(ClientTableTest, ConnectionsPerAddressAndRelease) {
  ClientTable table(limits(2));
  const auto a1 = table.admit(ip("192.0.2.1"), kT0);
  const auto a2 = table.admit(ip("192.0.2.1"), kT0);
  ASSERT_EQ(a1.verdict, ClientTable::Verdict::kAdmitted);
  ASSERT_EQ(a2.verdict, ClientTable::Verdict::kAdmitted);
  EXPECT_NE(a1.slot, 0u);
  EXPECT_EQ(a1.slot, a2.slot);  // one entry per address
  EXPECT_EQ(table.admit(ip("192.0.2.1"), kT0).verdict, ClientTable::Verdict::kTooManyConnections);
  // Another address has its own budget.
  const auto b = table.admit(ip("192.0.2.2"), kT0);
  EXPECT_EQ(b.verdict, ClientTable::Verdict::kAdmitted);
  EXPECT_EQ(table.addresses(), 2u);
  EXPECT_EQ(table.connections(), 3u);
  table.release(a1.slot, kT0);
  EXPECT_EQ(table.admit(ip("192.0.2.1"), kT0).verdict, ClientTable::Verdict::kAdmitted);
  EXPECT_EQ(table.connections(), 3u);
  table.release(a1.slot, kT0);
  table.release(a2.slot, kT0);
  table.release(b.slot, kT0);
  EXPECT_EQ(table.connections(), 0u);
  EXPECT_EQ(table.addresses(), 0u);  // no connections, no bucket: gone at once
  table.release(a1.slot, kT0);       // one release too many does not go negative
  EXPECT_EQ(table.connections(), 0u);
}

TEST(ClientTableTest, Ipv6CountsByItsSlash64) {
  ClientTable table(limits(1));
  ASSERT_EQ(table.admit(ip("2001:db8:1:2::1"), kT0).verdict, ClientTable::Verdict::kAdmitted);
  EXPECT_EQ(table.admit(ip("2001:db8:1:2:ffff::9"), kT0).verdict,
            ClientTable::Verdict::kTooManyConnections);
  EXPECT_EQ(table.admit(ip("2001:db8:1:3::1"), kT0).verdict, ClientTable::Verdict::kAdmitted);
}

TEST(ClientTableTest, UpgradeRatePerAddress) {
  ClientTable table(limits(0, 10, 2));  // 10 per second, burst 2, no connection limit
  const IpAddress a = ip("198.51.100.1");
  const auto first = table.admit(a, kT0);
  ASSERT_EQ(first.verdict, ClientTable::Verdict::kAdmitted);
  ASSERT_EQ(table.admit(a, kT0).verdict, ClientTable::Verdict::kAdmitted);
  EXPECT_EQ(table.admit(a, kT0).verdict, ClientTable::Verdict::kUpgradeRate);
  EXPECT_EQ(table.admit(ip("198.51.100.2"), kT0).verdict, ClientTable::Verdict::kAdmitted);
  EXPECT_EQ(table.admit(a, kT0 + kSecond / 10).verdict, ClientTable::Verdict::kAdmitted);
  EXPECT_EQ(table.connections(), 4u);  // refused upgrades are not counted
}

TEST(ClientTableTest, EntriesLapseOnceIdleWithAFullBucket) {
  ClientTable table(limits(0, 10, 5));
  for (int i = 0; i < 100; ++i) {
    const IpAddress a = ip("203.0.113." + std::to_string(i));
    const auto adm = table.admit(a, kT0);
    ASSERT_EQ(adm.verdict, ClientTable::Verdict::kAdmitted);
    table.release(adm.slot, kT0);  // bucket not full yet: the entry stays
  }
  EXPECT_EQ(table.addresses(), 100u);
  EXPECT_EQ(table.connections(), 0u);
  // Admissions into a stripe sweep a few of its entries each...
  const uint64_t later = kT0 + kSecond;
  std::size_t before = table.addresses();
  for (int i = 0; i < 50; ++i) {
    const auto adm = table.admit(ip("203.0.113." + std::to_string(i)), later);
    table.release(adm.slot, later);
  }
  EXPECT_LE(table.addresses(), before);
  // ...and sweep() visits every stripe: all lapsed entries go, the 50 just
  // used stay until their buckets are full.
  table.sweep(later, 1000);
  EXPECT_EQ(table.addresses(), 50u);
  table.sweep(later + kSecond, 1000);
  EXPECT_EQ(table.addresses(), 0u);
}

TEST(ClientTableTest, CapacityBoundsTheEntries) {
  // 64 entries: one per stripe. A flood of distinct addresses holding
  // connections fills them, the rest are refused; room comes back when
  // their connections end.
  ClientTable table(limits(10, 0, 0, ClientTable::kStripes));
  std::vector<uint32_t> slots;
  std::size_t refused = 0;
  for (int i = 0; i < 1000; ++i) {
    const IpAddress a = ip("10." + std::to_string(i / 256) + "." + std::to_string(i % 256) + ".1");
    const auto adm = table.admit(a, kT0);
    if (adm.verdict == ClientTable::Verdict::kTableFull) {
      ++refused;
    } else {
      ASSERT_EQ(adm.verdict, ClientTable::Verdict::kAdmitted);
      slots.push_back(adm.slot);
    }
  }
  EXPECT_LE(table.addresses(), ClientTable::kStripes);
  EXPECT_GT(table.addresses(), ClientTable::kStripes / 2);  // hashing spreads them
  EXPECT_EQ(refused + slots.size(), 1000u);
  for (uint32_t slot : slots) table.release(slot, kT0);
  EXPECT_EQ(table.addresses(), 0u);
  EXPECT_EQ(table.admit(ip("10.200.0.1"), kT0).verdict, ClientTable::Verdict::kAdmitted);
}

TEST(ClientTableTest, FullTableReclaimsLapsedEntries) {
  ClientTable table(limits(0, 1, 1, ClientTable::kStripes));  // one upgrade a second
  std::size_t admitted = 0;
  for (int i = 0; i < 1000; ++i) {
    const auto adm =
        table.admit(ip("10.1." + std::to_string(i / 256) + "." + std::to_string(i % 256)), kT0);
    if (adm.verdict == ClientTable::Verdict::kAdmitted) {
      ++admitted;
      table.release(adm.slot, kT0);  // the bucket keeps the entry for 1 s
    }
  }
  EXPECT_LT(admitted, 1000u);
  // A second later every bucket is full again: a full stripe is swept.
  for (int i = 0; i < 1000; ++i) {
    const auto adm =
        table.admit(ip("10.2." + std::to_string(i / 256) + "." + std::to_string(i % 256)),
                    kT0 + 2 * kSecond + static_cast<uint64_t>(i) * kSecond);
    ASSERT_EQ(adm.verdict, ClientTable::Verdict::kAdmitted) << i;
    table.release(adm.slot, kT0 + 2 * kSecond + static_cast<uint64_t>(i) * kSecond);
  }
}

TEST(ClientTableTest, ConcurrentAdmitAndReleaseBalance) {
  ClientTable table(limits(1000, 0, 0));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&table, t] {
      std::vector<uint32_t> held;
      for (int i = 0; i < 5000; ++i) {
        const IpAddress a = ip("172.16." + std::to_string(t) + "." + std::to_string(i % 50));
        const auto adm = table.admit(a, kT0);
        if (adm.verdict == ClientTable::Verdict::kAdmitted) held.push_back(adm.slot);
        if (held.size() > 20) {
          table.release(held.front(), kT0);
          held.erase(held.begin());
        }
      }
      for (uint32_t slot : held) table.release(slot, kT0);
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(table.connections(), 0u);
  EXPECT_EQ(table.addresses(), 0u);
}

}  // namespace
}  // namespace imgate
