#include "protocol/router.hpp"

#include <spdlog/spdlog.h>

namespace imgate {

void Router::add(std::string cmd, Handler handler) {
  handlers_.insert_or_assign(std::move(cmd), std::move(handler));
}

std::string Router::handle(CommandContext& ctx, std::string_view text, Counters& counters) const {
  Request request;
  if (!parse_request(text, request)) {
    Counters::bump(counters.bad_requests);
    return make_response(request.seq, request.cmd, Code::kParameterIllegal);
  }
  auto it = handlers_.find(request.cmd);
  if (it == handlers_.end()) {
    Counters::bump(counters.bad_requests);
    return make_response(request.seq, request.cmd, Code::kRoutingNotExist);
  }
  ctx.seq = request.seq;
  ctx.cmd = request.cmd;
  ctx.counters = &counters;
  Reply reply;
  try {
    reply = it->second(ctx, request.data);
  } catch (const std::exception& e) {
    // A handler bug must not take the connection (or the process) down.
    spdlog::error("cmd {} failed: {}", request.cmd, e.what());
    reply = Reply{Code::kServerError, nullptr};
  } catch (...) {
    spdlog::error("cmd {} failed: unknown exception", request.cmd);
    reply = Reply{Code::kServerError, nullptr};
  }
  if (reply.later) return {};
  return make_response(request.seq, request.cmd, reply.code, reply.data);
}

}  // namespace imgate
