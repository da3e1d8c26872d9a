#include "http.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "client.hpp"  // now_ns
#include "tls.hpp"

namespace bench {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

namespace {

// Content-Length of a response head (case-insensitive), or -1.
long content_length(std::string_view head) {
  static constexpr std::string_view kName = "content-length:";
  for (std::size_t pos = 0; pos < head.size();) {
    std::size_t eol = head.find("\r\n", pos);
    if (eol == std::string_view::npos) eol = head.size();
    std::string_view line = head.substr(pos, eol - pos);
    if (line.size() > kName.size()) {
      bool match = true;
      for (std::size_t i = 0; i < kName.size() && match; ++i) {
        match = std::tolower(static_cast<unsigned char>(line[i])) == kName[i];
      }
      if (match) {
        std::string_view v = line.substr(kName.size());
        while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
        long n = -1;
        std::from_chars(v.data(), v.data() + v.size(), n);
        return n;
      }
    }
    pos = eol + 2;
  }
  return -1;
}

}  // namespace

std::optional<std::string> http_get(const Options& o, uint16_t port, const std::string& target,
                                    double timeout_s, std::string& error) {
  const int64_t deadline = now_ns() + static_cast<int64_t>(timeout_s * 1e9);
  SSL_CTX* tls = nullptr;
  if (o.tls) {
    static const SslCtxPtr ctx = [&o] {
      std::string ignored;  // main() checked that the options make a context
      return make_client_ctx(o, ignored);
    }();
    tls = ctx.get();
  }
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    error = std::string("socket: ") + std::strerror(errno);
    return std::nullopt;
  }
  auto wait = [&](short events) {
    for (;;) {
      const int64_t left_ms = (deadline - now_ns()) / 1'000'000;
      if (left_ms <= 0) return false;
      pollfd p{fd, events, 0};
      int r = ::poll(&p, 1, static_cast<int>(left_ms));
      if (r > 0) return true;
      if (r < 0 && errno != EINTR) return false;
    }
  };
  SSL* ssl = nullptr;
  std::string tls_error;  // why the TLS side failed, for `error`
  // After an SSL call returned r <= 0: waits for what it wants; false on an
  // error, at EOF or after the deadline.
  auto ssl_wait = [&](int r) {
    switch (SSL_get_error(ssl, r)) {
      case SSL_ERROR_WANT_READ:
        return wait(POLLIN);
      case SSL_ERROR_WANT_WRITE:
        return wait(POLLOUT);
      default:
        tls_error = ssl_errors();
        if (const long v = SSL_get_verify_result(ssl); v != X509_V_OK) {
          tls_error += std::string(tls_error.empty() ? "" : "; ") +
                       "certificate: " + X509_verify_cert_error_string(v);
        }
        return false;
    }
  };
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  ::inet_pton(AF_INET, o.host.c_str(), &addr.sin_addr);
  std::string response;
  bool ok = false;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 || errno == EINPROGRESS) {
    int soerr = 0;
    socklen_t len = sizeof soerr;
    bool ready =
        wait(POLLOUT) && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr == 0;
    if (ready && tls) {
      ssl = SSL_new(tls);
      ready = ssl && SSL_set_fd(ssl, fd) == 1;
      if (ready) SSL_set_connect_state(ssl);
      for (int r; ready && (r = SSL_connect(ssl)) != 1;) ready = ssl_wait(r);
    }
    if (ready) {
      const std::string req =
          "GET " + target + " HTTP/1.1\r\nHost: " + o.host + "\r\nConnection: close\r\n\r\n";
      std::size_t off = 0;
      while (off < req.size()) {
        if (ssl) {
          const int n = SSL_write(ssl, req.data() + off, static_cast<int>(req.size() - off));
          if (n > 0) {
            off += static_cast<std::size_t>(n);
          } else if (!ssl_wait(n)) {
            break;
          }
          continue;
        }
        if (!wait(POLLOUT)) break;
        ssize_t n = ::send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
        if (n > 0)
          off += static_cast<std::size_t>(n);
        else if (errno != EAGAIN && errno != EINTR)
          break;
      }
      char buf[65536];
      while (off == req.size()) {
        if (ssl) {
          const int n = SSL_read(ssl, buf, sizeof buf);
          if (n > 0) {
            response.append(buf, static_cast<std::size_t>(n));
          } else if (SSL_get_error(ssl, n) == SSL_ERROR_ZERO_RETURN) {
            ok = true;  // close_notify, or EOF (SSL_OP_IGNORE_UNEXPECTED_EOF)
            break;
          } else if (!ssl_wait(n)) {
            break;
          }
          continue;
        }
        if (!wait(POLLIN)) break;
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n > 0) {
          response.append(buf, static_cast<std::size_t>(n));
        } else if (n == 0) {
          ok = true;
          break;
        } else if (errno != EAGAIN && errno != EINTR) {
          break;
        }
      }
    }
  }
  if (ssl) SSL_free(ssl);
  ERR_clear_error();
  ::close(fd);
  if (!ok) {
    error = "GET " + target + " on port " + std::to_string(port) + (tls ? " (TLS)" : "") +
            " failed or timed out" + (tls_error.empty() ? "" : ": " + tls_error);
    return std::nullopt;
  }
  const auto head_end = response.find("\r\n\r\n");
  if (head_end == std::string::npos || response.compare(0, 12, "HTTP/1.1 200") != 0) {
    error = "GET " + target + ": unexpected response " + response.substr(0, 40);
    if (response.empty() && !tls) error += "(nothing: a TLS port? then --tls)";
    return std::nullopt;
  }
  return response.substr(head_end + 4);
}

