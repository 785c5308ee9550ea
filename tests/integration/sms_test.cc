// The SMS channel end to end: real redis-server, real sirenad (demo configuration) and
// `sirena-sim sms` speaking Kannel's sendsms (with delivery reports) and a generic JSON
// API, with faults; the channel policies with the APNs simulator.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <vector>

#include "tests/support/cap_fixture.h"
#include "tests/support/harness.h"
#include "tests/support/recipients.h"

namespace sirena::testing {
namespace {

using nlohmann::json;
constexpr const char* kOp = "demo-soliera-operator";
constexpr const char* kDlrSecret = "it-dlr-secret";


// n recipients in Soliera with a phone; those for which `with_push(i)` also have an APNs token.
template <typename F>
std::string town(int n, F with_push) {
  std::string nd;
  for (int i = 0; i < n; ++i) {
    json r = {{"id", "s-" + std::to_string(i)},
              {"phone", phone(i)},
              {"language", "it"},
              {"topics", {"Met"}},
              {"locations", {{{"lat", 44.735 + (i % 100) * 1e-4}, {"lon", 10.92 + (i / 100 % 100) * 1e-4}}}}};
    if (with_push(i))
      r["push"] = json::array({{{"platform", "apns"}, {"app", "it.comune.soliera.app"}, {"token", apns_token(i)}}});
    nd += r.dump() + "\n";
  }
  return nd;
}

std::string flood(const std::string& identifier, const std::string& severity = "Extreme",
                  const std::string& status = "Actual") {
  TestCap c;
  c.identifier = identifier;
  c.status = status;
  c.severity = severity;
  c.polygon = "44.72,10.90 44.72,10.95 44.76,10.95 44.76,10.90 44.72,10.90";
  return c.xml();
}

class SmsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    redis_ = std::make_unique<RedisServer>(dir_.path());
    redis_->start();
  }
  // `path`: "/cgi-bin/sendsms" (the demo's Kannel profile) or "/sms" (generic JSON).
  void start(const std::string& path, std::vector<std::string> sms_args, std::map<std::string, std::string> env = {},
             std::vector<std::string> apns_args = {}) {
    sms_ = std::make_unique<Simulator>("sms", dir_.path(), sms_args);
    sms_->start();
    apns_ = std::make_unique<Simulator>("apns", dir_.path(), apns_args);
    apns_->start();
    daemon_ = std::make_unique<Sirenad>(source_dir() + "/config/demo.yaml", dir_.path(),
                                        std::map<std::string, std::string>{
                                            {"SIRENA_REDIS_URL", redis_->url()},
                                            {"SIRENA_GATEWAYS_APNS_URL", apns_->url()},
                                            {"SIRENA_GATEWAYS_FCM_URL", "http://127.0.0.1:1"},
                                            {"SIRENA_GATEWAYS_SMS_URL", sms_->url() + path},
                                            {"SIRENA_GATEWAYS_SMS_RATE", "0"},
                                            {"SIRENA_GATEWAYS_SMS_DLR_SECRET", kDlrSecret},
                                            {"SIRENA_DISPATCH_CONSUMER", "it-daemon"},
                                            {"SIRENA_TENANTS_SOLIERA_APPROVAL_MIN_RECIPIENTS", "100000000"},
                                        });
    // Delivery reports only from a simulator that sends them (with reports asked for, an
    // SMS is final only once reported).
    bool dlr = std::find(sms_args.begin(), sms_args.end(), "--dlr") != sms_args.end();
    daemon_->set_env("SIRENA_GATEWAYS_SMS_DLR_URL", dlr ? "http://127.0.0.1:" + std::to_string(daemon_->port()) : "");
    for (auto& [k, v] : env) daemon_->set_env(k, v);
    daemon_->start();
    ASSERT_TRUE(wait_until([&] { return daemon_->ready(); }, std::chrono::seconds(60))) << daemon_->log();
  }
  void TearDown() override {
    if (daemon_) {
      EXPECT_EQ(daemon_->stop(), 0) << daemon_->log();
    }
  }
  template <typename F>
  void import(int n, F with_push) {
    auto r = daemon_->post("/v1/recipients/import", kOp, town(n, with_push), "application/x-ndjson");
    ASSERT_EQ(r.status, 200) << r.body.substr(0, 300);
    ASSERT_EQ(json::parse(r.body)["imported"], n) << r.body.substr(0, 300);
  }
  std::string submit(const std::string& cap) {
    auto r = daemon_->post("/v1/alerts", kOp, cap, "application/cap+xml");
    EXPECT_EQ(r.status, 202) << r.body;
    return json::parse(r.body)["id"];
  }
  json alert(const std::string& id) { return json::parse(daemon_->get("/v1/alerts/" + id, kOp).body, nullptr, false); }
  json sms(const std::string& id) { return alert(id)["progress"]["sms"]; }
  json sms_stats() { return json::parse(sms_->stats()); }
  bool completed(const std::string& id) {
    auto a = alert(id);
    return a.is_object() && a["state"] == "completed";
  }
  HttpResponse dlr(const std::string& query) {
    return http_get(daemon_->base() + "/v1/dlr/sms?" + query);
  }

