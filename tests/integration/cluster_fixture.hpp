// Helpers of the tests that run several imgate nodes on Redis (cluster_test.cpp,
// redis_cluster_test.cpp, redis_schema_test.cpp, on_demand_test.cpp): sends
// through the HTTP API, pushes awaited by text or sender, a node's cluster
// state, logged-in clients, and cluster-wide presence polled with a deadline.
//
// Thread safety: test thread only, like the Gateway they read.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gateway_process.hpp"
#include "ws_client.hpp"

namespace imgate::test {

// The answer to a send that went out.
inline constexpr std::string_view kSent =
    R"({"code":200,"msg":"Success","data":{"sendResults":true}})";

// The target of a send (GET with query parameters, as upstream accepts).
inline std::string send_target(std::string_view endpoint, uint32_t app, std::string_view user,
                               std::string_view msg_id, std::string_view message) {
  return std::string(endpoint) + "?appID=" + std::to_string(app) + "&userID=" + pct(user) +
         "&msgID=" + pct(msg_id) + "&message=" + pct(message);
}

// The raw body of a send through the HTTP API on `port`, asserting nothing.
inline std::string send(uint16_t port, std::string_view endpoint, uint32_t app,
                        std::string_view user, std::string_view msg_id,
                        std::string_view message) {
  return http_get(port, send_target(endpoint, app, user, msg_id, message)).body;
}

// The string member `name` of a push's data ("" when there is none).
inline std::string field_of(const boost::json::object& push, std::string_view name) {
  const boost::json::value data = data_of(push);
  const boost::json::value* v = data.is_object() ? data.get_object().if_contains(name) : nullptr;
  return v != nullptr && v->is_string() ? std::string(v->get_string()) : "";
}

// Waits for a push `cmd` whose text (msg) or sender (enter / exit) is `what`,
// skipping others.
inline bool got(WsClient& c, std::string_view cmd, std::string_view what, Millis timeout = 5s) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    auto push = c.next_push(cmd, std::chrono::duration_cast<Millis>(deadline - Clock::now()));
    if (!push) return false;
    if (field_of(*push, "msg") == what || field_of(*push, "from") == what) return true;
  }
  return false;
}

// imgate.cluster.<field> of the node's /system/state ("" when it is not a string).
inline std::string cluster_status(const Gateway& node, std::string_view field) {
  const State s = node.state();
  const boost::json::value* v = s.find({"imgate", "cluster", field});
  return v != nullptr && v->is_string() ? std::string(v->get_string()) : "";
}

// Whether the node sees Redis up (imgate.cluster.redis) within `timeout`.
inline bool redis_up_on(const Gateway& node, Millis timeout = 15s) {
  return eventually([&] { return cluster_status(node, "redis") == "up"; }, timeout);
}

// A client connected to the node and logged in as `user` of `app` (a failed
// login fails the test).
inline std::unique_ptr<WsClient> joined(const Gateway& node, uint32_t app,
                                        std::string_view user) {
  auto c = std::make_unique<WsClient>();
  c->connect(node.ws_port());
  EXPECT_EQ(c->login(app, user), 200) << user;
  return c;
}

// Whether /user/list?appID=app on node number `index` becomes `want` (in any
// order) within `timeout`; the failure shows the last list seen (its size
// only, from 20 users up).
inline testing::AssertionResult list_becomes(const Gateway& node, std::size_t index, uint32_t app,
                                             std::vector<std::string> want, Millis timeout) {
  std::sort(want.begin(), want.end());
  std::optional<std::vector<std::string>> last;
  if (eventually([&] { return (last = listed(node.http_port(), app)) == want; }, timeout)) {
    return testing::AssertionSuccess();
  }
  auto shown = [](const std::vector<std::string>& users) {
    return std::to_string(users.size()) + " users" +
           (users.size() < 20 ? ": " + testing::PrintToString(users) : "");
  };
  return testing::AssertionFailure() << "/user/list?appID=" << app << " on node " << index
                                     << " has " << (last ? shown(*last) : "an error")
                                     << ", expected " << shown(want);
}

// A fixture's TearDown over its nodes: each still running ends idle (no
// connection, user or session left); each that exited was stopped by the
// test (Gateway::terminate) or, with `exits_expected`, may have exited itself.
inline void expect_nodes_idle_or_stopped(std::span<Gateway> nodes, bool exits_expected = false) {
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    Gateway& n = nodes[i];
    if (n.pid() <= 0) continue;
    if (n.running()) {
      EXPECT_TRUE(n.wait_idle()) << "node " << i << ": connections, users or sessions left behind";
    } else if (!n.terminate_requested() && !exits_expected) {
      ADD_FAILURE() << "node " << i << " exited unexpectedly with status "
                    << n.exit_status().value_or(-1);
    }
  }
}

}  // namespace imgate::test
