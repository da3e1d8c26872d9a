// Buckets: how one appID's users are spread over a Redis Cluster
// (docs/cluster.md, "Key schema"). A user's bucket is FNV-1a 64 of its
// userID mod B; bucket k of an app has a hash tag whose slot lies in the
// k-th of B equal ranges of the slot space, so that with redis-cli's even
// slot allocation every master holds B / masters buckets (± 1). One Redis
// server keeps B = 1 and the names imgate always used.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "cluster/redis_link.hpp"

namespace imgate {

constexpr uint32_t kMaxRedisBuckets = 1024;

// FNV-1a, 64 bits (offset basis 14695981039346656037, prime 1099511628211).
constexpr uint64_t fnv1a64(std::string_view data) {
  uint64_t h = 14695981039346656037ull;
  for (char c : data) {
    h ^= static_cast<uint8_t>(c);
    h *= 1099511628211ull;
  }
  return h;
}

constexpr uint32_t user_bucket(std::string_view user, uint32_t buckets) {
  return buckets <= 1 ? 0 : static_cast<uint32_t>(fnv1a64(user) % buckets);
}

// The slots of bucket k of B: [first, last).
constexpr uint32_t bucket_first_slot(uint32_t k, uint32_t buckets) {
  return static_cast<uint32_t>(uint64_t{k} * kRedisSlots / buckets);
}

// The hash tag (without braces) of bucket k of B of `app`:
// "<prefix><app>/<k>~<n>", n the smallest integer >= 0 whose CRC16 slot lies
// in bucket k's range. The range has at least 16 slots (B <= 1024), so the
// search takes about B tries.
inline std::string bucket_tag(std::string_view prefix, uint32_t app, uint32_t k,
                              uint32_t buckets) {
  const std::string base = std::string(prefix) + std::to_string(app) + "/" + std::to_string(k) + "~";
  const uint32_t first = bucket_first_slot(k, buckets);
  const uint32_t end = bucket_first_slot(k + 1, buckets);
  for (uint64_t n = 0;; ++n) {
    std::string tag = base + std::to_string(n);
    const uint32_t slot = redis_key_slot(tag);
    if (slot >= first && slot < end) return tag;
  }
}

}  // namespace imgate
