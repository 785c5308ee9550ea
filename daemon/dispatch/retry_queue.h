// Messages waiting to be sent again: a transient failure (a 5xx, a 429, a lost
// connection, an SMS the SMSC never reported) is retried after an exponential backoff with
// full jitter, or after the gateway's Retry-After, until max_attempts or the alert's expiry.
//
// Clock-injected and free of I/O: the dispatcher arms one timer at next_due() and calls
// take_due() when it fires.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <queue>
#include <vector>

#include "daemon/core/clock.h"
#include "daemon/dispatch/flow.h"

namespace sirena::dispatch {

template <typename T>
class RetryQueue {
 public:
  // What becomes of a message that failed for now.
  enum class Verdict {
    Retry,   // push() it with due_ms
    GiveUp,  // its attempts are used up: failed
    Expire,  // the next attempt would come after the alert expires: expired
  };
  struct Decision {
    Verdict verdict;
    int64_t due_ms;
  };

  RetryQueue(const Clock& clock, Backoff backoff, int max_attempts)
      : clock_(clock), backoff_(std::move(backoff)), max_attempts_(max_attempts) {}

  // After attempt `attempt` failed: when the next one is due (`retry_after_ms`: the
  // gateway's own wish, 0 if none) and whether it may be made. `expires_ms`: 0 for none.
  Decision judge(int attempt, int64_t retry_after_ms, int64_t expires_ms) {
    int64_t due = clock_.now_ms() + backoff_.delay_ms(attempt, retry_after_ms);
    if (attempt >= max_attempts_) return {Verdict::GiveUp, due};
    if (expires_ms && due >= expires_ms) return {Verdict::Expire, due};
    return {Verdict::Retry, due};
  }

  void push(int64_t due_ms, T item) { heap_.push({due_ms, std::move(item)}); }

  // Hands every item due at `now_ms` to fn, earliest first.
  template <typename F>
  void take_due(int64_t now_ms, F fn) {
    while (!heap_.empty() && heap_.top().due_ms <= now_ms) {
      T item = heap_.top().item;
      heap_.pop();
      fn(item);
    }
  }

  // Takes out the items for which `pred(item)` is true, for a cancel: they would
  // otherwise wait for their backoff.
  template <typename F>
  std::vector<T> remove_if(F pred) {
    std::vector<Entry> keep;
    std::vector<T> removed;
    for (; !heap_.empty(); heap_.pop()) {
      if (pred(heap_.top().item))
        removed.push_back(heap_.top().item);
      else
        keep.push_back(heap_.top());
    }
    heap_ = Heap(std::greater<>(), std::move(keep));
    return removed;
  }

  // When the earliest item is due; INT64_MAX when none waits.
  int64_t next_due() const {
    return heap_.empty() ? std::numeric_limits<int64_t>::max() : heap_.top().due_ms;
  }
  size_t size() const { return heap_.size(); }
  bool empty() const { return heap_.empty(); }

 private:
  struct Entry {
    int64_t due_ms;
    T item;
    bool operator>(const Entry& o) const { return due_ms > o.due_ms; }
  };
  using Heap = std::priority_queue<Entry, std::vector<Entry>, std::greater<>>;
  const Clock& clock_;
  Backoff backoff_;
  int max_attempts_;
  Heap heap_;
};

}  // namespace sirena::dispatch
