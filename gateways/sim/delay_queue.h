// Answers waiting out their --latency-ms delay. One uv_timer serves all of them, armed
// for the earliest; entries are (due, arrival order) in a binary heap, so equal delays
// keep their order and nothing is allocated per entry once the heap has grown.
//
// An entry names a Deferred and the serial it had when queued: a transport bumps the
// serial when it recycles the object (stream reset, connection closed), so a stale entry
// is skipped instead of answering the wrong request. Deferred objects must outlive the
// queue's use of them (the transports pool them for the server's lifetime).
#pragma once

#include <uv.h>

#include <cstdint>
#include <vector>

#include "daemon/uv/handle.h"

namespace sirena::sim {

class Deferred {
 public:
  virtual void fire() = 0;
  uint64_t serial = 0;

 protected:
  ~Deferred() = default;
};

class DelayQueue {
 public:
  explicit DelayQueue(uv_loop_t* loop);
  ~DelayQueue();
  DelayQueue(const DelayQueue&) = delete;
  DelayQueue& operator=(const DelayQueue&) = delete;

  void push(uint64_t delay_ms, Deferred* d);
  // Drops every entry and closes the timer (the handle is freed in its close callback).
  void close();
  size_t size() const { return heap_.size(); }

 private:
  struct Entry {
    uint64_t due;
    uint64_t order;
    Deferred* deferred;
    uint64_t serial;
  };
  static bool later(const Entry& a, const Entry& b) {
    return a.due != b.due ? a.due > b.due : a.order > b.order;
  }
  static void on_timer(uv_timer_t* t);
  void arm();

  uv_loop_t* loop_;
  uv::Handle<uv_timer_t> timer_;
  std::vector<Entry> heap_;
  uint64_t order_ = 0;
  uint64_t armed_for_ = UINT64_MAX;
};

}  // namespace sirena::sim
