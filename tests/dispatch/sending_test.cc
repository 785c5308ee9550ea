// Sending: what a cancel or the alert's expiry does to messages queued and under way.
#include "tests/dispatch/dispatcher_fixture.h"

namespace sirena::dispatch {
namespace {

TEST_F(DispatcherTest, ACancelDropsWhatIsQueuedAndTheRequestsUnderWayFinish) {
  start();
  gw_->capacity_ = 10;
  gw_->hold = true;
  plan(town(50));
  run_until([&] { return gw_->waiting.size() == 10; });
  dispatcher_->cancel("A");
  gw_->hold = false;
  run_answering([&] { return progress("apns:cancelled") == "40" && progress("apns:accepted") == "10"; });
  EXPECT_EQ(gw_->sends.size(), 10u);  // nothing more went after the cancel
}

TEST_F(DispatcherTest, WhatIsStillQueuedWhenTheAlertExpiresIsRecordedExpiredNotSent) {
  alert_.infos[0].expires = alerts::Timestamp{"", time_.now_ms() + 60'000};
  start();
  gw_->capacity_ = 10;
  gw_->hold = true;
  plan(town(50));
  run_until([&] { return gw_->waiting.size() == 10; });
  time_.advance_ms(61'000);  // the alert expires with 40 messages queued
  gw_->hold = false;
  run_answering([&] { return progress("apns:expired") == "40" && progress("apns:accepted") == "10"; });
  EXPECT_EQ(gw_->sends.size(), 10u);
}

}  // namespace
}  // namespace sirena::dispatch