  TempDir dir_;
  std::unique_ptr<RedisServer> redis_;
  std::unique_ptr<Simulator> sms_, apns_;
  std::unique_ptr<Sirenad> daemon_;
};

const std::map<std::string, std::string> kGenericJson = {
    {"SIRENA_GATEWAYS_SMS_PROFILE", "generic_json"},
    {"SIRENA_GATEWAYS_SMS_AUTH_HEADER", "Authorization: Bearer it-token"}};

TEST_F(SmsTest, GenericJsonWithFaultsAcceptsEveryNumberExactlyOnce) {
  auto env = kGenericJson;
  env["SIRENA_GATEWAYS_SMS_BATCH_SIZE"] = "1";  // one number per request
  start("/sms", {"--fail", "503:0.05", "--fail", "429:0.01"}, env);
  import(2000, [](int) { return false; });
  std::string id = submit(flood("sms-json-1"));
  ASSERT_TRUE(wait_until([&] { return completed(id); }, std::chrono::seconds(90))) << alert(id).dump();
  EXPECT_EQ(sms(id)["planned"], 2000);
  EXPECT_EQ(sms(id)["accepted"], 2000);
  auto s = sms_stats();
  EXPECT_EQ(s["accepted"], 2000);
  EXPECT_EQ(s["unique_recipients"], 2000);
  EXPECT_EQ(s["duplicates"], 0);
  EXPECT_GT(s["rejected"].value("503", 0), 0) << "the faults were injected: " << s.dump();
  auto m = daemon_->get("/metrics", "").body;
  EXPECT_NE(m.find("sirena_sms_requests_total{code=\"503\",gateway=\"sms\"}"), std::string::npos);
  EXPECT_NE(m.find("sirena_sms_segments_total{gateway=\"sms\"}"), std::string::npos);
}

TEST_F(SmsTest, GenericJsonBatchedRefusedNumbersFailAndTheOthersGo) {
  std::string gone = dir_.path() + "/gone.txt";
  write_file(gone, phone(3) + "\n" + phone(7) + "\n");
  auto env = kGenericJson;
  env["SIRENA_GATEWAYS_SMS_BATCH_SIZE"] = "50";
  start("/sms", {"--unregistered", gone}, env);
  import(500, [](int) { return false; });
  std::string id = submit(flood("sms-json-2"));
  ASSERT_TRUE(wait_until([&] { return completed(id); }, std::chrono::seconds(60))) << alert(id).dump();
  EXPECT_EQ(sms(id)["accepted"], 498);
  EXPECT_EQ(sms(id)["failed"], 2);
  EXPECT_EQ(sms_stats()["unique_recipients"], 498);
  auto d = json::parse(daemon_->get("/v1/alerts/" + id + "/deliveries?state=failed", kOp).body);
  ASSERT_EQ(d["items"].size(), 2u) << d.dump();
  std::set<std::string> who{d["items"][0]["recipient"], d["items"][1]["recipient"]};
  EXPECT_EQ(who, (std::set<std::string>{"s-3", "s-7"}));
}

