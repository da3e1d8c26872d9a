// imgate: a gowebsocket-compatible WebSocket IM and push gateway.
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <csignal>
#include <iostream>

#include "config/config.hpp"
#include "net/server.hpp"

namespace {

// Connections are file descriptors: take every one the hard limit allows.
// How they are shared between the ports is the Server's business
// (net/descriptors.hpp).
void raise_fd_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  if (lim.rlim_cur < lim.rlim_max) {
    rlim_t before = lim.rlim_cur;
    lim.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &lim) == 0) {
      spdlog::info("RLIMIT_NOFILE raised from {} to {}", before, lim.rlim_cur);
    }
    getrlimit(RLIMIT_NOFILE, &lim);
  }
  spdlog::info("RLIMIT_NOFILE is {}", lim.rlim_cur);
}

void setup_logging(const imgate::Config& config) {
  if (!config.log_file.empty()) {
    spdlog::set_default_logger(spdlog::basic_logger_mt("imgate", config.log_file));
    spdlog::flush_every(std::chrono::seconds(1));
  }
  spdlog::set_level(spdlog::level::from_str(config.log_level));
  spdlog::flush_on(spdlog::level::warn);
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<imgate::Config> config;
  try {
    config = imgate::load_config(argc, argv, std::cout);
  } catch (const imgate::ConfigError& e) {
    std::cerr << "imgate: " << e.what() << "\n";
    return 2;
  }
  if (!config) return 0;  // --help / --version

  try {
    setup_logging(*config);
    std::signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    imgate::Server server(std::move(*config));
    int code = server.run();
    spdlog::shutdown();
    return code;
  } catch (const imgate::ConfigError& e) {  // e.g. an unusable --auth-public-key
    spdlog::critical("imgate: {}", e.what());
    spdlog::shutdown();
    return 2;
  } catch (const std::exception& e) {
    spdlog::critical("imgate: {}", e.what());
    spdlog::shutdown();
    return 1;
  }
}
