// The HTTP API routes (spec §3). Each handler answers asynchronously through
// `reply`, which must be called exactly once, on any thread.
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <functional>

#include "net/server_context.hpp"

namespace imgate {

using HttpRequest = boost::beast::http::request<boost::beast::http::string_body>;
using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;
using HttpReply = std::function<void(HttpResponse)>;

// Serves `request`; unknown paths get 404 "404 page not found" as upstream.
void serve_api(const HttpRequest& request, ServerContext& ctx, HttpReply reply);

// A plain-text response with the given status.
HttpResponse text_response(const HttpRequest& request, boost::beast::http::status status,
                           std::string body);

}  // namespace imgate
