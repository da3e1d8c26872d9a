// The client protocol's envelope (spec §2): requests
//   {"seq":"<string>","cmd":"<string>","data":<any>}
// and responses / pushes
//   {"seq":"..","cmd":"..","response":{"code":N,"codeMsg":"..","data":<any>}}
// A frame is parsed once; replies are serialised straight to text.
#pragma once

#include <boost/json/value.hpp>
#include <string>
#include <string_view>

#include "protocol/codes.hpp"
#include "registry/types.hpp"

namespace imgate {

struct Request {
  std::string seq;  // "" when absent
  std::string cmd;  // "" when absent
  boost::json::value data;  // null when absent
};

// Parses a text frame. On success returns true and fills `out`. A frame that
// is not a JSON object, or whose seq / cmd is present but not a string,
// returns false; `out` then holds whatever seq / cmd could be read.
bool parse_request(std::string_view text, Request& out);

// {"seq":..,"cmd":..,"response":{"code":..,"codeMsg":<upstream>,"data":..}}
std::string make_response(std::string_view seq, std::string_view cmd, Code code,
                          const boost::json::value& data = nullptr);

// Where a msg push sits in its stream (history on, docs/history.md): the
// stream ("room" or "user"), its epoch and the push's offset.
struct StreamMark {
  std::string_view stream;
  std::string_view epoch;
  uint64_t offset = 0;
};

// A server push: code 200, codeMsg "Ok",
// data {"target":"","type":"text","msg":<msg>,"from":<from>}, plus
// "stream", "epoch" and "offset" when `mark` is given.
Frame make_push(std::string_view seq, std::string_view cmd, std::string_view msg,
                std::string_view from, const StreamMark* mark = nullptr);

// Upstream texts of the presence pushes.
inline constexpr std::string_view kEnterText = "哈喽~";
inline constexpr std::string_view kExitText = "用户已经离开~";

// An enter / exit push from `user` with its upstream text: the registry's
// presence frames (Hub::set_presence_frames).
Frame make_presence_push(std::string_view seq, std::string_view cmd, std::string_view user);

}  // namespace imgate
