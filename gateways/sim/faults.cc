#include "gateways/sim/faults.h"

#include <cmath>

namespace sirena::sim {

namespace {
constexpr double kZ99 = 2.3263478740408408;  // the standard normal's 0.99 quantile
}

Faults::Faults(const FaultOptions& options)
    : options_(options), fail_rng_(options.seed), latency_rng_(options.seed ^ 0x9e3779b97f4a7c15ULL) {
  if (options.latency_p50_ms > 0) {
    mu_ = std::log(options.latency_p50_ms);
    sigma_ = (std::log(options.latency_p99_ms) - mu_) / kZ99;
  }
}

int Faults::draw_failure() {
  if (options_.fail.empty()) return 0;
  double u = uniform_(fail_rng_);
  double cumulative = 0;
  for (const auto& [status, rate] : options_.fail) {
    cumulative += rate;
    if (u < cumulative) return status;
  }
  return 0;
}

uint64_t Faults::draw_latency_ms() {
  if (sigma_ < 0) return 0;
  double ms = std::exp(mu_ + sigma_ * normal_(latency_rng_));
  return static_cast<uint64_t>(std::llround(ms));
}

bool Faults::next_request_resets() {
  ++requests_;
  return options_.reset_every != 0 && requests_ % options_.reset_every == 0;
}

}  // namespace sirena::sim
