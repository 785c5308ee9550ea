// The simulator's fault plan: which requests fail, how late each answer comes and
// which request gets its connection reset. No sockets and no clock: the same seed and
// the same sequence of calls give the same faults, so tests can assert exact counts.
#pragma once

#include <cstdint>
#include <random>

#include "gateways/sim/options.h"

namespace sirena::sim {

class Faults {
 public:
  explicit Faults(const FaultOptions& options);

  // The status to inject for the next message request, or 0 to serve it normally.
  // One uniform draw per call, compared with the cumulative --fail rates in order.
  int draw_failure();

  // The answer delay for the next request in milliseconds (0 without --latency-ms):
  // log-normal with median P50 and 99th percentile P99, i.e. mu = ln P50 and
  // sigma = (ln P99 - ln P50) / z(0.99), z(0.99) = 2.3263.
  uint64_t draw_latency_ms();

  // True for every --reset-every'th message request (counted over all connections).
  bool next_request_resets();

  bool has_latency() const { return sigma_ >= 0; }
  uint64_t goaway_every() const { return options_.goaway_every; }

 private:
  FaultOptions options_;
  std::mt19937_64 fail_rng_;     // separate streams: enabling latency does not change
  std::mt19937_64 latency_rng_;  // which requests fail for a given seed
  std::uniform_real_distribution<double> uniform_{0.0, 1.0};
  std::normal_distribution<double> normal_{0.0, 1.0};
  double mu_ = 0;
  double sigma_ = -1;  // < 0: no latency
  uint64_t requests_ = 0;
};

}  // namespace sirena::sim
