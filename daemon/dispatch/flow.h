// Flow control pieces, channel-agnostic and clock-injected (unit-tested without sleeping):
// retry backoff, a token bucket rate limit, a circuit breaker and a fair queue.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <random>
#include <string>

#include "daemon/core/clock.h"

namespace sirena::dispatch {

// Exponential backoff with full jitter: a delay drawn uniformly from
// [0, min(cap, base * 2^attempt)], or the server's Retry-After when it is longer.
class Backoff {
 public:
  Backoff(int64_t base_ms = 200, int64_t cap_ms = 30'000, uint64_t seed = std::random_device{}())
      : base_ms_(base_ms), cap_ms_(cap_ms), rng_(seed) {}
  int64_t delay_ms(int attempt, int64_t retry_after_ms = 0);

 private:
  int64_t base_ms_;
  int64_t cap_ms_;
  std::mt19937_64 rng_;
};

// A token bucket: `rate` tokens per second, at most `burst` saved up. A token is one message.
//
// Batches: a gateway that sends up to `batch` messages in one request (SMS: the numbers of
// one Kannel sendsms) needs them handed over together, or a bucket refilled every few
// milliseconds releases one or two at a time, a request each. With set_batch(n > 1) the
// bucket releases whole batches: take(waiting) succeeds only once it holds tokens for
// min(batch, waiting, burst) messages, takes them all, and the next messages of that batch
// spend the credit left. The rate stays per message.
class TokenBucket {
 public:
  TokenBucket(const Clock& clock, double rate_per_s, double burst);
  // Takes the token of one message, if available. `waiting`: the messages ready to go,
  // this one included (a batch is never waited for beyond them).
  bool take(size_t waiting = 1);
  // Milliseconds until take(waiting) can succeed (0 if it can now).
  int64_t wait_ms(size_t waiting = 1) const;
  double fill() const;  // tokens available now (not counting a batch's credit)
  void set_rate(double rate_per_s, double burst);
  void set_batch(size_t batch) { batch_ = batch == 0 ? 1 : batch; }
  size_t batch() const { return batch_; }

 private:
  void refill() const;
  // Tokens the next take(waiting) needs at once.
  double need(size_t waiting) const;
  const Clock& clock_;
  double rate_;
  double burst_;
  size_t batch_ = 1;
  size_t credit_ = 0;  // tokens taken for the rest of the batch under way
  mutable double tokens_;
  mutable int64_t last_ns_;
};

// Per-gateway circuit breaker. Closed: requests flow. After `threshold` consecutive
// failures it opens for `open_ms`; then it is half-open and lets `probes` requests
// through: one success closes it, a failure opens it again.
class CircuitBreaker {
 public:
  enum class State { Closed = 0, Open = 1, HalfOpen = 2 };
  CircuitBreaker(const Clock& clock, int threshold = 50, int64_t open_ms = 2000, int probes = 5);
  bool allow();  // may a request go now? (counts a probe in half-open)
  void on_success();
  void on_failure();
  State state() const;

 private:
  const Clock& clock_;
  int threshold_;
  int64_t open_ms_;
  int probes_;
  State state_ = State::Closed;
  int failures_ = 0;
  int probes_in_flight_ = 0;
  int64_t opened_at_ms_ = 0;
};

// A FIFO per key (the alert's tenant), served round-robin one item at a time, so that
// one tenant's big alert cannot starve another tenant's alert on a shared gateway.
template <typename T>
class FairQueue {
 public:
  FairQueue() = default;
  FairQueue(const FairQueue&) = delete;
  FairQueue& operator=(const FairQueue&) = delete;
  void push_back(const std::string& key, T item) { add(key, item, false); }
  // Puts back an item just popped (the gateway could not take it): served first again.
  void push_front(const std::string& key, T item) {
    add(key, item, true);
    next_ = queues_.find(key);
  }
  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  // Precondition: !empty(). `key`, if given, receives the item's key (for push_front).
  T pop(std::string* key = nullptr) {
    if (next_ == queues_.end()) next_ = queues_.begin();
    auto it = next_++;
    if (key) *key = it->first;
    T item = it->second.front();
    it->second.pop_front();
    if (it->second.empty()) queues_.erase(it);
    --size_;
    return item;
  }
  // Removes the items for which `drop(item)` is true (it may consume them).
  template <typename F>
  void remove_if(F drop) {
    for (auto it = queues_.begin(); it != queues_.end();) {
      std::deque<T> keep;
      for (T& item : it->second) {
        if (drop(item))
          --size_;
        else
          keep.push_back(item);
      }
      it->second.swap(keep);
      it = it->second.empty() ? queues_.erase(it) : std::next(it);
    }
    next_ = queues_.begin();
  }

 private:
  void add(const std::string& key, T item, bool front) {
    auto [it, fresh] = queues_.try_emplace(key);
    if (front)
      it->second.push_front(item);
    else
      it->second.push_back(item);
    ++size_;
    if (fresh && queues_.size() == 1) next_ = it;
  }
  std::map<std::string, std::deque<T>> queues_;
  typename std::map<std::string, std::deque<T>>::iterator next_ = queues_.end();
  size_t size_ = 0;
};

}  // namespace sirena::dispatch
