// Unit tests for src/config: defaults, YAML (upstream app.yaml and the imgate section),
// precedence of YAML < environment < flags, error reporting, validation and --help/--version.
#include "config/config.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

namespace imgate {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// docs/configuration.md, located from this file's path before any test changes directory.
const fs::path kDocsPath =
    fs::absolute(fs::path(__FILE__)).parent_path().parent_path().parent_path() / "docs" /
    "configuration.md";

// The upstream gowebsocket config/app.yaml, verbatim.
constexpr const char* kUpstreamAppYaml = R"(app:
  logFile: log/gin.log
  httpPort: 8080
  webSocketPort: 8089
  rpcPort: 9001
  httpUrl: 127.0.0.1:8080
  webSocketUrl:  127.0.0.1:8089


redis:
  addr: "localhost:6379"
  password: ""
  DB: 0
  poolSize: 30
  minIdleConns: 30
)";

// Every test runs in a fresh empty working directory (so no config/app.yaml is picked up by
// accident) with every IMGATE_* variable removed; both are restored afterwards.
class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_cwd_ = fs::current_path();
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string entry = *e;
      if (entry.rfind("IMGATE_", 0) == 0 && entry.find('=') != std::string::npos) {
        const auto eq = entry.find('=');
        saved_env_[entry.substr(0, eq)] = entry.substr(eq + 1);
      }
    }
    for (const auto& [name, value] : saved_env_) unsetenv(name.c_str());
    std::string templ = (fs::temp_directory_path() / "imgate_config_test_XXXXXX").string();
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    dir_ = templ;
    fs::current_path(dir_);
  }

  void TearDown() override {
    for (const std::string& name : set_env_) unsetenv(name.c_str());
    for (const auto& [name, value] : saved_env_) setenv(name.c_str(), value.c_str(), 1);
    fs::current_path(saved_cwd_);
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void SetEnv(const std::string& name, const std::string& value) {
    set_env_.insert(name);
    ASSERT_EQ(setenv(name.c_str(), value.c_str(), 1), 0);
  }

  // Writes `text` to `relative` under the test directory; returns the absolute path.
  std::string WriteFile(const std::string& relative, const std::string& text) {
    const fs::path path = dir_ / relative;
    fs::create_directories(path.parent_path());
    std::ofstream(path) << text;
    return path.string();
  }

  std::optional<Config> Load(std::vector<std::string> args) {
    args.insert(args.begin(), "imgate");
    std::vector<const char*> argv;
    for (const std::string& a : args) argv.push_back(a.c_str());
    argv.push_back(nullptr);
    out_.str("");
    return load_config(static_cast<int>(args.size()), argv.data(), out_);
  }

  // Loads and expects a ConfigError whose message contains every one of `parts`.
  void ExpectLoadError(const std::vector<std::string>& args,
                       std::initializer_list<std::string> parts) {
    try {
      Load(args);
      ADD_FAILURE() << "no ConfigError";
    } catch (const ConfigError& e) {
      for (const std::string& part : parts) {
        EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
            << "message lacks \"" << part << "\": " << e.what();
      }
    }
  }

  fs::path dir_;
  std::ostringstream out_;

 private:
  fs::path saved_cwd_;
  std::map<std::string, std::string> saved_env_;
  std::set<std::string> set_env_;
};

