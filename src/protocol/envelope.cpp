#include "protocol/envelope.hpp"

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

namespace imgate {

namespace json = boost::json;

bool parse_request(std::string_view text, Request& out) {
  out = Request{};
  json::error_code ec;
  json::value root = json::parse(text, ec);
  if (ec || !root.is_object()) return false;
  const json::object& obj = root.get_object();
  bool ok = true;
  if (const json::value* seq = obj.if_contains("seq")) {
    if (seq->is_string()) out.seq = seq->get_string();
    else ok = false;
  }
  if (const json::value* cmd = obj.if_contains("cmd")) {
    if (cmd->is_string()) out.cmd = cmd->get_string();
    else ok = false;
  }
  if (const json::value* data = obj.if_contains("data")) out.data = *data;
  return ok;
}

std::string make_response(std::string_view seq, std::string_view cmd, Code code,
                          const json::value& data) {
  json::object response;
  response["code"] = static_cast<uint32_t>(code);
  response["codeMsg"] = code_message(code);
  response["data"] = data;
  json::object root;
  root["seq"] = seq;
  root["cmd"] = cmd;
  root["response"] = std::move(response);
  return json::serialize(root);
}

Frame make_push(std::string_view seq, std::string_view cmd, std::string_view msg,
                std::string_view from, const StreamMark* mark) {
  json::object data;
  data["target"] = "";
  data["type"] = "text";
  data["msg"] = msg;
  data["from"] = from;
  if (mark) {
    data["stream"] = mark->stream;
    data["epoch"] = mark->epoch;
    data["offset"] = mark->offset;
  }
  json::object response;
  response["code"] = static_cast<uint32_t>(Code::kOk);
  response["codeMsg"] = kPushCodeMsg;
  response["data"] = std::move(data);
  json::object root;
  root["seq"] = seq;
  root["cmd"] = cmd;
  root["response"] = std::move(response);
  return make_frame(json::serialize(root));
}

Frame make_presence_push(std::string_view seq, std::string_view cmd, std::string_view user) {
  return make_push(seq, cmd, cmd == "enter" ? kEnterText : kExitText, user);
}

}  // namespace imgate
