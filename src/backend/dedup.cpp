#include "backend/dedup.hpp"

namespace imgate {

MsgIdDedup::MsgIdDedup(std::chrono::milliseconds ttl, std::size_t capacity)
    : ttl_(ttl), capacity_(capacity ? capacity : 1) {}

void MsgIdDedup::expire(TimePoint now) {
  while (!order_.empty() && order_.front().first <= now) {
    ids_.erase(ids_.find(*order_.front().second));
    order_.pop_front();
  }
}

bool MsgIdDedup::first_seen(std::string_view id, TimePoint now) {
  std::lock_guard lock(mu_);
  expire(now);
  auto [it, inserted] = ids_.emplace(id);
  if (!inserted) return false;
  order_.emplace_back(now + ttl_, &*it);
  if (ids_.size() > capacity_) {
    ids_.erase(ids_.find(*order_.front().second));
    order_.pop_front();
    ++evicted_;
  }
  return true;
}

std::size_t MsgIdDedup::size() const {
  std::lock_guard lock(mu_);
  return ids_.size();
}

uint64_t MsgIdDedup::evicted() const {
  std::lock_guard lock(mu_);
  return evicted_;
}

}  // namespace imgate
