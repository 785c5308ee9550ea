// ParsePool: bodies posted in one loop turn go to libuv's thread pool as one job, each
// gets its own result on the loop, and a bad body spoils none of the others.
#include "daemon/alerts/parse_async.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "tests/alerts/test_util.h"

namespace sirena::alerts {
namespace {

class ParsePoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    uv_loop_init(&loop_);
    pool_ = std::make_unique<ParsePool>(&loop_);
  }
  void TearDown() override {
    pool_.reset();
    uv_run(&loop_, UV_RUN_DEFAULT);  // the hook's close
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }
  // Queues `bodies` in this turn; runs the loop until every one is answered.
  std::vector<Result<Alert>> parse_all(const std::vector<std::string>& bodies) {
    std::vector<std::optional<Result<Alert>>> out(bodies.size());
    for (size_t i = 0; i < bodies.size(); ++i)
      pool_->parse(AlertFormat::Json, std::make_shared<const std::string>(bodies[i]), {},
                   [&out, i](Result<Alert>&& r) { out[i] = std::move(r); });
    for (const auto& r : out) EXPECT_FALSE(r.has_value());  // never from inside parse()
    uv_run(&loop_, UV_RUN_DEFAULT);
    std::vector<Result<Alert>> results;
    for (auto& r : out) {
      EXPECT_TRUE(r.has_value());
      if (r) results.push_back(std::move(*r));
    }
    return results;
  }

  uv_loop_t loop_{};
  std::unique_ptr<ParsePool> pool_;
};

TEST_F(ParsePoolTest, TheBodiesOfOneTurnShareOneJobAndEachGetsItsOwnResult) {
  std::string good = test::documented_json_example();
  auto results = parse_all({good, "{not json", good});
  EXPECT_EQ(pool_->jobs_queued(), 1u);
  ASSERT_EQ(results.size(), 3u);
  ASSERT_TRUE(results[0]);
  EXPECT_EQ(results[0]->identifier, "SOL-2024-0516-001");
  ASSERT_FALSE(results[1]);
  EXPECT_EQ(results[1].error().code, "malformed_json");
  EXPECT_TRUE(results[2]);
}

TEST_F(ParsePoolTest, AFullJobGoesAtOnceAndTheRestFollowsInTheNextJob) {
  std::vector<std::string> bodies(ParsePool::kMaxJobs + 3, test::documented_json_example());
  auto results = parse_all(bodies);
  EXPECT_EQ(pool_->jobs_queued(), 2u);
  ASSERT_EQ(results.size(), bodies.size());
  for (const auto& r : results) EXPECT_TRUE(r);
}

TEST_F(ParsePoolTest, TheAfterStepRunsOnAWorkerOnlyForAlertsThatParsed) {
  std::atomic<int> after_runs = 0;
  std::atomic<bool> on_loop_thread = false;
  const auto loop_thread = std::this_thread::get_id();
  int answered = 0;
  for (std::string body : {test::documented_json_example(), std::string("[]")})
    pool_->parse(
        AlertFormat::Json, std::make_shared<const std::string>(body), {}, [&](Result<Alert>&&) { ++answered; },
        [&](const Alert&) {
          ++after_runs;
          if (std::this_thread::get_id() == loop_thread) on_loop_thread = true;
        });
  uv_run(&loop_, UV_RUN_DEFAULT);
  EXPECT_EQ(answered, 2);
  EXPECT_EQ(after_runs, 1);
  EXPECT_FALSE(on_loop_thread);
}

}  // namespace
}  // namespace sirena::alerts
