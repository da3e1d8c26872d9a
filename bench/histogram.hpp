// Histogram: latency recorder with ~3% relative precision and a fixed size
// (log2 buckets, 32 linear sub-buckets each). Values are nanoseconds. One per
// thread; merged once at the end.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>

namespace bench {

class Histogram {
 public:
  static constexpr int kSubBits = 5;
  static constexpr int kSub = 1 << kSubBits;
  static constexpr std::size_t kBuckets = (64 - kSubBits + 1) * kSub;

  void record(uint64_t value) {
    ++counts_[index(value)];
    ++total_;
    max_ = std::max(max_, value);
    min_ = std::min(min_, value);
    sum_ += value;
  }

  void merge(const Histogram& other) {
    for (std::size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
    total_ += other.total_;
    max_ = std::max(max_, other.max_);
    min_ = std::min(min_, other.min_);
    sum_ += other.sum_;
  }

  uint64_t count() const { return total_; }
  uint64_t max() const { return total_ ? max_ : 0; }
  uint64_t min() const { return total_ ? min_ : 0; }
  double mean() const {
    return total_ ? static_cast<double>(sum_) / static_cast<double>(total_) : 0;
  }

  // The upper bound of the bucket holding the q-quantile (q in [0, 1]).
  uint64_t quantile(double q) const {
    if (total_ == 0) return 0;
    auto rank = static_cast<uint64_t>(q * static_cast<double>(total_));
    if (rank >= total_) rank = total_ - 1;
    uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen > rank) return std::min(upper(i), max_);
    }
    return max_;
  }

  // f(upper bound, count) for every non-empty bucket, lowest first: what
  // another process needs to merge this histogram with its own (bench/table.py).
  template <class F>
  void for_each_bucket(F f) const {
    for (std::size_t i = 0; i < kBuckets; ++i) {
      if (counts_[i]) f(upper(i), counts_[i]);
    }
  }

 private:
  static std::size_t index(uint64_t v) {
    if (v < 2 * kSub) return static_cast<std::size_t>(v);
    const int msb = 63 - std::countl_zero(v);
    const int shift = msb - kSubBits;
    return static_cast<std::size_t>((shift + 1) * kSub) + ((v >> shift) & (kSub - 1));
  }
  static uint64_t upper(std::size_t i) {
    if (i < 2 * kSub) return i;
    const std::size_t shift = i / kSub - 1;
    const uint64_t sub = i % kSub;
    return ((kSub + sub + 1) << shift) - 1;
  }

  std::array<uint64_t, kBuckets> counts_{};
  uint64_t total_ = 0;
  uint64_t max_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t sum_ = 0;
};

}  // namespace bench
