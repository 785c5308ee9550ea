// One gateway's lane: the messages waiting for it, most urgent priority first and fair
// between the alert tenants within a priority; its token bucket (the provider's rate) and
// circuit breaker; and the pump that hands it messages while it has room.
//
// The lane decides when a message may go; the dispatcher (its Driver) decides whether it
// still should and sends it. Clock-injected and free of I/O apart from the Gateway it is
// given, so it is unit-tested with a fake gateway and a ManualClock.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "daemon/core/clock.h"
#include "daemon/dispatch/flow.h"
#include "daemon/dispatch/gateway.h"

namespace prometheus {
class Gauge;
class Histogram;
}  // namespace prometheus

namespace sirena::dispatch {

// The lane's gauges, looked up once (each may be null: not exported).
struct LaneGauges {
  prometheus::Gauge* queue_depth = nullptr;
  prometheus::Gauge* bucket_tokens = nullptr;
  prometheus::Gauge* circuit = nullptr;
  prometheus::Gauge* in_flight = nullptr;
  prometheus::Histogram* duration = nullptr;  // of each request
};

// Sets a gauge; defined in gateway_lane.cc so that this header stays free of prometheus.
void set_gauge(prometheus::Gauge* g, double v);
void observe(prometheus::Histogram* h, double v);

template <typename T>
class GatewayLane {
 public:
  // Messages submitted per pump: a burst (a new batch, a window reopening) leaves in
  // slices, because what is submitted is written at the end of the loop turn, and the
  // first requests need not wait for the whole burst to be rendered. With nothing in
  // flight (an alert's first messages) the slice is smaller still: these are written at
  // the end of this turn and answered while the next turn renders a whole burst.
  static constexpr size_t kBurst = 128;
  static constexpr size_t kFirstBurst = 8;
  static constexpr int64_t kBreakerWaitMs = 200;  // a refusing breaker is asked again then

  // `rate_per_s`: the provider's rate, with a one-second burst (smooth enough to stay
  // under a per-minute quota without 429 storms).
  GatewayLane(const Clock& clock, std::unique_ptr<Gateway> gw, double rate_per_s, LaneGauges gauges = {})
      : clock_(clock),
        gw_(std::move(gw)),
        breaker_(clock),
        bucket_(clock, rate_per_s, std::max(1.0, rate_per_s)),
        gauges_(gauges) {
    bucket_.set_batch(gw_->batch_size());
  }
  GatewayLane(const GatewayLane&) = delete;
  GatewayLane& operator=(const GatewayLane&) = delete;

  Gateway& gateway() { return *gw_; }
  const std::string& name() const { return gw_->name(); }
  size_t queued() const { return queued_; }
  size_t in_flight() const { return in_flight_; }
  CircuitBreaker::State circuit() const { return breaker_.state(); }

  // `key`: the alert's tenant (fairness); priority 0 is the most urgent.
  void push_back(int priority, const std::string& key, T item) {
    queue_[priority].push_back(key, std::move(item));
    ++queued_;
  }
  // Puts back an item just taken: it is served first again.
  void push_front(int priority, const std::string& key, T item) {
    queue_[priority].push_front(key, std::move(item));
    ++queued_;
  }
  // Takes out the queued items for which `drop(item)` is true (it may consume them).
  template <typename F>
  void remove_if(F drop) {
    for (auto& q : queue_)
      q.remove_if([&](T& item) {
        if (!drop(item)) return false;
        --queued_;
        return true;
      });
  }

  struct Pumped {
    bool more = false;     // the slice is used up with room left: pump again next turn
    int64_t wait_ms = -1;  // the breaker or the bucket holds the queue: pump again then
  };

  // Hands the driver what may go now, while the gateway has room. The driver:
  //   bool may_send()  false: stop (outcomes are not yet durable; it resumes the pump)
  //   bool settle(T)   true: the item was finished without a request (cancelled, expired)
  //   void send(T)     sends it through send() below
  template <typename Driver>
  Pumped pump(Driver& driver) {
    size_t budget = in_flight_ == 0 ? kFirstBurst : kBurst;
    // A gateway that groups messages into requests gets whole batches per pump: a slice
    // that cut one would make a request of its own.
    if (size_t batch = bucket_.batch(); batch > 1) budget = batch * std::max<size_t>(1, kBurst / batch);
    Pumped out;
    while (gw_->capacity() > 0) {
      if (budget-- == 0) {
        out.more = true;
        break;
      }
      if (!driver.may_send()) break;
      int priority = 0;
      while (priority < kPriorities && queue_[priority].empty()) ++priority;
      if (priority == kPriorities) break;
      std::string key;
      T item = queue_[priority].pop(&key);
      --queued_;
      if (driver.settle(item)) continue;
      if (!breaker_.allow()) {
        push_front(priority, key, std::move(item));
        set_gauge(gauges_.circuit, static_cast<double>(breaker_.state()));
        out.wait_ms = kBreakerWaitMs;
        break;
      }
      // A batching gateway is released a whole batch at once (the rate stays per message).
      if (!bucket_.take(queued_ + 1)) {
        push_front(priority, key, std::move(item));
        out.wait_ms = bucket_.wait_ms(queued_);
        break;
      }
      driver.send(item);
    }
    return out;
  }

  // Sends one message; `done` runs once with the result. The result also tells the
  // breaker how the gateway is: only a transient failure counts against it (a bad token
  // is the recipient's problem, not the gateway's).
  // (A template, so that the gateway's callback is one allocation, not two.)
  template <typename Done>
  void send(const Message& m, Done done) {
    ++in_flight_;
    int64_t started = clock_.mono_ns();
    gw_->send(m, [this, started, done = std::move(done)](const SendResult& r) {
      --in_flight_;
      observe(gauges_.duration, static_cast<double>(clock_.mono_ns() - started) / 1e9);
      switch (r.outcome) {
        case Outcome::Accepted:
        case Outcome::Unregistered:
        case Outcome::Permanent:
          breaker_.on_success();
          break;
        case Outcome::Retry:
          breaker_.on_failure();
          set_gauge(gauges_.circuit, static_cast<double>(breaker_.state()));
          break;
        case Outcome::Cancelled:
          break;
      }
      done(r);
    });
  }

  // Set once a loop turn, after what moved them: per message they were 2% of the CPU.
  void set_gauges() {
    set_gauge(gauges_.queue_depth, static_cast<double>(queued_));
    set_gauge(gauges_.in_flight, static_cast<double>(in_flight_));
    set_gauge(gauges_.circuit, static_cast<double>(breaker_.state()));  // also once closed again
    set_gauge(gauges_.bucket_tokens, bucket_.fill());
  }

 private:
  const Clock& clock_;
  std::unique_ptr<Gateway> gw_;
  CircuitBreaker breaker_;
  TokenBucket bucket_;
  LaneGauges gauges_;
  FairQueue<T> queue_[kPriorities];  // round-robin over the alert tenants
  size_t queued_ = 0;
  size_t in_flight_ = 0;
};

}  // namespace sirena::dispatch