void ExpectValidateError(const Config& cfg, const std::string& part) {
  try {
    validate(cfg);
    ADD_FAILURE() << "validate accepted a config that should fail on " << part;
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

// --- defaults -------------------------------------------------------------------------------

TEST_F(ConfigTest, DefaultsWithoutFileEnvOrFlags) {
  const auto cfg = Load({});
  ASSERT_TRUE(cfg.has_value());
  EXPECT_EQ(cfg->log_file, "");
  EXPECT_EQ(cfg->http_port, 8080);
  EXPECT_EQ(cfg->ws_port, 8089);
  EXPECT_EQ(cfg->rpc_port, 9001);
  EXPECT_EQ(cfg->http_url, "");
  EXPECT_EQ(cfg->web_socket_url, "");
  EXPECT_EQ(cfg->redis_addr, "");
  EXPECT_EQ(cfg->redis_password, "");
  EXPECT_EQ(cfg->redis_db, 0);
  EXPECT_EQ(cfg->bind_address, "0.0.0.0");
  EXPECT_EQ(cfg->ws_path, "/acc");
  EXPECT_EQ(cfg->threads, 0u);
  EXPECT_EQ(cfg->app_ids, (std::vector<uint32_t>{101, 102, 103, 104}));
  EXPECT_EQ(cfg->heartbeat_timeout, 360s);
  EXPECT_EQ(cfg->ping_interval, 30s);
  EXPECT_EQ(cfg->handshake_timeout, 10s);
  EXPECT_EQ(cfg->close_timeout, 5s);
  EXPECT_EQ(cfg->shutdown_timeout, 10s);
  EXPECT_EQ(cfg->send_queue_bytes, 1u << 20);
  EXPECT_EQ(cfg->max_message_bytes, 64u << 10);
  EXPECT_EQ(cfg->max_connections, 1'000'000u);
  EXPECT_EQ(cfg->log_level, "info");
  EXPECT_EQ(cfg->ready_file, "");
}

TEST(ConfigValidate, DefaultsAreValid) {
  EXPECT_NO_THROW(validate(Config{}));
}

// --- YAML -----------------------------------------------------------------------------------

TEST(ConfigYaml, UpstreamAppYamlParsedUnchanged) {
  Config cfg;
  cfg.http_port = 1;  // proves the file's values are applied, not just left at defaults
  cfg.ws_port = 2;
  cfg.rpc_port = 3;
  cfg.redis_db = 7;
  apply_yaml(cfg, kUpstreamAppYaml);
  EXPECT_EQ(cfg.log_file, "log/gin.log");
  EXPECT_EQ(cfg.http_port, 8080);
  EXPECT_EQ(cfg.ws_port, 8089);
  EXPECT_EQ(cfg.rpc_port, 9001);
  EXPECT_EQ(cfg.http_url, "127.0.0.1:8080");
  EXPECT_EQ(cfg.web_socket_url, "127.0.0.1:8089");
  EXPECT_EQ(cfg.redis_addr, "localhost:6379");
  EXPECT_EQ(cfg.redis_password, "");
  EXPECT_EQ(cfg.redis_db, 0);
  EXPECT_NO_THROW(validate(cfg));
}

TEST(ConfigYaml, UnknownKeysAndSectionsAreIgnoredWithAWarningEach) {
  Config cfg;
  apply_yaml(cfg, R"(
app:
  httpPort: 18080
  someFutureKey: {nested: [1, 2]}
redis:
  poolSize: not-a-number
mysql:
  dsn: "user:pw@tcp(127.0.0.1)/db"
other: 5
imgate:
  unknownThing: [a, b]
  threads: 3
)");
  EXPECT_EQ(cfg.http_port, 18080);
  EXPECT_EQ(cfg.threads, 3u);
  EXPECT_EQ(cfg.warnings, (std::vector<std::string>{
                              "config: unknown key app.someFutureKey (YAML text) ignored",
                              "config: unknown section mysql (YAML text) ignored",
                              "config: unknown section other (YAML text) ignored",
                              "config: unknown key imgate.unknownThing (YAML text) ignored",
                          }));
}

// A typo keeps the default: the warning is all that tells.
TEST(ConfigYaml, TypoInAKeyIsNamedInAWarning) {
  Config cfg;
  apply_yaml(cfg, "app:\n  httpPrt: 9090\n");
  EXPECT_EQ(cfg.http_port, 8080);
  EXPECT_EQ(cfg.warnings, std::vector<std::string>{
                              "config: unknown key app.httpPrt (YAML text) ignored"});
}

// Upstream's app.yaml (with redis.poolSize and redis.minIdleConns, any case) and the
// repository's config/app.yaml give no warning.
TEST(ConfigYaml, UpstreamAndRepositoryAppYamlGiveNoWarning) {
  Config upstream;
  apply_yaml(upstream, kUpstreamAppYaml);
  EXPECT_EQ(upstream.warnings, std::vector<std::string>{});
  Config lower;
  apply_yaml(lower, "redis:\n  poolsize: 30\n  MINIDLECONNS: 30\n");
  EXPECT_EQ(lower.warnings, std::vector<std::string>{});
  Config repository;
  apply_yaml(repository, R"(
app:
  logFile: ""
  httpPort: 8080
  webSocketPort: 8089
  rpcPort: 9001
  httpUrl: 127.0.0.1:8080
  webSocketUrl: ""
redis:
  addr: ""
  password: ""
  DB: 0
  poolSize: 30
  minIdleConns: 30
imgate:
  threads: 0
  appIDs: [101, 102, 103, 104]
  heartbeatTimeout: 360
  pingInterval: 30
  logLevel: info
)");
  EXPECT_EQ(repository.warnings, std::vector<std::string>{});
}

TEST(ConfigYaml, KeysMatchCaseInsensitivelyLikeViper) {
  Config cfg;
  apply_yaml(cfg, "REDIS:\n  db: 5\napp:\n  websocketport: 1234\n");
  EXPECT_EQ(cfg.redis_db, 5);
  EXPECT_EQ(cfg.ws_port, 1234);
}

TEST(ConfigYaml, ImgateSection) {
  Config cfg;
  apply_yaml(cfg, R"(
imgate:
  bindAddress: 127.0.0.1
  wsPath: /ws
  threads: 4
  appIDs: [7, 8, 9]
  heartbeatTimeout: 90
  pingInterval: 0.5
  handshakeTimeout: 2.25
  closeTimeout: 1
  shutdownTimeout: 3
  sendQueueBytes: 2M
  maxMessageBytes: 4096
  maxConnections: 50
  logLevel: DEBUG
  readyFile: /tmp/ready.json
)");
  EXPECT_EQ(cfg.bind_address, "127.0.0.1");
  EXPECT_EQ(cfg.ws_path, "/ws");
  EXPECT_EQ(cfg.threads, 4u);
  EXPECT_EQ(cfg.app_ids, (std::vector<uint32_t>{7, 8, 9}));
  EXPECT_EQ(cfg.heartbeat_timeout, 90s);
  EXPECT_EQ(cfg.ping_interval, 500ms);
  EXPECT_EQ(cfg.handshake_timeout, 2250ms);
  EXPECT_EQ(cfg.close_timeout, 1s);
  EXPECT_EQ(cfg.shutdown_timeout, 3s);
  EXPECT_EQ(cfg.send_queue_bytes, 2u << 20);
  EXPECT_EQ(cfg.max_message_bytes, 4096u);
  EXPECT_EQ(cfg.max_connections, 50u);
  EXPECT_EQ(cfg.log_level, "debug");
  EXPECT_EQ(cfg.ready_file, "/tmp/ready.json");
}

TEST(ConfigYaml, ApplyYamlOnStringOnlyTouchesGivenKeys) {
  Config cfg;
  cfg.ws_port = 4242;
  cfg.log_level = "warn";
  apply_yaml(cfg, "app:\n  httpPort: 9999\n");
  EXPECT_EQ(cfg.http_port, 9999);
  EXPECT_EQ(cfg.ws_port, 4242);
  EXPECT_EQ(cfg.log_level, "warn");
}

TEST(ConfigYaml, EmptyTextNullSectionsAndNullValuesChangeNothing) {
  Config cfg;
  cfg.ws_port = 4242;
  apply_yaml(cfg, "");
  apply_yaml(cfg, "# only a comment\n");
  apply_yaml(cfg, "app:\nimgate:\n  threads:\n");
  EXPECT_EQ(cfg.ws_port, 4242);
  EXPECT_EQ(cfg.threads, 0u);
}

TEST(ConfigYaml, ScalarAppIdIsAOneElementList) {
  Config cfg;
  apply_yaml(cfg, "imgate:\n  appIDs: 55\n");
  EXPECT_EQ(cfg.app_ids, (std::vector<uint32_t>{55}));
}

TEST(ConfigYaml, ErrorsNameOptionSourceAndValue) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"app: [1, 2", {"malformed YAML", "YAML text"}},
      {"app:\n  httpPort: [1, 2]\n", {"app.httpPort", "wrong type", "list"}},
      {"app:\n  httpPort: http\n", {"app.httpPort", "\"http\"", "YAML text"}},
      {"app:\n  webSocketPort: 65536\n", {"app.webSocketPort", "\"65536\""}},
      {"app: 5\n", {"app", "mapping"}},
      {"- just\n- a list\n", {"top level", "mapping"}},
      {"imgate:\n  appIDs: []\n", {"imgate.appIDs", "empty"}},
      {"imgate:\n  appIDs: [1, [2]]\n", {"imgate.appIDs", "wrong type"}},
      {"imgate:\n  appIDs: [1, x]\n", {"imgate.appIDs", "\"1,x\""}},
      {"imgate:\n  appIDs: [4294967296]\n", {"imgate.appIDs", "out of range"}},
      {"imgate:\n  heartbeatTimeout: -1\n", {"imgate.heartbeatTimeout", "\"-1\"", "negative"}},
      {"imgate:\n  pingInterval: 30s\n", {"imgate.pingInterval", "\"30s\""}},
      {"imgate:\n  closeTimeout: .nan\n", {"imgate.closeTimeout"}},
      {"imgate:\n  sendQueueBytes: 1T\n", {"imgate.sendQueueBytes", "\"1T\""}},
      {"imgate:\n  maxConnections: -5\n", {"imgate.maxConnections", "\"-5\""}},
      {"imgate:\n  logLevel: loud\n", {"imgate.logLevel", "\"loud\""}},
      {"imgate:\n  threads: 2000\n", {"imgate.threads", "\"2000\""}},
      {"redis:\n  DB: -1\n", {"redis.DB", "\"-1\""}},
  };
  for (const auto& [yaml, parts] : cases) {
    Config cfg;
    try {
      apply_yaml(cfg, yaml);
      ADD_FAILURE() << "accepted: " << yaml;
    } catch (const ConfigError& e) {
      for (const std::string& part : parts) {
        EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
            << "yaml: " << yaml << "\nmessage lacks \"" << part << "\": " << e.what();
      }
    }
  }
}

