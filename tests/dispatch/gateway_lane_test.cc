// GatewayLane: priorities, fairness between tenants, slices, the circuit breaker, the rate
// limit and whole batches, with a fake gateway and a ManualClock. No sockets.
#include "daemon/dispatch/gateway_lane.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sirena::dispatch {
namespace {

// Takes every message it is given and answers when told to.
class FakeGateway final : public Gateway {
 public:
  explicit FakeGateway(size_t capacity = 1000, size_t batch = 1) : capacity_(capacity), batch_(batch) {}
  const std::string& name() const override { return name_; }
  Channel channel() const override { return Channel::Apns; }
  void send(const Message& m, std::function<void(const SendResult&)> done) override {
    sent.push_back(m.address);
    waiting.push_back(std::move(done));
  }
  size_t capacity() const override { return capacity_ > waiting.size() ? capacity_ - waiting.size() : 0; }
  size_t batch_size() const override { return batch_; }
  void close(std::function<void()> done) override { done(); }

  // Answers the oldest request.
  void answer(Outcome o) {
    auto done = std::move(waiting.front());
    waiting.erase(waiting.begin());
    done(SendResult{o, 0, "", 0});
  }

  std::vector<std::string> sent;
  std::vector<std::function<void(const SendResult&)>> waiting;

 private:
  std::string name_ = "fake";
  size_t capacity_;
  size_t batch_;
};

// The dispatcher's side of the pump: sends everything, unless told otherwise.
struct Driver {
  GatewayLane<std::string>& lane;
  bool open = true;
  std::string drop;  // settle() finishes this one without a request
  std::vector<std::string> settled;

  bool may_send() { return open; }
  bool settle(const std::string& item) {
    if (item != drop) return false;
    settled.push_back(item);
    return true;
  }
  void send(const std::string& item) {
    Message m;
    m.address = item;
    lane.send(m, [](const SendResult&) {});
  }
};

struct Lane {
  ManualClock clock;
  FakeGateway* gw;
  GatewayLane<std::string> lane;
  Driver driver{lane, true, {}, {}};

