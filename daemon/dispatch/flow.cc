#include "daemon/dispatch/flow.h"

#include <algorithm>
#include <cmath>

namespace sirena::dispatch {

int64_t Backoff::delay_ms(int attempt, int64_t retry_after_ms) {
  int shift = std::min(attempt, 20);
  int64_t ceiling = std::min<int64_t>(cap_ms_, base_ms_ << shift);
  std::uniform_int_distribution<int64_t> dist(0, std::max<int64_t>(ceiling, 1));
  int64_t jittered = dist(rng_);
  // A server's Retry-After is a floor: coming back sooner only earns another 429.
  return std::max(jittered, retry_after_ms);
}

TokenBucket::TokenBucket(const Clock& clock, double rate_per_s, double burst)
    : clock_(clock), rate_(rate_per_s), burst_(burst), tokens_(burst), last_ns_(clock.mono_ns()) {}

void TokenBucket::refill() const {
  int64_t now = clock_.mono_ns();
  tokens_ = std::min(burst_, tokens_ + static_cast<double>(now - last_ns_) * rate_ / 1e9);
  last_ns_ = now;
}

double TokenBucket::need(size_t waiting) const {
  size_t n = std::min(batch_, std::max<size_t>(waiting, 1));
  // A batch bigger than the burst would never be whole: the burst is the most at once.
  return std::max(1.0, std::min(static_cast<double>(n), std::floor(burst_)));
}

bool TokenBucket::take(size_t waiting) {
  if (rate_ <= 0) return true;  // unlimited
  if (credit_ > 0) {
    --credit_;
    return true;
  }
  refill();
  double n = need(waiting);
  if (tokens_ < n) return false;
  tokens_ -= n;
  credit_ = static_cast<size_t>(n) - 1;
  return true;
}

int64_t TokenBucket::wait_ms(size_t waiting) const {
  if (rate_ <= 0 || credit_ > 0) return 0;
  refill();
  double n = need(waiting);
  if (tokens_ >= n) return 0;
  return std::max<int64_t>(1, static_cast<int64_t>((n - tokens_) * 1000 / rate_) + 1);
}

double TokenBucket::fill() const {
  refill();
  return tokens_;
}

void TokenBucket::set_rate(double rate_per_s, double burst) {
  refill();
  rate_ = rate_per_s;
  burst_ = burst;
  tokens_ = std::min(tokens_, burst_);
}

CircuitBreaker::CircuitBreaker(const Clock& clock, int threshold, int64_t open_ms, int probes)
    : clock_(clock), threshold_(threshold), open_ms_(open_ms), probes_(probes) {}

CircuitBreaker::State CircuitBreaker::state() const {
  if (state_ == State::Open && clock_.now_ms() - opened_at_ms_ >= open_ms_) return State::HalfOpen;
  return state_;
}

bool CircuitBreaker::allow() {
  if (state_ == State::Open && clock_.now_ms() - opened_at_ms_ >= open_ms_) {
    state_ = State::HalfOpen;
    probes_in_flight_ = 0;
  }
  switch (state_) {
    case State::Closed: return true;
    case State::Open: return false;
    case State::HalfOpen:
      if (probes_in_flight_ >= probes_) return false;
      ++probes_in_flight_;
      return true;
  }
  return true;
}

void CircuitBreaker::on_success() {
  failures_ = 0;
  state_ = State::Closed;
  probes_in_flight_ = 0;
}

void CircuitBreaker::on_failure() {
  if (state_ == State::HalfOpen || ++failures_ >= threshold_) {
    state_ = State::Open;
    opened_at_ms_ = clock_.now_ms();
    failures_ = 0;
    probes_in_flight_ = 0;
  }
}

}  // namespace sirena::dispatch
