// imgate: a gowebsocket-compatible WebSocket IM and push gateway.
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
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

// The log goes to config.log_file, or to stderr when it is empty. Returns
// true when it goes to a file. Throws spdlog::spdlog_ex when the file cannot
// be opened (the log then still goes to stderr).
bool setup_logging(const imgate::Config& config) {
  spdlog::set_default_logger(std::make_shared<spdlog::logger>(
      "", std::make_shared<spdlog::sinks::stderr_color_sink_mt>()));
  if (!config.log_file.empty()) {
    spdlog::set_default_logger(spdlog::basic_logger_mt("imgate", config.log_file));
    spdlog::flush_every(std::chrono::seconds(1));
  }
  spdlog::set_level(spdlog::level::from_str(config.log_level));
  spdlog::flush_on(spdlog::level::warn);
  return !config.log_file.empty();
}

// Configuration warnings and fatal errors go to the log and, when the log is
// a file, to stderr too: whoever started imgate sees them.
void report_warning(bool log_to_file, const std::string& what) {
  spdlog::warn("{}", what);
  if (log_to_file) std::cerr << "imgate: warning: " << what << "\n";
}

void report_fatal(bool log_to_file, const char* what) {
  spdlog::critical("imgate: {}", what);
  if (log_to_file) std::cerr << "imgate: " << what << "\n";
  spdlog::shutdown();
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

  bool log_to_file = false;
  try {
    log_to_file = setup_logging(*config);
    for (const std::string& warning : config->warnings) report_warning(log_to_file, warning);
    std::signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    imgate::Server server(std::move(*config));
    int code = server.run();
    spdlog::shutdown();
    return code;
  } catch (const imgate::ConfigError& e) {  // e.g. an unusable --auth-public-key
    report_fatal(log_to_file, e.what());
    return 2;
  } catch (const std::exception& e) {  // e.g. a port already in use
    report_fatal(log_to_file, e.what());
    return 1;
  }
}
