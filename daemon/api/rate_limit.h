// Token buckets keyed by a string (an API key's id, a client address): `rate` tokens a
// second up to `burst`, one token a request.
//
// Time is the caller's (Clock::mono_ns), so tests move it. The table is bounded: when it
// holds `max_entries`, buckets that have refilled to `burst` (idle clients) are dropped,
// and if none has, the oldest-used half is; a dropped bucket starts again full, which
// only ever favours a client that was idle.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace sirena::api {

struct BucketLimit {
  double rate = 0;   // tokens a second; 0 = no limit
  double burst = 0;  // bucket size (at least 1 when rate > 0)
};

class RateLimiter {
 public:
  explicit RateLimiter(BucketLimit limit, size_t max_entries = 100'000)
      : limit_(limit), max_entries_(max_entries) {}

  // Takes a token from `key`'s bucket. nullopt: allowed. Otherwise refused, and the value
  // is the whole seconds (at least 1) until a token is back: the Retry-After.
  std::optional<int64_t> take(std::string_view key, int64_t now_ns);

  bool enabled() const { return limit_.rate > 0; }
  size_t size() const { return buckets_.size(); }

 private:
  struct Bucket {
    double tokens;
    int64_t last_ns;
  };
  void trim(int64_t now_ns);

  BucketLimit limit_;
  size_t max_entries_;
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace sirena::api
