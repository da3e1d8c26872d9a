// Helpers of the history tests (history_test.cpp, cluster_history_test.cpp):
// stream positions of pushes, logins with recover data, collecting msg pushes.
#pragma once

#include <boost/json.hpp>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gateway_process.hpp"
#include "ws_client.hpp"

namespace imgate::test {

// The data object of a push (ws_client.hpp's data_of copies any data value).
inline const boost::json::object& push_data(const boost::json::object& push) {
  return push.at("response").at("data").as_object();
}
inline uint64_t offset_of(const boost::json::object& push) {
  return push_data(push).at("offset").to_number<uint64_t>();
}
inline std::string epoch_of(const boost::json::object& push) {
  return std::string(push_data(push).at("epoch").as_string());
}

// The epochs of the room and the user stream ({room, user}; "" for a stream
// without a push among `pushes`), expecting every push at `offset`.
inline std::pair<std::string, std::string> stream_epochs(
    const std::vector<boost::json::object>& pushes, uint64_t offset) {
  std::pair<std::string, std::string> epochs;
  for (const auto& p : pushes) {
    EXPECT_EQ(offset_of(p), offset);
    (push_data(p).at("stream").as_string() == "room" ? epochs.first : epochs.second) = epoch_of(p);
  }
  return epochs;
}

// A stream position: (epoch, offset).
using Position = std::pair<std::string, uint64_t>;

// The position in the data of a push API answer; nullopt when the push was
// not stored (Redis unreachable: delivered on the node only).
inline std::optional<Position> stored_at(const boost::json::object& data) {
  const boost::json::value* epoch = data.if_contains("epoch");
  const boost::json::value* offset = data.if_contains("offset");
  if (epoch == nullptr || !epoch->is_string() || offset == nullptr) return std::nullopt;
  return Position{std::string(epoch->get_string()), offset->to_number<uint64_t>()};
}

// Every position seen in answers and pushes with the text it named: one that
// names two texts fails the test (docs/history.md: an offset names one push
// within its epoch).
class PositionBook {
 public:
  void see(const Position& at, const std::string& text, const std::string& where) {
    auto [it, fresh] = named_.emplace(at, text);
    EXPECT_TRUE(fresh || it->second == text)
        << "(" << at.first << ", " << at.second << ") named \"" << it->second << "\", then \""
        << text << "\" in " << where;
  }
  // A msg push; one without a position (not stored) is not recorded.
  void see_push(const boost::json::object& push, const std::string& where) {
    const boost::json::object& data = push.at("response").at("data").as_object();
    if (auto at = stored_at(data)) see(*at, std::string(data.at("msg").as_string()), where);
  }

 private:
  std::map<Position, std::string> named_;
};

// The data of an API answer, asserting code 200.
inline boost::json::object api(uint16_t port, const std::string& target) {
  const HttpResponse r = http_get(port, target);
  const boost::json::value v = boost::json::parse(r.body);
  EXPECT_EQ(v.at("code").to_number<int>(), 200) << target << " " << r.body;
  return v.at("data").is_object() ? v.at("data").as_object() : boost::json::object{};
}
inline boost::json::object api(const Gateway& gw, const std::string& target) {
  return api(gw.http_port(), target);
}

// The data of a login with optional recover data, as JSON text.
inline std::string login_data(std::string_view user, const boost::json::value& recover = nullptr,
                              uint32_t app = 101) {
  boost::json::object data{{"appID", app}, {"userID", user}};
  if (!recover.is_null()) data["recover"] = recover;
  return boost::json::serialize(data);
}

// The login response's response object, for a login with optional recover data.
inline boost::json::object login(WsClient& c, std::string_view user,
                                 const boost::json::value& recover = nullptr, uint32_t app = 101) {
  return c.request("login", login_data(user, recover, app)).at("response").as_object();
}

inline boost::json::object pos(std::string_view epoch, uint64_t offset) {
  return boost::json::object{{"epoch", epoch}, {"offset", offset}};
}

// The next `n` msg pushes (fails the test when fewer arrive in time).
inline std::vector<boost::json::object> msgs(WsClient& c, std::size_t n, Millis timeout = 5s) {
  std::vector<boost::json::object> out;
  while (out.size() < n) {
    auto p = c.next_push("msg", timeout);
    if (!p) break;
    out.push_back(std::move(*p));
  }
  EXPECT_EQ(out.size(), n);
  return out;
}

inline std::size_t msg_count(const std::vector<boost::json::object>& pushes) {
  std::size_t n = 0;
  for (const auto& p : pushes) n += p.at("cmd").as_string() == "msg";
  return n;
}

}  // namespace imgate::test
