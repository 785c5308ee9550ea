#include "daemon/api/rate_limit.h"

#include <gtest/gtest.h>

namespace sirena::api {
namespace {

constexpr int64_t kMs = 1'000'000;

TEST(RateLimiter, AllowsTheBurstThenTheRateAndSaysWhenToRetry) {
  RateLimiter limiter({10, 20});
  int64_t t = 5'000 * kMs;
  for (int i = 0; i < 20; ++i) EXPECT_FALSE(limiter.take("k", t)) << i;
  auto retry = limiter.take("k", t);
  ASSERT_TRUE(retry);
  EXPECT_EQ(*retry, 1);
  EXPECT_TRUE(limiter.take("k", t + 50 * kMs)) << "half a token back after 50 ms";
  EXPECT_FALSE(limiter.take("k", t + 100 * kMs)) << "one token back after 100 ms at 10/s";
  EXPECT_FALSE(limiter.take("other", t)) << "buckets are per key";
}

TEST(RateLimiter, RetryAfterCoversASlowRate) {
  RateLimiter limiter({0.1, 1});
  EXPECT_FALSE(limiter.take("k", 0));
  auto retry = limiter.take("k", 0);
  ASSERT_TRUE(retry);
  EXPECT_EQ(*retry, 10);
}

TEST(RateLimiter, ZeroRateIsNoLimit) {
  RateLimiter limiter({0, 0});
  for (int i = 0; i < 10'000; ++i) ASSERT_FALSE(limiter.take("k", 0));
  EXPECT_EQ(limiter.size(), 0u);
}

TEST(RateLimiter, TheTableStaysBoundedUnderManyClients) {
  RateLimiter limiter({1, 2}, 100);
  for (int i = 0; i < 10'000; ++i) limiter.take("addr-" + std::to_string(i), i * kMs);
  EXPECT_LE(limiter.size(), 100u);
  // Trimming forgets idle clients first: a flooder's empty bucket survives it.
  RateLimiter busy({1, 1}, 4);
  for (int i = 0; i < 3; ++i) busy.take("idle-" + std::to_string(i), 0);
  EXPECT_FALSE(busy.take("flooder", 10'000 * kMs));
  busy.take("new", 10'000 * kMs);  // the table is full: the three idle buckets go
  EXPECT_EQ(busy.size(), 2u);
  EXPECT_TRUE(busy.take("flooder", 10'000 * kMs)) << "still refused";
}

}  // namespace
}  // namespace sirena::api
