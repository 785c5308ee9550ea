// RetryQueue: when a failed message goes again, gives up or expires, with a ManualClock.
#include "daemon/dispatch/retry_queue.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

namespace sirena::dispatch {
namespace {

using Queue = RetryQueue<int>;

TEST(RetryQueueTest, AFailureIsRetriedWithinTheBackoffCeilingOrAfterRetryAfter) {
  ManualClock clock;
  Queue q(clock, Backoff(100, 1000, 42), 5);
  for (int attempt = 1; attempt < 5; ++attempt) {
    auto d = q.judge(attempt, 0, 0);
    EXPECT_EQ(d.verdict, Queue::Verdict::Retry);
    EXPECT_GE(d.due_ms, clock.now_ms());
    EXPECT_LE(d.due_ms, clock.now_ms() + std::min<int64_t>(1000, 100 << attempt));
  }
  // The gateway's Retry-After is a floor: sooner would only earn another 429.
  auto d = q.judge(1, 30'000, 0);
  EXPECT_EQ(d.verdict, Queue::Verdict::Retry);
  EXPECT_GE(d.due_ms, clock.now_ms() + 30'000);
}

TEST(RetryQueueTest, ItGivesUpAfterMaxAttemptsAndExpiresWhatWouldComeTooLate) {
  ManualClock clock;
  Queue q(clock, Backoff(100, 1000, 42), 3);
  EXPECT_EQ(q.judge(3, 0, 0).verdict, Queue::Verdict::GiveUp);
  // Its next attempt would come after the alert expires.
  EXPECT_EQ(q.judge(1, 5'000, clock.now_ms() + 4'000).verdict, Queue::Verdict::Expire);
  EXPECT_EQ(q.judge(1, 5'000, clock.now_ms() + 6'000).verdict, Queue::Verdict::Retry);
  // The attempts are judged before the expiry.
  EXPECT_EQ(q.judge(3, 5'000, clock.now_ms() + 1).verdict, Queue::Verdict::GiveUp);
}

TEST(RetryQueueTest, ItemsComeOutWhenDueEarliestFirst) {
  ManualClock clock;
  Queue q(clock, Backoff(), 8);
  int64_t t = clock.now_ms();
  EXPECT_EQ(q.next_due(), INT64_MAX);
  q.push(t + 300, 3);
  q.push(t + 100, 1);
  q.push(t + 200, 2);
  EXPECT_EQ(q.next_due(), t + 100);
  std::vector<int> out;
  q.take_due(t + 99, [&](int i) { out.push_back(i); });
  EXPECT_TRUE(out.empty());
  q.take_due(t + 200, [&](int i) { out.push_back(i); });
  EXPECT_EQ(out, (std::vector<int>{1, 2}));
  EXPECT_EQ(q.size(), 1u);
  EXPECT_EQ(q.next_due(), t + 300);
}

TEST(RetryQueueTest, ACancelTakesItsItemsOutAtOnce) {
  ManualClock clock;
  Queue q(clock, Backoff(), 8);
  int64_t t = clock.now_ms();
  for (int i = 0; i < 6; ++i) q.push(t + 100 * (6 - i), i);
  auto removed = q.remove_if([](int i) { return i % 2 == 0; });
  std::sort(removed.begin(), removed.end());
  EXPECT_EQ(removed, (std::vector<int>{0, 2, 4}));
  std::vector<int> out;
  q.take_due(t + 1000, [&](int i) { out.push_back(i); });
  EXPECT_EQ(out, (std::vector<int>{5, 3, 1}));
}

}  // namespace
}  // namespace sirena::dispatch
