// Shard: the connections of one event-loop thread, and Hub: the shards plus
// the node-wide Directory and the way to post work between threads.
//
// Lifecycle contract (docs/architecture.md has the long form):
//  - A connection exists in the registry from add() to unlink(); add() creates
//    its id, so no event can name a connection before it exists, and ids are
//    never reused, so nothing can bring one back after unlink().
//  - Every Shard method runs on that shard's thread only. All events of one
//    connection (add, login, heartbeat, frames, timeout, close, overflow,
//    shutdown) therefore happen in one sequential order.
//  - unlink() is the only way out and is idempotent: the first call removes the
//    connection from every index (shard tables, room index, user index,
//    directory, liveness) and counts it; later calls return false and do nothing.
//  - Cross-thread work (fan-out to other shards' connections) is a posted task
//    carrying one shared immutable Frame. A room push reaches a big room's
//    members in slices (Hub::drain), later work to the shard waiting behind it.
#pragma once

#include <algorithm>
#include <atomic>
#include <deque>
#include <memory>
#include <optional>
#include <boost/unordered/unordered_flat_set.hpp>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "metrics/counters.hpp"
#include "registry/directory.hpp"
#include "registry/stream.hpp"
#include "registry/timing_wheel.hpp"
#include "registry/types.hpp"

