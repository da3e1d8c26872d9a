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

void EmbeddedBackend::list_users(AppId app,
                                 std::function<void(bool, std::vector<std::string>)> done) {
  done(true, hub_.directory().users_of(app));
}

void EmbeddedBackend::online(AppId app, std::string user, std::function<void(bool, bool)> done) {
  done(true, hub_.directory().online(app, user));
}

void EmbeddedBackend::publish(PushRequest push, PushDone done) {
  if (push.dedup && !dedup_.first_seen(push.seq, Clock::now())) {
    return answer_duplicate(counters_, done);
  }
  const bool sent = deliver_on_this_node(hub_, push);
  done(Code::kOk, json::object{{"sendResults", sent}});
}

}  // namespace imgate
