// The fan-out's read models (dispatch/progress.h) against a real redis-server holding
// what the dispatcher writes: counts per channel, and the deliveries listing's two phases
// (the deliv hash, then the first-attempt records) with its cursors.
#include "daemon/dispatch/progress.h"

#include <gtest/gtest.h>

#include <optional>

#include "tests/dispatch/redis_loop_fixture.h"

namespace sirena::dispatch {
namespace {

class ProgressTest : public RedisLoopTest {
 protected:
  void SetUp() override {
    RedisLoopTest::SetUp();
    reader_ = std::make_unique<ProgressReader>(*redis_);
  }
  void TearDown() override {
    reader_.reset();
    RedisLoopTest::TearDown();
  }

  Result<Progress> progress(std::vector<Channel> channels) {
    std::optional<Result<Progress>> out;
    reader_->progress("t1", "A", std::move(channels), [&](Result<Progress> p) { out = std::move(p); });
    run_until([&] { return out.has_value(); });
    return std::move(*out);
  }
  Result<DeliveryPage> page(const std::string& state, const std::string& cursor, size_t limit) {
    std::optional<Result<DeliveryPage>> out;
    reader_->deliveries("t1", "A", state, cursor, limit, [&](Result<DeliveryPage> p) { out = std::move(p); });
    run_until([&] { return out.has_value(); });
    return std::move(*out);
  }

  std::unique_ptr<ProgressReader> reader_;
};

TEST_F(ProgressTest, CountsPerChannelWithPendingAsPlannedMinusFinal) {
  cli({"HSET", "{t:t1}:plan:A", "batches", "2", "planned:apns", "10", "planned:sms", "4", "planned:fcm",
       "1"});
  cli({"HSET", "{t:t1}:progress:A", "apns:accepted", "6", "apns:failed", "1", "sms:delivered", "3",
       "sms:accepted", "2", "fcm:accepted", "x"});
  auto p = progress({Channel::Sms, Channel::Apns});
  ASSERT_TRUE(p) << p.error().message;
  ASSERT_EQ(p->size(), 2u);  // FCM is not a channel of this daemon: not shown
  EXPECT_EQ(p->at("apns").planned, 10);
  EXPECT_EQ(p->at("apns").accepted, 6);
  EXPECT_EQ(p->at("apns").failed, 1);
  EXPECT_EQ(p->at("apns").pending, 3);
  EXPECT_EQ(p->at("sms").delivered, 3);
  EXPECT_EQ(p->at("sms").pending, 0);  // more final than planned never goes below 0
}

TEST_F(ProgressTest, AnAlertWithNothingWrittenHasZeroCounts) {
  auto p = progress({Channel::Apns});
  ASSERT_TRUE(p);
  EXPECT_EQ(p->at("apns").planned, 0);
  EXPECT_EQ(p->at("apns").pending, 0);
}

TEST_F(ProgressTest, DeliveriesListTheHashThenTheFirstAttemptRecordsWithinTheLimit) {
  // Two deliveries in the hash; batch 0 recorded two APNs messages accepted at the first
  // attempt (positions 0 and 1 of its slots 7 and 9).
  cli({"HSET", "{t:t1}:deliv:A", "t1:3:sms", "failed|8|timeout", "t1:5:apns", "delivered|1|"});
  cli({"HSET", "{t:t1}:plan:A", "next", "1"});
  cli({"SET", "{t:t1}:batch:A:0", "t1\n7 9"});
  cli({"HSET", "{t:t1}:acc:A", "0", "apns:0-1,"});
  auto first = page("", "", 3);
  ASSERT_TRUE(first) << first.error().message;
  // The limit holds across the two phases (the old listing returned 4 here: the records'
  // share was counted from an already moved-from list).
  ASSERT_EQ(first->items.size(), 3u);
  ASSERT_TRUE(first->next);
  EXPECT_EQ(*first->next, "a0.1");  // one message of batch 0 listed
  int failed = 0;
  for (const auto& d : first->items)
    if (d.state == "failed") {
      ++failed;
      EXPECT_EQ(d.channel, "sms");
      EXPECT_EQ(d.attempts, 8);
      EXPECT_EQ(d.error, "timeout");
    }
  EXPECT_EQ(failed, 1);
  auto second = page("", *first->next, 3);
  ASSERT_TRUE(second);
  ASSERT_EQ(second->items.size(), 1u);
  EXPECT_EQ(second->items[0].state, "accepted");
  EXPECT_EQ(second->items[0].channel, "apns");
  EXPECT_FALSE(second->next);  // the end
}

TEST_F(ProgressTest, AStateFilterSkipsTheRecordsWhenItIsNotAccepted) {
  cli({"HSET", "{t:t1}:deliv:A", "t1:3:sms", "failed|8|timeout", "t1:5:apns", "delivered|1|"});
  cli({"SET", "{t:t1}:batch:A:0", "t1\n7 9"});
  cli({"HSET", "{t:t1}:acc:A", "0", "apns:0-1,"});
  auto p = page("failed", "", 10);
  ASSERT_TRUE(p);
  ASSERT_EQ(p->items.size(), 1u);
  EXPECT_EQ(p->items[0].state, "failed");
  EXPECT_FALSE(p->next);
}

TEST_F(ProgressTest, ACursorItDidNotGiveIs400) {
  for (const char* cursor : {"x", "a1", "a-1.0", "a1.x", "12a"}) {
    auto p = page("", cursor, 10);
    ASSERT_FALSE(p) << cursor;
    EXPECT_EQ(p.error().kind, ErrorKind::BadRequest) << cursor;
    EXPECT_EQ(p.error().code, "invalid_parameter") << cursor;
  }
  auto p = page("failed", "a0.0", 10);  // the records hold accepted messages only
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().kind, ErrorKind::BadRequest);
}

}  // namespace
}  // namespace sirena::dispatch