TEST_F(SmsTest, KannelDeliveryReportsMoveDeliveriesToDelivered) {
  start("/cgi-bin/sendsms", {"--dlr", "--username", "sirena", "--password", "demo"});
  import(300, [](int) { return false; });
  std::string id = submit(flood("sms-kannel-dlr"));
  ASSERT_TRUE(wait_until([&] { return sms(id).value("delivered", 0) == 300; }, std::chrono::seconds(60)))
      << alert(id).dump();
  EXPECT_EQ(sms(id)["accepted"], 0) << "each acceptance became a delivery";
  EXPECT_EQ(sms_stats()["unique_recipients"], 300);
  auto d = json::parse(daemon_->get("/v1/alerts/" + id + "/deliveries?state=delivered&limit=10", kOp).body);
  ASSERT_FALSE(d["items"].empty());
  EXPECT_EQ(d["items"][0]["channel"], "sms");

  // A late or repeated report changes nothing; an unknown one is counted and ignored.
  std::string ok = std::string("secret=") + kDlrSecret + "&alert=" + id + "&t=soliera&r=soliera";
  auto again = dlr(ok + "&to=%2B" + phone(5).substr(1) + "&type=2");
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(json::parse(again.body)["result"], "duplicate");
  EXPECT_EQ(sms(id)["delivered"], 300);
  // Providers that POST a form get the same treatment.
  HttpRequest post;
  post.method = "POST";
  post.url = daemon_->base() + "/v1/dlr/sms";
  post.body = ok + "&to=%2B" + phone(6).substr(1) + "&type=1";
  post.headers = {"Content-Type: application/x-www-form-urlencoded"};
  auto posted = http(post);
  EXPECT_EQ(posted.status, 200) << posted.body;
  EXPECT_EQ(json::parse(posted.body)["result"], "duplicate");
  auto unknown = dlr(ok + "&to=%2B39333999999&type=1");
  EXPECT_EQ(unknown.status, 200);
  EXPECT_EQ(json::parse(unknown.body)["result"], "unknown");
  // Bad input: a wrong secret, a missing field, an unknown gateway.
  EXPECT_EQ(dlr("secret=nope&alert=" + id + "&t=soliera&r=soliera&to=1&type=1").status, 401);
  auto missing = dlr(std::string("secret=") + kDlrSecret + "&alert=" + id + "&type=1");
  EXPECT_EQ(missing.status, 400);
  EXPECT_NE(missing.body.find("missing_parameter"), std::string::npos);
  EXPECT_EQ(http_get(daemon_->base() + "/v1/dlr/apns?secret=x").status, 404);
  auto m = daemon_->get("/metrics", "").body;
  EXPECT_NE(m.find("sirena_sms_dlr_total{gateway=\"sms\",result=\"unknown\",type=\"delivered\"} 1"), std::string::npos);
  EXPECT_NE(m.find("sirena_sms_dlr_total{gateway=\"sms\",result=\"unauthorized\",type=\"-\"} 1"), std::string::npos);
}

