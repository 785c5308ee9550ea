// Delivery reports are group-committed (dispatch/report_writer.h): against a real
// redis-server, the reports of one loop turn go in one script call, those that arrive
// while a call is under way go together in the next, and each is answered from its call.
#include "daemon/dispatch/report_writer.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "daemon/store/keys.h"
#include "tests/dispatch/redis_loop_fixture.h"

namespace sirena::dispatch {
namespace {

class ReportWriterTest : public RedisLoopTest {
 protected:
  // Script calls Redis has run (EVALSHA and EVAL), from INFO commandstats.
  int script_calls() {
    std::string info = cli({"INFO", "commandstats"});
    int n = 0;
    for (const char* name : {"cmdstat_evalsha:calls=", "cmdstat_eval:calls="}) {
      auto at = info.find(name);
      if (at != std::string::npos) n += std::stoi(info.substr(at + std::string(name).size()));
    }
    return n;
  }
  ReportWriter::Report report(const std::string& number, const char* state,
                              std::vector<std::string>* answers) {
    return {store::keys::tenant("t1"), "A", "t1|" + number, state, "", [answers](Result<std::string> r) {
              answers->push_back(r ? *r : "error: " + r.error().message);
            }};
  }
};

TEST_F(ReportWriterTest, TheReportsOfOneTurnGoInOneCallAndEachIsAnswered) {
  // One SMS the dispatcher accepted and mapped (smsto), and two numbers it never sent to.
  cli({"HSET", "{t:t1}:smsto:A", "t1|+390001", "t1:4:sms"});
  cli({"HSET", "{t:t1}:deliv:A", "t1:4:sms", "accepted|1|"});
  ReportWriter writer(&loop_, *redis_);
  std::vector<std::string> answers;
  const int before = script_calls();
  writer.add(report("+390001", "delivered", &answers));
  writer.add(report("+390002", "delivered", &answers));
  writer.add(report("+390003", "", &answers));
  EXPECT_TRUE(answers.empty()) << "answered only once durable";
  run_until([&] { return answers.size() == 3; });
  EXPECT_EQ(answers, (std::vector<std::string>{"delivered", "unknown", "unknown"}));
  EXPECT_LE(script_calls() - before, 2) << "one call (and at most the script's first load)";
  EXPECT_EQ(cli({"HGET", "{t:t1}:deliv:A", "t1:4:sms"}), "delivered|1|\n");
  EXPECT_EQ(cli({"HGET", "{t:t1}:progress:A", "sms:delivered"}), "1\n");
  writer.stop();
}

TEST_F(ReportWriterTest, ReportsThatArriveWhileACallIsUnderWayGoTogetherInTheNext) {
  ReportWriter writer(&loop_, *redis_);
  std::vector<std::string> answers;
  writer.add(report("+1", "delivered", &answers));
  // The first call goes at the end of this turn.
  run_until([&] { return writer.calls_under_way() == 1; });
  const int before = script_calls();
  for (int k = 0; k < 50; ++k) writer.add(report("+2" + std::to_string(k), "delivered", &answers));
  EXPECT_EQ(writer.calls_under_way(), 1) << "the 50 wait for the call under way";
  run_until([&] { return answers.size() == 51; });
  // The first call may have been counted before or after `before`: at most two calls.
  EXPECT_LE(script_calls() - before, 2);
  writer.stop();
}

TEST_F(ReportWriterTest, AfterStopEachReportIsWrittenAtOnce) {
  ReportWriter writer(&loop_, *redis_);
  writer.stop();
  std::vector<std::string> answers;
  writer.add(report("+1", "failed", &answers));
  EXPECT_EQ(writer.calls_under_way(), 1) << "sent without waiting for a turn that may not come";
  run_until([&] { return answers.size() == 1; });
  EXPECT_EQ(answers[0], "unknown");
}

}  // namespace
}  // namespace sirena::dispatch
