#include "net/memory_trim.hpp"

#include <malloc.h>
#include <spdlog/spdlog.h>

#include <chrono>

namespace imgate {

bool MemoryTrim::check(std::size_t connections, uint64_t opened) {
  if (connections > peak_) peak_ = connections;
  const std::size_t drop = peak_ - connections;
  // A large drop, or the last connections of a sizeable crowd gone.
  const bool large = drop >= min_drop_ && drop * 4 >= peak_;
  const bool emptied = connections == 0 && peak_ >= kEmptiedPeak;
  // A wave of new connections, now calm.
  const bool wave = opened >= opened_at_trim_ + min_drop_ && (opened - opened_at_check_) * 10 < min_drop_;
  opened_at_check_ = opened;
  if (!large && !emptied && !wave) return false;
  const auto start = std::chrono::steady_clock::now();
  malloc_trim(0);
  spdlog::debug("malloc_trim after {} -> {} connections, {} opened since the last: {} us", peak_,
                connections, opened - opened_at_trim_,
                std::chrono::duration_cast<std::chrono::microseconds>(
                    std::chrono::steady_clock::now() - start).count());
  peak_ = connections;
  opened_at_trim_ = opened;
  return true;
}

}  // namespace imgate