// --- config file selection --------------------------------------------------------------------

TEST_F(ConfigTest, DefaultConfigFileIsUsedWhenPresent) {
  WriteFile("config/app.yaml", std::string(kUpstreamAppYaml) + "imgate:\n  threads: 6\n");
  const auto cfg = Load({});
  ASSERT_TRUE(cfg);
  EXPECT_EQ(cfg->redis_addr, "localhost:6379");
  EXPECT_EQ(cfg->threads, 6u);
}

TEST_F(ConfigTest, ExplicitConfigFlagAndEnv) {
  const std::string a = WriteFile("a.yaml", "app:\n  httpPort: 1111\n");
  const std::string b = WriteFile("b.yaml", "app:\n  httpPort: 2222\n");
  WriteFile("config/app.yaml", "app:\n  httpPort: 3333\n");
  EXPECT_EQ(Load({"--config", a})->http_port, 1111);
  SetEnv("IMGATE_CONFIG", b);
  EXPECT_EQ(Load({})->http_port, 2222);
  EXPECT_EQ(Load({"--config=" + a})->http_port, 1111);  // flag beats IMGATE_CONFIG
  EXPECT_EQ(Load({"--config", ""})->http_port, 8080);   // "" disables the file entirely
}

TEST_F(ConfigTest, MissingExplicitFileIsAnErrorMissingDefaultIsNot) {
  EXPECT_TRUE(Load({}).has_value());
  ExpectLoadError({"--config", "nope.yaml"}, {"nope.yaml", "does not exist"});
  SetEnv("IMGATE_CONFIG", "also-missing.yaml");
  ExpectLoadError({}, {"also-missing.yaml", "does not exist"});
}

