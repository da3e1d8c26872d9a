// /metrics: the Prometheus text exposition of imgate's counters and gauges.
// Names follow imgate_<subsystem>_<name>_<unit>; labels have fixed, low
// cardinality (close reason, close code, route, status).
#pragma once

#include <string>

#include "net/server_context.hpp"

namespace imgate {

std::string render_prometheus(ServerContext& ctx);

}  // namespace imgate
