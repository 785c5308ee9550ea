// Fan-out end to end: real redis-server, real sirenad (demo configuration) and the
// APNs and FCM simulators, with faults, crashes and cancels.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "tests/support/cap_fixture.h"
#include "tests/support/harness.h"
#include "tests/support/recipients.h"

namespace sirena::testing {
namespace {

using nlohmann::json;
constexpr const char* kOp = "demo-soliera-operator";

std::string fcm_token(int i) {
  return "fcm-" + std::to_string(i) + "-" + std::string(140, 'f');
}

// n recipients in Soliera: even ones with an APNs token, every third also with FCM.
std::string town(int n, int first = 0) {
  std::string nd;
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> lat(44.730, 44.745), lon(10.915, 10.935);
  for (int i = first; i < first + n; ++i) {
    json push = json::array();
    push.push_back({{"platform", "apns"}, {"app", "it.comune.soliera.app"}, {"token", apns_token(i)}});
    if (i % 3 == 0) push.push_back({{"platform", "fcm"}, {"app", "soliera-app"}, {"token", fcm_token(i)}});
    json r = {{"id", "c-" + std::to_string(i)},
              {"language", i % 10 == 0 ? "en" : "it"},
              {"topics", {"Met"}},
              {"push", push},
              {"locations", {{{"lat", lat(rng)}, {"lon", lon(rng)}}}}};
    nd += r.dump() + "\n";
  }
  return nd;
}

std::string flood(const std::string& identifier, const std::string& status = "Actual") {
  TestCap c;
  c.identifier = identifier;
  c.status = status;
  c.severity = "Extreme";  // Extreme + Immediate: everyone in the area
  c.polygon = "44.72,10.90 44.72,10.95 44.76,10.95 44.76,10.90 44.72,10.90";
  return c.xml();
}

class DispatchTest : public ::testing::Test {
 public:
  void SetUp() override {
    redis_ = std::make_unique<RedisServer>(dir_.path());
    redis_->start();
  }
  void start_sims(std::vector<std::string> apns_args = {}, std::vector<std::string> fcm_args = {}) {
    apns_ = std::make_unique<Simulator>("apns", dir_.path(), apns_args);
    apns_->start();
    fcm_ = std::make_unique<Simulator>("fcm", dir_.path(), fcm_args);
    fcm_->start();
  }
  void start_daemon(std::map<std::string, std::string> extra = {}) {
    daemon_ = std::make_unique<Sirenad>(source_dir() + "/config/demo.yaml", dir_.path(),
                                        std::map<std::string, std::string>{
                                            {"SIRENA_REDIS_URL", redis_->url()},
                                            {"SIRENA_GATEWAYS_APNS_URL", apns_->url()},
                                            {"SIRENA_GATEWAYS_FCM_URL", fcm_->url()},
                                            {"SIRENA_GATEWAYS_FCM_TOKEN_URL", fcm_->url() + "/token"},
                                            {"SIRENA_DISPATCH_CONSUMER", "it-daemon"},
                                            // No second person in these tests (approval has its own).
                                            {"SIRENA_TENANTS_SOLIERA_APPROVAL_MIN_RECIPIENTS", "100000000"},
                                        });
    for (auto& [k, v] : extra) daemon_->set_env(k, v);
    daemon_->start();
    ASSERT_TRUE(wait_until([&] { return daemon_->ready(); }, std::chrono::seconds(60))) << daemon_->log();
  }
  void TearDown() override {
    if (daemon_) {
      EXPECT_EQ(daemon_->stop(), 0) << daemon_->log();
    }
  }
  void import(int n, int first = 0) {
    const int chunk = 20000;
    for (int s = first; s < first + n; s += chunk) {
      auto r = daemon_->post("/v1/recipients/import", kOp, town(std::min(chunk, first + n - s), s),
                             "application/x-ndjson");
      ASSERT_EQ(r.status, 200) << r.body.substr(0, 300);
    }
  }
  std::string submit(const std::string& cap) {
    auto r = daemon_->post("/v1/alerts", kOp, cap, "application/cap+xml");
    EXPECT_EQ(r.status, 202) << r.body;
    return json::parse(r.body)["id"];
  }
  json alert(const std::string& id) {
    return json::parse(daemon_->get("/v1/alerts/" + id, kOp).body, nullptr, false);
  }
  json apns_stats() { return json::parse(apns_->stats()); }
  json fcm_stats() { return json::parse(fcm_->stats()); }
  bool completed(const std::string& id) {
    auto a = alert(id);
    return a.is_object() && a["state"] == "completed";
  }