// A batch whose SMS are all with the provider, only waiting for their delivery reports,
// leaves the in-work window: the next batches go out without waiting for the SMSC's
// reports (up to four times max_batches of such batches; the rest wait for reports).
TEST_F(SmsTest, BatchesWaitingOnlyForReportsDoNotHoldBackTheNextOnes) {
  // Reports asked for (a dlr_url) but never sent: the simulator runs without --dlr.
  start("/cgi-bin/sendsms", {"--username", "sirena", "--password", "demo"},
        {{"SIRENA_GATEWAYS_SMS_DLR_URL", "http://127.0.0.1:1"},
         {"SIRENA_DISPATCH_MAX_BATCHES", "1"},
         {"SIRENA_DISPATCH_BATCH_SIZE", "10"}});
  import(60, [](int) { return false; });
  std::string id = submit(flood("sms-window"));
  // One batch in work plus four waiting for reports: 50 numbers, before any report.
  ASSERT_TRUE(wait_until([&] { return sms_stats()["unique_recipients"] == 50; }, std::chrono::seconds(20)))
      << sms_stats().dump();
  EXPECT_EQ(sms(id).value("accepted", 0), 0) << "not final before a report";
  // Reports (SMSC accepted) free the window; the last batch goes and is reported too.
  std::string ok = std::string("secret=") + kDlrSecret + "&alert=" + id + "&t=soliera&r=soliera&type=8";
  std::vector<bool> reported(60, false);
  ASSERT_TRUE(wait_until(
      [&] {
        for (int i = 0; i < 60; ++i) {
          if (reported[i]) continue;
          auto r = dlr(ok + "&to=%2B" + phone(i).substr(1));
          reported[i] = r.status == 200 && json::parse(r.body)["result"] != "unknown";  // unknown: not sent yet
        }
        return completed(id);
      },
      std::chrono::seconds(30)))
      << alert(id).dump();
  EXPECT_EQ(sms(id)["accepted"], 60);
  EXPECT_EQ(sms_stats()["unique_recipients"], 60);
  EXPECT_EQ(sms_stats()["duplicates"], 0);
}

