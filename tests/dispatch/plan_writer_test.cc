// The plan writer: an accepted alert's batches, written once, sent and acknowledged.
#include "tests/dispatch/dispatcher_fixture.h"

namespace sirena::dispatch {
namespace {

TEST_F(DispatcherTest, APlanGoesOutWholeOnceAndItsOutcomesAreWrittenBack) {
  start();
  plan(town(2500));  // three batches of 1,000
  run_answering([&] { return state() == "completed"; });
  EXPECT_EQ(gw_->sends.size(), 2500u);
  for (const auto& [token, n] : gw_->sends) EXPECT_EQ(n, 1) << token;
  EXPECT_EQ(progress("apns:accepted"), "2500");
  EXPECT_EQ(hget("{t:t1}:plan:A", "batches"), "3");
  // Every batch acknowledged: nothing left for a restart to send again.
  std::string pending = cli({"XPENDING", store::keys::dispatch_stream(0), "sirenad"});
  EXPECT_EQ(pending.substr(0, pending.find('\n')), "0");
}

TEST_F(DispatcherTest, AnAlertNoLongerAcceptedGetsNoPlanAndNothingIsSent) {
  start();
  auto res = town(10);
  write({"HSET", store::keys::alert("t1", "A"), "state", "cancelled"});  // cancelled meanwhile
  plan(res);
  EXPECT_EQ(hget("{t:t1}:plan:A", "batches"), "");
  EXPECT_TRUE(gw_->sends.empty());
  EXPECT_EQ(state(), "cancelled");
}

}  // namespace
}  // namespace sirena::dispatch
