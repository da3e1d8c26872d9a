// Small helpers shared by redis_cluster.cpp and redis_resync.cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "cluster/redis_connection.hpp"

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

// EVALSHA <sha1> <number of keys> <keys...> <args...>: a declared script
// (RedisScript), sent whole again by the connection if Redis lost it.
inline std::vector<std::string> evalsha(const RedisScript& script, std::vector<std::string> keys,
                                        std::vector<std::string> args) {
  std::vector<std::string> cmd;
  cmd.reserve(3 + keys.size() + args.size());
  cmd.push_back("EVALSHA");
  cmd.push_back(script.sha1());
  cmd.push_back(std::to_string(keys.size()));
  for (auto& k : keys) cmd.push_back(std::move(k));
  for (auto& a : args) cmd.push_back(std::move(a));
  return cmd;
}

}  // namespace imgate::redis_commands
