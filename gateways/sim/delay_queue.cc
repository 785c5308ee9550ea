#include "gateways/sim/delay_queue.h"

#include <algorithm>

namespace sirena::sim {

DelayQueue::DelayQueue(uv_loop_t* loop) : loop_(loop) {
  timer_.init(loop, this, uv_timer_init);
}

DelayQueue::~DelayQueue() {
  close();
}

void DelayQueue::close() {
  heap_.clear();
  timer_.reset();
}

void DelayQueue::push(uint64_t delay_ms, Deferred* d) {
  heap_.push_back(Entry{uv_now(loop_) + delay_ms, order_++, d, d->serial});
  std::push_heap(heap_.begin(), heap_.end(), later);
  if (heap_.front().due < armed_for_) arm();
}

void DelayQueue::arm() {
  if (!timer_) return;
  if (heap_.empty()) {
    uv_timer_stop(timer_.get());
    armed_for_ = UINT64_MAX;
    return;
  }
  uint64_t now = uv_now(loop_);
  armed_for_ = heap_.front().due;
  uv_timer_start(timer_.get(), &DelayQueue::on_timer, armed_for_ > now ? armed_for_ - now : 0, 0);
}

void DelayQueue::on_timer(uv_timer_t* t) {
  auto* self = static_cast<DelayQueue*>(t->data);
  self->armed_for_ = UINT64_MAX;
  uint64_t now = uv_now(self->loop_);
  while (!self->heap_.empty() && self->heap_.front().due <= now) {
    std::pop_heap(self->heap_.begin(), self->heap_.end(), later);
    Entry e = self->heap_.back();
    self->heap_.pop_back();
    if (e.deferred->serial == e.serial) e.deferred->fire();
  }
  self->arm();
}

}  // namespace sirena::sim