TEST_F(ConfigTest, ConfigFileErrorsNameTheFile) {
  const std::string bad = WriteFile("bad.yaml", "app:\n  httpPort: [1\n");
  ExpectLoadError({"--config", bad}, {"malformed YAML", bad});
  const std::string wrong = WriteFile("wrong.yaml", "app:\n  rpcPort: abc\n");
  ExpectLoadError({"--config", wrong}, {"app.rpcPort", "\"abc\"", "config file", wrong});
  ExpectLoadError({"--config", dir_.string()}, {"directory"});
}

TEST_F(ConfigTest, EmptyConfigFileIsFine) {
  const std::string empty = WriteFile("empty.yaml", "");
  EXPECT_TRUE(Load({"--config", empty}).has_value());
}

// --- precedence -------------------------------------------------------------------------------

TEST_F(ConfigTest, PrecedenceYamlThenEnvThenFlag) {
  const std::string file = WriteFile("p.yaml", R"(
app:
  httpPort: 1001
  webSocketPort: 1002
  rpcPort: 1003
imgate:
  heartbeatTimeout: 100
  appIDs: [1, 2]
  logLevel: warn
)");
  SetEnv("IMGATE_HTTP_PORT", "2001");
  SetEnv("IMGATE_WS_PORT", "2002");
  SetEnv("IMGATE_HEARTBEAT_TIMEOUT", "200");
  SetEnv("IMGATE_APP_IDS", "5,6");
  const auto cfg = Load({"--config", file, "--ws-port", "3002", "--app-ids", "9"});
  ASSERT_TRUE(cfg);
  EXPECT_EQ(cfg->rpc_port, 1003);                     // YAML only
  EXPECT_EQ(cfg->log_level, "warn");                  // YAML only
  EXPECT_EQ(cfg->http_port, 2001);                    // env beats YAML
  EXPECT_EQ(cfg->heartbeat_timeout, 200s);            // env beats YAML
  EXPECT_EQ(cfg->ws_port, 3002);                      // flag beats env and YAML
  EXPECT_EQ(cfg->app_ids, std::vector<uint32_t>{9});  // flag beats env and YAML
  EXPECT_EQ(cfg->ping_interval, 30s);                 // untouched default
}

TEST_F(ConfigTest, EveryFlagHasAnEnvEquivalent) {
  const std::map<std::string, std::string> env = {
      {"IMGATE_LOG_FILE", "x.log"},      {"IMGATE_HTTP_PORT", "1"},
      {"IMGATE_WS_PORT", "2"},           {"IMGATE_RPC_PORT", "3"},
      {"IMGATE_HTTP_URL", "h:1"},        {"IMGATE_WEB_SOCKET_URL", "w:2"},
      {"IMGATE_REDIS_ADDR", "r:6379"},   {"IMGATE_REDIS_PASSWORD", "pw"},
      {"IMGATE_REDIS_DB", "4"},          {"IMGATE_BIND", "127.0.0.1"},
      {"IMGATE_WS_PATH", "/x"},          {"IMGATE_THREADS", "5"},
      {"IMGATE_APP_IDS", "10, 11"},      {"IMGATE_HEARTBEAT_TIMEOUT", "61"},
      {"IMGATE_PING_INTERVAL", "6"},     {"IMGATE_HANDSHAKE_TIMEOUT", "7"},
      {"IMGATE_CLOSE_TIMEOUT", "8"},     {"IMGATE_SHUTDOWN_TIMEOUT", "9"},
      {"IMGATE_SEND_QUEUE_BYTES", "3K"}, {"IMGATE_MAX_MESSAGE_BYTES", "1k"},
      {"IMGATE_MAX_CONNECTIONS", "12"},  {"IMGATE_LOG_LEVEL", "error"},
      {"IMGATE_READY_FILE", "ready"},
  };
  for (const auto& [name, value] : env) SetEnv(name, value);
  const auto cfg = Load({});
  ASSERT_TRUE(cfg);
  EXPECT_EQ(cfg->log_file, "x.log");
  EXPECT_EQ(cfg->http_port, 1);
  EXPECT_EQ(cfg->ws_port, 2);
  EXPECT_EQ(cfg->rpc_port, 3);
  EXPECT_EQ(cfg->http_url, "h:1");
  EXPECT_EQ(cfg->web_socket_url, "w:2");
  EXPECT_EQ(cfg->redis_addr, "r:6379");
  EXPECT_EQ(cfg->redis_password, "pw");
  EXPECT_EQ(cfg->redis_db, 4);
  EXPECT_EQ(cfg->bind_address, "127.0.0.1");
  EXPECT_EQ(cfg->ws_path, "/x");
  EXPECT_EQ(cfg->threads, 5u);
  EXPECT_EQ(cfg->app_ids, (std::vector<uint32_t>{10, 11}));
  EXPECT_EQ(cfg->heartbeat_timeout, 61s);
  EXPECT_EQ(cfg->ping_interval, 6s);
  EXPECT_EQ(cfg->handshake_timeout, 7s);
  EXPECT_EQ(cfg->close_timeout, 8s);
  EXPECT_EQ(cfg->shutdown_timeout, 9s);
  EXPECT_EQ(cfg->send_queue_bytes, 3u << 10);
  EXPECT_EQ(cfg->max_message_bytes, 1u << 10);
  EXPECT_EQ(cfg->max_connections, 12u);
  EXPECT_EQ(cfg->log_level, "error");
  EXPECT_EQ(cfg->ready_file, "ready");
}

