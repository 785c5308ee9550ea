// The outcome writer: each final outcome recorded with its attempts and reason, and counted.
#include "tests/dispatch/dispatcher_fixture.h"

namespace sirena::dispatch {
namespace {

TEST_F(DispatcherTest, ATransientFailureIsRetriedAndRecordedWithItsAttempts) {
  start();
  int failures = 0;
  gw_->answer = [&](const std::string& token) {
    return token == "tok-7" && failures++ < 2 ? Outcome::Retry : Outcome::Accepted;
  };
  plan(town(20));
  run_answering([&] { return state() == "completed"; }, /*advance_ms=*/1);  // backoffs pass
  EXPECT_EQ(gw_->sends["tok-7"], 3);
  EXPECT_EQ(outcome(7), "accepted|3|");
  EXPECT_EQ(progress("apns:accepted"), "20");
}

TEST_F(DispatcherTest, AMessageThatKeepsFailingFailsAfterMaxAttemptsWithTheReason) {
  DispatchConfig cfg;
  cfg.max_attempts = 3;
  start(cfg);
  gw_->answer = [](const std::string& token) {
    return token == "tok-3" ? Outcome::Retry : Outcome::Accepted;
  };
  plan(town(10));
  run_answering([&] { return state() == "completed"; }, /*advance_ms=*/1);  // backoffs pass
  EXPECT_EQ(gw_->sends["tok-3"], 3);
  EXPECT_EQ(outcome(3), "failed|3|gave up after 3 attempts: ServiceUnavailable");
  EXPECT_EQ(progress("apns:accepted"), "9");
  EXPECT_EQ(progress("apns:failed"), "1");
}

}  // namespace
}  // namespace sirena::dispatch
