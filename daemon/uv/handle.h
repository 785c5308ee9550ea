// uv::Handle<T>: the one owner of a heap-allocated libuv handle (uv_timer_t, uv_idle_t,
// uv_check_t, uv_prepare_t, uv_poll_t, uv_signal_t, uv_tcp_t, uv_process_t, ...).
//
// libuv still uses a handle's memory after uv_close() returns, until the close callback
// runs in a later loop turn (docs/src/handle.rst). So the owner never frees it: reset()
// and the destructor call uv_close(), and the memory is freed in the close callback
// (STYLE.md habit 3). The callback may outlive the owner and whatever `data` pointed to:
// after reset() libuv calls none of the handle's other callbacks.
//
// Movable, not copyable. The loop must run once more after a reset() for the memory to be
// freed (every test ends with a loop that runs until it has no handles). All calls on the
// loop's thread.
#pragma once

#include <uv.h>

#include <functional>
#include <utility>

namespace sirena::uv {

template <typename T>
class Handle {
 public:
  Handle() = default;
  ~Handle() { reset(); }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& other) noexcept : h_(std::exchange(other.h_, nullptr)) {}
  Handle& operator=(Handle&& other) noexcept {
    if (this != &other) {
      reset();
      h_ = std::exchange(other.h_, nullptr);
    }
    return *this;
  }

  // Allocates the handle and initialises it: init_fn(loop, handle, args...), e.g.
  // h.init(loop, uv_timer_init), h.init(loop, uv_poll_init, fd), h.init(loop, uv_spawn, &opts).
  // Closes a handle held before. `data` is set to `data`. Returns init_fn's result (0 or a
  // UV_E* code); on failure the owner is empty, and a handle libuv had registered anyway
  // (uv_spawn does that) is closed and freed like any other.
  template <typename Init, typename... Args>
  int init(uv_loop_t* loop, void* data, Init init_fn, Args&&... args) {
    reset();
    T* h = new T{};  // type stays UV_UNKNOWN_HANDLE unless libuv registers the handle
    int rc = init_fn(loop, h, std::forward<Args>(args)...);
    if (rc != 0) {
      if (reinterpret_cast<uv_handle_t*>(h)->type == UV_UNKNOWN_HANDLE) {
        delete h;
      } else {
        close_handle(h, nullptr);
      }
      return rc;
    }
    h->data = data;
    h_ = h;
    return 0;
  }

  T* get() const { return h_; }
  T* operator->() const { return h_; }
  explicit operator bool() const { return h_ != nullptr; }
  uv_handle_t* base() const { return reinterpret_cast<uv_handle_t*>(h_); }

  // Closes the handle (if any) and leaves the owner empty. `on_closed` runs from the close
  // callback, after the memory is freed (where an owner waits for its handles to close);
  // at once when the owner was empty.
  void reset(std::function<void()> on_closed = nullptr) {
    if (!h_) {
      if (on_closed) on_closed();
      return;
    }
    close_handle(std::exchange(h_, nullptr), std::move(on_closed));
  }

 private:
  static void close_handle(T* h, std::function<void()> on_closed) {
    auto* base = reinterpret_cast<uv_handle_t*>(h);
    // No callback but the close callback runs from here on: `data` can carry it.
    base->data = on_closed ? new std::function<void()>(std::move(on_closed)) : nullptr;
    uv_close(base, [](uv_handle_t* closed) {
      auto* done = static_cast<std::function<void()>*>(closed->data);
      delete reinterpret_cast<T*>(closed);
      if (done) {
        (*done)();
        delete done;
      }
    });
  }

  T* h_ = nullptr;
};

}  // namespace sirena::uv
