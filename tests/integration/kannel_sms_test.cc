// sirenad's SMS channel through a real Kannel chain (bearerbox, smsbox and fakesmsc from
// Debian's kannel and kannel-extras) on loopback: what reaches the SMSC, its coding, the
// delivery reports Kannel sends back, and a bearerbox crash in the middle of an alert.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "tests/support/cap_fixture.h"
#include "tests/support/harness.h"
#include "tests/support/recipients.h"
#include "tests/support/kannel.h"

namespace sirena::testing {
namespace {

using nlohmann::json;
constexpr const char* kOp = "demo-soliera-operator";


// n citizens of Soliera with a phone and no app; one in ten reads English.
std::string town(int n) {
  std::string nd;
  for (int i = 0; i < n; ++i) {
    json r = {{"id", "k-" + std::to_string(i)},
              {"phone", phone(i)},
              {"language", i % 10 == 0 ? "en" : "it"},
              {"topics", {"Met"}},
              {"locations", {{{"lat", 44.735 + (i % 100) * 1e-4}, {"lon", 10.92 + (i / 100 % 100) * 1e-4}}}}};
    nd += r.dump() + "\n";
  }
  return nd;
}

std::string flood(const std::string& identifier) {
  TestCap c;
  c.identifier = identifier;
  c.severity = "Extreme";
  c.english = true;
  // "È" is outside GSM 03.38 (unlike à, è, é, ì, ò, ù): the Italian SMS is UCS-2.
  c.headline = "È in arrivo la piena del Secchia";
  c.instruction = "Salite ai piani alti, città allagata.";
  c.polygon = "44.72,10.90 44.72,10.95 44.76,10.95 44.76,10.90 44.72,10.90";
  return c.xml();
}

class KannelSmsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    redis_ = std::make_unique<RedisServer>(dir_.path());
    redis_->start();
  }
  void start(KannelOptions opts = {}, std::map<std::string, std::string> env = {}) {
    kannel_ = std::make_unique<KannelChain>(opts);
    kannel_->start();
    daemon_ = std::make_unique<Sirenad>(source_dir() + "/config/demo.yaml", dir_.path(),
                                        std::map<std::string, std::string>{
                                            {"SIRENA_REDIS_URL", redis_->url()},
                                            {"SIRENA_GATEWAYS_APNS_URL", "http://127.0.0.1:1"},
                                            {"SIRENA_GATEWAYS_FCM_URL", "http://127.0.0.1:1"},
                                            {"SIRENA_GATEWAYS_SMS_URL", kannel_->sendsms_url()},
                                            {"SIRENA_GATEWAYS_SMS_USERNAME", kannel_->username()},
                                            {"SIRENA_GATEWAYS_SMS_PASSWORD", kannel_->password()},
                                            {"SIRENA_GATEWAYS_SMS_RATE", "0"},
                                            {"SIRENA_GATEWAYS_SMS_DLR_SECRET", "it-kannel-dlr"},
                                            {"SIRENA_DISPATCH_CONSUMER", "it-daemon"},
                                            {"SIRENA_TENANTS_SOLIERA_APPROVAL_MIN_RECIPIENTS", "100000000"},
                                        });
    daemon_->set_env("SIRENA_GATEWAYS_SMS_DLR_URL", "http://127.0.0.1:" + std::to_string(daemon_->port()));
    for (auto& [k, v] : env) daemon_->set_env(k, v);
    daemon_->start();
    ASSERT_TRUE(wait_until([&] { return daemon_->ready(); }, std::chrono::seconds(60))) << daemon_->log();
  }
  void TearDown() override {
    if (daemon_) {
      EXPECT_EQ(daemon_->stop(), 0) << daemon_->log();
    }
  }
  void import(int n) {
    auto r = daemon_->post("/v1/recipients/import", kOp, town(n), "application/x-ndjson");
    ASSERT_EQ(r.status, 200) << r.body.substr(0, 300);
    ASSERT_EQ(json::parse(r.body)["imported"], n);
  }
  json alert(const std::string& id) { return json::parse(daemon_->get("/v1/alerts/" + id, kOp).body, nullptr, false); }
  json sms(const std::string& id) { return alert(id)["progress"]["sms"]; }
  // The preview's SMS text per language: what every citizen of that language must get.
  std::map<std::string, json> preview_texts(const std::string& cap) {
    auto p = json::parse(daemon_->post("/v1/alerts/preview", kOp, cap, "application/cap+xml").body);
    std::map<std::string, json> out;
    for (const auto& s : p["sms"]) out[s["language"]] = s;
    return out;
  }

  TempDir dir_;
  std::unique_ptr<RedisServer> redis_;
  std::unique_ptr<KannelChain> kannel_;
  std::unique_ptr<Sirenad> daemon_;
};