  explicit Lane(double rate = 1e6, size_t capacity = 1000, size_t batch = 1)
      : gw(new FakeGateway(capacity, batch)), lane(clock, std::unique_ptr<Gateway>(gw), rate) {}
};

TEST(GatewayLaneTest, TheMostUrgentPriorityGoesFirstAndTenantsTakeTurnsWithinOne) {
  Lane l;
  l.lane.push_back(2, "t-a", "low-a1");
  l.lane.push_back(0, "t-a", "a1");
  l.lane.push_back(0, "t-a", "a2");
  l.lane.push_back(0, "t-a", "a3");
  l.lane.push_back(0, "t-b", "b1");
  l.lane.push_back(0, "t-b", "b2");
  EXPECT_EQ(l.lane.queued(), 6u);
  l.lane.pump(l.driver);
  EXPECT_EQ(l.gw->sent, (std::vector<std::string>{"a1", "b1", "a2", "b2", "a3", "low-a1"}));
  EXPECT_EQ(l.lane.queued(), 0u);
  EXPECT_EQ(l.lane.in_flight(), 6u);
}

TEST(GatewayLaneTest, AnIdleGatewayGetsASmallFirstSliceThenFullSlices) {
  Lane l;
  for (int i = 0; i < 300; ++i) l.lane.push_back(1, "t", "m" + std::to_string(i));
  auto first = l.lane.pump(l.driver);
  EXPECT_TRUE(first.more);
  EXPECT_EQ(l.gw->sent.size(), GatewayLane<std::string>::kFirstBurst);
  auto second = l.lane.pump(l.driver);  // requests in flight now: a whole slice
  EXPECT_TRUE(second.more);
  EXPECT_EQ(l.gw->sent.size(), GatewayLane<std::string>::kFirstBurst + GatewayLane<std::string>::kBurst);
  EXPECT_EQ(second.wait_ms, -1);
}

TEST(GatewayLaneTest, AFullGatewayStopsThePumpWithNothingLost) {
  Lane l(1e6, /*capacity=*/3);
  for (int i = 0; i < 5; ++i) l.lane.push_back(1, "t", "m" + std::to_string(i));
  auto p = l.lane.pump(l.driver);
  EXPECT_FALSE(p.more);
  EXPECT_EQ(p.wait_ms, -1);  // the answers pump again
  EXPECT_EQ(l.gw->sent.size(), 3u);
  EXPECT_EQ(l.lane.queued(), 2u);
  l.gw->answer(Outcome::Accepted);
  EXPECT_EQ(l.lane.in_flight(), 2u);
  l.lane.pump(l.driver);
  EXPECT_EQ(l.gw->sent.back(), "m3");
}

TEST(GatewayLaneTest, TheDriverSettlesWhatNeedNotGoAndCanHoldThePump) {
  Lane l;
  l.lane.push_back(1, "t", "cancelled");
  l.lane.push_back(1, "t", "live");
  l.driver.drop = "cancelled";
  l.lane.pump(l.driver);
  EXPECT_EQ(l.driver.settled, std::vector<std::string>{"cancelled"});
  EXPECT_EQ(l.gw->sent, std::vector<std::string>{"live"});

  l.lane.push_back(1, "t", "later");
  l.driver.open = false;  // outcomes not yet durable: nothing is taken out
  l.lane.pump(l.driver);
  EXPECT_EQ(l.lane.queued(), 1u);
  EXPECT_EQ(l.gw->sent.size(), 1u);
}

TEST(GatewayLaneTest, TransientFailuresOpenTheBreakerWhichHoldsTheQueueAndProbesLater) {
  Lane l(1e6, /*capacity=*/50);
  for (int i = 0; i < 70; ++i) l.lane.push_back(1, "t", "m" + std::to_string(i));
  while (l.lane.pump(l.driver).more) {
  }
  ASSERT_EQ(l.gw->sent.size(), 50u);
  // Bad tokens are the recipients' problem: they do not count against the gateway.
  l.gw->answer(Outcome::Unregistered);
  l.gw->answer(Outcome::Permanent);
  while (!l.gw->waiting.empty()) l.gw->answer(Outcome::Retry);
  EXPECT_EQ(l.lane.circuit(), CircuitBreaker::State::Closed);  // 48 failures in a row
  l.lane.pump(l.driver);                                       // an idle gateway's first slice
  ASSERT_EQ(l.gw->sent.size(), 58u);
  l.gw->answer(Outcome::Retry);
  l.gw->answer(Outcome::Retry);
  EXPECT_EQ(l.lane.circuit(), CircuitBreaker::State::Open);

  auto p = l.lane.pump(l.driver);
  EXPECT_EQ(p.wait_ms, GatewayLane<std::string>::kBreakerWaitMs);
  EXPECT_EQ(l.gw->sent.size(), 58u);
  EXPECT_EQ(l.lane.queued(), 12u);  // the one taken was put back, first in line

  l.clock.advance_ms(2000);  // half-open: a few probes go, the rest wait
  p = l.lane.pump(l.driver);
  EXPECT_EQ(l.gw->sent.size(), 63u);
  EXPECT_EQ(l.gw->sent.back(), "m62");
  EXPECT_EQ(p.wait_ms, GatewayLane<std::string>::kBreakerWaitMs);
  EXPECT_EQ(l.lane.circuit(), CircuitBreaker::State::HalfOpen);
  l.gw->answer(Outcome::Accepted);  // one success closes it
  EXPECT_EQ(l.lane.circuit(), CircuitBreaker::State::Closed);
  l.lane.pump(l.driver);
  EXPECT_EQ(l.lane.queued(), 0u);
}

TEST(GatewayLaneTest, TheRateLimitHoldsTheQueueAndSaysWhenTheNextMessageMayGo) {
  Lane l(/*rate=*/10);  // 10 a second, a one-second burst
  for (int i = 0; i < 20; ++i) l.lane.push_back(1, "t", "m" + std::to_string(i));
  GatewayLane<std::string>::Pumped p;
  while ((p = l.lane.pump(l.driver)).more) {
  }
  EXPECT_EQ(l.gw->sent.size(), 10u);
  EXPECT_GT(p.wait_ms, 0);
  EXPECT_LE(p.wait_ms, 101);  // a token every 100 ms, rounded up
  l.clock.advance_ms(p.wait_ms);
  l.lane.pump(l.driver);
  EXPECT_EQ(l.gw->sent.size(), 11u);
  EXPECT_EQ(l.lane.queued(), 9u);
}

TEST(GatewayLaneTest, ABatchingGatewayIsReleasedWholeBatches) {
  Lane l(/*rate=*/5, 1000, /*batch=*/5);
  for (int i = 0; i < 12; ++i) l.lane.push_back(1, "t", "m" + std::to_string(i));
  auto p = l.lane.pump(l.driver);
  EXPECT_EQ(l.gw->sent.size(), 5u);  // one whole batch, not a trickle
  EXPECT_GT(p.wait_ms, 0);
  l.clock.advance_ms(600);  // 3 tokens: not yet a batch
  l.lane.pump(l.driver);
  EXPECT_EQ(l.gw->sent.size(), 5u);
  l.clock.advance_ms(400);
  l.lane.pump(l.driver);
  EXPECT_EQ(l.gw->sent.size(), 10u);
}

TEST(GatewayLaneTest, RemoveIfTakesOutOnlyTheMatchingItems) {
  Lane l;
  l.lane.push_back(0, "t-a", "x1");
  l.lane.push_back(1, "t-b", "y1");
  l.lane.push_back(1, "t-a", "x2");
  std::vector<std::string> removed;
  l.lane.remove_if([&](const std::string& s) {
    if (s[0] != 'x') return false;
    removed.push_back(s);
    return true;
  });
  EXPECT_EQ(removed, (std::vector<std::string>{"x1", "x2"}));
  EXPECT_EQ(l.lane.queued(), 1u);
  l.lane.pump(l.driver);
  EXPECT_EQ(l.gw->sent, std::vector<std::string>{"y1"});
}

}  // namespace
}  // namespace sirena::dispatch
