#include "ws_client.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <condition_variable>
#include <future>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace imgate::test {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace json = boost::json;
using boost::system::error_code;
using tcp = asio::ip::tcp;

// ---- envelope helpers -------------------------------------------------------

namespace {
const json::object* response_of(const json::object& env) {
  const json::value* r = env.if_contains("response");
  return r != nullptr ? r->if_object() : nullptr;
}
std::string string_member(const json::object& obj, std::string_view key) {
  const json::value* v = obj.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->get_string()) : "<missing>";
}
}  // namespace

int64_t code_of(const json::object& env) {
  const json::object* r = response_of(env);
  const json::value* c = r != nullptr ? r->if_contains("code") : nullptr;
  return c != nullptr && c->is_number() ? c->to_number<int64_t>() : -1;
}
std::string code_msg_of(const json::object& env) {
  const json::object* r = response_of(env);
  return r != nullptr ? string_member(*r, "codeMsg") : "<missing>";
}
std::string seq_of(const json::object& env) {
  return string_member(env, "seq");
}
std::string cmd_of(const json::object& env) {
  return string_member(env, "cmd");
}
json::value data_of(const json::object& env) {
  const json::object* r = response_of(env);
  const json::value* d = r != nullptr ? r->if_contains("data") : nullptr;
  return d != nullptr ? *d : json::value(json::string("<missing>"));
}

std::string make_request(std::string_view seq, std::string_view cmd, std::string_view data_json) {
  return "{\"seq\":" + json::serialize(json::string(seq)) +
         ",\"cmd\":" + json::serialize(json::string(cmd)) + ",\"data\":" + std::string(data_json) +
         "}";
}

// ---- WsClient: state shared with the I/O thread ------------------------------

struct WsClient::Impl {
  asio::io_context ioc;
  asio::executor_work_guard<asio::io_context::executor_type> work{ioc.get_executor()};
  websocket::stream<tcp::socket> ws{ioc};
  beast::flat_buffer read_buffer;  // I/O thread only
  bool read_pending = false;       // I/O thread only
  bool continuous = false;         // I/O thread only
  std::atomic<std::size_t> pings{0};

  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> inbox;       // guarded by mu
  std::optional<uint16_t> close_code;  // guarded by mu; set once the read side ended
  std::string end_error;               // guarded by mu; the error that ended reading
  std::thread io_thread{[this] { ioc.run(); }};

  // I/O thread: keeps at most one read pending.
  void post_read() {
    if (read_pending) return;
    {
      std::lock_guard lock(mu);
      if (close_code) return;
    }
    read_pending = true;
    ws.async_read(read_buffer, [this](error_code ec, std::size_t) { on_read(ec); });
  }

  void on_read(error_code ec) {
    read_pending = false;
    {
      std::lock_guard lock(mu);
      if (ec) {
        if (!close_code) {
          // A close frame may have arrived even when answering it failed
          // (e.g. the server reset the connection right after sending it).
          const uint16_t received = ws.reason().code;
          close_code = ec == websocket::error::closed || received != websocket::close_code::none
                           ? received
                           : kNoCloseFrame;
          end_error = ec.message();
        }
      } else {
        inbox.push_back(beast::buffers_to_string(read_buffer.data()));
        read_buffer.consume(read_buffer.size());
      }
    }
    cv.notify_all();
    if (!ec && continuous) post_read();
  }

  void mark_closed(uint16_t code) {
    {
      std::lock_guard lock(mu);
      if (!close_code) close_code = code;
    }
    cv.notify_all();
  }
};

WsClient::WsClient(WsClientOptions options)
    : options_(std::move(options)), impl_(std::make_unique<Impl>()) {}

WsClient::~WsClient() {
  drop();
  // Stop rather than wait for the loop to run dry: Beast may keep a timer armed
  // (e.g. after a declined handshake). Pending handlers are destroyed unrun.
  impl_->work.reset();
  impl_->ioc.stop();
  impl_->io_thread.join();
}

error_code WsClient::run_on_io(std::function<void(Done)> start, Millis timeout) {
  auto result = std::make_shared<std::promise<error_code>>();
  auto future = result->get_future();
  asio::post(impl_->ioc, [start = std::move(start), result] {
    start([result](error_code ec) { result->set_value(ec); });
  });
  if (future.wait_for(timeout) == std::future_status::ready) return future.get();
  // Abort the stuck operation by closing the socket; it then completes promptly.
  asio::post(impl_->ioc, [impl = impl_.get()] {
    error_code ignored;
    impl->ws.next_layer().close(ignored);
  });
  future.wait_for(5s);
  return asio::error::timed_out;
}

