// The batch loader: a batch read back from Redis alone (after a restart, no plan in
// memory) comes with the outcomes already recorded, and only the rest is sent.
#include "tests/dispatch/dispatcher_fixture.h"

namespace sirena::dispatch {
namespace {

TEST_F(DispatcherTest, ARestartReReadsItsOwnBatchesAndSendsOnlyWhatWasNotAccepted) {
  start();
  gw_->hold = true;
  plan(town(30));
  run_until([&] { return gw_->waiting.size() == 30; });
  // 20 accepted and written back; then the daemon stops with 10 requests under way.
  gw_->accept_oldest(20);
  run_until([&] { return progress("apns:accepted") == "20"; });
  std::set<std::string> first;
  for (const auto& [token, n] : gw_->sends) first.insert(token);
  std::set<std::string> unanswered;
  for (const auto& [token, done] : gw_->waiting) unanswered.insert(token);
  stop();

  start();  // the same consumer: its pending batch is read again, from Redis alone
  run_answering([&] { return state() == "completed"; });
  std::set<std::string> second;
  for (const auto& [token, n] : gw_->sends) second.insert(token);
  EXPECT_EQ(second, unanswered);
  EXPECT_EQ(progress("apns:accepted"), "30");
}

}  // namespace
}  // namespace sirena::dispatch
