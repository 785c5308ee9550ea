// End-to-end intake: a real redis-server and a real sirenad on 127.0.0.1.
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "daemon/alerts/cap_parser.h"
#include "tests/support/cap_fixture.h"
#include "tests/support/harness.h"

namespace sirena::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kCap = "application/cap+xml";
constexpr const char* kOperator = "it-soliera-operator";
constexpr const char* kApprover = "it-soliera-approver";
constexpr const char* kAdmin = "it-soliera-admin";
constexpr const char* kApp = "it-soliera-app";
constexpr const char* kStrictOperator = "it-strict-operator";
constexpr const char* kStrictApprover = "it-strict-approver";
constexpr const char* kStrictAdmin = "it-strict-admin";
constexpr const char* kStrictApp = "it-strict-app";
constexpr const char* kBastiglia = "it-bastiglia-operator";
constexpr const char* kCorpus = "it-corpus-operator";
constexpr const char* kSender = "protezionecivile@comune.soliera.mo.it";

std::vector<std::string> corpus_files() {
  std::vector<std::string> out;
  for (auto& e : fs::recursive_directory_iterator(data_dir() + "/cap")) {
    auto ext = e.path().extension().string();
    if (e.is_regular_file() && (ext == ".cap" || ext == ".xml")) out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string hash(const std::string& key) {
  return hash_key(key);
}

std::string key_line(const std::string& id, const std::string& role, const std::string& key) {
  return "      " + id + ": {role: " + role + ", sha256: " + hash(key) + "}\n";
}

// Writes a config with four tenants: soliera (no approval below 1000 recipients), strict
// (every Actual alert needs approval), bastiglia, and corpus (allowed every sender of
// the public CAP corpus).
std::string write_config(const std::string& dir, const std::vector<std::string>& extra_soliera_keys = {}) {
  std::set<std::string> senders;
  for (const auto& f : corpus_files()) {
    auto parsed = alerts::parse_cap_xml(read_file(f));
    if (parsed) senders.insert(parsed->sender);
  }
  std::string y = "log: {level: debug}\nredis: {url: managed}\ntenants:\n";
  y += "  soliera:\n    name: Soliera\n    senders: [\"" + std::string(kSender) + "\"]\n";
  y += "    approval: {statuses: [Actual], min_recipients: 1000}\n    keys:\n";
  y += key_line("soliera-operator", "operator", kOperator) +
       key_line("soliera-approver", "approver", kApprover) + key_line("soliera-admin", "admin", kAdmin) +
       key_line("soliera-app", "citizen-app", kApp);
  for (const auto& k : extra_soliera_keys) y += key_line("extra-" + k, "operator", k);
  y += "  strict:\n    senders: [\"" + std::string(kSender) + "\"]\n";
  y += "    approval: {statuses: [Actual], min_recipients: 0}\n    keys:\n";
  y += key_line("strict-operator", "operator", kStrictOperator) +
       key_line("strict-approver", "approver", kStrictApprover) +
       key_line("strict-admin", "admin", kStrictAdmin) + key_line("strict-app", "citizen-app", kStrictApp);
  y += "  bastiglia:\n    senders: [protezionecivile@comune.bastiglia.mo.it]\n";
  y += "    approval: {min_recipients: 1000}\n    keys:\n";
  y += key_line("bastiglia-operator", "operator", kBastiglia);
  y += "    grants: [{to: soliera, zones: [bastiglia-secchia]}]\n";
  y += "  corpus:\n    senders:\n";
  for (const auto& s : senders) y += "      - " + json(s).dump() + "\n";
  y += "    approval: {min_recipients: 1000}\n";
  y += "    keys:\n" + key_line("corpus-operator", "operator", kCorpus);
  std::string path = dir + "/sirena.yaml";
  write_file(path, y);
  return path;
}

std::string cap(const std::string& identifier, const std::string& status = "Actual",
                const std::string& msg_type = "Alert", const std::string& references = "",
                const std::string& sent = "2026-11-27T10:00:00+01:00") {
  TestCap c;
  c.identifier = identifier;
  c.status = status;
  c.msg_type = msg_type;
  c.references = references;
  c.sent = sent;
  return c.xml();
}

std::string triple(const std::string& identifier, const std::string& sent = "2026-11-27T10:00:00+01:00") {
  return std::string(kSender) + "," + identifier + "," + sent;
}

class IntakeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    redis_ = std::make_unique<RedisServer>(dir_.path());
    redis_->start();
    config_ = write_config(dir_.path());
    daemon_ = std::make_unique<Sirenad>(
        config_, dir_.path(), std::map<std::string, std::string>{{"SIRENA_REDIS_URL", redis_->url()}});
    daemon_->start();
    ASSERT_TRUE(wait_until([&] { return daemon_->ready(); }, std::chrono::seconds(10))) << daemon_->log();
  }
  void TearDown() override {
    if (daemon_) {
      EXPECT_EQ(daemon_->stop(), 0) << daemon_->log();
    }
  }

  json submit_ok(const std::string& body, int expect = 202, const std::string& key = kOperator,
                 const std::string& content_type = kCap) {
    auto r = daemon_->post("/v1/alerts", key, body, content_type);
    EXPECT_EQ(r.status, expect) << r.body;
    return json::parse(r.body, nullptr, false);
  }
  json get_alert(const std::string& id, const std::string& key = kOperator) {
    auto r = daemon_->get("/v1/alerts/" + id, key);
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body, nullptr, false);
  }

  TempDir dir_;
  std::unique_ptr<RedisServer> redis_;
  std::string config_;
  std::unique_ptr<Sirenad> daemon_;
};

