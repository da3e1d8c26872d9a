#include "net/descriptors.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

namespace imgate {

namespace {

const std::string& unavailable_response() {
  static const std::string response = [] {
    const std::string body = "server at its connection limit, retry later\n";
    return "HTTP/1.1 503 Service Unavailable\r\nRetry-After: " + std::to_string(kRetryAfterSeconds) +
           "\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n\r\n" + body;
  }();
  return response;
}

}  // namespace

std::size_t websocket_share(std::size_t limit, std::size_t open, std::size_t max_http) {
  const std::size_t free = limit > open ? limit - open : 0;
  const std::size_t reserve = max_http + kOtherDescriptors;
  const std::size_t rest = free > reserve ? free - reserve : 0;
  return rest >= free / 2 ? rest : free / 2;
}

std::size_t open_descriptors() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  std::size_t n = 0;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  return n > 0 ? n - 1 : 0;  // not the directory's own descriptor
}

void refuse_unavailable(int fd, bool tls) {
  // What the client sent so far (its upgrade request, usually) is read and
  // dropped: closing with unread bytes would send a reset, which may make the
  // client discard the answer. Bounded: a few reads, never waiting.
  char scratch[4096];
  for (int i = 0; i < 4; ++i) {
    if (::recv(fd, scratch, sizeof scratch, MSG_DONTWAIT) <= 0) break;
  }
  if (!tls) {
    const std::string& response = unavailable_response();
    // A fresh socket's send buffer takes these ~200 bytes at once; if not, the
    // client gets the close alone.
    [[maybe_unused]] const ssize_t n =
        ::send(fd, response.data(), response.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  }
  ::close(fd);
}

SpareDescriptor::SpareDescriptor() { take(); }

SpareDescriptor::~SpareDescriptor() {
  if (fd_ >= 0) ::close(fd_);
}

void SpareDescriptor::take() {
  if (fd_ < 0) fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
}

bool SpareDescriptor::refuse_one(int listen_fd, bool tls) {
  take();  // a spare lost to another thread earlier, if a descriptor is free again
  if (fd_ < 0) return false;
  ::close(fd_);
  fd_ = -1;
  const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd >= 0) refuse_unavailable(fd, tls);
  take();
  return fd >= 0;
}

}  // namespace imgate