// Reports in a burst, as Kannel sends them: a loop turn's reports are written by one
// script call, and each answer and each delivery must still be its own report's. Two
// alerts to the same numbers, final reports of both kinds, intermediate ones, a second
// final report for some deliveries (sent at the same time: either may win, the other is
// the duplicate) and unknown references, all at once on 500 connections.
TEST_F(SmsTest, ConcurrentDeliveryReportsAreEachAnsweredForThemselves) {
  // No dlr_url: an SMS is final once accepted, and the reports below are the only ones.
  start("/cgi-bin/sendsms", {});
  const int n = 200;
  import(n, [](int) { return false; });
  std::string a = submit(flood("sms-dlr-burst-a"));
  std::string b = submit(flood("sms-dlr-burst-b"));
  ASSERT_TRUE(wait_until([&] { return completed(a) && completed(b); }, std::chrono::seconds(60)))
      << alert(a).dump() << alert(b).dump();
  ASSERT_EQ(sms(a)["accepted"], n);
  ASSERT_EQ(sms(b)["accepted"], n);

  struct Report {
    std::string alert;
    int recipient;  // -1: a number nobody was sent
    int type;
  };
  std::vector<Report> reports;
  const int kA[4] = {1, 2, 16, 8}, kB[4] = {2, 1, 8, 16};  // by recipient % 4
  for (int i = 0; i < n; ++i) reports.push_back({a, i, kA[i % 4]});
  for (int i = 0; i < 150; ++i) reports.push_back({b, i, kB[i % 4]});
  for (int i = 0; i < 100; ++i)  // the other final type, for a's final ones
    if (kA[i % 4] != 8) reports.push_back({a, i, kA[i % 4] == 1 ? 2 : 1});
  for (int i = 0; i < 75; ++i) reports.push_back({i % 3 ? a : "no-such-alert", i % 3 ? -1 : i, 1});
  ASSERT_EQ(reports.size(), 500u);
  std::shuffle(reports.begin(), reports.end(), std::mt19937(20240611));
  std::vector<HttpRequest> reqs;
  for (const auto& r : reports) {
    std::string to = r.recipient < 0 ? "+39399" + std::to_string(1000000 + reqs.size()) : phone(r.recipient);
    HttpRequest& q = reqs.emplace_back();
    q.url = daemon_->base() + "/v1/dlr/sms?secret=" + kDlrSecret + "&alert=" + r.alert + "&t=soliera&r=soliera&to=%2B" +
            to.substr(1) + "&type=" + std::to_string(r.type);
  }
  auto answers = http_all(reqs, reqs.size());

  auto state_of = [](int type) { return type == 1 ? "delivered" : type == 8 ? "noted" : "failed"; };
  auto reason_of = [](int type) {
    return type == 1 ? "" : type == 2 ? "undelivered (DLR 2)" : "rejected by the SMSC (DLR 16)";
  };
  // The winning final report of each delivery: alert -> recipient -> type.
  std::map<std::string, std::map<int, int>> final_type;
  std::map<std::string, std::map<int, int>> answered;  // final answers per delivery
  for (size_t k = 0; k < reports.size(); ++k) {
    const Report& r = reports[k];
    ASSERT_EQ(answers[k].status, 200) << answers[k].error << answers[k].body;
    std::string got = json::parse(answers[k].body)["result"];
    if (r.recipient < 0 || r.alert == "no-such-alert") {
      EXPECT_EQ(got, "unknown") << k;
      continue;
    }
    if (got == "duplicate") continue;
    EXPECT_EQ(got, state_of(r.type)) << r.alert << " s-" << r.recipient << " type " << r.type;
    if (r.type != 8) {
      final_type[r.alert][r.recipient] = r.type;
      ++answered[r.alert][r.recipient];
    }
  }
  // Exactly one final answer per delivery that got a final report, and exactly the
  // second reports were duplicates.
  int duplicates = 0;
  for (size_t k = 0; k < reports.size(); ++k)
    duplicates += json::parse(answers[k].body)["result"] == "duplicate";
  EXPECT_EQ(duplicates, 75);
  for (const auto& [id, per] : answered)
    for (const auto& [i, count] : per) EXPECT_EQ(count, 1) << id << " s-" << i;
  EXPECT_EQ(final_type[a].size(), 150u);
  EXPECT_EQ(final_type[b].size(), 113u);  // 150 minus the 37 intermediate ones

  // The deliveries are in the state, and carry the reason, of their winning report.
  for (const std::string& id : {a, b}) {
    int delivered = 0, failed = 0;
    for (const auto& [i, type] : final_type[id]) (type == 1 ? delivered : failed)++;
    auto progress = sms(id);
    EXPECT_EQ(progress["delivered"], delivered) << id << progress.dump();
    EXPECT_EQ(progress["failed"], failed) << id << progress.dump();
    EXPECT_EQ(progress["accepted"], n - delivered - failed) << id << progress.dump();
    auto d = json::parse(daemon_->get("/v1/alerts/" + id + "/deliveries?limit=1000", kOp).body);
    ASSERT_EQ(d["items"].size(), static_cast<size_t>(n)) << d.dump().substr(0, 300);
    for (const auto& item : d["items"]) {
      int i = std::stoi(item["recipient"].get<std::string>().substr(2));
      auto it = final_type[id].find(i);
      if (it == final_type[id].end()) {
        EXPECT_EQ(item["state"], "accepted") << id << " s-" << i;
        continue;
      }
      EXPECT_EQ(item["state"], state_of(it->second)) << id << " s-" << i;
      EXPECT_EQ(item["error"], reason_of(it->second)) << id << " s-" << i;
    }
  }
  auto m = daemon_->get("/metrics", "").body;
  EXPECT_NE(m.find("sirena_sms_dlr_total{gateway=\"sms\",result=\"unknown\",type=\"delivered\"} 75"),
            std::string::npos);
}

// Issue 14 finding 13: under a rate limit the token bucket releases whole batches, so
// the provider sees full sendsms requests (a numbers each was the trickle of a bucket
// refilled every few milliseconds: 3,651 requests for 4,506 numbers), at the same rate.
TEST_F(SmsTest, ARateLimitStillSendsFullBatchesAtTheRate) {
  const int n = 1500, batch = 100, rate = 500;
  start("/cgi-bin/sendsms", {},
        {{"SIRENA_GATEWAYS_SMS_RATE", std::to_string(rate)},
         {"SIRENA_GATEWAYS_SMS_BATCH_SIZE", std::to_string(batch)}});
  import(n, [](int) { return false;
});
auto t0 = std::chrono::steady_clock::now();
std::string id = submit(flood("sms-rate"));
ASSERT_TRUE(wait_until([&] { return completed(id); }, std::chrono::seconds(60))) << alert(id).dump();
auto elapsed = std::chrono::steady_clock::now() - t0;
auto s = sms_stats();
EXPECT_EQ(s["unique_recipients"], n);
EXPECT_EQ(sms(id)["accepted"], n);
const int full = (n + batch - 1) / batch;
EXPECT_GE(s["requests"].get<int>(), full);
EXPECT_LE(s["requests"].get<int>(), full * 12 / 10)
    << "sendsms requests for " << n << " numbers: " << s.dump();
// The rate still holds: a second's burst, then the rest at `rate` a second.
EXPECT_GE(elapsed, std::chrono::milliseconds((n - rate) * 1000 / rate * 9 / 10));
}