TEST_F(ConfigTest, FlagValueForms) {
  const auto cfg =
      Load({"--heartbeat-timeout", "0.25", "--ping-interval=0.1", "--send-queue-bytes", "64K",
            "--max-message-bytes", "1M", "--app-ids", " 7, 8 ,9,7", "--redis-db=3", "--threads",
            "1024", "--log-level", "Trace", "--ws-port", "1", "--ws-port", "2"});
  ASSERT_TRUE(cfg);
  EXPECT_EQ(cfg->heartbeat_timeout, 250ms);
  EXPECT_EQ(cfg->ping_interval, 100ms);
  EXPECT_EQ(cfg->send_queue_bytes, 64u << 10);
  EXPECT_EQ(cfg->max_message_bytes, 1u << 20);
  EXPECT_EQ(cfg->app_ids, (std::vector<uint32_t>{7, 8, 9}));  // duplicates dropped
  EXPECT_EQ(cfg->redis_db, 3);
  EXPECT_EQ(cfg->threads, 1024u);
  EXPECT_EQ(cfg->log_level, "trace");
  EXPECT_EQ(cfg->ws_port, 2);  // the last occurrence wins
}

TEST_F(ConfigTest, EmptyStringEnvClearsAStringOption) {
  WriteFile("config/app.yaml", kUpstreamAppYaml);
  SetEnv("IMGATE_LOG_FILE", "");
  const auto cfg = Load({});
  ASSERT_TRUE(cfg);
  EXPECT_EQ(cfg->log_file, "");
  EXPECT_EQ(cfg->redis_addr, "localhost:6379");
}

// --- errors -----------------------------------------------------------------------------------

TEST_F(ConfigTest, FlagErrorsNameOptionSourceAndValue) {
  ExpectLoadError({"--ws-port", "abc"}, {"--ws-port", "command-line flag", "\"abc\""});
  ExpectLoadError({"--http-port", "70000"}, {"--http-port", "\"70000\"", "0..65535"});
  ExpectLoadError({"--rpc-port", "80x"}, {"--rpc-port", "\"80x\""});
  ExpectLoadError({"--heartbeat-timeout=-5"}, {"--heartbeat-timeout", "\"-5\"", "negative"});
  ExpectLoadError({"--close-timeout", "inf"}, {"--close-timeout", "\"inf\""});
  ExpectLoadError({"--app-ids", ""}, {"--app-ids", "empty"});
  ExpectLoadError({"--app-ids", "1,,2"}, {"--app-ids", "\"1,,2\""});
  ExpectLoadError({"--log-level", "loud"}, {"--log-level", "\"loud\""});
  ExpectLoadError({"--threads", "2000"}, {"--threads", "\"2000\""});
  ExpectLoadError({"--send-queue-bytes", "12X"}, {"--send-queue-bytes", "\"12X\""});
  ExpectLoadError({"--max-connections", "1.5"}, {"--max-connections", "\"1.5\""});
  ExpectLoadError({"--redis-db=-1"}, {"--redis-db", "\"-1\""});
  ExpectLoadError({"--max-message-bytes", "99999999999999999999999"}, {"--max-message-bytes"});
}

TEST_F(ConfigTest, EnvErrorsNameVariableAndValue) {
  SetEnv("IMGATE_HEARTBEAT_TIMEOUT", "-5");
  ExpectLoadError({}, {"IMGATE_HEARTBEAT_TIMEOUT", "environment", "\"-5\""});
  unsetenv("IMGATE_HEARTBEAT_TIMEOUT");
  SetEnv("IMGATE_WS_PORT", "");
  ExpectLoadError({}, {"IMGATE_WS_PORT", "environment", "\"\""});
  unsetenv("IMGATE_WS_PORT");
  SetEnv("IMGATE_APP_IDS", " ");
  ExpectLoadError({}, {"IMGATE_APP_IDS", "empty"});
}

TEST_F(ConfigTest, BadEnvIsReportedEvenWhenAFlagOverridesIt) {
  // Every source is checked; a broken environment is not silently masked.
  SetEnv("IMGATE_WS_PORT", "nope");
  ExpectLoadError({"--ws-port", "1"}, {"IMGATE_WS_PORT", "\"nope\""});
}

TEST_F(ConfigTest, CommandLineSyntaxErrors) {
  ExpectLoadError({"--bogus", "1"}, {"command line", "--bogus"});
  ExpectLoadError({"stray-positional"}, {"command line"});
  ExpectLoadError({"--ws-port"}, {"command line", "ws-port"});
}

TEST_F(ConfigTest, ValidationRunsOnLoadedConfig) {
  ExpectLoadError({"--ping-interval", "0"}, {"imgate.pingInterval", "--ping-interval"});
  ExpectLoadError({"--heartbeat-timeout", "0.0001"}, {"imgate.heartbeatTimeout"});
  ExpectLoadError({"--ws-path", "acc"}, {"imgate.wsPath", "'/'"});
  ExpectLoadError({"--send-queue-bytes", "1023"}, {"imgate.sendQueueBytes", "1023"});
}

// --- validate() -------------------------------------------------------------------------------