error_code WsClient::try_connect(uint16_t port, Millis timeout) {
  auto response = std::make_shared<websocket::response_type>();
  response->result(0u);  // stays 0 unless an HTTP answer arrives
  const error_code ec = run_on_io(
      [this, port, response](Done done) {
        Impl& io = *impl_;
        tcp::socket& sock = io.ws.next_layer();
        error_code err;
        sock.open(tcp::v4(), err);
        if (!err && options_.receive_buffer_bytes > 0) {
          sock.set_option(asio::socket_base::receive_buffer_size(options_.receive_buffer_bytes),
                          err);
        }
        if (err) return done(err);
        io.ws.auto_fragment(false);
        io.ws.read_message_max(64 << 20);
        websocket::stream_base::timeout limits{};
        limits.handshake_timeout = 5s;  // also bounds the close handshake
        limits.idle_timeout = websocket::stream_base::none();
        limits.keep_alive_pings = false;
        io.ws.set_option(limits);
        io.ws.control_callback([&io](websocket::frame_type kind, std::string_view) {
          if (kind == websocket::frame_type::ping) ++io.pings;
        });
        const tcp::endpoint endpoint(asio::ip::make_address_v4("127.0.0.1"), port);
        sock.async_connect(endpoint, [this, port, response, done](error_code cec) {
          if (cec) return done(cec);
          impl_->ws.async_handshake(*response, "127.0.0.1:" + std::to_string(port), options_.path,
                                    done);
        });
      },
      timeout);
  if (ec != asio::error::timed_out) handshake_status_ = response->result_int();
  if (!ec && options_.auto_read) start_reading();
  if (ec) impl_->mark_closed(kNoCloseFrame);
  return ec;
}

void WsClient::connect(uint16_t port, Millis timeout) {
  const error_code ec = try_connect(port, timeout);
  if (ec) {
    throw std::runtime_error("WebSocket connect to port " + std::to_string(port) + options_.path +
                             " failed: " + ec.message() + " (HTTP status " +
                             std::to_string(handshake_status_) + ")");
  }
}

error_code WsClient::send_text(std::string_view text, Millis timeout) {
  auto payload = std::make_shared<std::string>(text);
  return run_on_io(
      [this, payload](Done done) {
        impl_->ws.text(true);
        impl_->ws.async_write(asio::buffer(*payload),
                              [payload, done](error_code ec, std::size_t) { done(ec); });
      },
      timeout);
}

error_code WsClient::send_binary(std::string_view bytes, Millis timeout) {
  auto payload = std::make_shared<std::string>(bytes);
  return run_on_io(
      [this, payload](Done done) {
        impl_->ws.binary(true);
        impl_->ws.async_write(asio::buffer(*payload),
                              [payload, done](error_code ec, std::size_t) { done(ec); });
      },
      timeout);
}

error_code WsClient::send_fragmented(const std::vector<std::string>& parts) {
  auto frames = std::make_shared<std::vector<std::string>>(parts);
  // Writes frames[i..] one frame each; the last one carries FIN.
  auto write_from = std::make_shared<std::function<void(std::size_t, Done)>>();
  *write_from = [this, frames, weak = std::weak_ptr(write_from)](std::size_t i, Done done) {
    const bool fin = i + 1 == frames->size();
    impl_->ws.async_write_some(fin, asio::buffer((*frames)[i]),
                               [i, fin, done, weak](error_code ec, std::size_t) {
                                 if (ec || fin) return done(ec);
                                 if (auto next = weak.lock()) (*next)(i + 1, done);
                               });
  };
  return run_on_io(
      [this, frames, write_from](Done done) {
        if (frames->empty()) return done({});
        impl_->ws.text(true);
        (*write_from)(0, done);
      },
      5s);
}

error_code WsClient::send_ping_frame() {
  return run_on_io([this](Done done) { impl_->ws.async_ping({}, done); }, 5s);
}

error_code WsClient::send_raw(std::string_view bytes) {
  auto payload = std::make_shared<std::string>(bytes);
  return run_on_io(
      [this, payload](Done done) {
        asio::async_write(impl_->ws.next_layer(), asio::buffer(*payload),
                          [payload, done](error_code ec, std::size_t) { done(ec); });
      },
      5s);
}

void WsClient::start_reading() {
  asio::post(impl_->ioc, [impl = impl_.get()] {
    impl->continuous = true;
    impl->post_read();
  });
}

void WsClient::request_read() {
  asio::post(impl_->ioc, [impl = impl_.get()] { impl->post_read(); });
}