TEST_F(IntakeTest, CorpusIsStoredAndSurvivesRestartOfSirenadAndRedis) {
  std::map<std::string, std::string> stored;  // id -> file
  std::set<std::string> triples;              // the corpus repeats one (sender, identifier, sent)
  for (const auto& f : corpus_files()) {
    std::string bytes = read_file(f);
    auto expected = alerts::parse_cap_xml(bytes);
    auto r = daemon_->post("/v1/alerts", kCorpus, bytes, kCap);
    json body = json::parse(r.body, nullptr, false);
    if (expected) {
      bool seen =
          !triples.insert(expected->sender + "," + expected->identifier + "," + expected->sent.text).second;
      ASSERT_EQ(r.status, seen ? 200 : 202) << f << ": " << r.body;
      if (!seen) stored[body["id"]] = f;
    } else {
      EXPECT_EQ(r.status, http_status(expected.error().kind)) << f << ": " << r.body;
      EXPECT_EQ(body["error"]["code"], expected.error().code) << f;
    }
  }
  ASSERT_GE(stored.size(), 20u) << "the corpus must be mostly accepted";

  EXPECT_EQ(daemon_->stop(), 0);
  redis_->stop();  // SIGKILL: only what reached the AOF survives
  redis_->start();
  daemon_->start();
  ASSERT_TRUE(wait_until([&] { return daemon_->ready(); }, std::chrono::seconds(10)));
  for (const auto& [id, f] : stored) {
    auto r = daemon_->get("/v1/alerts/" + id, kCorpus, {"Accept: application/cap+xml"});
    ASSERT_EQ(r.status, 200) << f;
    EXPECT_EQ(r.body, read_file(f)) << "raw bytes changed for " << f;
  }
}

TEST_F(IntakeTest, RedisOutageAnswers503WithRetryAfterThenRecovers) {
  auto before = submit_ok(cap("outage-before"));
  redis_->stop();
  ASSERT_TRUE(wait_until([&] { return !daemon_->ready(); }, std::chrono::seconds(10)));
  auto r = daemon_->post("/v1/alerts", kOperator, cap("outage-during"), kCap);
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_EQ(r.headers["retry-after"], "1");
  EXPECT_EQ(json::parse(r.body)["error"]["code"], "redis_unavailable");
  EXPECT_EQ(daemon_->get("/healthz", "").status, 200) << "alive even without Redis";

  redis_->start();
  ASSERT_TRUE(wait_until([&] { return daemon_->ready(); }, std::chrono::seconds(10)));
  auto after = submit_ok(cap("outage-during"));  // the refused alert can be sent again
  EXPECT_EQ(after["state"], "accepted");
  EXPECT_EQ(get_alert(before["id"])["identifier"], "outage-before");
}