TEST(ConfigValidate, EachConstraint) {
  Config c;
  c.threads = 1025;
  ExpectValidateError(c, "imgate.threads");
  c = {};
  c.app_ids.clear();
  ExpectValidateError(c, "imgate.appIDs");
  c = {};
  c.ws_path = "acc";
  ExpectValidateError(c, "imgate.wsPath");
  c = {};
  c.ws_path = "";
  ExpectValidateError(c, "imgate.wsPath");
  c = {};
  c.heartbeat_timeout = 0ms;
  ExpectValidateError(c, "imgate.heartbeatTimeout");
  c = {};
  c.ping_interval = -1ms;
  ExpectValidateError(c, "imgate.pingInterval");
  c = {};
  c.handshake_timeout = 0ms;
  ExpectValidateError(c, "imgate.handshakeTimeout");
  c = {};
  c.close_timeout = 0ms;
  ExpectValidateError(c, "imgate.closeTimeout");
  c = {};
  c.shutdown_timeout = 0ms;
  ExpectValidateError(c, "imgate.shutdownTimeout");
  c = {};
  c.send_queue_bytes = 1023;
  ExpectValidateError(c, "imgate.sendQueueBytes");
  c = {};
  c.max_message_bytes = 127;
  ExpectValidateError(c, "imgate.maxMessageBytes");
  c = {};
  c.log_level = "verbose";
  ExpectValidateError(c, "imgate.logLevel");
  c = {};
  c.bind_address = "";
  ExpectValidateError(c, "imgate.bindAddress");
}