// ---- Pusher ----------------------------------------------------------------

struct Pusher::Conn {
  explicit Conn(asio::io_context& io) : sock(io) {}
  tcp::socket sock;
  std::unique_ptr<TlsStream> tls;  // --tls: over `sock`, made anew by each connect()
  std::string request;
  std::string in;
  std::vector<char> buf = std::vector<char>(16384);
  int64_t sent_ns = 0;
  bool busy = false;
};

Pusher::Pusher(const Options& opts, std::string path, uint64_t count, double rate, MakeBody make)
    : opts_(opts),
      path_(std::move(path)),
      count_(count),
      rate_(rate),
      make_(std::move(make)),
      io_(1),
      timer_(io_) {
  if (opts.tls) {
    tls_.emplace(asio::ssl::context::tls_client);
    std::string error;
    if (!configure_client_ctx(tls_->native_handle(), opts, error)) throw std::runtime_error(error);
  }
  for (uint32_t i = 0; i < std::max<uint32_t>(1, opts.http_connections); ++i) {
    conns_.push_back(std::make_unique<Conn>(io_));
  }
}

Pusher::~Pusher() = default;

void Pusher::connect(Conn& c) {
  error_code ec;
  c.tls.reset();
  c.sock.close(ec);
  c.sock.connect(tcp::endpoint(asio::ip::make_address_v4(opts_.host), opts_.http_port), ec);
  if (!ec) c.sock.set_option(tcp::no_delay(true), ec);
  if (!ec && tls_) {
    c.tls = std::make_unique<TlsStream>(c.sock, *tls_);
    c.tls->handshake(asio::ssl::stream_base::client, ec);
    if (ec) c.sock.close(ec);  // the write of the next request fails: counted as an error
  }
  c.in.clear();
}

bool Pusher::finished() const {
  return issued_ >= count_ && answered_ >= issued_;
}

void Pusher::schedule() {
  const int64_t now = now_ns();
  const double elapsed = static_cast<double>(now - start_ns_) / 1e9;
  if (opts_.send_for > 0 && elapsed >= opts_.send_for && issued_ < count_) {
    // --send-for: the sending window is over; what was not sent is skipped.
    result_.skipped = count_ - issued_;
    count_ = issued_;
    if (finished()) {
      result_.done_ns = now;
      timer_.cancel();
    }
    return;
  }
  const uint64_t due =
      rate_ > 0 ? std::min<uint64_t>(count_, static_cast<uint64_t>(elapsed * rate_) + 1) : count_;
  for (auto& c : conns_) {
    if (issued_ >= due) break;
    if (!c->busy) issue(*c);
  }
  if (due > issued_) result_.max_backlog = std::max(result_.max_backlog, due - issued_);
}

