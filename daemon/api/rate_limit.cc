#include "daemon/api/rate_limit.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace sirena::api {

std::optional<int64_t> RateLimiter::take(std::string_view key, int64_t now_ns) {
  if (!enabled()) return std::nullopt;
  const double burst = std::max(1.0, limit_.burst);
  auto it = buckets_.find(std::string(key));
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_entries_) trim(now_ns);
    it = buckets_.emplace(std::string(key), Bucket{burst, now_ns}).first;
  }
  Bucket& b = it->second;
  double elapsed_s = static_cast<double>(std::max<int64_t>(0, now_ns - b.last_ns)) / 1e9;
  b.tokens = std::min(burst, b.tokens + elapsed_s * limit_.rate);
  b.last_ns = now_ns;
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return std::nullopt;
  }
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil((1.0 - b.tokens) / limit_.rate)));
}

void RateLimiter::trim(int64_t now_ns) {
  const double burst = std::max(1.0, limit_.burst);
  // Buckets that would be full by now belong to idle clients: forgetting them changes nothing.
  std::erase_if(buckets_, [&](const auto& kv) {
    double elapsed_s = static_cast<double>(std::max<int64_t>(0, now_ns - kv.second.last_ns)) / 1e9;
    return kv.second.tokens + elapsed_s * limit_.rate >= burst;
  });
  if (buckets_.size() < max_entries_) return;
  // Every client is busy (a flood from many addresses): drop the least recently used half.
  std::vector<int64_t> used;
  used.reserve(buckets_.size());
  for (const auto& [k, b] : buckets_) used.push_back(b.last_ns);
  auto mid = used.begin() + static_cast<std::ptrdiff_t>(used.size() / 2);
  std::nth_element(used.begin(), mid, used.end());
  int64_t cut = *mid;
  std::erase_if(buckets_, [&](const auto& kv) { return kv.second.last_ns <= cut; });
}

}  // namespace sirena::api
