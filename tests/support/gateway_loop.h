// For tests that drive a dispatch::Gateway on a real libuv loop: the loop (run until a
// condition holds, with a deadline; closed cleanly at the end) and the outcomes of the
// messages sent (each `done` must run exactly once).
#pragma once

#include <gtest/gtest.h>
#include <uv.h>

#include <chrono>
#include <functional>
#include <vector>

#include "daemon/dispatch/gateway.h"

namespace sirena::testing {

// A libuv loop for one test; the destructor finishes pending closes and checks that no
// handle was left behind.
class Loop {
 public:
  Loop() { uv_loop_init(&loop_); }
  ~Loop() {
    run_until([&] { return !uv_loop_alive(&loop_); }, std::chrono::milliseconds(5000));
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "a handle was left open";
  }
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;
  uv_loop_t* get() { return &loop_; }

  // Runs the loop until `cond` holds or `timeout` passes; a 5 ms tick keeps uv_run from
  // blocking so the deadline is checked.
  bool run_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    uv_timer_t tick;
    uv_timer_init(&loop_, &tick);
    uv_timer_start(
        &tick, [](uv_timer_t*) {}, 5, 5);
    uv_unref(reinterpret_cast<uv_handle_t*>(&tick));  // does not keep the loop alive by itself
    while (!cond() && std::chrono::steady_clock::now() < deadline) uv_run(&loop_, UV_RUN_ONCE);
    bool closed = false;
    tick.data = &closed;
    uv_close(reinterpret_cast<uv_handle_t*>(&tick), [](uv_handle_t* h) { *static_cast<bool*>(h->data) = true; });
    while (!closed) uv_run(&loop_, UV_RUN_NOWAIT);
    return cond();
  }

 private:
  uv_loop_t loop_;
};

// The outcome of every message sent, and how many times each `done` ran.
struct Outcomes {
  std::vector<dispatch::SendResult> results;
  std::vector<int> calls;
  size_t answered = 0;

  std::function<void(const dispatch::SendResult&)> slot() {
    size_t i = results.size();
    results.emplace_back();
    calls.push_back(0);
    return [this, i](const dispatch::SendResult& r) {
      if (calls[i]++ == 0) ++answered;
      results[i] = r;
    };
  }
  bool all() const { return answered == results.size(); }
  size_t count(dispatch::Outcome o) const {
    size_t n = 0;
    for (const auto& r : results) n += r.outcome == o;
    return n;
  }
  bool each_once() const {
    for (int c : calls)
      if (c != 1) return false;
    return true;
  }
};

}  // namespace sirena::testing
