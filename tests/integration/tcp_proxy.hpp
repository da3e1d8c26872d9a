// TcpProxy: a loopback TCP relay for fault tests, put between imgate and a
// real redis-server. Each accepted connection is relayed to 127.0.0.1:<upstream>
// by a thread of its own (poll on both sockets, 50 ms ticks so that the
// destructor stops it).
//
// cut_reply_to(pattern) arms one fault: the first connection whose
// client-to-server bytes contain `pattern` (seen within one read) has those
// bytes forwarded, and is cut (both sides closed) as soon as the server answers,
// before any of that answer reaches the client. The command ran in Redis; its
// reply is lost with the connection, as when a server or a link dies between
// running a command and delivering its answer.
//
// hold_writes_with(pattern) arms another: the first connection whose
// client-to-server bytes contain `pattern` keeps them, and all it sends after
// them, from the server until release_held(); answers still flow. A command
// that is slow to reach Redis, e.g. a SUBSCRIBE. Armed again after a release,
// it holds the next match until the next release.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <list>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

namespace imgate::test {

class TcpProxy {
 public:
  explicit TcpProxy(uint16_t upstream) : upstream_(upstream) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listen_fd_, 64) != 0) {
      ::close(listen_fd_);
      throw std::runtime_error("tcp proxy: cannot listen");
    }
    socklen_t len = sizeof addr;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  ~TcpProxy() {
    stop_ = true;
    acceptor_.join();
    ::close(listen_fd_);
    std::list<std::thread> relays;
    {
      std::lock_guard lock(mu_);  // the relays take it too: join them outside
      relays.swap(relays_);
    }
    for (auto& t : relays) t.join();
  }

  uint16_t port() const { return port_; }
  std::string addr() const { return "127.0.0.1:" + std::to_string(port_); }

  void cut_reply_to(std::string pattern) {
    std::lock_guard lock(mu_);
    pattern_ = std::move(pattern);
  }
  // Connections cut by an armed fault so far.
  int cuts() const { return cuts_.load(); }

  void hold_writes_with(std::string pattern) {
    std::lock_guard lock(mu_);
    hold_pattern_ = std::move(pattern);
  }
  void release_held() { ++releases_; }
  // Connections that held bytes so far.
  int holds() const { return holds_.load(); }

 private:
  void accept_loop() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      const int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = htons(upstream_);
      if (::connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(server);
        ::close(client);
        continue;
      }
      std::lock_guard lock(mu_);
      relays_.emplace_back([this, client, server] { relay(client, server); });
    }
  }

  // Relays until either side closes (or the fault cuts it, or the proxy stops).
  void relay(int client, int server) {
    bool cut_on_answer = false;
    int holding = 0;  // the number of the hold this connection is in; 0: none
    std::string held;
    char buf[65536];
    pollfd fds[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
    while (!stop_) {
      const int ready = ::poll(fds, 2, 50);
      if (holding != 0 && releases_ >= holding) {
        holding = 0;
        if (!write_all(server, held.data(), held.size())) break;
        held.clear();
      }
      if (ready <= 0) continue;
      if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
        const ssize_t n = ::read(client, buf, sizeof buf);
        if (n <= 0) break;
        {
          std::lock_guard lock(mu_);
          if (!pattern_.empty() &&
              std::string_view(buf, static_cast<std::size_t>(n)).find(pattern_) !=
                  std::string_view::npos) {
            pattern_.clear();
            cut_on_answer = true;
          }
          if (!hold_pattern_.empty() &&
              std::string_view(buf, static_cast<std::size_t>(n)).find(hold_pattern_) !=
                  std::string_view::npos) {
            hold_pattern_.clear();
            if (holding == 0) holding = ++holds_;
          }
        }
        if (holding != 0) {
          held.append(buf, static_cast<std::size_t>(n));
          continue;
        }
        if (!write_all(server, buf, static_cast<std::size_t>(n))) break;
      }
      if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
        if (cut_on_answer) {
          ++cuts_;
          break;  // the answer is never forwarded
        }
        const ssize_t n = ::read(server, buf, sizeof buf);
        if (n <= 0) break;
        if (!write_all(client, buf, static_cast<std::size_t>(n))) break;
      }
    }
    ::close(client);
    ::close(server);
  }

  static bool write_all(int fd, const char* data, std::size_t size) {
    while (size > 0) {
      const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
      if (n <= 0) return false;
      data += n;
      size -= static_cast<std::size_t>(n);
    }
    return true;
  }

  const uint16_t upstream_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> cuts_{0};
  std::atomic<int> holds_{0};
  std::atomic<int> releases_{0};
  std::mutex mu_;
  std::string pattern_;
  std::string hold_pattern_;
  std::list<std::thread> relays_;
  std::thread acceptor_;
};

}  // namespace imgate::test
