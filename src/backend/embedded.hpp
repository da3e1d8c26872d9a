// EmbeddedBackend: one node, no external service. Presence is the node's
// Directory, pushes go to the Hub, msgIDs are remembered in memory
// (backend/dedup.hpp). enter / exit come from the Hub's own local PresenceSink.
#pragma once

#include <memory>

#include "backend/backend.hpp"
#include "backend/dedup.hpp"
#include "backend/memory_history.hpp"
#include "metrics/counters.hpp"
#include "registry/shard.hpp"

namespace imgate {

class EmbeddedBackend final : public Backend {
 public:
  // History on when limits.per_stream > 0 (the Hub is then told of logouts).
  EmbeddedBackend(Hub& hub, MsgIdDedup& dedup, Counters& counters, HistoryLimits limits = {});
  ~EmbeddedBackend() override;

  bool healthy() const override { return true; }
  boost::json::value status() const override { return nullptr; }
  void list_users(AppId app, std::function<void(bool, std::vector<std::string>)> done) override;
  void online(AppId app, std::string user, std::function<void(bool, bool)> done) override;
  void publish(PushRequest push, PushDone done) override;
  bool history_on() const override { return history_ != nullptr; }
  void read_stream(const UserKey& stream, std::optional<StreamPos> since, std::size_t limit,
                   std::string reader, std::function<void(bool, StreamRead)> done) override;
  StreamPos stream_position(const UserKey& stream) override;
  std::optional<StreamPos> user_left_at(const UserKey& user) override;

  HistoryStats history_stats() const override;

 private:
  Hub& hub_;
  MsgIdDedup& dedup_;
  Counters& counters_;
  std::unique_ptr<MemoryHistory> history_;  // null: history off
};

// Shared by both backends: delivers `push` on this node only; false when it
// goes to a user who has no connection here.
bool deliver_on_this_node(Hub& hub, const PushRequest& push);
// Counts a duplicate msgID and answers it as upstream does (200, {}).
void answer_duplicate(Counters& counters, const PushDone& done);
// The answer to a room push, held while the node has more than
// Hub::kRoomPushesInFlight room pushes in flight (Hub::after_room_backlog).
PushDone paced(Hub& hub, PushDone done);

}  // namespace imgate