// A Redis that hangs (SIGSTOP) instead of closing: hiredis alone would wait for ever. The
// watchdog drops the connection after redis.command_timeout_ms, requests get a 503, and
// the daemon recovers when Redis does. An alert refused meanwhile may have reached Redis
// before it hung: sent again, it is one alert.
TEST_F(IntakeTest, HungRedisAnswers503AfterTheCommandTimeoutThenRecovers) {
  ASSERT_EQ(daemon_->stop(), 0) << daemon_->log();
  daemon_->set_env("SIRENA_REDIS_COMMAND_TIMEOUT_MS", "500");
  daemon_->start();
  ASSERT_TRUE(wait_until([&] { return daemon_->ready(); }, std::chrono::seconds(10))) << daemon_->log();
  std::string id = submit_ok(cap("hang-before"))["id"];

  redis_->signal(SIGSTOP);
  auto read = daemon_->get("/v1/alerts/" + id, kOperator);
  EXPECT_EQ(read.status, 503) << read.body;
  auto write = daemon_->post("/v1/alerts", kOperator, cap("hang-during"), kCap);
  EXPECT_EQ(write.status, 503) << write.body;
  EXPECT_EQ(daemon_->get("/healthz", "").status, 200) << "alive while Redis hangs";
  redis_->signal(SIGCONT);

  ASSERT_TRUE(wait_until([&] { return daemon_->get("/v1/alerts/" + id, kOperator).status == 200; },
                         std::chrono::seconds(10)));
  auto again = daemon_->post("/v1/alerts", kOperator, cap("hang-during"), kCap);
  EXPECT_TRUE(again.status == 202 || again.status == 200) << again.status << " " << again.body;
  auto list = json::parse(daemon_->get("/v1/alerts", kOperator).body);
  int n = 0;
  for (auto& it : list["items"]) n += it["identifier"] == "hang-during";
  EXPECT_EQ(n, 1);
  EXPECT_NE(daemon_->get("/metrics", "")
                .body.find("sirena_unexpected_events_total{kind=\"redis_command_timeout\"}"),
            std::string::npos);
}

// Issue 14, finding 1: when Redis falls behind (here: hung), intake sheds load with 503
// and Retry-After once its backlog passes redis.intake_max_pending, instead of queueing
// without bound; what it did accept is stored once Redis answers again.
TEST_F(IntakeTest, IntakeShedsLoadWhileRedisFallsBehindAndLosesNothingItAccepted) {
  ASSERT_EQ(daemon_->stop(), 0) << daemon_->log();
  daemon_->set_env("SIRENA_REDIS_INTAKE_MAX_PENDING", "100");
  daemon_->set_env("SIRENA_REDIS_COMMAND_TIMEOUT_MS", "60000");
  daemon_->start();
  ASSERT_TRUE(wait_until([&] { return daemon_->ready(); }, std::chrono::seconds(10))) << daemon_->log();
  std::vector<HttpRequest> reqs;
  for (int k = 0; k < 600; ++k) {
    HttpRequest r;
    r.method = "POST";
    r.url = daemon_->base() + "/v1/alerts";
    r.body = cap("shed-" + std::to_string(k));
    r.headers = {"Authorization: Bearer " + std::string(kOperator), std::string("Content-Type: ") + kCap};
    reqs.push_back(std::move(r));
  }
  redis_->signal(SIGSTOP);
  std::vector<HttpResponse> out;
  std::thread client([&] { out = http_all(reqs, reqs.size()); });
  bool shed = wait_until(
      [&] {
        return daemon_->get("/metrics", "")
                   .body.find("sirena_alerts_rejected_total{reason=\"storage_busy\"}") != std::string::npos;
      },
      std::chrono::seconds(20));
  redis_->signal(SIGCONT);
  client.join();
  ASSERT_TRUE(shed) << daemon_->log();
  int accepted = 0, busy = 0;
  for (size_t k = 0; k < out.size(); ++k) {
    if (out[k].status == 503) {
      EXPECT_EQ(json::parse(out[k].body)["error"]["code"], "storage_busy") << out[k].body;
      EXPECT_EQ(out[k].headers["retry-after"], "1");
      ++busy;
      continue;
    }
    ASSERT_EQ(out[k].status, 202) << k << ": " << out[k].body;
    ++accepted;
    EXPECT_EQ(get_alert(json::parse(out[k].body)["id"])["identifier"], "shed-" + std::to_string(k));
  }
  EXPECT_GT(busy, 0);
  EXPECT_GT(accepted, 100);
}

// Issue 14, finding 5: a cancel stops the alert even when no CAP Cancel can be made for
// it (here its stored identifier was made unrepresentable in XML behind the daemon's back).
TEST_F(IntakeTest, CancelHoldsEvenWhenItsCapCancelCannotBeMade) {
  std::string id = submit_ok(cap("uncancellable"))["id"];
  redis_->cli({"HSET", "{t:soliera}:alert:" + id, "identifier", std::string("bad\x0bid")});
  auto r = daemon_->post("/v1/alerts/" + id + "/cancel", kOperator, "", "");
  ASSERT_EQ(r.status, 200) << r.body;
  auto body = json::parse(r.body);
  EXPECT_EQ(body["state"], "cancelled");
  EXPECT_NE(body["warning"].get<std::string>().find("no CAP Cancel"), std::string::npos);
  EXPECT_EQ(get_alert(id)["state"], "cancelled");
}