void Pusher::issue(Conn& c) {
  if (!c.sock.is_open()) {
    connect(c);
    ++result_.reconnects;
  }
  const uint64_t no = ++issued_;
  c.sent_ns = now_ns();
  if (result_.first_ns == 0) result_.first_ns = c.sent_ns;
  result_.last_ns = c.sent_ns;
  const std::string body = make_(no, c.sent_ns);
  c.request = "POST " + path_ + " HTTP/1.1\r\nHost: " + opts_.host +
              "\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: " +
              std::to_string(body.size()) + "\r\n\r\n" + body;
  c.busy = true;
  ++result_.sent;
  auto written = [this, &c](const error_code& ec, std::size_t) {
    if (ec) return on_error(c);
    read_more(c);
  };
  if (c.tls) {
    asio::async_write(*c.tls, asio::buffer(c.request), written);
  } else {
    asio::async_write(c.sock, asio::buffer(c.request), written);
  }
}

void Pusher::read_more(Conn& c) {
  auto got = [this, &c](const error_code& ec, std::size_t n) {
    if (ec) return on_error(c);
    c.in.append(c.buf.data(), n);
    const auto head_end = c.in.find("\r\n\r\n");
    if (head_end == std::string::npos) return read_more(c);
    const long length = content_length(std::string_view(c.in).substr(0, head_end));
    if (length < 0) return on_error(c);
    if (c.in.size() < head_end + 4 + static_cast<std::size_t>(length)) return read_more(c);
    std::string_view all(c.in);
    on_response(c, all.substr(0, head_end),
                all.substr(head_end + 4, static_cast<std::size_t>(length)));
  };
  if (c.tls) {
    c.tls->async_read_some(asio::buffer(c.buf), got);
  } else {
    c.sock.async_read_some(asio::buffer(c.buf), got);
  }
}

void Pusher::on_response(Conn& c, std::string_view head, std::string_view body) {
  result_.api_latency.record(static_cast<uint64_t>(now_ns() - c.sent_ns));
  if (!head.starts_with("HTTP/1.1 200") || body.find("\"code\":200") == std::string_view::npos) {
    ++result_.errors;
  } else if (body.find("\"sendResults\":true") != std::string_view::npos) {
    ++result_.delivered_ok;
    note_position(body);
  } else if (body.find("\"sendResults\":false") != std::string_view::npos) {
    ++result_.not_online;
    note_position(body);
  } else {
    ++result_.errors;
  }
  c.in.clear();
  c.busy = false;
  ++answered_;
  if (finished()) {
    result_.done_ns = now_ns();
    timer_.cancel();
    return;
  }
  schedule();
}

// History on, an answer carries the push's "epoch" and "offset" (docs/history.md).
void Pusher::note_position(std::string_view body) {
  static constexpr std::string_view kOffset = "\"offset\":", kEpoch = "\"epoch\":\"";
  auto pos = body.find(kOffset);
  if (pos == std::string_view::npos) return;
  pos += kOffset.size();
  uint64_t offset = 0;
  std::from_chars(body.data() + pos, body.data() + body.size(), offset);
  if (offset <= result_.max_offset) return;
  result_.max_offset = offset;
  if (auto e = body.find(kEpoch); e != std::string_view::npos) {
    e += kEpoch.size();
    const auto end = body.find('"', e);
    if (end != std::string_view::npos) result_.epoch = std::string(body.substr(e, end - e));
  }
}

void Pusher::on_error(Conn& c) {
  ++result_.errors;
  error_code ignored;
  c.sock.close(ignored);  // reconnected by the next issue()
  c.busy = false;
  ++answered_;
  if (finished()) {
    result_.done_ns = now_ns();
    timer_.cancel();
  }
}

Pusher::Result Pusher::run(double deadline_s, const std::function<void()>& tick) {
  for (auto& c : conns_) connect(*c);
  start_ns_ = now_ns();
  const int64_t deadline = start_ns_ + static_cast<int64_t>(deadline_s * 1e9);
  int64_t next_tick = start_ns_ + 1'000'000'000;
  std::function<void()> arm = [&] {
    timer_.expires_after(std::chrono::microseconds(500));
    timer_.async_wait([&](const error_code& ec) {
      if (ec || finished()) return;
      const int64_t now = now_ns();
      if (now >= next_tick) {
        next_tick += 1'000'000'000;
        if (tick) tick();
      }
      if (now >= deadline) {
        result_.deadline_hit = true;
        for (auto& c : conns_) {
          error_code ignored;
          c->sock.close(ignored);
        }
        return;
      }
      schedule();
      arm();
    });
  };
  schedule();
  arm();
  io_.run();
  if (result_.done_ns == 0) result_.done_ns = now_ns();
  return result_;
}