// Issue 14 finding 7 for SMS: after the cancel's answer no sendsms request starts beyond
// those in flight (max_in_flight); the batches not yet flushed and the requests queued in
// the curl engine are dropped and counted as cancelled.
TEST_F(SmsTest, CancelStopsNewSendsmsRequestsAtOnce) {
  const int in_flight = 4;
  start("/cgi-bin/sendsms", {"--latency-ms", "30,100"},
        {{"SIRENA_GATEWAYS_SMS_BATCH_SIZE", "10"},
         {"SIRENA_GATEWAYS_SMS_MAX_IN_FLIGHT", std::to_string(in_flight)},
         {"SIRENA_GATEWAYS_SMS_RATE", "500"}});
  import(3000, [](int) { return false;
});
std::string id = submit(flood("sms-cancel"));
ASSERT_TRUE(wait_until([&] { return sms_stats()["requests"].get<int>() > 20; }, std::chrono::seconds(60)));
auto r = daemon_->post("/v1/alerts/" + id + "/cancel", kOp, "", "");
ASSERT_EQ(r.status, 200) << r.body;
int at_cancel = sms_stats()["requests"];
ASSERT_TRUE(wait_until([&] { return sms(id)["pending"] == 0; }, std::chrono::seconds(30)))
    << alert(id).dump();
auto s = sms_stats();
EXPECT_LE(s["requests"].get<int>() - at_cancel, in_flight) << "requests started after the cancel's answer";
auto p = sms(id);
EXPECT_EQ(alert(id)["state"], "cancelled");
EXPECT_EQ(p["accepted"], s["accepted"]) << p.dump() << s.dump();
EXPECT_GT(p["cancelled"].get<int>(), 0);
EXPECT_EQ(p["accepted"].get<int>() + p["cancelled"].get<int>(), 3000) << p.dump();
}

TEST_F(SmsTest, PushFirstSendsSmsOnlyWhereNoPushWasAccepted) {
  // Even recipients have an APNs token; every fourth token is gone (410). Severe alerts go
  // push first (the demo policy): SMS to the odd ones and to those whose token is gone.
  std::string gone = dir_.path() + "/gone-tokens.txt";
  std::string list;
  for (int i = 0; i < 400; i += 4) list += apns_token(i) + "\n";
  write_file(gone, list);
  start("/cgi-bin/sendsms", {}, {}, {"--unregistered", gone});
  import(400, [](int i) { return i % 2 == 0; });
  std::string id = submit(flood("sms-push-first", "Severe"));
  ASSERT_TRUE(wait_until([&] { return completed(id); }, std::chrono::seconds(60))) << alert(id).dump();
  auto a = alert(id);
  EXPECT_EQ(a["progress"]["apns"]["accepted"], 100);
  EXPECT_EQ(a["progress"]["apns"]["failed"], 100);
  EXPECT_EQ(sms(id)["accepted"], 300) << "200 without a token + 100 whose push failed";
  EXPECT_EQ(sms(id)["skipped"], 100);
  EXPECT_EQ(sms(id)["pending"], 0);
  EXPECT_EQ(sms_stats()["unique_recipients"], 300);
  EXPECT_EQ(sms_stats()["duplicates"], 0);
  // The accepted deliveries, listed page by page: the SMS (a field each, among the skipped
  // ones and the failed pushes) and the pushes accepted at their first attempt (a record
  // per batch). Every page but the last holds at least the limit (HSCAN may give more).
  std::map<std::string, int> accepted;
  std::set<std::string> seen;
  std::string cursor;
  for (int pages = 0;; ++pages) {
    ASSERT_LT(pages, 20);
    auto page = json::parse(daemon_->get("/v1/alerts/" + id + "/deliveries?state=accepted&limit=50" +
                                             (cursor.empty() ? "" : "&cursor=" + cursor), kOp).body);
    for (const auto& item : page["items"]) {
      EXPECT_EQ(item["state"], "accepted");
      EXPECT_TRUE(seen.insert(item["recipient"].get<std::string>() + "/" + item["channel"].get<std::string>()).second);
      ++accepted[item["channel"]];
    }
    if (page["next"].is_null()) break;
    EXPECT_GE(page["items"].size(), 50u) << "page " << pages;
    cursor = page["next"];
  }
  EXPECT_EQ(accepted["sms"], 300);
  EXPECT_EQ(accepted["apns"], 100);
  auto failed = json::parse(daemon_->get("/v1/alerts/" + id + "/deliveries?state=failed&limit=1000", kOp).body);
  EXPECT_EQ(failed["items"].size(), 100u);
  EXPECT_TRUE(failed["next"].is_null());
}