TEST_F(IntakeTest, SameSenderIdentifierSentReturnsTheExistingAlert) {
  auto first = submit_ok(cap("dup-1"));
  auto again = submit_ok(cap("dup-1"), 200);
  EXPECT_EQ(first["id"], again["id"]);
  EXPECT_EQ(again["duplicate"], true);
  auto list = json::parse(daemon_->get("/v1/alerts", kOperator).body);
  int n = 0;
  for (auto& it : list["items"]) n += it["identifier"] == "dup-1";
  EXPECT_EQ(n, 1);
}

TEST_F(IntakeTest, UpdateSupersedesAndCancelCancelsEvenWhenTheyArriveFirst) {
  // In order: Alert, then Update.
  auto a = submit_ok(cap("flood-1"));
  auto u = submit_ok(cap("flood-1-u", "Actual", "Update", triple("flood-1")));
  EXPECT_EQ(get_alert(a["id"])["state"], "superseded");
  EXPECT_EQ(get_alert(a["id"])["superseded_by"], u["id"]);
  // Out of order: the Cancel arrives before the alert it names.
  auto c = submit_ok(cap("flood-2-c", "Actual", "Cancel", triple("flood-2")));
  auto late = submit_ok(cap("flood-2"));
  EXPECT_EQ(late["state"], "cancelled");
  EXPECT_EQ(get_alert(late["id"])["cancelled_by"], c["id"]);
  // A Test message never cancels an Actual alert.
  auto real = submit_ok(cap("flood-3"));
  submit_ok(cap("flood-3-test-cancel", "Test", "Cancel", triple("flood-3")));
  EXPECT_NE(get_alert(real["id"])["state"], "cancelled");
}

TEST_F(IntakeTest, CancelEndpointIssuesACapCancelReferencingTheAlert) {
  auto a = submit_ok(cap("to-cancel"));
  auto r = daemon_->post("/v1/alerts/" + a["id"].get<std::string>() + "/cancel", kOperator, "", "");
  ASSERT_EQ(r.status, 200) << r.body;
  auto body = json::parse(r.body);
  EXPECT_EQ(body["state"], "cancelled");
  EXPECT_EQ(get_alert(a["id"])["state"], "cancelled");
  auto xml = daemon_->get("/v1/alerts/" + body["cancelled_by"].get<std::string>(), kOperator,
                          {"Accept: application/cap+xml"});
  ASSERT_EQ(xml.status, 200);
  EXPECT_NE(xml.body.find("<msgType>Cancel</msgType>"), std::string::npos) << xml.body;
  EXPECT_NE(xml.body.find("<references>" + triple("to-cancel") + "</references>"), std::string::npos)
      << xml.body;
  // Cancelling twice is harmless.
  EXPECT_EQ(daemon_->post("/v1/alerts/" + a["id"].get<std::string>() + "/cancel", kOperator, "", "").status,
            200);
}

TEST_F(IntakeTest, TwoPersonApproval) {
  auto a = submit_ok(cap("needs-approval"), 202, kStrictOperator);
  EXPECT_EQ(a["state"], "pending_approval");
  std::string path = "/v1/alerts/" + a["id"].get<std::string>() + "/approve";
  // An operator may not approve; the submitter may not approve its own alert.
  EXPECT_EQ(daemon_->post(path, kStrictOperator, "", "").status, 403);
  auto own = submit_ok(cap("admin-own"), 202, kStrictAdmin);
  auto self = daemon_->post("/v1/alerts/" + own["id"].get<std::string>() + "/approve", kStrictAdmin, "", "");
  EXPECT_EQ(self.status, 403);
  EXPECT_EQ(json::parse(self.body)["error"]["code"], "same_key_cannot_approve");

  auto ok = daemon_->post(path, kStrictApprover, "", "");
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(json::parse(ok.body)["state"], "accepted");
  auto st = get_alert(a["id"], kStrictOperator);
  EXPECT_EQ(st["approved_by"], "strict-approver");
  EXPECT_EQ(daemon_->post(path, kStrictApprover, "", "").status, 409);
  // Test alerts and Cancels never wait for approval.
  EXPECT_EQ(submit_ok(cap("strict-test", "Test"), 202, kStrictOperator)["state"], "accepted");
}

