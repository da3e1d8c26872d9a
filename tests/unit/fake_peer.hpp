// Test doubles for the registry: a Peer that records what the registry asked of it, a Poster
// whose tasks the test runs explicitly (per shard, FIFO), and a guard that silences logging.
#pragma once

#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "registry/shard.hpp"
#include "registry/types.hpp"

namespace imgate::test {

// A push as a client sees it.
struct Push {
  std::string seq;
  std::string cmd;
  uint32_t code = 0;
  std::string code_msg;
  std::string msg;
  std::string from;
};

// Decodes a push; anything that is not one (tests also send plain text frames) gives a Push
// with empty fields.
inline Push parse_push(const Frame& frame) {
  Push p;
  boost::json::error_code ec;
  boost::json::value v = boost::json::parse(frame->payload(), ec);
  if (ec || !v.is_object()) return p;
  const auto* seq = v.as_object().if_contains("seq");
  const auto* cmd = v.as_object().if_contains("cmd");
  const auto* response = v.as_object().if_contains("response");
  if (!seq || !seq->is_string() || !cmd || !cmd->is_string() || !response ||
      !response->is_object()) {
    return p;
  }
  p.seq = seq->get_string();
  p.cmd = cmd->get_string();
  const auto& r = response->get_object();
  if (const auto* code = r.if_contains("code"); code && code->is_number()) {
    p.code = static_cast<uint32_t>(code->to_number<uint64_t>());
  }
  if (const auto* msg = r.if_contains("codeMsg"); msg && msg->is_string()) {
    p.code_msg = msg->get_string();
  }
  if (const auto* data = r.if_contains("data"); data && data->is_object()) {
    if (const auto* m = data->get_object().if_contains("msg"); m && m->is_string()) {
      p.msg = m->get_string();
    }
    if (const auto* f = data->get_object().if_contains("from"); f && f->is_string()) {
      p.from = f->get_string();
    }
  }
  return p;
}

// Records every call. Single-threaded use (like a real Peer: only its shard's thread calls it);
// results are read after the threads have been joined. Frames are decoded once, on arrival.
class FakePeer final : public Peer {
 public:
  void send(const Frame& frame) override {
    frames.push_back(frame);
    decoded_.push_back(parse_push(frame));
  }
  void ping() override { ++pings; }
  void close(uint16_t code, std::string_view reason) override {
    closes.emplace_back(code, std::string(reason));
  }

  const std::vector<Push>& pushes() const { return decoded_; }

  void clear_frames() {
    frames.clear();
    decoded_.clear();
  }

  // Number of pushes with this cmd from this user.
  std::size_t count(std::string_view cmd, std::string_view from) const {
    std::size_t n = 0;
    for (const auto& p : decoded_) n += (p.cmd == cmd && p.from == from) ? 1 : 0;
    return n;
  }

  // "enter"/"exit" sequence received from `from`, in arrival order.
  std::vector<std::string> presence_of(std::string_view from) const {
    std::vector<std::string> out;
    for (const auto& p : decoded_) {
      if (p.from == from && (p.cmd == "enter" || p.cmd == "exit")) out.push_back(p.cmd);
    }
    return out;
  }

  std::vector<Frame> frames;
  int pings = 0;
  std::vector<std::pair<uint16_t, std::string>> closes;

 private:
  std::vector<Push> decoded_;
};

// Tasks posted to shard i wait in queue i until the test runs them; each queue is FIFO, as an
// event loop's would be.
class TaskQueues {
 public:
  explicit TaskQueues(uint32_t shards) : queues_(shards) {}

  Hub::Poster poster() {
    return [this](uint32_t index, Hub::Task task) { queues_.at(index).push_back(std::move(task)); };
  }

  std::size_t pending(uint32_t index) const { return queues_.at(index).size(); }
  std::size_t pending() const {
    std::size_t n = 0;
    for (const auto& q : queues_) n += q.size();
    return n;
  }

  bool run_one(uint32_t index) {
    auto& q = queues_.at(index);
    if (q.empty()) return false;
    Hub::Task task = std::move(q.front());
    q.pop_front();
    task();
    ++ran_;
    return true;
  }

  std::size_t run_all(uint32_t index) {
    std::size_t n = 0;
    while (run_one(index)) ++n;
    return n;
  }

  // Runs everything, shards in index order, until no queue holds a task.
  std::size_t drain() {
    std::size_t n = 0;
    while (pending() > 0) {
      for (uint32_t i = 0; i < queues_.size(); ++i) n += run_all(i);
    }
    return n;
  }

  // Runs up to `max` tasks, each from a randomly chosen non-empty shard (FIFO within a shard).
  template <class Rng>
  void run_some(Rng& rng, std::size_t max) {
    for (std::size_t k = 0; k < max; ++k) {
      // Pick the n-th non-empty queue, n uniform over the non-empty ones.
      std::size_t ready = 0;
      for (const auto& q : queues_) ready += q.empty() ? 0 : 1;
      if (ready == 0) return;
      std::size_t n = std::uniform_int_distribution<std::size_t>(0, ready - 1)(rng);
      for (uint32_t i = 0; i < queues_.size(); ++i) {
        if (!queues_[i].empty() && n-- == 0) {
          run_one(i);
          break;
        }
      }
    }
  }

  std::size_t ran() const { return ran_; }

 private:
  std::vector<std::deque<Hub::Task>> queues_;
  std::size_t ran_ = 0;
};

// Silences spdlog for the lifetime of the guard (timeouts log at info; thousands of them would
// dominate the runtime), restoring the previous level afterwards.
class QuietLogs {
 public:
  QuietLogs() : saved_(spdlog::get_level()) { spdlog::set_level(spdlog::level::off); }
  ~QuietLogs() { spdlog::set_level(saved_); }
  QuietLogs(const QuietLogs&) = delete;
  QuietLogs& operator=(const QuietLogs&) = delete;

 private:
  spdlog::level::level_enum saved_;
};

}  // namespace imgate::test