TEST_F(SmsTest, PushFirstFallsBackToSmsWhenNoPushIsAcceptedInTime) {
  // The APNs gateway only answers 503: no push is ever accepted, so after the fallback
  // delay every recipient gets the SMS, while the pushes are still being retried.
  start("/cgi-bin/sendsms", {}, {{"SIRENA_TENANTS_SOLIERA_SMS_FALLBACK_AFTER_S", "1"}}, {"--fail", "503:1.0"});
  import(50, [](int) { return true; });
  std::string id = submit(flood("sms-fallback", "Moderate"));
  ASSERT_TRUE(wait_until([&] { return sms(id).value("accepted", 0) == 50; }, std::chrono::seconds(30)))
      << alert(id).dump();
  EXPECT_EQ(alert(id)["progress"]["apns"]["accepted"], 0);
  EXPECT_EQ(sms_stats()["unique_recipients"], 50);
}

TEST_F(SmsTest, ExtremeGoesOnEveryChannelAtOnceAndTestsAreMarked) {
  std::string record = dir_.path() + "/sms-record.txt";
  start("/cgi-bin/sendsms", {"--record", record});
  import(20, [](int) { return true; });
  std::string id = submit(flood("sms-all", "Extreme", "Exercise"));
  ASSERT_TRUE(wait_until([&] { return completed(id); }, std::chrono::seconds(30))) << alert(id).dump();
  EXPECT_EQ(alert(id)["progress"]["apns"]["accepted"], 20);
  EXPECT_EQ(sms(id)["accepted"], 20);
  EXPECT_EQ(sms(id)["skipped"], 0);
  // The preview's SMS text is the text that was sent, marker included.
  auto p = json::parse(daemon_->post("/v1/alerts/preview", kOp, flood("sms-all-2", "Extreme", "Exercise"),
                                     "application/cap+xml").body);
  std::string text = p["sms"][0]["text"];
  EXPECT_EQ(text.rfind("[ESERCITAZIONE] ", 0), 0u) << text;
  uint64_t h = 0xcbf29ce484222325ULL;  // the simulator records FNV-1a 64 of the text it got
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  auto lines = [&] {
    std::vector<std::string> out;
    std::string all = read_file(record);
    for (size_t pos = 0, nl; (nl = all.find('\n', pos)) != std::string::npos; pos = nl + 1)
      out.push_back(all.substr(pos, nl - pos));
    return out;
  };
  ASSERT_TRUE(wait_until([&] { return lines().size() == 20; }, std::chrono::seconds(10)));
  for (const auto& line : lines()) EXPECT_EQ(line.substr(line.rfind('\t') + 1), hex) << line;
}

}  // namespace
}  // namespace sirena::testing