std::optional<std::string> WsClient::read_text(Millis timeout) {
  std::unique_lock lock(impl_->mu);
  if (impl_->inbox.empty() && !impl_->close_code) {
    lock.unlock();
    request_read();
    lock.lock();
    impl_->cv.wait_for(lock, timeout,
                       [&] { return !impl_->inbox.empty() || impl_->close_code.has_value(); });
  }
  if (impl_->inbox.empty()) return std::nullopt;
  std::string message = std::move(impl_->inbox.front());
  impl_->inbox.pop_front();
  return message;
}

std::optional<json::object> WsClient::read_json(Millis timeout) {
  const auto text = read_text(timeout);
  if (!text) return std::nullopt;
  error_code ec;
  json::value v = json::parse(*text, ec);
  if (ec || !v.is_object()) {
    ADD_FAILURE() << "server sent a message that is not a JSON object: " << *text;
    return std::nullopt;
  }
  return std::move(v.as_object());
}

json::object WsClient::request_frame(std::string_view frame, std::string_view seq,
                                     std::string_view cmd, Millis timeout) {
  if (const error_code ec = send_text(frame)) {
    throw std::runtime_error("sending " + std::string(frame) + " failed: " + ec.message());
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
    auto message = read_json(std::max(left, Millis(0)));
    if (!message) {
      throw std::runtime_error("no response to " + std::string(frame) +
                               (closed() ? " (connection closed)" : " (timed out)"));
    }
    if (seq_of(*message) == seq && cmd_of(*message) == cmd && message->contains("response")) {
      return std::move(*message);
    }
    pushes_.push_back(std::move(*message));
  }
}

json::object WsClient::request(std::string_view cmd, std::string_view data_json, std::string seq) {
  if (seq.empty()) seq = "t-" + std::to_string(++next_seq_);
  return request_frame(make_request(seq, cmd, data_json), seq, cmd);
}

int64_t WsClient::login(uint32_t app_id, std::string_view user_id) {
  json::object data{{"serviceToken", "t"}, {"appID", app_id}, {"userID", user_id}};
  return code_of(request("login", json::serialize(data)));
}

void WsClient::expect_pong(Millis timeout) {
  const std::string seq = "p-" + std::to_string(++next_seq_);
  const json::object res = request_frame(make_request(seq, "ping"), seq, "ping", timeout);
  EXPECT_EQ(code_of(res), 200) << json::serialize(res);
  EXPECT_EQ(data_of(res), json::value("pong")) << json::serialize(res);
}

std::optional<json::object> WsClient::next_push(std::string_view cmd, Millis timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    for (auto it = pushes_.begin(); it != pushes_.end(); ++it) {
      if (cmd_of(*it) == cmd) {
        json::object push = std::move(*it);
        pushes_.erase(it);
        return push;
      }
    }
    const auto left =
        std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
    if (left <= Millis(0)) return std::nullopt;
    auto message = read_json(left);
    if (!message) return std::nullopt;
    pushes_.push_back(std::move(*message));
  }
}

std::vector<json::object> WsClient::take_pushes() {
  expect_pong();
  std::vector<json::object> out(std::make_move_iterator(pushes_.begin()),
                                std::make_move_iterator(pushes_.end()));
  pushes_.clear();
  return out;
}

std::optional<uint16_t> WsClient::expect_closed(Millis timeout) {
  start_reading();
  std::unique_lock lock(impl_->mu);
  impl_->cv.wait_for(lock, timeout, [&] { return impl_->close_code.has_value(); });
  return impl_->close_code;
}

bool WsClient::closed() const {
  std::lock_guard lock(impl_->mu);
  return impl_->close_code.has_value();
}

error_code WsClient::close(uint16_t code) {
  const error_code ec = run_on_io(
      [this, code](Done done) {
        impl_->ws.async_close(websocket::close_reason(code), [this, done](error_code cec) {
          impl_->mark_closed(impl_->ws.reason().code);
          done(cec);
        });
      },
      5s);
  return ec;
}

void WsClient::drop() { cut(false); }

void WsClient::reset() { cut(true); }

void WsClient::cut(bool with_reset) {
  run_on_io(
      [this, with_reset](Done done) {
        error_code ignored;
        tcp::socket& sock = impl_->ws.next_layer();
        if (sock.is_open()) {
          if (with_reset) {
            // Linger on with a zero timeout: close() discards unsent data and sends an RST.
            sock.set_option(asio::socket_base::linger(true, 0), ignored);
          } else {
            sock.shutdown(tcp::socket::shutdown_both, ignored);
          }
          sock.close(ignored);
        }
        done({});
      },
      5s);
  impl_->mark_closed(kNoCloseFrame);
}

std::string WsClient::end_error() const {
  std::lock_guard lock(impl_->mu);
  return impl_->end_error;
}

std::size_t WsClient::pings_received() const {
  return impl_->pings.load();
}

}  // namespace imgate::test
