#include "backend/embedded.hpp"

#include <boost/json.hpp>

#include "protocol/envelope.hpp"

namespace imgate {

namespace json = boost::json;

bool deliver_on_this_node(Hub& hub, const PushRequest& push) {
  Frame frame = make_push(push.seq, "msg", push.msg, push.from);
  if (push.to_room) {
    hub.push_room(push.app, push.user, std::move(frame));
    return true;
  }
  return hub.push_user(UserKey{push.app, push.user}, std::move(frame));
}

void answer_duplicate(Counters& counters, const PushDone& done) {
  Counters::bump(counters.msg_id_duplicates);
  done(Code::kOk, json::object{});  // upstream: 200 with empty data, nothing sent
}

PushDone paced(Hub& hub, PushDone done) {
  return [&hub, done = std::move(done)](Code code, json::value data) {
    hub.after_room_backlog(
        [done, code, data = std::move(data)]() mutable { done(code, std::move(data)); });
  };
}

EmbeddedBackend::EmbeddedBackend(Hub& hub, MsgIdDedup& dedup, Counters& counters,
                                 HistoryLimits limits)
    : hub_(hub), dedup_(dedup), counters_(counters) {
  if (limits.per_stream > 0) {
    history_ = std::make_unique<MemoryHistory>(limits, counters);
    hub_.set_history_hooks(history_.get());
  }
}

EmbeddedBackend::~EmbeddedBackend() {
  if (history_) hub_.set_history_hooks(nullptr);
}

void EmbeddedBackend::list_users(AppId app,
                                 std::function<void(bool, std::vector<std::string>)> done) {
  done(true, hub_.directory().users_of(app));
}

void EmbeddedBackend::online(AppId app, std::string user, std::function<void(bool, bool)> done) {
  done(true, hub_.directory().online(app, user));
}

void EmbeddedBackend::publish(PushRequest push, PushDone done) {
  if (push.to_room) done = paced(hub_, std::move(done));
  if (!push.dedup_key.empty() && !dedup_.first_seen(push.dedup_key, Clock::now())) {
    return answer_duplicate(counters_, done);
  }
  if (!history_) {
    const bool sent = deliver_on_this_node(hub_, push);
    return done(Code::kOk, json::object{{"sendResults", sent}});
  }
  // Stored first, delivered under the history lock: a stream's deliveries are
  // posted in offset order.
  const UserKey stream{push.app, push.to_room ? std::string() : push.user};
  bool sent = true;
  const StreamPos pos = history_->append(
      stream, Clock::now(), push.to_room ? std::string_view(push.user) : std::string_view(),
      [&](const StreamMark& mark) { return make_push(push.seq, "msg", push.msg, push.from, &mark); },
      [&](const Frame& frame, const StreamMark& mark) {
        if (push.to_room) {
          hub_.push_room(push.app, push.user, frame, mark.offset);
        } else {
          sent = hub_.push_user(UserKey{push.app, push.user}, frame, mark.offset, mark.epoch);
        }
      });
  json::object answer{{"sendResults", sent}, {"epoch", pos.epoch}, {"offset", pos.offset}};
  if (!sent) answer["stored"] = true;  // kept for the user's next login
  done(Code::kOk, std::move(answer));
}

void EmbeddedBackend::read_stream(const UserKey& stream, std::optional<StreamPos> since,
                                  std::size_t limit, std::string reader,
                                  std::function<void(bool, StreamRead)> done) {
  if (!history_) return done(false, {});
  done(true, history_->read(stream, since, Clock::now(), limit, reader));
}

Backend::HistoryStats EmbeddedBackend::history_stats() const {
  if (!history_) return {};
  return HistoryStats{history_->streams(), history_->pushes(), history_->bytes()};
}

StreamPos EmbeddedBackend::stream_position(const UserKey& stream) {
  return history_ ? history_->position(stream) : StreamPos{};
}

std::optional<StreamPos> EmbeddedBackend::user_left_at(const UserKey& user) {
  return history_ ? history_->user_left_at(user) : std::nullopt;
}

}  // namespace imgate