// ---- ApiProbe ----------------------------------------------------------------

ApiProbe::ApiProbe(const Options& opts, double rate, std::string send_body)
    : opts_(opts), rate_(rate), send_body_(std::move(send_body)), thread_([this] { run(); }) {}

ApiProbe::~ApiProbe() { stop(); }

ApiProbe::Result ApiProbe::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  return result_;
}

void ApiProbe::run() {
  asio::io_context io(1);
  tcp::socket sock(io);
  std::optional<asio::ssl::context> tls_ctx;
  std::unique_ptr<TlsStream> tls;  // --tls: over `sock`
  if (opts_.tls) {
    tls_ctx.emplace(asio::ssl::context::tls_client);
    std::string ignored;  // main() checked that the options make a context
    configure_client_ctx(tls_ctx->native_handle(), opts_, ignored);
  }
  auto connect = [&] {
    error_code ec;
    tls.reset();
    sock.close(ec);
    sock.connect(tcp::endpoint(asio::ip::make_address_v4(opts_.host), opts_.http_port), ec);
    if (ec) return false;
    sock.set_option(tcp::no_delay(true), ec);
    const timeval limit{5, 0};  // a stalled answer fails the request instead of the run
    ::setsockopt(sock.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    if (tls_ctx) {
      tls = std::make_unique<TlsStream>(sock, *tls_ctx);
      tls->handshake(asio::ssl::stream_base::client, ec);
      if (ec) return false;
    }
    return true;
  };
  const std::string host = "Host: " + opts_.host + "\r\n";
  const std::string state_req = "GET /system/state HTTP/1.1\r\n" + host + "\r\n";
  const std::string send_req = "POST /user/sendMessage HTTP/1.1\r\n" + host +
                               "Content-Type: application/x-www-form-urlencoded\r\n"
                               "Content-Length: " + std::to_string(send_body_.size()) +
                               "\r\n\r\n" + send_body_;
  // One exchange on the keep-alive connection; false on any failure.
  std::string in;
  auto exchange = [&](const std::string& req) {
    error_code ec;
    if (tls) {
      asio::write(*tls, asio::buffer(req), ec);
    } else {
      asio::write(sock, asio::buffer(req), ec);
    }
    if (ec) return false;
    in.clear();
    char buf[16384];
    std::size_t head_end = std::string::npos;
    long length = -1;
    for (;;) {
      const std::size_t n =
          tls ? tls->read_some(asio::buffer(buf), ec) : sock.read_some(asio::buffer(buf), ec);
      if (ec) return false;
      in.append(buf, n);
      if (head_end == std::string::npos) {
        head_end = in.find("\r\n\r\n");
        if (head_end == std::string::npos) continue;
        length = content_length(std::string_view(in).substr(0, head_end));
        if (length < 0) return false;
      }
      if (in.size() >= head_end + 4 + static_cast<std::size_t>(length)) break;
    }
    return in.compare(0, 12, "HTTP/1.1 200") == 0;
  };
  bool connected = connect();
  const int64_t start = now_ns();
  const auto interval = static_cast<int64_t>(1e9 / std::max(rate_, 0.1));
  for (uint64_t k = 0; !stop_; ++k) {
    const int64_t due = start + static_cast<int64_t>(k) * interval;
    while (!stop_ && now_ns() < due) {
      std::this_thread::sleep_for(std::chrono::nanoseconds(std::min<int64_t>(due - now_ns(), 10'000'000)));
    }
    if (stop_) break;
    if (!connected) connected = connect();
    const bool state = k % 2 == 0;
    const int64_t t0 = now_ns();
    if (connected && exchange(state ? state_req : send_req)) {
      (state ? result_.state : result_.send).record(static_cast<uint64_t>(now_ns() - t0));
    } else {
      ++result_.errors;
      connected = false;
    }
  }
  error_code ec;
  tls.reset();
  sock.close(ec);
}

}  // namespace bench
