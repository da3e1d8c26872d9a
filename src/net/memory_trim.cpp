#include "net/memory_trim.hpp"

#include <malloc.h>
#include <spdlog/spdlog.h>

#include <chrono>

namespace imgate {

bool MemoryTrim::check(std::size_t connections) {
  if (connections > peak_) peak_ = connections;
  const std::size_t drop = peak_ - connections;
  // A large drop, or the last connections of a sizeable crowd gone.
  const bool large = drop >= min_drop_ && drop * 4 >= peak_;
  const bool emptied = connections == 0 && peak_ >= kEmptiedPeak;
  if (!large && !emptied) return false;
  const auto start = std::chrono::steady_clock::now();
  malloc_trim(0);
  spdlog::debug("malloc_trim after {} -> {} connections: {} us", peak_, connections,
                std::chrono::duration_cast<std::chrono::microseconds>(
                    std::chrono::steady_clock::now() - start).count());
  peak_ = connections;
  return true;
}

}  // namespace imgate
