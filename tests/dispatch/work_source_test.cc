// The work source: the batches of a daemon that stopped are taken over by another.
#include "tests/dispatch/dispatcher_fixture.h"

namespace sirena::dispatch {
namespace {

TEST_F(DispatcherTest, AnotherDaemonTakesOverTheBatchesOfOneThatStopped) {
  DispatchConfig a;
  a.consumer = "daemon-a";
  start(a);
  gw_->hold = true;
  plan(town(30));
  run_until([&] { return gw_->waiting.size() == 30; });
  gw_->accept_oldest(10);
  run_until([&] { return progress("apns:accepted") == "10"; });
  stop();  // daemon-a is gone with its batch pending

  DispatchConfig b;
  b.consumer = "daemon-b";
  b.reclaim_idle_ms = 100;  // a batch idle this long on another consumer is taken over
  start(b);
  run_answering([&] { return state() == "completed"; }, /*advance_ms=*/5);
  EXPECT_EQ(gw_->sends.size(), 20u);  // only what daemon-a had not had accepted
  for (int i = 0; i < 10; ++i) EXPECT_EQ(gw_->sends.count("tok-" + std::to_string(i)), 0u);
  EXPECT_EQ(progress("apns:accepted"), "30");
}

}  // namespace
}  // namespace sirena::dispatch
