#include "security/http_connections.hpp"

namespace imgate {

HttpConnections::Admission HttpConnections::admit() {
  std::lock_guard lock(mutex_);
  if (open_ - evicting_ < max_) {
    ++open_;
    return Admission::kAdmitted;
  }
  if (oldest_ == nullptr) return Admission::kFull;
  if (evicting_ >= kMaxEvicting) return Admission::kWait;
  Slot& victim = *oldest_;
  unlink_idle(victim);
  victim.state_ = Slot::State::kEvicting;
  ++evicting_;
  ++open_;
  if (victim.evict) victim.evict();
  return Admission::kReplacing;
}

void HttpConnections::idle(Slot& slot) {
  std::lock_guard lock(mutex_);
  if (slot.state_ != Slot::State::kBusy) return;  // idle already, or being closed
  slot.state_ = Slot::State::kIdle;
  slot.prev_ = newest_;
  slot.next_ = nullptr;
  (newest_ ? newest_->next_ : oldest_) = &slot;
  newest_ = &slot;
  ++idle_;
}

void HttpConnections::busy(Slot& slot) {
  std::lock_guard lock(mutex_);
  busy_locked(slot);
}

void HttpConnections::busy_locked(Slot& slot) {
  if (slot.state_ == Slot::State::kIdle) {
    unlink_idle(slot);
  } else if (slot.state_ == Slot::State::kEvicting) {
    --evicting_;
  }
  slot.state_ = Slot::State::kBusy;
}

bool HttpConnections::evicted(Slot& slot) {
  std::lock_guard lock(mutex_);
  return slot.state_ == Slot::State::kEvicting;
}

void HttpConnections::leave(Slot& slot) {
  std::lock_guard lock(mutex_);
  busy_locked(slot);
  --open_;
}

std::size_t HttpConnections::open() const {
  std::lock_guard lock(mutex_);
  return open_;
}

std::size_t HttpConnections::idle_count() const {
  std::lock_guard lock(mutex_);
  return idle_;
}

void HttpConnections::unlink_idle(Slot& slot) {
  (slot.prev_ ? slot.prev_->next_ : oldest_) = slot.next_;
  (slot.next_ ? slot.next_->prev_ : newest_) = slot.prev_;
  slot.prev_ = slot.next_ = nullptr;
  --idle_;
}

}  // namespace imgate
