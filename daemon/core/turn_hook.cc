#include "daemon/core/turn_hook.h"

#include <utility>

namespace sirena {

// Outlives the hook when the hook is destroyed while its timer closes.
struct TurnHook::Handle {
  uv_timer_t timer;
  std::function<void()> fn;
  std::function<void()> closed;
  TurnHook* owner;  // cleared by the hook's destructor
  bool closing = false;

  void start_close() {
    closing = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&timer), [](uv_handle_t* h) {
      auto* self = static_cast<Handle*>(h->data);
      if (self->owner) self->owner->handle_ = nullptr;
      auto done = std::move(self->closed);
      delete self;
      if (done) done();  // may destroy the owner
    });
  }
};

TurnHook::TurnHook(uv_loop_t* loop, std::function<void()> fn) : handle_(new Handle) {
  handle_->fn = std::move(fn);
  handle_->owner = this;
  uv_timer_init(loop, &handle_->timer);
  handle_->timer.data = handle_;
}

TurnHook::~TurnHook() {
  if (!handle_) return;
  handle_->owner = nullptr;
  handle_->closed = nullptr;
  // The callback is kept until the close callback: the destructor may run inside it.
  if (!handle_->closing) handle_->start_close();
}

void TurnHook::schedule() {
  if (!handle_ || handle_->closing || uv_is_active(reinterpret_cast<uv_handle_t*>(&handle_->timer))) return;
  uv_timer_start(
      &handle_->timer, [](uv_timer_t* t) { static_cast<Handle*>(t->data)->fn(); }, 0, 0);
}

void TurnHook::cancel() {
  if (handle_ && !handle_->closing) uv_timer_stop(&handle_->timer);
}

bool TurnHook::scheduled() const {
  return handle_ && !handle_->closing && uv_is_active(reinterpret_cast<const uv_handle_t*>(&handle_->timer));
}

void TurnHook::close(std::function<void()> done) {
  if (!handle_ || handle_->closing) return;
  handle_->closed = std::move(done);
  handle_->start_close();
}

}  // namespace sirena
