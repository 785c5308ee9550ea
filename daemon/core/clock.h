// Injected time. Production code asks a Clock; tests use ManualClock and move it.
#pragma once

#include <chrono>
#include <cstdint>

namespace sirena {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time in milliseconds since the Unix epoch (for records, expiry, audit).
  virtual int64_t now_ms() const = 0;
  // Monotonic time in nanoseconds (for latencies and timers).
  virtual int64_t mono_ns() const = 0;
};

class SystemClock final : public Clock {
 public:
  int64_t now_ms() const override {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  }
  int64_t mono_ns() const override {
    using namespace std::chrono;
    return duration_cast<nanoseconds>(steady_clock::now().time_since_epoch()).count();
  }
};

class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t now_ms = 1'700'000'000'000) : now_ms_(now_ms) {}
  int64_t now_ms() const override { return now_ms_; }
  int64_t mono_ns() const override { return mono_ns_; }
  void advance_ms(int64_t ms) {
    now_ms_ += ms;
    mono_ns_ += ms * 1'000'000;
  }

 private:
  int64_t now_ms_;
  int64_t mono_ns_ = 0;
};

}  // namespace sirena