// Issue 14, finding 3: every status x msgType x role. Only Alerts and Updates of Actual,
// Exercise and Test reach citizens; every Actual one waits for a second person under this
// tenant's policy (min_recipients 0); System, Ack and Error are kept for the record and
// never planned, whoever sends them.
TEST_F(IntakeTest, EveryStatusTypeAndRoleGetsItsStateAndOnlyCitizenMessagesArePlanned) {
  const std::string statuses[] = {"Actual", "Exercise", "System", "Test", "Draft"};
  const std::string types[] = {"Alert", "Update", "Cancel", "Ack", "Error"};
  const std::pair<std::string, int> roles[] = {
      {kStrictOperator, 202}, {kStrictAdmin, 202}, {kStrictApprover, 403}, {kStrictApp, 403}};
  std::vector<std::string> recorded, sent;
  int n = 0;
  for (const auto& status : statuses)
    for (const auto& type : types)
      for (const auto& [key, expect] : roles) {
        std::string id = "matrix-" + std::to_string(n++);
        std::string refs = type == "Alert" ? "" : triple("matrix-target-" + status);
        auto r = daemon_->post("/v1/alerts", key, cap(id, status, type, refs), kCap);
        std::string what = status + " " + type + " by " + key;
        ASSERT_EQ(r.status, expect) << what << ": " << r.body;
        auto body = json::parse(r.body);
        if (expect == 403) {
          EXPECT_EQ(body["error"]["code"], "forbidden_role") << what;
          continue;
        }
        std::string want;
        bool to_citizens = (status == "Actual" || status == "Exercise" || status == "Test") &&
                           (type == "Alert" || type == "Update");
        if (status == "Draft")
          want = "draft";
        else if (type == "Cancel")
          want = status == "System" ? "recorded" : "accepted";
        else if (!to_citizens)
          want = "recorded";
        else if (status == "Actual")
          want = "pending_approval";
        else
          want = "accepted";
        EXPECT_EQ(body["state"], want) << what;
        EXPECT_EQ(body["test"], status == "Test" || status == "Exercise") << what;
        if (want == "recorded") recorded.push_back(body["id"]);
        if (want == "accepted" && to_citizens) sent.push_back(body["id"]);
      }
  ASSERT_FALSE(recorded.empty());
  ASSERT_FALSE(sent.empty());
  // The drills were planned (nobody is registered here, so they complete at once)...
  for (const auto& id : sent)
    EXPECT_TRUE(wait_until([&] { return get_alert(id, kStrictOperator)["state"] == "completed"; },
                           std::chrono::seconds(10)))
        << id << " " << get_alert(id, kStrictOperator).dump();
  // ...and what is kept for the record never was, nor does an approver's key change that.
  for (const auto& id : recorded) {
    auto a = get_alert(id, kStrictOperator);
    EXPECT_EQ(a["state"], "recorded") << a.dump();
    EXPECT_EQ(redis_->cli({"EXISTS", "{t:strict}:plan:" + id}), "0\n") << id;
    EXPECT_EQ(daemon_->post("/v1/alerts/" + id + "/approve", kStrictApprover, "", "").status, 409) << id;
  }
}

TEST_F(IntakeTest, UpdateWaitingForApprovalDoesNotSupersedeUntilApproved) {
  auto a = submit_ok(cap("s-1"), 202, kStrictOperator);
  ASSERT_EQ(
      daemon_->post("/v1/alerts/" + a["id"].get<std::string>() + "/approve", kStrictApprover, "", "").status,
      200);
  auto u = submit_ok(cap("s-1-u", "Actual", "Update", triple("s-1")), 202, kStrictOperator);
  EXPECT_NE(get_alert(a["id"], kStrictOperator)["state"], "superseded")
      << "not before the Update is approved";
  ASSERT_EQ(
      daemon_->post("/v1/alerts/" + u["id"].get<std::string>() + "/approve", kStrictApprover, "", "").status,
      200);
  EXPECT_EQ(get_alert(a["id"], kStrictOperator)["state"], "superseded");
}

TEST_F(IntakeTest, TenantsAreIsolated) {
  auto a = submit_ok(cap("soliera-only"));
  auto r = daemon_->get("/v1/alerts/" + a["id"].get<std::string>(), kBastiglia);
  EXPECT_EQ(r.status, 404);
  auto list = json::parse(daemon_->get("/v1/alerts", kBastiglia).body);
  EXPECT_TRUE(list["items"].empty());
  EXPECT_EQ(daemon_->post("/v1/alerts/" + a["id"].get<std::string>() + "/cancel", kBastiglia, "", "").status,
            404);
  EXPECT_NE(get_alert(a["id"])["state"], "cancelled");
  // Bastiglia may not post as Soliera's sender.
  auto s = daemon_->post("/v1/alerts", kBastiglia, cap("as-soliera"), kCap);
  EXPECT_EQ(s.status, 403);
  EXPECT_EQ(json::parse(s.body)["error"]["code"], "sender_not_allowed");
}

