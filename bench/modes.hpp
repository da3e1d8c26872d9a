// The measurements. Each prints a human summary and one JSON line on
// stdout and returns the exit status: 0 when the tool's own accounting holds
// (no setup failure, no loss, no residue), 1 when it does not, 2 when the
// gateway cannot be queried.
#pragma once

#include "options.hpp"

namespace bench {

int run_hold(const Options& opts);
int run_fanout(const Options& opts);
int run_unicast(const Options& opts);
int run_churn(const Options& opts);
int run_recovery(const Options& opts);  // history_modes.cpp
int run_fill(const Options& opts);      // history_modes.cpp
int run_members(const Options& opts);   // cluster_modes.cpp
int run_push(const Options& opts);      // cluster_modes.cpp
int run_offline(const Options& opts);   // cluster_modes.cpp

}  // namespace bench
