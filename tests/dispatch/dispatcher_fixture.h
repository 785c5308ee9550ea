// The dispatcher's parts in one process against a real redis-server, with a fake gateway
// in place of the simulators and a ManualClock: the fixture of the plan writer, work
// source, batch loader, outcome writer and sending tests. What the dispatcher writes is
// read back from Redis.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <set>

#include "daemon/alerts/alert_json.h"
#include "daemon/directory/directory.h"
#include "daemon/dispatch/dispatcher.h"
#include "daemon/store/keys.h"
#include "tests/dispatch/redis_loop_fixture.h"

namespace sirena::dispatch {

// An APNs gateway that answers on the test's loop turns: each request gets what `answer`
// says, or waits while `hold` is set.
class FakeApns final : public Gateway {
 public:
  const std::string& name() const override { return name_; }
  Channel channel() const override { return Channel::Apns; }
  void send(const Message& m, std::function<void(const SendResult&)> done) override {
    ++sends[m.address];
    waiting.emplace_back(m.address, std::move(done));
  }
  size_t capacity() const override { return capacity_ > waiting.size() ? capacity_ - waiting.size() : 0; }
  void close(std::function<void()> done) override {
    answer_all(Outcome::Retry);  // a lost connection: the requests under way failed
    done();
  }
  // Answers what waits (unless held); returns how many.
  size_t step() {
    if (hold) return 0;
    size_t n = waiting.size();
    for (auto& [token, done] : std::exchange(waiting, {})) {
      Outcome o = answer ? answer(token) : Outcome::Accepted;
      done(SendResult{o, 0, o == Outcome::Retry ? "ServiceUnavailable" : "", 0});
    }
    return n;
  }
  // Accepts the `n` oldest requests, even while held.
  void accept_oldest(size_t n) {
    for (size_t i = 0; i < n; ++i) {
      auto done = std::move(waiting.front().second);
      waiting.erase(waiting.begin());
      done(SendResult{Outcome::Accepted, 0, "", 0});
    }
  }
  void answer_all(Outcome o) {
    for (auto& [token, done] : std::exchange(waiting, {})) done(SendResult{o, 0, "", 0});
  }

  std::map<std::string, int> sends;  // by token
  std::vector<std::pair<std::string, std::function<void(const SendResult&)>>> waiting;
  std::function<Outcome(const std::string& token)> answer;
  bool hold = false;
  size_t capacity_ = 1000;

 private:
  std::string name_ = "apns";
};

inline constexpr const char* kAlert = R"({
  "identifier": "T1-001", "sender": "cp@t1.example", "sent": "2026-12-08T01:00:00+01:00",
  "status": "Actual", "msg_type": "Alert", "scope": "Public",
  "infos": [{"language": "it-IT", "categories": ["Met"], "event": "Piena",
             "urgency": "Immediate", "severity": "Severe", "certainty": "Observed",
             "headline": "Piena del Secchia",
             "areas": [{"desc": "Soliera", "circles": [{"lat": 44.73, "lon": 10.92, "radius_km": 2}]}]}]
})";

class DispatcherTest : public RedisLoopTest {
 protected:
  void SetUp() override {
    RedisLoopTest::SetUp();
    directory_ = std::make_unique<directory::Directory>(*redis_, clock_, metrics_);
    auto parsed = alerts::parse_alert_json(kAlert);
    ASSERT_TRUE(parsed) << parsed.error().message;
    alert_ = std::move(parsed).value();
  }
  void TearDown() override {
    stop();
    directory_.reset();
    RedisLoopTest::TearDown();
  }

  void start(DispatchConfig cfg = {}) {
    if (cfg.consumer == DispatchConfig{}.consumer) cfg.consumer = "test";
    cfg.backoff_base_ms = 1;
    cfg.backoff_cap_ms = 4;
    auto gw = std::make_unique<FakeApns>();
    gw_ = gw.get();
    dispatcher_ = std::make_unique<Dispatcher>(&loop_, *redis_, *directory_, time_, metrics_, cfg);
    dispatcher_->add_gateway(std::move(gw));
    dispatcher_->start();
  }
  void stop() {
    if (!dispatcher_) return;
    bool stopped = false;
    dispatcher_->stop([&] { stopped = true; });
    // Its last write-back answered too: nothing may call back into it once it is gone.
    run_until([&] { return stopped && redis_->pending() == 0; });
    dispatcher_.reset();
    gw_ = nullptr;
  }

  // Through the client, not redis-cli: packed contacts and JSON are no shell words.
  void write(const std::vector<std::string>& args) {
    std::vector<std::string_view> argv(args.begin(), args.end());
    bool done = false;
    redis_->command(argv, [&](store::Reply, const Error* e) {
      EXPECT_EQ(e, nullptr);
      done = true;
    });
    run_until([&] { return done; });
  }
  // `n` recipients in slots 0..n-1, each with one APNs token "tok-<slot>"; the alert
  // stored as intake leaves it: accepted.
  std::shared_ptr<directory::Resolution> town(size_t n) {
    auto res = std::make_shared<directory::Resolution>();
    res->parts.push_back({"t1", {}, false});
    std::vector<std::string> hset{"HSET", store::keys::contacts("t1")};
    for (size_t slot = 0; slot < n; ++slot) {
      directory::Recipient r;
      r.id = "r-" + std::to_string(slot);
      r.push.push_back({directory::Platform::Apns, "it.example.app", "tok-" + std::to_string(slot)});
      hset.push_back(std::to_string(slot));
      hset.push_back(directory::pack_contacts(r));
      res->parts[0].slots.push_back(static_cast<directory::Slot>(slot));
    }
    write(hset);
    res->recipients = n;
    res->by_channel["apns"] = n;
    write({"HSET", store::keys::alert("t1", "A"), "state", "accepted", "parsed",
           alerts::alert_to_json(alert_).dump(), "received_ms", std::to_string(clock_.now_ms()), "expires_ms",
           "0"});
    return res;
  }
  void plan(std::shared_ptr<directory::Resolution> res) {
    std::optional<Status> planned;
    dispatcher_->plan("t1", "A", alert_, time_.now_ms(), std::move(res), [&](Status s) { planned = s; });
    run_until([&] { return planned.has_value(); });
    ASSERT_TRUE(*planned) << planned->error().message;
  }
  // Runs the loop, the fake gateway answering, until `done`; the dispatcher's clock moves
  // `advance_ms` a turn.
  void run_answering(const std::function<bool()>& done, int64_t advance_ms = 0) {
    run_until([&] {
      if (gw_) gw_->step();
      time_.advance_ms(advance_ms);
      return done();
    });
  }
  // A field read back through the client (cheap enough to poll on every loop turn).
  std::string hget(const std::string& key, const std::string& field) {
    std::optional<std::string> v;
    redis_->command({"HGET", key, field}, [&](store::Reply r, const Error*) { v = r.string(); });
    run_until([&] { return v.has_value(); });
    return v.value_or(std::string());
  }
  std::string progress(const std::string& field) { return hget("{t:t1}:progress:A", field); }
  std::string state() { return hget(store::keys::alert("t1", "A"), "state"); }
  std::string outcome(size_t slot) { return hget("{t:t1}:deliv:A", "t1:" + std::to_string(slot) + ":apns"); }

  std::unique_ptr<directory::Directory> directory_;
  std::unique_ptr<Dispatcher> dispatcher_;
  FakeApns* gw_ = nullptr;
  alerts::Alert alert_;
  ManualClock time_;  // the dispatcher's (the Redis client keeps the system clock)
};

}  // namespace sirena::dispatch