TEST_F(IntakeTest, AuditStreamRecordsKeyIdsNeverKeys) {
  auto a = submit_ok(cap("audited"), 202, kStrictOperator);
  daemon_->post("/v1/alerts/" + a["id"].get<std::string>() + "/approve", kStrictApprover, "", "");
  daemon_->post("/v1/alerts/" + a["id"].get<std::string>() + "/cancel", kStrictOperator, "", "");
  std::string audit = redis_->cli({"XRANGE", "{t:strict}:audit", "-", "+"});
  for (const char* action : {"create", "approve", "cancelled"})
    EXPECT_NE(audit.find(action), std::string::npos);
  EXPECT_NE(audit.find(a["id"].get<std::string>()), std::string::npos);
  EXPECT_NE(audit.find("strict-operator"), std::string::npos);
  EXPECT_NE(audit.find("strict-approver"), std::string::npos);
  EXPECT_NE(audit.find("127.0.0.1"), std::string::npos);
  EXPECT_EQ(audit.find(kStrictOperator), std::string::npos) << "the key itself must never be stored";
  EXPECT_EQ(redis_->cli({"XLEN", "{t:soliera}:audit"}).find("0"), 0u) << "other tenants' streams untouched";
}

TEST_F(IntakeTest, BadInputGetsPreciseErrorsAndNothingElseChanges) {
  auto keep = submit_ok(cap("keep-me"));
  std::string keep_raw =
      daemon_->get("/v1/alerts/" + keep["id"].get<std::string>(), kOperator, {"Accept: application/cap+xml"})
          .body;
  struct Case {
    const char* name;
    std::string key, body, content_type;
    int status;
    std::string code;
  };
  std::string good = cap("bad-input");
  std::string json_missing = R"({"identifier":"x","sender":")" + std::string(kSender) +
                             R"(","status":"Actual","msg_type":"Alert","scope":"Public"})";
  std::string open_polygon = cap("open-poly");
  open_polygon.replace(open_polygon.find("44.77,10.90</polygon>"), 11, "44.70,10.90");
  std::string bad_schema = cap("xsd-bad");
  bad_schema.insert(bad_schema.find("<scope>"), "<bogus>1</bogus>");
  std::string far_polygon = cap("far-poly");
  far_polygon.replace(far_polygon.find("44.73,10.97"), 11, "95.00,10.97");
  std::vector<Case> cases = {
      {"not xml", kOperator, "hello", kCap, 400, "malformed_xml"},
      {"truncated", kOperator, good.substr(0, good.size() / 2), kCap, 400, "malformed_xml"},
      {"xsd", kOperator, bad_schema, kCap, 422, "schema_violation"},
      {"namespace", kOperator,
       read_file(data_dir() + "/cap/negative/kelvinn__capparselib/tests/resources/invalid_xmlns.cap"), kCap,
       422, "wrong_namespace"},
      {"xxe", kOperator, read_file(data_dir() + "/cap/negative/google__cap-library/testdata/xee.cap"), kCap,
       422, "dtd_forbidden"},
      {"too large", kOperator, std::string(1048577, 'x'), kCap, 413, "body_too_large"},
      {"media type", kOperator, good, "text/plain", 415, "unsupported_media_type"},
      {"no key", "", good, kCap, 401, "missing_api_key"},
      {"bad key", "nope", good, kCap, 401, "invalid_api_key"},
      {"role", kApp, good, kCap, 403, "forbidden_role"},
      {"utf8", kOperator, cap("bad-\xff\xfe-utf8"), kCap, 400, "invalid_utf8"},
      {"json missing field", kOperator, json_missing, "application/json", 422, "missing_field"},
      {"open polygon", kOperator, open_polygon, kCap, 422, "invalid_polygon"},
      {"polygon out of range", kOperator, far_polygon, kCap, 422, ""},
  };
  for (const auto& c : cases) {
    auto r = daemon_->post("/v1/alerts", c.key, c.body, c.content_type);
    EXPECT_EQ(r.status, c.status) << c.name << ": " << r.body;
    auto body = json::parse(r.body, nullptr, false);
    ASSERT_TRUE(body.is_object()) << c.name << " must answer JSON: " << r.body;
    if (!c.code.empty()) {
      EXPECT_EQ(body["error"]["code"], c.code) << c.name << ": " << r.body;
    }
    EXPECT_FALSE(body["error"]["message"].get<std::string>().empty()) << c.name;
    EXPECT_EQ(daemon_->get("/healthz", "").status, 200) << "daemon down after " << c.name;
  }
  auto json_r = daemon_->post("/v1/alerts", kOperator, json_missing, "application/json");
  EXPECT_EQ(json::parse(json_r.body)["error"]["where"], "/sent") << json_r.body;
  auto still =
      daemon_->get("/v1/alerts/" + keep["id"].get<std::string>(), kOperator, {"Accept: application/cap+xml"});
  EXPECT_EQ(still.body, keep_raw);
  auto list = json::parse(daemon_->get("/v1/alerts", kOperator).body);
  EXPECT_EQ(list["items"].size(), 1u) << "no rejected alert may be stored";
  auto metrics = daemon_->get("/metrics", "").body;
  EXPECT_NE(metrics.find("sirena_alerts_rejected_total{reason=\"malformed_xml\"} 2"), std::string::npos)
      << metrics;
}

