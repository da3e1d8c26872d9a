// SendQueue: the frames waiting for one connection's writer, bounded in bytes
// by its owner. Allocates nothing while empty (an idle connection holds no
// queue memory; std::deque would keep ~576 bytes), and gives its storage back
// once drained after a burst.
#pragma once

#include <cstddef>
#include <iterator>
#include <vector>

#include "registry/types.hpp"

namespace imgate {

class SendQueue {
 public:
  bool empty() const { return head_ == frames_.size(); }
  std::size_t size() const { return frames_.size() - head_; }
  std::size_t bytes() const { return bytes_; }
  const Frame& front() const { return frames_[head_]; }
  const Frame& at(std::size_t i) const { return frames_[head_ + i]; }

  void push_back(Frame frame) {
    bytes_ += frame->size();
    frames_.push_back(std::move(frame));
  }

  // Only while nothing of the front frame is written.
  void push_front(Frame frame) {
    bytes_ += frame->size();
    if (head_ > 0) {
      frames_[--head_] = std::move(frame);
    } else {
      frames_.insert(frames_.begin(), std::move(frame));
    }
  }

  void pop_front() {
    bytes_ -= frames_[head_]->size();
    frames_[head_].reset();
    if (++head_ == frames_.size()) {
      release();
    } else if (head_ >= 64 && head_ * 2 >= frames_.size()) {
      frames_.erase(frames_.begin(), frames_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }

  // Drops every frame, except the front one when `keep_front` (a frame
  // partly written must be finished, or the stream would be corrupt).
  void drop_unsent(bool keep_front) {
    if (empty() || !keep_front) return release();
    Frame front = std::move(frames_[head_]);
    release();
    push_back(std::move(front));
  }

  // Keeps only the first `keep` frames (TLS: the frames of a record that is
  // already encrypted and must be finished).
  void keep_first(std::size_t keep) {
    if (keep >= size()) return;
    if (keep == 0) return release();
    std::vector<Frame> kept(std::make_move_iterator(frames_.begin() + static_cast<std::ptrdiff_t>(head_)),
                            std::make_move_iterator(frames_.begin() + static_cast<std::ptrdiff_t>(head_ + keep)));
    release();
    for (Frame& f : kept) push_back(std::move(f));
  }

  void release() {
    std::vector<Frame>().swap(frames_);
    head_ = 0;
    bytes_ = 0;
  }

 private:
  std::vector<Frame> frames_;
  std::size_t head_ = 0;
  std::size_t bytes_ = 0;
};

}  // namespace imgate
