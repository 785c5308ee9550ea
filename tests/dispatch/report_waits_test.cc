// ReportWaits: SMS accepted by a reporting gateway wait for their delivery report, with a
// ManualClock.
#include "daemon/dispatch/report_waits.h"

#include <gtest/gtest.h>

#include <vector>

namespace sirena::dispatch {
namespace {

TEST(ReportWaitsTest, AReportMakesItsMessageFinalOnce) {
  ManualClock clock;
  ReportWaits<int> w(clock);
  std::string key = report_key("A1", "t", "+393331234567");
  EXPECT_TRUE(w.await(key, 7, clock.now_ms() + 1000));
  EXPECT_EQ(w.waiting(), 1u);
  EXPECT_EQ(w.reported(key), 7);
  EXPECT_EQ(w.waiting(), 0u);
  EXPECT_EQ(w.next_due(), INT64_MAX);
  EXPECT_EQ(w.reported(key), std::nullopt);  // Kannel's second report: kept as early
}

TEST(ReportWaitsTest, AReportThatCameBeforeTheAcceptanceMakesItFinalAtOnce) {
  ManualClock clock;
  ReportWaits<int> w(clock);
  std::string key = report_key("A1", "t", "+393331234567");
  EXPECT_EQ(w.reported(key), std::nullopt);
  EXPECT_EQ(w.early(), 1u);
  EXPECT_FALSE(w.await(key, 7, clock.now_ms() + 1000));
  EXPECT_EQ(w.early(), 0u);  // used up
  EXPECT_TRUE(w.await(key, 8, clock.now_ms() + 1000));
  // The same number twice in one alert cannot be told apart: the second is final at once.
  EXPECT_FALSE(w.await(key, 9, clock.now_ms() + 1000));
}

TEST(ReportWaitsTest, AMessageWithoutAReportInTimeComesBackOverdue) {
  ManualClock clock;
  ReportWaits<int> w(clock);
  int64_t t = clock.now_ms();
  w.await("a", 1, t + 500);
  w.await("b", 2, t + 100);
  EXPECT_EQ(w.next_due(), t + 100);
  std::vector<int> overdue;
  w.take_overdue(t + 99, [&](int i) { overdue.push_back(i); });
  EXPECT_TRUE(overdue.empty());
  w.take_overdue(t + 500, [&](int i) { overdue.push_back(i); });
  EXPECT_EQ(overdue, (std::vector<int>{2, 1}));
  EXPECT_EQ(w.waiting(), 0u);
  EXPECT_EQ(w.reported("a"), std::nullopt);  // too late: it is being sent again
}

TEST(ReportWaitsTest, EarlyReportsAreForgottenAfterTheirWindowAndBoundedInNumber) {
  ManualClock clock;
  ReportWaits<int> w(clock, /*early_ms=*/1000, /*max_early=*/2);
  (void)w.reported("x");
  clock.advance_ms(1001);
  w.take_overdue(clock.now_ms(), [](int) {});
  EXPECT_EQ(w.early(), 0u);
  EXPECT_TRUE(w.await("x", 1, clock.now_ms() + 10));  // the stale report no longer counts

  (void)w.reported("p");
  (void)w.reported("q");
  (void)w.reported("r");  // over the bound: the oldest goes
  EXPECT_EQ(w.early(), 2u);
  EXPECT_TRUE(w.await("p", 2, clock.now_ms() + 10));
  EXPECT_FALSE(w.await("r", 3, clock.now_ms() + 10));
}

}  // namespace
}  // namespace sirena::dispatch