TEST_F(IntakeTest, DraftIsStoredNotActiveAndTestIsFlagged) {
  auto d = submit_ok(cap("draft-1", "Draft"));
  EXPECT_EQ(d["state"], "draft");
  auto t = submit_ok(cap("test-1", "Test"));
  EXPECT_EQ(t["test"], true);
  auto g = get_alert(t["id"]);
  EXPECT_EQ(g["test"], true);
  EXPECT_EQ(g["label"], "TEST");
  auto e = get_alert(submit_ok(cap("exercise-1", "Exercise"))["id"]);
  EXPECT_EQ(e["label"], "EXERCISE");
  auto real = get_alert(submit_ok(cap("real-1"))["id"]);
  EXPECT_EQ(real["test"], false);
  EXPECT_FALSE(real.contains("label"));
}

TEST_F(IntakeTest, JsonFormIsAccepted) {
  std::string body =
      R"({"identifier":"json-1","sender":")" + std::string(kSender) +
      R"(","sent":"2026-11-27T10:00:00+01:00","status":"Exercise","msg_type":"Alert","scope":"Public",
      "infos":[{"language":"it-IT","categories":["Met"],"event":"Piena","urgency":"Immediate","severity":"Severe",
      "certainty":"Observed","headline":"Esercitazione","areas":[{"desc":"Soliera",
      "circles":[{"lat":44.73,"lon":10.92,"radius_km":2.5}]}]}]})";
  auto r = submit_ok(body, 202, kOperator, "application/json");
  auto g = get_alert(r["id"]);
  EXPECT_EQ(g["alert"]["infos"][0]["areas"][0]["circles"][0]["radius_km"], 2.5);
  EXPECT_EQ(
      daemon_->get("/v1/alerts/" + r["id"].get<std::string>(), kOperator, {"Accept: application/cap+xml"})
          .status,
      406);
  // JSON and CAP share the idempotency key.
  EXPECT_EQ(submit_ok(body, 200, kOperator, "application/json")["id"], r["id"]);
}

TEST_F(IntakeTest, ListingIsNewestFirstAndPaged) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(submit_ok(cap("page-" + std::to_string(i)))["id"]);
  std::vector<std::string> seen;
  std::string cursor;
  for (int pages = 0; pages < 10; ++pages) {
    auto r = json::parse(
        daemon_->get("/v1/alerts?limit=2" + (cursor.empty() ? "" : "&cursor=" + cursor), kOperator).body);
    for (auto& it : r["items"]) seen.push_back(it["id"]);
    if (r["next"].is_null()) break;
    cursor = r["next"];
  }
  std::reverse(ids.begin(), ids.end());
  EXPECT_EQ(seen, ids);
  EXPECT_EQ(daemon_->get("/v1/alerts?limit=0", kOperator).status, 400);
}

TEST_F(IntakeTest, MetricsCoverRequestsAlertsRedisAndLoop) {
  submit_ok(cap("metered"));
  submit_ok(cap("metered-test", "Test"));
  auto m = daemon_->get("/metrics", "").body;
  for (const char* want :
       {"sirena_alerts_received_total{msg_type=\"Alert\",status=\"Actual\",tenant=\"soliera\"} 1",
        "sirena_alerts_received_total{msg_type=\"Alert\",status=\"Test\",tenant=\"soliera\"} 1",
        "sirena_http_requests_total{code=\"202\",route=\"/v1/alerts\"} 2",
        "sirena_http_request_duration_seconds_bucket", "sirena_redis_connected 1",
        "sirena_redis_command_duration_seconds_count", "sirena_event_loop_lag_seconds_count"})
    EXPECT_NE(m.find(want), std::string::npos) << want;
}