  TempDir dir_;
  std::unique_ptr<RedisServer> redis_;
  std::unique_ptr<Simulator> apns_, fcm_;
  std::unique_ptr<Sirenad> daemon_;
};

TEST_F(DispatchTest, EveryRecipientGetsExactlyOnePushPerPlatform) {
  start_sims();
  start_daemon({{"SIRENA_DISPATCH_BATCH_SIZE", "100"}});
  import(3000);
  redis_->cli({"CONFIG", "RESETSTAT"});
  std::string id = submit(flood("fanout-1"));
  ASSERT_TRUE(wait_until([&] { return completed(id); }, std::chrono::seconds(60))) << alert(id).dump();
  // The daemon that wrote the plan knows its batches: each is loaded with an HMGET of its
  // contacts alone. The load script GETs the batch text first; only the first batch,
  // read behind the plan's first call, goes through it.
  std::string stats = redis_->cli({"INFO", "commandstats"});
  auto calls = [&](const std::string& command) {
    auto at = stats.find("cmdstat_" + command + ":calls=");
    return at == std::string::npos ? 0 : std::stol(stats.substr(at + command.size() + 15));
  };
  long batches = std::stol(redis_->cli({"HGET", "{t:soliera}:plan:" + id, "batches"}));
  EXPECT_EQ(batches, 30);
  EXPECT_GE(calls("hmget"), batches) << stats;
  EXPECT_LT(calls("get"), batches / 2) << stats;
  auto a = alert(id);
  EXPECT_EQ(a["recipients"], 3000);
  EXPECT_EQ(a["progress"]["apns"]["planned"], 3000);
  EXPECT_EQ(a["progress"]["apns"]["accepted"], 3000);
  EXPECT_EQ(a["progress"]["fcm"]["accepted"], 1000);
  EXPECT_EQ(a["progress"]["apns"]["pending"], 0);
  auto s = apns_stats();
  EXPECT_EQ(s["accepted"], 3000);
  EXPECT_EQ(s["unique_recipients"], 3000);
  EXPECT_EQ(s["duplicates"], 0);
  EXPECT_EQ(fcm_stats()["accepted"], 1000);
  // Deliveries are listed per recipient.
  auto d = json::parse(daemon_->get("/v1/alerts/" + id + "/deliveries?state=accepted&limit=50", kOp).body);
  ASSERT_FALSE(d["items"].empty());
  EXPECT_EQ(d["items"][0]["state"], "accepted");
  EXPECT_EQ(d["items"][0]["recipient"].get<std::string>().rfind("c-", 0), 0u);
  // Page by page, every delivery is listed once (first-attempt acceptances are kept per
  // batch, the rest per message: the listing goes through both).
  std::set<std::string> seen;
  std::string cursor;
  int pages = 0;
  do {
    auto page = json::parse(
        daemon_
            ->get("/v1/alerts/" + id + "/deliveries?limit=500" + (cursor.empty() ? "" : "&cursor=" + cursor),
                  kOp)
            .body);
    ASSERT_LE(page["items"].size(), 500u) << page.dump();
    for (const auto& item : page["items"]) {
      EXPECT_EQ(item["state"], "accepted");
      EXPECT_EQ(item["attempts"], 1);
      EXPECT_TRUE(
          seen.insert(item["recipient"].get<std::string>() + "/" + item["channel"].get<std::string>()).second)
          << "listed twice: " << item.dump();
    }
    cursor = page["next"].is_null() ? "" : page["next"].get<std::string>();
    ASSERT_LT(++pages, 100);
  } while (!cursor.empty());
  EXPECT_EQ(seen.size(), 4000u);
  EXPECT_EQ(pages, 8);
  d = json::parse(daemon_->get("/v1/alerts/" + id + "/deliveries?state=failed", kOp).body);
  EXPECT_TRUE(d["items"].empty());
  EXPECT_TRUE(d["next"].is_null());
  EXPECT_EQ(daemon_->get("/v1/alerts/" + id + "/deliveries?cursor=a0.x", kOp).status, 400);
  EXPECT_EQ(daemon_->get("/v1/alerts/" + id + "/deliveries?cursor=x1", kOp).status, 400);
  auto m = daemon_->get("/metrics", "").body;
  EXPECT_NE(m.find("sirena_messages_total{channel=\"apns\",gateway=\"apns\",result=\"accepted\",tenant="
                   "\"soliera\"} 3000"),
            std::string::npos);
  EXPECT_NE(m.find("sirena_time_to_first_message_seconds_count 1"), std::string::npos);
}

TEST_F(DispatchTest, FaultsStillGiveEachValidTokenOneAcceptedDeliveryAndPruneTheGone) {
  // Ten tokens the simulator calls gone.
  std::string gone = dir_.path() + "/gone.txt";
  std::string list;
  for (int i = 0; i < 10; ++i) list += apns_token(i * 7) + "\n";
  write_file(gone, list);
  start_sims({"--fail", "503:0.05", "--fail", "429:0.01", "--goaway-every", "500", "--reset-every", "2000",
              "--unregistered", gone, "--latency-ms", "1,20"},
             {"--fail", "503:0.05", "--fail", "429:0.01"});
  start_daemon();
  import(6000);
  std::string id = submit(flood("faults-1"));
  ASSERT_TRUE(wait_until([&] { return completed(id); }, std::chrono::seconds(120))) << alert(id).dump();
  auto s = apns_stats();
  EXPECT_EQ(s["unique_recipients"], 6000 - 10) << s.dump();
  // A connection reset can swallow answers the simulator already sent (and counted):
  // those messages are resent. Nothing else may repeat: 503/429 were not accepted, and
  // streams refused by GOAWAY were never processed. So repeats only come from resets,
  // at most the streams that were open on the reset connection.
  EXPECT_LE(s["duplicates"].get<int>(), s["resets"].get<int>() * 1000) << s.dump();
  // A gone token is never retried once its 410 has been read: each is tried once, and
  // again only if a reset swallowed the answer.
  int gone_answers = s["rejected"]["410"];
  EXPECT_GE(gone_answers, 10) << s.dump();
  EXPECT_LE(gone_answers, 10 * (1 + s["resets"].get<int>())) << s.dump();
  EXPECT_NE(daemon_->get("/metrics", "").body.find("sirena_tokens_pruned_total{channel=\"apns\"} 10"),
            std::string::npos)
      << "each gone token pruned exactly once";
  auto a = alert(id);
  EXPECT_EQ(a["progress"]["apns"]["accepted"], 6000 - 10);
  EXPECT_EQ(a["progress"]["apns"]["failed"], 10);
  EXPECT_EQ(fcm_stats()["unique_recipients"], 2000);
  EXPECT_EQ(redis_->cli({"SCARD", "{t:soliera}:pruned"}).find("10"), 0u);
}

// Issue 14 finding 7: cancels `id` once the simulator `stats` describes has taken more than
// `started` requests of `channel`, then checks that no request started after the cancel's
// answer beyond those that were in flight (`window`: the streams or requests the gateway
// may have open), and that the alert's progress adds up: what the simulator accepted is
// accepted, the rest cancelled, nothing pending.
void expect_cancel_stops(DispatchTest& t, const std::string& id, const std::string& channel,
                         const std::function<json()>& stats, int started, int window);

TEST_F(DispatchTest, CancelStopsNewRequestsAtOnce) {
  start_sims({"--latency-ms", "20,80", "--max-streams", "50"});
  start_daemon();
  import(20000);
  std::string id = submit(flood("cancel-1"));
  // The streams in flight: 2 connections x 50 streams.
  expect_cancel_stops(
      *this, id, "apns", [&] { return apns_stats(); }, 500, 2 * 50);
}

// The FCM gateway waits for its OAuth2 access token before its first message (the token
// endpoint answers with the simulator's latency too, here 200-400 ms): what waited there
// (up to the rate limit's burst, 9,500) then sat in the HTTP/2 pool's queue, out of the
// cancel's reach (6.7-10.9k messages after the cancel's answer).
TEST_F(DispatchTest, CancelStopsFcmAtOnceAlsoWhatWaitedForItsAccessToken) {
  start_sims({}, {"--latency-ms", "200,400", "--max-streams", "50"});
  start_daemon();
  import(30000);  // 10,000 with an FCM token
  std::string id = submit(flood("cancel-fcm"));
  expect_cancel_stops(
      *this, id, "fcm", [&] { return fcm_stats(); }, 300, 2 * 50);
}

void expect_cancel_stops(DispatchTest& t, const std::string& id, const std::string& channel,
                         const std::function<json()>& stats, int started, int window) {
  ASSERT_TRUE(wait_until([&] { return stats()["requests"].get<int>() > started; }, std::chrono::seconds(60)))
      << stats().dump();
  auto r = t.daemon_->post("/v1/alerts/" + id + "/cancel", kOp, "", "");
  ASSERT_EQ(r.status, 200) << r.body;
  int at_cancel = stats()["requests"];
  auto progress = [&] { return t.alert(id)["progress"][channel]; };
  ASSERT_TRUE(wait_until([&] { return progress()["pending"] == 0; }, std::chrono::seconds(30)))
      << t.alert(id).dump();
  auto s = stats();
  int after = s["requests"];
  EXPECT_LE(after - at_cancel, window) << "requests started after the cancel's answer: " << s.dump();
  auto a = t.alert(id);
  auto p = a["progress"][channel];
  EXPECT_EQ(a["state"], "cancelled");
  EXPECT_LT(after, p["planned"].get<int>());
  EXPECT_EQ(p["accepted"], s["accepted"]) << "what the gateway accepted is what progress shows: " << p.dump();
  EXPECT_EQ(p["accepted"].get<int>() + p["cancelled"].get<int>() + p.value("failed", 0),
            p["planned"].get<int>())
      << p.dump();
  EXPECT_GT(p["cancelled"].get<int>(), 0);
}

TEST_F(DispatchTest, SurvivesSigkillsAndARedisRestartMidFanOut) {
  start_sims({"--latency-ms", "2,20"});
  // The in-flight window per gateway; the duplicate bound below follows from it.
  const int window = 500;
  const int unconfirmed = 500;
  std::map<std::string, std::string> env{{"SIRENA_GATEWAYS_APNS_MAX_IN_FLIGHT", std::to_string(window)},
                                         {"SIRENA_DISPATCH_MAX_UNCONFIRMED", std::to_string(unconfirmed)}};
  start_daemon(env);
  const int n = 30000;
  import(n);
  std::string id = submit(flood("crash-1"));
  for (int kill = 0; kill < 5; ++kill) {
    int before = apns_stats()["accepted"];
    ASSERT_TRUE(
        wait_until([&] { return apns_stats()["accepted"].get<int>() > before + 500 || completed(id); },
                   std::chrono::seconds(60)));
    daemon_->kill();  // SIGKILL
    if (kill == 2) {
      redis_->stop();
      redis_->start();
    }
    start_daemon(env);
  }
  ASSERT_TRUE(wait_until([&] { return completed(id); }, std::chrono::seconds(120)))
      << alert(id)["progress"].dump() << "\nplan: " << redis_->cli({"HGETALL", "{t:soliera}:plan:" + id})
      << "\npending: " << redis_->cli({"XPENDING", "{dispatch}:p0", "sirenad"}) << "\nlog tail: "
      << daemon_->log().substr(daemon_->log().size() > 4000 ? daemon_->log().size() - 4000 : 0);
  auto s = apns_stats();
  EXPECT_EQ(s["unique_recipients"], n) << "every valid recipient got the alert";
  // A kill can repeat only what had no durable outcome yet: the APNs requests in flight
  // (at most `window`) and accepted messages whose outcome Redis has not confirmed (at
  // most `unconfirmed` plus one write-back batch of 2048, shared with FCM). Batches in
  // work are re-read, but messages with a final outcome are skipped.
  EXPECT_LE(s["duplicates"].get<int>(), 5 * (window + unconfirmed + 2048)) << s.dump();
  std::printf("duplicates after 5 SIGKILLs and a Redis restart: %d\n", s["duplicates"].get<int>());
}

// Issue 14, finding 8: a Redis that stalls past the command timeout, then one that
// restarts, under a running daemon. The write-backs that failed are sent again (not
// dropped with their share of the budget), so the duplicates stay within one window per
// fault, progress equals what the gateway accepted, and `completed` has nothing pending.
TEST_F(DispatchTest, ARedisStallAndRestartKeepTheDuplicateBoundAndTheCounts) {
  start_sims({"--latency-ms", "2,20"});
  const int window = 500;
  const int unconfirmed = 500;
  start_daemon({{"SIRENA_GATEWAYS_APNS_MAX_IN_FLIGHT", std::to_string(window)},
                {"SIRENA_DISPATCH_MAX_UNCONFIRMED", std::to_string(unconfirmed)},
                {"SIRENA_REDIS_COMMAND_TIMEOUT_MS", "5000"}});  // the import's calls take a while under ASan
  const int n = 10000;
  import(n);
  std::string id = submit(flood("stall-1"));
  ASSERT_TRUE(
      wait_until([&] { return apns_stats()["accepted"].get<int>() > 2000; }, std::chrono::seconds(60)));
  redis_->signal(SIGSTOP);
  // Stalled past the timeout: the daemon drops its connections and keeps its outcomes.
  bool timed_out = wait_until(
      [&] {
        return daemon_->get("/metrics", "").body.find("redis_command_timeout\"} ") != std::string::npos;
      },
      std::chrono::seconds(20));
  redis_->signal(SIGCONT);
  ASSERT_TRUE(timed_out) << daemon_->log();
  int before = apns_stats()["accepted"];
  ASSERT_TRUE(wait_until([&] { return apns_stats()["accepted"].get<int>() > before + 2000 || completed(id); },
                         std::chrono::seconds(60)));
  redis_->stop();
  redis_->start();
  ASSERT_TRUE(wait_until([&] { return completed(id); }, std::chrono::seconds(120)))
      << alert(id)["progress"].dump() << "\n"
      << daemon_->log().substr(daemon_->log().size() > 4000 ? daemon_->log().size() - 4000 : 0);
  auto s = apns_stats();
  auto a = alert(id);
  EXPECT_EQ(s["unique_recipients"], n) << s.dump();
  EXPECT_EQ(a["progress"]["apns"]["accepted"], n) << a["progress"].dump();
  EXPECT_EQ(a["progress"]["apns"]["pending"], 0) << a["progress"].dump();
  // Each fault can repeat what was in flight and what Redis had not confirmed.
  EXPECT_LE(s["duplicates"].get<int>(), 2 * (window + unconfirmed + 2048)) << s.dump();
  std::printf("duplicates after a Redis stall and a Redis restart: %d\n", s["duplicates"].get<int>());
}

TEST_F(DispatchTest, APlanLeftHalfWrittenIsPlannedAgainWithoutResendingWhatIsDone) {
  start_sims();
  start_daemon();
  import(3000);
  std::string id = submit(flood("replan-1"));
  ASSERT_TRUE(wait_until([&] { return completed(id); }, std::chrono::seconds(60))) << alert(id).dump();
  daemon_->kill();
  // What a daemon killed between the plan's first call (its first batch) and the rest
  // leaves: the plan marked as being written by it, the alert still accepted. Here every
  // outcome is already recorded. After the restart the alert is planned again (batches
  // numbered after the 3 it has), the new batches find the outcomes, and nothing is sent.
  std::string plan = "{t:soliera}:plan:" + id;
  redis_->cli({"HSET", plan, "writing", "it-daemon", "writing_ms", "0", "base", "0"});
  redis_->cli({"HSET", "{t:soliera}:alert:" + id, "state", "accepted"});
  start_daemon();
  ASSERT_TRUE(wait_until([&] { return completed(id); }, std::chrono::seconds(60)))
      << alert(id).dump() << "\nplan: " << redis_->cli({"HGETALL", plan});
  EXPECT_EQ(redis_->cli({"HGET", plan, "batches"}), "6\n");
  EXPECT_EQ(redis_->cli({"HGET", plan, "writing"}), "\n") << "the new plan is complete";
  auto s = apns_stats();
  EXPECT_EQ(s["requests"], 3000) << s.dump();
  EXPECT_EQ(s["duplicates"], 0) << s.dump();
  EXPECT_EQ(alert(id)["progress"]["apns"]["accepted"], 3000);
}

TEST_F(DispatchTest, BatchesReadAgainAfterARestartSendNothingAlreadyAccepted) {
  start_sims();
  start_daemon();
  import(3000);
  std::string id = submit(flood("reread-1"));
  ASSERT_TRUE(wait_until([&] { return completed(id); }, std::chrono::seconds(60))) << alert(id).dump();
  daemon_->kill();
  // What a daemon killed after writing its batches' outcomes but before acknowledging
  // them leaves: the batches pending for its consumer, the alert still dispatching. After
  // the restart it reads them again, finds every message accepted (first-attempt records)
  // and sends nothing.
  redis_->cli({"HSET", "{t:soliera}:alert:" + id, "state", "dispatching"});
  std::string stream = "{dispatch}:p" + redis_->cli({"HGET", "{t:soliera}:plan:" + id, "priority"});
  stream.pop_back();  // the newline
  for (int b = 0; b < 3; ++b)
    redis_->cli({"XADD", stream, "*", "a", id, "t", "soliera", "b", std::to_string(b)});
  redis_->cli({"XREADGROUP", "GROUP", "sirenad", "it-daemon", "COUNT", "10", "STREAMS", stream, ">"});
  ASSERT_EQ(redis_->cli({"XPENDING", stream, "sirenad"}).substr(0, 2), "3\n");
  start_daemon();
  ASSERT_TRUE(wait_until(
      [&] {
        return redis_->cli({"XPENDING", stream, "sirenad"}).substr(0, 2) == "0\n";
      },
      std::chrono::seconds(30)));
  auto s = apns_stats();
  EXPECT_EQ(s["requests"], 3000) << s.dump();
  EXPECT_EQ(fcm_stats()["requests"], 1000);
  EXPECT_EQ(alert(id)["progress"]["apns"]["accepted"], 3000);
  EXPECT_TRUE(completed(id));
}

// Issue 14, finding 2: a plan that fails while the daemon runs (Redis refuses the plan's
// stream writes; the alert itself was stored) is retried by the daemon itself. Before,
// the alert stayed `accepted` with nothing planned until a restart, and a POST of it
// again answered "200 duplicate".
// A SIGTERM while requests wait in an HTTP/2 pool (its gateway refuses connections):
// closing the gateways answers them as retries after the dispatcher's timers are closed,
// which must neither crash sirenad (it did once the timers had an owner: a closed timer
// was started) nor lose them: the restart sends them.
TEST_F(DispatchTest, ASigtermWhileRequestsWaitForAConnectionExitsCleanlyAndTheRestartSendsThem) {
  start_sims();
  start_daemon();
  import(500);
  apns_->stop();
  std::string id = submit(flood("sigterm-queued-1"));
  ASSERT_TRUE(wait_until([&] { return fcm_stats()["unique_recipients"].get<int>() == 167; },
                         std::chrono::seconds(30)))
      << "FCM goes out; APNs waits for a connection";
  EXPECT_EQ(daemon_->stop(), 0) << daemon_->log().substr(
      daemon_->log().size() > 4000 ? daemon_->log().size() - 4000 : 0);
  apns_->start();
  daemon_->start();
  ASSERT_TRUE(wait_until([&] { return daemon_->ready(); }, std::chrono::seconds(60))) << daemon_->log();
  ASSERT_TRUE(wait_until([&] { return completed(id); }, std::chrono::seconds(90))) << alert(id).dump();
  EXPECT_EQ(apns_stats()["unique_recipients"], 500);
}

TEST_F(DispatchTest, AnAcceptedAlertWhosePlanFailedIsPlannedAgainWithoutARestart) {
  start_sims();
  start_daemon();
  import(200);
  // The daemon may touch its tenants' keys only: the plan's XADD to {dispatch}:p<N> fails.
  ASSERT_EQ(redis_->cli({"ACL", "SETUSER", "default", "resetkeys", "~{t:*"}), "OK\n");
  std::string id = submit(flood("plan-retry-1"));
  ASSERT_TRUE(wait_until([&] { return daemon_->log().find("dispatch_plan_failed") != std::string::npos; },
                         std::chrono::seconds(10)))
      << daemon_->log();
  EXPECT_EQ(alert(id)["state"], "accepted");
  EXPECT_EQ(redis_->cli({"ZSCORE", "{t:soliera}:unplanned", id}).empty(), false);
  auto again = daemon_->post("/v1/alerts", kOp, flood("plan-retry-1"), "application/cap+xml");
  EXPECT_EQ(again.status, 200) << again.body;
  ASSERT_EQ(redis_->cli({"ACL", "SETUSER", "default", "allkeys"}), "OK\n");
  ASSERT_TRUE(wait_until([&] { return completed(id); }, std::chrono::seconds(60)))
      << alert(id).dump() << "\n"
      << daemon_->log().substr(daemon_->log().size() > 6000 ? daemon_->log().size() - 6000 : 0);
  EXPECT_EQ(apns_stats()["unique_recipients"], 200);
  EXPECT_EQ(apns_stats()["duplicates"], 0);
  EXPECT_EQ(redis_->cli({"ZCARD", "{t:soliera}:unplanned"}), "0\n");
}

// Issue 14, finding 1: after a burst of small alerts the dispatcher reads the state of
// the alerts it has batches of, not of every alert it saw in the last minute: Redis is
// not flooded with HGETs, and a later alert still goes out at once.
TEST_F(DispatchTest, ABurstOfAlertsDoesNotFloodRedisWithStateReads) {
  start_sims();
  start_daemon();
  import(50);
  std::vector<std::string> ids;
  for (int k = 0; k < 300; ++k) ids.push_back(submit(flood("burst-" + std::to_string(k), "Test")));
  ASSERT_TRUE(wait_until([&] { return completed(ids.back()); }, std::chrono::seconds(60)))
      << alert(ids.back()).dump();
  for (const auto& id : ids)
    ASSERT_TRUE(wait_until([&] { return completed(id); }, std::chrono::seconds(30))) << id;
  // Two seconds of an idle daemon, counted by Redis' own command statistics: the alerts
  // are all done, so none needs its state read.
  redis_->cli({"CONFIG", "RESETSTAT"});
  auto hgets = [&] {
    std::string stats = redis_->cli({"INFO", "commandstats"});
    auto at = stats.find("cmdstat_hget:calls=");
    return at == std::string::npos ? 0L : std::stol(stats.substr(at + 19));
  };
  // Before: every alert seen in the last minute, every 50 ms (300 x 20 = 6000/s).
  EXPECT_FALSE(wait_until([&] { return hgets() > 100; }, std::chrono::seconds(2)))
      << "state reads of finished alerts: " << hgets();
  // And a new alert still goes out.
  std::string id = submit(flood("after-burst"));
  ASSERT_TRUE(wait_until([&] { return completed(id); }, std::chrono::seconds(30))) << alert(id).dump();
}

TEST_F(DispatchTest, EventStreamFollowsTheAlertToItsFinalState) {
  start_sims();
  start_daemon();
  import(10);
  std::string id = submit(flood("drill-1", "Exercise"));
  ASSERT_TRUE(wait_until([&] { return completed(id); }, std::chrono::seconds(30)));
  auto s = apns_stats();
  EXPECT_EQ(s["accepted"], 10);
  // The SSE stream ends with the final state.
  auto ev = daemon_->get("/v1/alerts/" + id + "/events", kOp);
  EXPECT_EQ(ev.status, 200);
  EXPECT_TRUE(ev.error.empty()) << "the stream must end by itself, not by the client's timeout: " << ev.error;
  EXPECT_NE(ev.body.find("event: progress"), std::string::npos);
  EXPECT_NE(ev.body.find("\"state\":\"completed\""), std::string::npos) << ev.body;
}

}  // namespace
}  // namespace sirena::testing
