// MemoryTrim: gives memory back to the system after many connections went
// away. glibc's malloc keeps freed memory in its arenas (RSS stayed at its
// 15,000-connection peak with none left); malloc_trim(0) returns the free
// pages inside them (MADV_DONTNEED). Called once a second on loop 0; it trims
// only when the number of connections fell well below the peak seen since
// the last trim, or when a wave of new connections has passed: their setup
// (the HTTP phase, a TLS handshake: ~14 KB each while it runs) leaves freed
// memory behind in the arenas even though the connections stay (a wss storm
// of 5,000 kept 14 KB per connection, 1 KB after the trim). A steady server
// never pays for it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace imgate {

class MemoryTrim {
 public:
  // Trims when the count fell by at least `min_drop` connections and by at
  // least a quarter of the peak since the last trim, or fell to zero from
  // kEmptiedPeak or more.
  explicit MemoryTrim(std::size_t min_drop = 1000) : min_drop_(min_drop) {}

  // `connections`: the current count; `opened`: connections opened so far
  // (a running total). Also trims once at least `min_drop` connections
  // opened since the last trim and fewer than a tenth of that in the last
  // check: the wave is over. Returns true when it trimmed.
  bool check(std::size_t connections, uint64_t opened = 0);

 private:
  static constexpr std::size_t kEmptiedPeak = 64;
  std::size_t min_drop_;
  std::size_t peak_ = 0;
  uint64_t opened_at_trim_ = 0;
  uint64_t opened_at_check_ = 0;
};

}  // namespace imgate