namespace imgate {

struct LivenessSettings {
  std::chrono::milliseconds heartbeat_timeout{360'000};
  std::chrono::milliseconds ping_interval{30'000};
};

// When enter / exit are pushed (upstream: always). A room of N users costs N
// pushes per enter, so N logins cost N^2: rooms above `max_room` users, and
// the `quiet` appIDs, get none.
struct PresencePolicy {
  std::size_t max_room = 0;  // 0 = no limit
  std::vector<AppId> quiet;

  bool announces(AppId app, std::size_t room_size) const {
    if (max_room != 0 && room_size > max_room) return false;
    return std::find(quiet.begin(), quiet.end(), app) == quiet.end();
  }
};

enum class LoginStatus { kOk, kAlreadyLoggedIn, kUnknownConnection };

// Where "user came online / went offline on this node" goes. The Hub's own
// (the embedded default) pushes enter / exit to the local room, within the
// PresencePolicy; in cluster mode the cluster decides cluster-wide and
// publishes them. Called under the Directory lock, in the order of the
// changes: must only post. `delivered`: history on, the user stream position
// the node delivered to the user (Directory::remove), where its offline
// messages start if no node holds the user any more.
class PresenceSink {
 public:
  virtual void user_online(const UserKey& key) = 0;
  virtual void user_offline(const UserKey& key, const std::optional<StreamPos>& delivered) = 0;

 protected:
  ~PresenceSink() = default;
};

class Hub;

// A room push as every shard delivers it: built once, shared by the shards'
// parts (Hub::push_room).
struct RoomPush {
  RoomPush(AppId room, std::string except, Frame push, uint64_t stream_offset, uint32_t shards)
      : app(room), except_user(std::move(except)), frame(std::move(push)), offset(stream_offset),
        created(Clock::now()), shards_left(shards) {}

  const AppId app;
  const std::string except_user;
  const Frame frame;
  const uint64_t offset;  // history on: the push's offset in the room stream, else 0
  const TimePoint created;
  std::atomic<uint32_t> shards_left;  // parts not finished yet
};

// One shard's part of room pushes to one room that were queued one after
// the other (Hub::drain takes them together), delivered in slices
// (Shard::deliver_room): each recipient gets all of them in a row, so that
// their frames leave in one write.
struct RoomFanout {
  std::vector<std::shared_ptr<RoomPush>> pushes;  // one room, in inbox order
  bool started = false;
  // When the room is larger than the first slice: its members on the shard
  // then, by id (an id outlives its connection, a pointer would not).
  std::vector<ConnId> recipients;
  std::size_t next = 0;           // recipients[next..] are still to go
  std::vector<std::size_t> sent;  // per push
};

class Shard {
 public:
  Shard(Hub& hub, uint32_t index, TimePoint start);
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  uint32_t index() const { return index_; }
  // The shard a connection id belongs to (its top bits).
  static uint32_t index_of(ConnId id);

  // Registers a connection whose transport is `peer`; `peer` must stay valid
  // until unlink() of the returned id.
  ConnId add(Peer& peer, TimePoint now);

  // Marks the connection as (app, user): counts as a heartbeat, enters the
  // room and user indexes and the directory; if this is the user's first
  // connection on the node, `enter` is pushed to the room's other users.
  // `first` (optional) tells whether it was the user's first connection on the node.
  LoginStatus login(ConnId id, AppId app, std::string_view user, TimePoint now,
                    bool* first = nullptr);

  // A successful heartbeat command; false when the connection is not logged in.
  bool heartbeat(ConnId id, TimePoint now);

  // Any frame received (message, ping, pong) refreshes liveness.
  void touch(ConnId id, TimePoint now);

  bool contains(ConnId id) const { return conns_.contains(id); }
  bool logged_in(ConnId id) const;
  // The (app, user) a connection logged in as; null when it is not logged in
  // (or gone). Valid until the connection's unlink().
  const UserKey* user_of(ConnId id) const;

  // Login tokens: the connection is unlinked and closed (4001) once `deadline`
  // passes, unless a later call (a refresh) moves it. Only for logged-in
  // connections; false otherwise.
  bool set_token_deadline(ConnId id, TimePoint deadline);
  std::optional<TimePoint> token_deadline(ConnId id) const;
  // Counts a refused login / refresh of the connection; returns its total.
  std::size_t count_failed_login(ConnId id);

  // Sends `frame` to one connection if it is still registered (a reply that
  // was computed elsewhere, e.g. after a cluster round trip).
  bool send_to(ConnId id, const Frame& frame);

  // The one function that ends a connection (see contract above). When the
  // user's last connection goes, `exit` is pushed to the room.
  bool unlink(ConnId id, EndReason reason);

  // Liveness: pings idle connections, unlinks and closes (1001) the ones idle
  // past heartbeat_timeout, and closes (4001) the ones whose token deadline
  // passed. Cost: the entries due, not all connections.
  void tick(TimePoint now);

  // Shutdown: unlinks every connection and asks its peer to close.
  void close_all(uint16_t code, std::string_view reason);

  // Local delivery of an already-built frame (on this shard's thread).
  // `offset` (history on: the push's offset in its stream, else 0) skips the
  // connections that got it from history already (set_floors).
  std::size_t deliver_room(AppId app, std::string_view except_user, const Frame& frame,
                           uint64_t offset = 0);
  std::size_t deliver_user(const UserKey& key, const Frame& frame, uint64_t offset = 0);
  // One slice of room pushes: about `budget` more deliveries (each recipient
  // examined gets every push, in order, and counts once per push), lowering
  // `budget`; true once all had their turn. The recipients are the room's
  // members on this shard when the first slice runs: a connection that logs
  // in later does not get the pushes, one that is unlinked before its turn is
  // skipped. A room that fits in the first slice is delivered at once,
  // without a list.
  bool deliver_room(RoomFanout& fanout, std::size_t& budget);

  // Recovery (docs/history.md): the connection got its room stream up to
  // `room` and its user stream up to `user` from history; live deliveries at
  // or below those offsets skip it (they were queued before it caught up).
  void set_floors(ConnId id, uint64_t room, uint64_t user);
  // The connection was sent its user stream up to `pos` from history
  // (offline messages, recovery): the node counts it as delivered to the
  // user (Directory::note_delivered).
  void note_delivered(ConnId id, const StreamPos& pos);
  std::size_t floors() const { return floors_.size(); }

  // Recovery read from Redis (answered later): deliveries to the connection
  // are held from hold() until release_hold(), which returns them in order.
  struct Held {
    bool room;        // room stream (else user stream or no stream)
    uint64_t offset;  // 0: not a stream push (enter / exit)
    Frame frame;
  };
  void hold(ConnId id);
  std::vector<Held> release_hold(ConnId id);

  // Registered connections; readable from any thread.
  std::size_t size() const { return size_.load(std::memory_order_relaxed); }
  std::vector<ConnId> ids() const;
  std::size_t wheel_entries() const { return wheel_.size(); }
  std::size_t token_deadlines() const { return deadline_order_.size(); }

 private:
  // Memory per connection matters (a million per node is the goal): a
  // connection's user key lives once, in its user_conns_ entry; the room
  // index is a flat set; a user's connections on this shard are a list
  // threaded through Conn.
  struct Conn {
    ConnId id = 0;
    Peer* peer = nullptr;
    const UserKey* key = nullptr;  // the user_conns_ entry's key; null until login
    Conn* next_of_user = nullptr;  // next connection of the same user on this shard
    TimePoint last_seen;
  };

  void check_liveness(ConnId id, TimePoint now);
  // A room push to one member: held, skipped (`except_user`, below its
  // floor) or sent; true when sent.
  bool deliver_to_member(Conn* conn, std::string_view except_user, const Frame& frame,
                         uint64_t offset, bool check_floors);
  void index_login(Conn& conn, AppId app, std::string_view user);
  void unindex_login(Conn& conn);

  Hub& hub_;
  const uint32_t index_;
  uint64_t next_seq_ = 0;
  std::unordered_map<ConnId, Conn> conns_;
  std::unordered_map<AppId, boost::unordered_flat_set<Conn*>> room_members_;
  std::unordered_map<UserKey, Conn*, UserKeyHash> user_conns_;  // first of the user's list
  TimingWheel wheel_;
  // Only connections that use them pay for these (token mode): the token
  // deadline (one entry per connection in both maps) and refused logins.
  std::unordered_map<ConnId, TimePoint> token_deadlines_;
  std::set<std::pair<TimePoint, ConnId>> deadline_order_;
  std::unordered_map<ConnId, uint32_t> failed_logins_;
  // Recovered connections until a live push above their floor arrives (both streams).
  struct Floors {
    uint64_t room = 0;
    uint64_t user = 0;
  };
  std::unordered_map<const Conn*, Floors> floors_;
  std::unordered_map<const Conn*, std::vector<Held>> holds_;
  // True when `conn` must not get push `offset` of the room (or user) stream.
  bool below_floor(const Conn* conn, uint64_t offset, bool room);
  std::atomic<std::size_t> size_{0};
};

class Hub {
 public:
  using Task = std::function<void()>;
  // Runs `task` later on shard `index`'s thread; never inline.
  using Poster = std::function<void(uint32_t index, Task task)>;

  // Runs `task` on shard `index`'s thread after every task sent to that shard
  // with send() before it, whichever thread sent them. (An io_context with one
  // thread runs what its own thread posts after what other threads post
  // meanwhile, so plain posting does not keep that order.) Pushes go this way:
  // their order on each shard is the order in which they were created, which
  // stream offsets and enter / exit rely on. A room push delivered in slices
  // keeps its place: what was sent after it runs after its last slice, so no
  // push overtakes an earlier one to the same connection.
  void send(uint32_t index, Task task);

  Hub(uint32_t shards, LivenessSettings liveness, Counters& counters, TimePoint start);

  void set_poster(Poster poster) { poster_ = std::move(poster); }
  // Replaces the local enter / exit decisions (null: back to the local ones).
  void set_presence_sink(PresenceSink* sink) { presence_sink_ = sink ? sink : &local_presence_; }
  void set_presence_policy(PresencePolicy policy) { policy_ = std::move(policy); }
  // Builds an enter / exit push (seq, "enter" | "exit", user). The wire format
  // belongs to the protocol layer: the server sets make_presence_push
  // (protocol/envelope.hpp), as it builds every other push before it reaches
  // the registry. Set before the loops run; required once users log in.
  using PresenceFrames =
      std::function<Frame(std::string_view seq, std::string_view cmd, std::string_view user)>;
  void set_presence_frames(PresenceFrames frames) { presence_frames_ = std::move(frames); }
  // History on: told when users leave (offline messages). Null: off.
  void set_history_hooks(HistoryHooks* hooks) { history_hooks_ = hooks; }
  HistoryHooks* history_hooks() const { return history_hooks_; }
  const PresencePolicy& presence_policy() const { return policy_; }

  // A user's first / last connection on this node (under the Directory lock).
  void user_came(const UserKey& key);
  void user_left(const UserKey& key, const std::optional<StreamPos>& delivered);

  uint32_t shard_count() const { return static_cast<uint32_t>(shards_.size()); }
  Shard& shard(uint32_t index) { return *shards_[index]; }
  Directory& directory() { return directory_; }
  const Directory& directory() const { return directory_; }
  Counters& counters() { return counters_; }
  const LivenessSettings& liveness() const { return liveness_; }

  // Fan-out from any thread: one task per shard, each carrying the same frame
  // (and its stream offset when history is on), delivered in slices (drain()).
  void push_room(AppId app, std::string except_user, Frame frame, uint64_t offset = 0);

  // Deliveries per turn of a shard's loop (drain()): a room push to more
  // members goes on in the next turn, after the work the loop got meanwhile
  // (HTTP requests, WebSocket reads, timers). docs/architecture.md has the
  // measurement behind the default.
  static constexpr std::size_t kFanoutSlice = 256;
  void set_fanout_slice(std::size_t deliveries) { slice_ = std::max<std::size_t>(deliveries, 1); }

  // Room pushes created and not yet delivered on every shard. The API answers
  // a room push once this is at most kRoomPushesInFlight (after_room_backlog):
  // a sender cannot queue pushes faster than the shards deliver them.
  static constexpr std::size_t kRoomPushesInFlight = 64;
  std::size_t room_pushes_in_flight() const;
  // Runs `then` now if at most kRoomPushesInFlight room pushes are in flight,
  // else on the shard thread that brings them back to that number.
  void after_room_backlog(std::function<void()> then);
  // Shutdown, before the loops go: forgets the waiting `then`s (an answer
  // holds its session, which belongs to a loop).
  void drop_waiting();
  // Returns false when the user has no connection on this node. History on:
  // the push's position (offset, epoch) becomes the user's delivered mark.
  bool push_user(const UserKey& key, Frame frame, uint64_t offset = 0,
                 std::string_view epoch = {});

  // A fresh push id (time-based start, then sequential): unique per process.
  uint64_t next_push_seq() { return push_seq_.fetch_add(1, std::memory_order_relaxed); }

  // enter / exit pushes for `user`, seq a fresh id (built by the PresenceFrames).
  Frame presence_frame(std::string_view cmd, std::string_view user);

  std::size_t connections() const;
  std::vector<std::size_t> connections_per_shard() const;

 private:
  std::vector<std::unique_ptr<Shard>> shards_;
  Directory directory_;
  LivenessSettings liveness_;
  Counters& counters_;
  Poster poster_;
  // What a shard's inbox holds: a task (one delivery's worth) or a room push.
  struct Item {
    Task task;
    std::shared_ptr<RoomPush> push;
  };
  // One ordered inbox per shard (send()): filled under its mutex, emptied by
  // one posted drain at a time, `slice_` deliveries per drain.
  struct Inbox {
    std::mutex mu;
    std::vector<Item> work;
    bool scheduled = false;
    // The shard thread's: the room pushes being delivered (first), then the
    // items taken out of `work`, oldest first.
    std::optional<RoomFanout> active;
    std::deque<Item> taken;
  };
  // Room pushes taken together at most (Inbox::active): the frames a
  // recipient gets in one turn.
  static constexpr std::size_t kMaxPushesTogether = 64;
  std::vector<std::unique_ptr<Inbox>> inboxes_;
  std::size_t slice_ = kFanoutSlice;
  void enqueue(uint32_t index, Item item);
  void drain(uint32_t index);
  void room_pushes_done(const RoomFanout& fanout);
  void room_push_done();
  mutable std::mutex flight_mu_;
  std::size_t room_pushes_in_flight_ = 0;
  std::vector<std::function<void()>> waiting_;  // after_room_backlog(), oldest first
  // This node alone decides: enter / exit to the local room, within the policy.
  class LocalPresence final : public PresenceSink {
   public:
    explicit LocalPresence(Hub& hub) : hub_(hub) {}
    void user_online(const UserKey& key) override;
    void user_offline(const UserKey& key, const std::optional<StreamPos>& delivered) override;

   private:
    Hub& hub_;
  };
  LocalPresence local_presence_{*this};
  PresenceSink* presence_sink_ = &local_presence_;
  PresencePolicy policy_;
  PresenceFrames presence_frames_;
  HistoryHooks* history_hooks_ = nullptr;
  std::atomic<uint64_t> push_seq_;
};

}  // namespace imgate
