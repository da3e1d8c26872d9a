// Small helpers shared by redis_cluster.cpp and redis_resync.cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace imgate::redis_commands {

// Wall clock in milliseconds: node expiry scores in the nodes key.
inline int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// EVAL <script> <number of keys> <keys...> <args...>
inline std::vector<std::string> eval(const char* script, std::vector<std::string> keys,
                                     std::vector<std::string> args) {
  std::vector<std::string> cmd{"EVAL", script, std::to_string(keys.size())};
  for (auto& k : keys) cmd.push_back(std::move(k));
  for (auto& a : args) cmd.push_back(std::move(a));
  return cmd;
}

}  // namespace imgate::redis_commands
