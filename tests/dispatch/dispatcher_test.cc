// The dispatcher end to end inside one process: the plan writer, the work source, the
// batch loader, the lanes and the outcome writer against a real redis-server, with a fake
// gateway in place of the simulators. What it writes is read back from Redis.
#include "daemon/dispatch/dispatcher.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "daemon/alerts/alert_json.h"
#include "daemon/directory/directory.h"
#include "daemon/store/keys.h"
#include "tests/dispatch/redis_loop_fixture.h"

namespace sirena::dispatch {
namespace {

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

constexpr const char* kAlert = R"({
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
    cfg.consumer = "test";
    cfg.backoff_base_ms = 1;
    cfg.backoff_cap_ms = 4;
    auto gw = std::make_unique<FakeApns>();
    gw_ = gw.get();
    dispatcher_ = std::make_unique<Dispatcher>(&loop_, *redis_, *directory_, clock_, metrics_, cfg);
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
    dispatcher_->plan("t1", "A", alert_, clock_.now_ms(), std::move(res), [&](Status s) { planned = s; });
    run_until([&] { return planned.has_value(); });
    ASSERT_TRUE(*planned) << planned->error().message;
  }
  // Runs the loop, the fake gateway answering, until `done`.
  void run_answering(const std::function<bool()>& done) {
    run_until([&] {
      if (gw_) gw_->step();
      return done();
    });
  }
  // A field read back through the client (cheap enough to poll on every loop turn).
  std::string hget(const std::string& key, const std::string& field) {
    std::optional<std::string> v;
    redis_->command({"HGET", key, field}, [&](store::Reply r, const Error*) { v = r.string(); });
    while (!v) uv_run(&loop_, UV_RUN_ONCE);
    return *v;
  }
  std::string progress(const std::string& field) { return hget("{t:t1}:progress:A", field); }
  std::string state() { return hget(store::keys::alert("t1", "A"), "state"); }
  std::string outcome(size_t slot) { return hget("{t:t1}:deliv:A", "t1:" + std::to_string(slot) + ":apns"); }

  std::unique_ptr<directory::Directory> directory_;
  std::unique_ptr<Dispatcher> dispatcher_;
  FakeApns* gw_ = nullptr;
  alerts::Alert alert_;
};

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

TEST_F(DispatcherTest, ATransientFailureIsRetriedAndRecordedWithItsAttempts) {
  start();
  int failures = 0;
  gw_->answer = [&](const std::string& token) {
    return token == "tok-7" && failures++ < 2 ? Outcome::Retry : Outcome::Accepted;
  };
  plan(town(20));
  run_answering([&] { return state() == "completed"; });
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
  run_answering([&] { return state() == "completed"; });
  EXPECT_EQ(gw_->sends["tok-3"], 3);
  EXPECT_EQ(outcome(3), "failed|3|gave up after 3 attempts: ServiceUnavailable");
  EXPECT_EQ(progress("apns:accepted"), "9");
  EXPECT_EQ(progress("apns:failed"), "1");
}

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

TEST_F(DispatcherTest, ARestartReReadsItsOwnBatchesAndSendsOnlyWhatWasNotAccepted) {
  start();
  gw_->hold = true;
  plan(town(30));
  run_until([&] { return gw_->waiting.size() == 30; });
  // 20 accepted and written back; then the daemon stops with 10 requests under way.
  for (int i = 0; i < 20; ++i) {
    auto [token, done] = std::move(gw_->waiting.front());
    gw_->waiting.erase(gw_->waiting.begin());
    done(SendResult{Outcome::Accepted, 0, "", 0});
  }
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