TEST(ConfigValidate, BoundariesAreAccepted) {
  Config c;
  c.threads = 1024;
  c.send_queue_bytes = 1024;
  c.max_message_bytes = 128;
  c.heartbeat_timeout = 1ms;
  c.ping_interval = 10min;  // longer than the heartbeat timeout: allowed (pings never fire)
  c.max_connections = 0;
  c.app_ids = {0};
  for (const char* level : {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
    c.log_level = level;
    EXPECT_NO_THROW(validate(c)) << level;
  }
}

// --- --help / --version -------------------------------------------------------------------

const std::vector<std::string> kAllFlags = {"--config",
                                            "--http-port",
                                            "--ws-port",
                                            "--rpc-port",
                                            "--http-url",
                                            "--bind",
                                            "--ws-path",
                                            "--threads",
                                            "--app-ids",
                                            "--heartbeat-timeout",
                                            "--ping-interval",
                                            "--handshake-timeout",
                                            "--close-timeout",
                                            "--shutdown-timeout",
                                            "--send-queue-bytes",
                                            "--max-message-bytes",
                                            "--max-connections",
                                            "--log-level",
                                            "--log-file",
                                            "--ready-file",
                                            "--web-socket-url",
                                            "--redis-addr",
                                            "--redis-password",
                                            "--redis-db",
                                            "--help",
                                            "--version"};

TEST_F(ConfigTest, HelpReturnsNulloptAndListsEveryFlag) {
  for (const char* help : {"--help", "-h"}) {
    EXPECT_FALSE(Load({"--ws-port", "1", help}).has_value());
    const std::string text = out_.str();
    for (const std::string& flag : kAllFlags) {
      EXPECT_NE(text.find(flag), std::string::npos) << flag << " missing from:\n" << text;
    }
    EXPECT_NE(text.find("IMGATE_HEARTBEAT_TIMEOUT"), std::string::npos);
    EXPECT_NE(text.find("imgate.heartbeatTimeout"), std::string::npos);
    EXPECT_NE(text.find("=360"), std::string::npos) << "default not shown:\n" << text;
    EXPECT_NE(text.find("101,102,103,104"), std::string::npos);
    EXPECT_NE(text.find("Precedence"), std::string::npos);
  }
}

TEST_F(ConfigTest, HelpWinsOverBadValues) {
  EXPECT_FALSE(Load({"--ws-port", "abc", "--help"}).has_value());
  EXPECT_FALSE(out_.str().empty());
}

TEST_F(ConfigTest, VersionReturnsNullopt) {
  EXPECT_FALSE(Load({"--version"}).has_value());
  EXPECT_EQ(out_.str(), std::string("imgate ") + IMGATE_VERSION + "\n");
}

TEST_F(ConfigTest, ZeroArgcIsTreatedAsNoArguments) {
  const char* argv[] = {nullptr};
  std::ostringstream out;
  EXPECT_TRUE(load_config(0, argv, out).has_value());
}

// --api-key is repeatable; env and YAML take comma-separated lists; the key file adds keys.
TEST_F(ConfigTest, ApiKeysFromFlagsEnvYamlAndFile) {
  using Keys = std::vector<std::string>;
  EXPECT_TRUE(Load({})->api_keys.empty());
  EXPECT_FALSE(Load({})->protect_metrics);
  EXPECT_EQ(Load({"--api-key", "k1", "--api-key", "k2,k3"})->api_keys, (Keys{"k1", "k2", "k3"}));
  const std::string file = WriteFile("keys.txt", "# comment\n\n  f1  \nf2\n");
  EXPECT_EQ(Load({"--api-key", "k1", "--api-key-file", file})->api_keys, (Keys{"k1", "f1", "f2"}));
  EXPECT_TRUE(Load({"--api-key", "k1", "--protect-metrics"})->protect_metrics);
  EXPECT_FALSE(Load({"--api-key", "k1", "--protect-metrics=false"})->protect_metrics);
  Config cfg;
  apply_yaml(cfg, "imgate:\n  apiKeys: [y1, y2]\n  protectMetrics: true\n");
  EXPECT_EQ(cfg.api_keys, (Keys{"y1", "y2"}));
  EXPECT_TRUE(cfg.protect_metrics);
  ExpectLoadError({"--api-key", "has space"}, {"--api-key", "visible ASCII"});
  ExpectLoadError({"--api-key-file", WriteFile("empty.txt", "# none\n")}, {"holds no key"});
  ExpectLoadError({"--api-key-file", "missing.txt"}, {"cannot read"});
  ExpectLoadError({"--protect-metrics"}, {"--protect-metrics", "needs an API key"});
  SetEnv("IMGATE_API_KEY", "e1, e2");
  EXPECT_EQ(Load({})->api_keys, (Keys{"e1", "e2"}));
}

TEST_F(ConfigTest, AllowedOriginsAreValidated) {
  using List = std::vector<std::string>;
  EXPECT_TRUE(Load({})->allowed_origins.empty());
  EXPECT_EQ(Load({"--allowed-origins", "https://a.example.com, https://*.example.org:8443"})
                ->allowed_origins,
            (List{"https://a.example.com", "https://*.example.org:8443"}));
  for (const char* bad : {"example.com", "https://*.com", "https://a.*.example.com",
                          "https://a.example.com/path", "https://a..example.com", "null"}) {
    ExpectLoadError({"--allowed-origins", bad}, {"--allowed-origins"});
  }
}

TEST_F(ConfigTest, PerClientLimitDefaults) {
  const Config c = *Load({});
  EXPECT_EQ(c.ip_max_connections, 1000u);
  EXPECT_EQ(c.ip_upgrade_rate, 50.0);
  EXPECT_EQ(c.ip_upgrade_burst, 100u);
  EXPECT_EQ(c.message_rate, 100.0);
  EXPECT_EQ(c.message_burst, 200u);
  EXPECT_EQ(c.ip_table_size, 1u << 20);
  EXPECT_TRUE(c.trusted_proxies.empty());
}

TEST_F(ConfigTest, PerClientLimitsFromFlagsEnvAndYaml) {
  const Config f =
      *Load({"--ip-max-connections", "5", "--ip-upgrade-rate", "0.5", "--ip-upgrade-burst", "3",
             "--message-rate=2.25", "--message-burst", "7", "--ip-table-size", "4096",
             "--trusted-proxies", "10.0.0.0/8", "--trusted-proxies", "::1/128, 127.0.0.1"});
  EXPECT_EQ(f.ip_max_connections, 5u);
  EXPECT_EQ(f.ip_upgrade_rate, 0.5);
  EXPECT_EQ(f.ip_upgrade_burst, 3u);
  EXPECT_EQ(f.message_rate, 2.25);
  EXPECT_EQ(f.message_burst, 7u);
  EXPECT_EQ(f.ip_table_size, 4096u);
  EXPECT_EQ(f.trusted_proxies, (std::vector<std::string>{"10.0.0.0/8", "::1/128", "127.0.0.1"}));
  // 0 turns each limit off.
  const Config off =
      *Load({"--ip-max-connections", "0", "--ip-upgrade-rate", "0", "--ip-upgrade-burst", "0",
             "--message-rate", "0", "--message-burst", "0"});
  EXPECT_EQ(off.ip_max_connections, 0u);
  EXPECT_EQ(off.ip_upgrade_rate, 0.0);
  EXPECT_EQ(off.message_rate, 0.0);
  SetEnv("IMGATE_MESSAGE_RATE", "30");
  SetEnv("IMGATE_TRUSTED_PROXIES", "192.168.0.0/16,fd00::/8");
  const Config e = *Load({});
  EXPECT_EQ(e.message_rate, 30.0);
  EXPECT_EQ(e.trusted_proxies, (std::vector<std::string>{"192.168.0.0/16", "fd00::/8"}));
  Config y;
  apply_yaml(y,
             "imgate:\n  ipMaxConnections: 9\n  ipUpgradeRate: 1.5\n  messageBurst: 11\n"
             "  trustedProxies: [10.1.0.0/16, \"::1\"]\n");
  EXPECT_EQ(y.ip_max_connections, 9u);
  EXPECT_EQ(y.ip_upgrade_rate, 1.5);
  EXPECT_EQ(y.message_burst, 11u);
  EXPECT_EQ(y.trusted_proxies, (std::vector<std::string>{"10.1.0.0/16", "::1"}));
}

TEST_F(ConfigTest, MaxHttpConnectionsFromFlagsEnvAndYamlAndItsBounds) {
  EXPECT_EQ(Load({})->max_http_connections, 128u);
  EXPECT_EQ(Load({"--max-http-connections", "16"})->max_http_connections, 16u);
  SetEnv("IMGATE_MAX_HTTP_CONNECTIONS", "300");
  EXPECT_EQ(Load({})->max_http_connections, 300u);
  EXPECT_EQ(Load({"--max-http-connections=1"})->max_http_connections, 1u);  // the flag wins
  unsetenv("IMGATE_MAX_HTTP_CONNECTIONS");
  Config y;
  apply_yaml(y, "imgate:\n  maxHttpConnections: 64\n");
  EXPECT_EQ(y.max_http_connections, 64u);
  // Unbounded would let idle connections take the descriptors /healthz needs.
  ExpectLoadError({"--max-http-connections", "0"}, {"imgate.maxHttpConnections", "between 1"});
  ExpectLoadError({"--max-http-connections", "100001"}, {"imgate.maxHttpConnections", "100000"});
  ExpectLoadError({"--max-http-connections", "-1"}, {"--max-http-connections", "\"-1\""});
}

TEST_F(ConfigTest, PerClientLimitsAreValidated) {
  ExpectLoadError({"--ip-upgrade-rate", "-1"}, {"--ip-upgrade-rate", "must not be negative"});
  ExpectLoadError({"--message-rate", "fast"}, {"--message-rate", "per second"});
  ExpectLoadError({"--message-rate", "inf"}, {"--message-rate"});
  ExpectLoadError({"--message-rate", "2e6"}, {"--message-rate", "at most 1000000"});
  ExpectLoadError({"--message-burst", "1000001"}, {"--message-burst", "burst"});
  ExpectLoadError({"--ip-max-connections", "-5"}, {"--ip-max-connections"});
  ExpectLoadError({"--message-burst", "0"}, {"imgate.messageBurst", "at least 1"});
  ExpectLoadError({"--ip-upgrade-burst", "0"}, {"imgate.ipUpgradeBurst", "at least 1"});
  ExpectLoadError({"--ip-table-size", "10"}, {"imgate.ipTableSize", "between 64"});
  for (const char* bad :
       {"10.0.0.0/33", "10.0.0.1/8", "proxy.example.com", "::1/129", "1.2.3.4:80"}) {
    ExpectLoadError({"--trusted-proxies", std::string("127.0.0.1/32,") + bad},
                    {"--trusted-proxies", bad});
  }
  SetEnv("IMGATE_IP_UPGRADE_BURST", "x");
  ExpectLoadError({}, {"IMGATE_IP_UPGRADE_BURST"});
}

TEST_F(ConfigTest, AuthOptionsFromFlagsEnvAndYaml) {
  const Config d = *Load({});
  EXPECT_TRUE(d.auth_hmac_secret.empty());
  EXPECT_TRUE(d.auth_hmac_secret_file.empty());
  EXPECT_TRUE(d.auth_public_key.empty());
  EXPECT_EQ(d.auth_leeway, 30s);
  EXPECT_EQ(d.max_failed_logins, 5u);
  const Config f = *Load({"--auth-hmac-secret-file", "/run/secret", "--auth-public-key", "/etc/k.pem",
                          "--auth-leeway", "2.5", "--max-failed-logins", "0"});
  EXPECT_EQ(f.auth_hmac_secret_file, "/run/secret");
  EXPECT_EQ(f.auth_public_key, "/etc/k.pem");
  EXPECT_EQ(f.auth_leeway, 2500ms);
  EXPECT_EQ(f.max_failed_logins, 0u);
  SetEnv("IMGATE_AUTH_HMAC_SECRET", "from-the-environment");
  EXPECT_EQ(Load({})->auth_hmac_secret, "from-the-environment");
  Config y;
  apply_yaml(y, "imgate:\n  authHmacSecretFile: /s\n  authLeeway: 7\n  maxFailedLogins: 9\n");
  EXPECT_EQ(y.auth_hmac_secret_file, "/s");
  EXPECT_EQ(y.auth_leeway, 7s);
  EXPECT_EQ(y.max_failed_logins, 9u);
}

// The secret is given one way; the leeway and the failed-login limit have a maximum.
// (Whether a secret file can be read, and a secret's length, are checked when the
// gateway builds its verifier: TokenTest.*SecretFile*.)
TEST_F(ConfigTest, ConflictingOrOutOfRangeAuthOptionsAreRefused) {
  ExpectLoadError({"--auth-hmac-secret", "s-0123456789-0123456789-0123456789", "--auth-hmac-secret-file",
                   "secret.txt"},
                  {"imgate.authHmacSecret", "imgate.authHmacSecretFile", "exclusive"});
  // Also when they come from different sources.
  SetEnv("IMGATE_AUTH_HMAC_SECRET_FILE", "secret.txt");
  ExpectLoadError({"--auth-hmac-secret", "s-0123456789-0123456789-0123456789"}, {"exclusive"});
  SetEnv("IMGATE_AUTH_HMAC_SECRET_FILE", "");
  EXPECT_TRUE(Load({"--auth-hmac-secret", "s-0123456789-0123456789-0123456789"}));
  ExpectLoadError({"--auth-leeway", "3601"}, {"imgate.authLeeway", "at most 3600 seconds"});
  ExpectLoadError({"--auth-leeway", "3600.5"}, {"imgate.authLeeway"});
  ExpectLoadError({"--auth-leeway", "-1"}, {"--auth-leeway"});
  EXPECT_EQ(Load({"--auth-leeway", "3600"})->auth_leeway, 3600s);
  EXPECT_EQ(Load({"--auth-leeway", "0"})->auth_leeway, 0s);
  ExpectLoadError({"--max-failed-logins", "1001"}, {"imgate.maxFailedLogins", "at most 1000"});
  EXPECT_EQ(Load({"--max-failed-logins", "1000"})->max_failed_logins, 1000u);
}

// docs/configuration.md must document every flag and env variable that --help lists.
TEST_F(ConfigTest, DocsMentionEveryFlagAndEnvVariable) {
  std::ifstream in(kDocsPath);
  if (!in) GTEST_SKIP() << "docs not found at " << kDocsPath;
  const std::string docs{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  ASSERT_FALSE(Load({"--help"}).has_value());
  const std::string help = out_.str();
  const std::regex token(R"((--[a-z][a-z-]*|IMGATE_[A-Z_]+|(app|redis|imgate)\.[A-Za-z]+))");
  int seen = 0;
  for (auto it = std::sregex_iterator(help.begin(), help.end(), token);
       it != std::sregex_iterator(); ++it, ++seen) {
    EXPECT_NE(docs.find(it->str()), std::string::npos) << it->str() << " not in " << kDocsPath;
  }
  EXPECT_GT(seen, 60);
}

}  // namespace
}  // namespace imgate