TEST_F(KannelSmsTest, TenThousandNumbersReachTheSmscOnceWithTheRightTextAndCodingAndReportsComeBack) {
  constexpr int kN = 10000;
  start();
  import(kN);
  std::string cap = flood("kannel-10k");
  auto texts = preview_texts(cap);
  ASSERT_EQ(texts.size(), 2u);
  ASSERT_EQ(texts["it"]["encoding"], "UCS-2");
  ASSERT_EQ(texts["en"]["encoding"], "GSM-7");
  auto r = daemon_->post("/v1/alerts", kOp, cap, "application/cap+xml");
  ASSERT_EQ(r.status, 202) << r.body;
  std::string id = json::parse(r.body)["id"];

  ASSERT_TRUE(wait_until([&] { return kannel_->count_received() >= kN; }, std::chrono::seconds(120)))
      << kannel_->count_received() << " received\n" << kannel_->logs();
  std::map<std::string, int> seen;
  for (const auto& m : kannel_->received()) {
    int i = std::stoi(m.receiver.substr(6));
    ASSERT_EQ(m.receiver, phone(i));
    bool en = i % 10 == 0;
    EXPECT_EQ(m.text, texts[en ? "en" : "it"]["text"].get<std::string>()) << m.receiver;
    EXPECT_EQ(m.coding, en ? SmsCoding::kText7 : SmsCoding::kUcs2) << m.receiver << " " << m.text;
    EXPECT_EQ(m.sender, "Soliera");
    ++seen[m.receiver];
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kN));
  for (const auto& [number, times] : seen) ASSERT_EQ(times, 1) << number;

  // Kannel's delivery reports (dlr-mask 31: SMSC accepted, then delivered) come back to
  // /v1/dlr/sms and move every delivery to `delivered`.
  ASSERT_TRUE(wait_until([&] { return sms(id).value("delivered", 0) == kN; }, std::chrono::seconds(60)))
      << sms(id).dump();
  EXPECT_EQ(sms(id)["accepted"], 0);
  EXPECT_EQ(alert(id)["state"], "completed");
  // Every "delivered" report was counted: applied at once, or kept until the acceptance
  // was written ("early").
  double reports = 0;
  std::string m = daemon_->get("/metrics", "").body;
  for (size_t pos = 0, nl; (nl = m.find('\n', pos)) != std::string::npos; pos = nl + 1) {
    std::string line = m.substr(pos, nl - pos);
    if (line.rfind("sirena_sms_dlr_total{", 0) == 0 && line.find("type=\"delivered\"") != std::string::npos)
      reports += std::stod(line.substr(line.rfind(' ') + 1));
  }
  EXPECT_EQ(reports, kN);
}

TEST_F(KannelSmsTest, BearerboxKilledMidAlertLosesNoNumber) {
  // Kannel sends 100 SMS/s, so most of the alert is still queued in bearerbox when it dies.
  // Its store keeps one number of each multi-number request (they share one message id);
  // the others get no delivery report, and sirenad sends them again after dlr_timeout_ms.
  constexpr int kN = 600;
  KannelOptions opts;
  opts.throughput = 100;
  start(opts, {{"SIRENA_GATEWAYS_SMS_DLR_TIMEOUT_MS", "15000"}});
  import(kN);
  auto r = daemon_->post("/v1/alerts", kOp, flood("kannel-crash"), "application/cap+xml");
  ASSERT_EQ(r.status, 202) << r.body;
  std::string id = json::parse(r.body)["id"];
  ASSERT_TRUE(wait_until([&] { return kannel_->count_received() >= 100; }, std::chrono::seconds(30)));
  kannel_->kill_bearerbox();
  size_t before = kannel_->count_received();
  kannel_->restart_bearerbox();

  // Reached: fakesmsc logged it, or bearerbox logged writing it, or Kannel reported it
  // delivered (fakesmsc may drop the lines that arrive with the connection's close, and
  // a killed bearerbox its last access-log lines; a delivery report is Kannel's word that
  // the SMSC took the message).
  auto reached = [&] {
    std::map<std::string, int> seen;
    for (const auto& m : kannel_->received()) ++seen[m.receiver];
    for (const auto& to : kannel_->sent_by_bearerbox()) seen.emplace(to, 1);
    std::string cursor;
    do {
      auto page = json::parse(daemon_->get("/v1/alerts/" + id + "/deliveries?state=delivered&limit=500" +
                                               (cursor.empty() ? "" : "&cursor=" + cursor),
                                           kOp)
                                  .body,
                              nullptr, false);
      if (!page.is_object() || !page["items"].is_array()) break;
      for (const auto& item : page["items"]) {
        std::string recipient = item.value("recipient", "");
        if (recipient.rfind("k-", 0) == 0) seen.emplace(phone(std::stoi(recipient.substr(2))), 1);
      }
      cursor = page["next"].is_string() ? page["next"].get<std::string>() : "";
    } while (!cursor.empty());
    return seen;
  };
  ASSERT_TRUE(wait_until([&] { return reached().size() == static_cast<size_t>(kN); }, std::chrono::seconds(90)))
      << reached().size() << " of " << kN << " numbers reached the SMSC (" << before << " before the kill)\n"
      << sms(id).dump() << "\n" << kannel_->logs();
  ASSERT_TRUE(wait_until([&] { return sms(id).value("pending", -1) == 0; }, std::chrono::seconds(60))) << sms(id).dump();
  auto progress = sms(id);
  EXPECT_EQ(progress["accepted"].get<int>() + progress["delivered"].get<int>(), kN) << progress.dump();
  EXPECT_EQ(progress["failed"], 0) << progress.dump();
  int duplicates = 0;
  for (const auto& [number, times] : reached()) duplicates += times - 1;
  // Only a message written to the SMSC whose report died with bearerbox is sent twice.
  EXPECT_LE(duplicates, 20) << "numbers received twice";
  // The crash did lose queued numbers, and sirenad found them by their missing reports.
  std::string m = daemon_->get("/metrics", "").body;
  auto at = m.find("sirena_unexpected_events_total{kind=\"sms_no_delivery_report\"} ");
  ASSERT_NE(at, std::string::npos) << "nothing was lost: the test did not test the loss";
  double resent = std::stod(m.substr(m.find('}', at) + 2));
  EXPECT_GT(resent, 0);
  std::printf("bearerbox kill: %zu numbers reached the SMSC before, %.0f sent again, %d duplicates\n", before, resent,
              duplicates);
}

}  // namespace
}  // namespace sirena::testing