TEST_F(IntakeTest, Http2CleartextIsServed) {
  HttpRequest req{"POST",
                  daemon_->base() + "/v1/alerts",
                  cap("over-h2c"),
                  {"Authorization: Bearer " + std::string(kOperator), "Content-Type: application/cap+xml"},
                  true};
  auto r = http(req);
  EXPECT_EQ(r.status, 202) << r.error << r.body;
}

TEST_F(IntakeTest, SighupReloadsKeys) {
  EXPECT_EQ(daemon_->post("/v1/alerts", "it-new-key", cap("hup"), kCap).status, 401);
  write_config(dir_.path(), {"it-new-key"});
  ::kill(daemon_->pid(), SIGHUP);
  ASSERT_TRUE(
      wait_until([&] { return daemon_->post("/v1/alerts", "it-new-key", cap("hup"), kCap).status == 202; },
                 std::chrono::seconds(10)))
      << daemon_->log();
  // A broken file on SIGHUP keeps the running configuration.
  write_file(config_, "tenants: [oops\n");
  ::kill(daemon_->pid(), SIGHUP);
  ASSERT_TRUE(wait_until([&] { return daemon_->log().find("config_reload_failed") != std::string::npos; },
                         std::chrono::seconds(10)));
  EXPECT_EQ(daemon_->post("/v1/alerts", kOperator, cap("after-bad-hup"), kCap).status, 202);
}

TEST(SirenadCommand, ServesTlsWithAlpnH2WhenACertificateIsConfigured) {
  TempDir dir;
  std::string cert = dir.path() + "/cert.pem", key = dir.path() + "/key.pem";
  std::string cmd =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj "
      "/CN=127.0.0.1 -keyout " +
      key + " -out " + cert + " >/dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << "openssl could not make a test certificate";
  RedisServer redis(dir.path());
  redis.start();
  Sirenad d(
      write_config(dir.path()), dir.path(),
      {{"SIRENA_REDIS_URL", redis.url()}, {"SIRENA_HTTP_TLS_CERT", cert}, {"SIRENA_HTTP_TLS_KEY", key}});
  d.start();
  ASSERT_TRUE(wait_until([&] { return d.ready(); }, std::chrono::seconds(10))) << d.log();
  auto r = d.post("/v1/alerts", kOperator, cap("over-tls"), kCap);
  EXPECT_EQ(r.status, 202) << r.error << r.body;
  EXPECT_EQ(r.http_version, CURL_HTTP_VERSION_2_0) << "ALPN should pick h2";
  EXPECT_EQ(d.stop(), 0);
}

TEST(SirenadCommand, CheckConfigNamesFileLineAndKey) {
  TempDir dir;
  std::string good = write_config(dir.path());
  Process ok({bin_dir() + "/sirenad", "--config", good, "--check-config"});
  EXPECT_EQ(ok.wait_exit(std::chrono::seconds(10)), 0);
  std::string bad = dir.path() + "/bad.yaml";
  write_file(bad, read_file(good) + "http:\n  listen: 127.0.0.1:8080\n  max_body_bytes: lots\n");
  Process ko({bin_dir() + "/sirenad", "--config", bad, "--check-config"}, {}, dir.path() + "/err");
  EXPECT_EQ(ko.wait_exit(std::chrono::seconds(10)), 2);
  std::string err = read_file(dir.path() + "/err");
  EXPECT_NE(err.find(bad + ":"), std::string::npos) << err;
  EXPECT_NE(err.find("http.max_body_bytes"), std::string::npos) << err;
}

TEST(SirenadCommand, ManagedRedisKeepsAlertsAcrossRestarts) {
  TempDir dir;
  std::string config = write_config(dir.path());
  std::map<std::string, std::string> env{{"SIRENA_REDIS_MANAGED_DIR", dir.path() + "/redis"}};
  std::string id;
  {
    Sirenad d(config, dir.path(), env);
    d.start();
    ASSERT_TRUE(wait_until([&] { return d.ready(); }, std::chrono::seconds(10))) << d.log();
    auto r = d.post("/v1/alerts", kOperator, cap("managed-1"), kCap);
    ASSERT_EQ(r.status, 202) << r.body;
    id = json::parse(r.body)["id"];
    EXPECT_EQ(d.stop(), 0) << d.log();
  }
  EXPECT_TRUE(fs::exists(dir.path() + "/redis/appendonlydir") ||
              fs::exists(dir.path() + "/redis/appendonly.aof"));
  Sirenad again(config, dir.path(), env);
  again.start();
  ASSERT_TRUE(wait_until([&] { return again.ready(); }, std::chrono::seconds(10)));
  auto r = again.get("/v1/alerts/" + id, kOperator);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(again.stop(), 0);
}

}  // namespace
}  // namespace sirena::testing
