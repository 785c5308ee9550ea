// Crafted alert bodies sent with a valid key to a real sirenad (issue 14, findings 5,
// 6, 10, 11 and 12): each gets a 4xx, never a 5xx, and the event loop keeps answering
// while they are parsed.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/support/cap_fixture.h"
#include "tests/support/harness.h"

namespace sirena::testing {
namespace {

using nlohmann::json;

constexpr const char* kOp = "demo-soliera-operator";
constexpr const char* kXml = "application/cap+xml";
constexpr const char* kJson = "application/json";

class HostileIntakeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    redis_ = std::make_unique<RedisServer>(dir_.path());
    redis_->start();
    daemon_ = std::make_unique<Sirenad>(
        source_dir() + "/config/demo.yaml", dir_.path(),
        std::map<std::string, std::string>{{"SIRENA_REDIS_URL", redis_->url()},
                                           {"SIRENA_DIRECTORY_ZONES_DIR", source_dir() + "/config/zones"}});
    daemon_->start();
    ASSERT_TRUE(wait_until([&] { return daemon_->ready(); }, std::chrono::seconds(60))) << daemon_->log();
  }
  void TearDown() override {
    if (daemon_) {
      EXPECT_EQ(daemon_->stop(), 0) << daemon_->log();
    }
  }

  TempDir dir_;
  std::unique_ptr<RedisServer> redis_;
  std::unique_ptr<Sirenad> daemon_;
};

std::string valid_cap(const std::string& identifier) {
  TestCap c;
  c.identifier = identifier;
  c.status = "Test";
  return c.xml();
}

// `doc` with `extra` inserted after "<scope>Public</scope>".
std::string inject(const std::string& extra, std::string doc = valid_cap("hostile")) {
  const std::string at = "<scope>Public</scope>";
  doc.insert(doc.find(at) + at.size(), extra);
  return doc;
}

json json_alert(const std::string& identifier) {
  return {{"identifier", identifier},
          {"sender", "protezionecivile@comune.soliera.mo.it"},
          {"sent", "2026-11-27T10:00:00+01:00"},
          {"status", "Test"},
          {"msg_type", "Alert"},
          {"scope", "Public"}};
}

struct Hostile {
  std::string name, body, content_type;
};

// Bodies under the 1 MiB body limit that cost libxml2 (or nlohmann) the most.
std::vector<Hostile> hostile_bodies() {
  std::vector<Hostile> out;
  std::string attrs;
  while (attrs.size() < 900'000) attrs += " a" + std::to_string(attrs.size()) + "=\"\"";
  out.push_back({"attributes", inject("<note" + attrs + ">x</note>"), kXml});
  std::string ns;
  while (ns.size() < 900'000) ns += " xmlns:p" + std::to_string(ns.size()) + "=\"urn:x\"";
  out.push_back({"namespaces", inject("<note" + ns + ">x</note>"), kXml});
  std::string deep;
  while (deep.size() < 900'000) deep += "<n>";
  out.push_back({"depth", inject("<note>" + deep), kXml});
  out.push_back({"text", inject("<note>" + std::string(900'000, 'a') + "</note>"), kXml});
  std::string codes;
  while (codes.size() < 900'000) codes += "<code>c</code>";
  out.push_back({"elements", inject(codes), kXml});
  std::string json_doc = json_alert("dup").dump();
  json_doc.insert(1, R"("status":"Actual",)");
  out.push_back({"duplicate key", json_doc, kJson});
  std::string overflow = json_alert("num").dump();
  overflow.insert(
      1,
      R"("infos":[{"language":"it","categories":["Met"],"event":"e","urgency":"Immediate","severity":"Severe","certainty":"Observed","areas":[{"desc":"d","circles":[{"lat":44.7,"lon":10.9,"radius_km":)" +
          std::string(5000, '9') + "}]}]}],");
  out.push_back({"overflow", overflow, kJson});
  out.push_back({"json depth", std::string(500'000, '[') + std::string(500'000, ']'), kJson});
  json control = json_alert(std::string("ctl\x0B", 4));
  out.push_back({"control character", control.dump(), kJson});
  return out;
}

TEST_F(HostileIntakeTest, HostileBodiesGet4xxWhileTheLoopKeepsAnswering) {
  const std::vector<Hostile> bodies = hostile_bodies();
  std::vector<HttpRequest> reqs;
  for (int round = 0; round < 3; ++round) {
    for (const Hostile& h : bodies) {
      for (const char* path : {"/v1/alerts", "/v1/alerts/preview"}) {
        reqs.push_back({"POST",
                        daemon_->base() + path,
                        h.body,
                        {"Authorization: Bearer " + std::string(kOp), "Content-Type: " + h.content_type},
                        false});
      }
    }
  }
  // A client polls /healthz for as long as the hostile posts are in flight; each answer
  // must come back quickly. Before the fix one body held the loop for 92 s.
  std::atomic<bool> posting{true};
  std::atomic<int> probes{0};
  std::atomic<int64_t> worst_ms{0};
  std::thread prober([&] {
    do {  // at least once, however fast the posts are answered
      const auto start = std::chrono::steady_clock::now();
      const HttpResponse r = http_get(daemon_->base() + "/healthz");
      const auto ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start)
              .count();
      if (r.status == 200) ++probes;
      int64_t prev = worst_ms.load();
      while (ms > prev && !worst_ms.compare_exchange_weak(prev, ms)) {
      }
    } while (posting.load());
  });
  const std::vector<HttpResponse> answers = http_all(reqs, 8);
  posting = false;
  prober.join();

  ASSERT_EQ(answers.size(), reqs.size());
  for (size_t i = 0; i < answers.size(); ++i) {
    const Hostile& h = bodies[(i / 2) % bodies.size()];
    EXPECT_GE(answers[i].status, 400) << h.name << ": " << answers[i].body.substr(0, 300);
    EXPECT_LT(answers[i].status, 500) << h.name << ": " << answers[i].body.substr(0, 300);
    const json body = json::parse(answers[i].body, nullptr, false);
    EXPECT_TRUE(body.contains("error")) << h.name << ": " << answers[i].body.substr(0, 300);
  }
  EXPECT_GT(probes.load(), 0);
  // Generous for a loaded CI machine: parsed on the loop, the attributes body alone
  // held it for about a minute.
  EXPECT_LT(worst_ms.load(), 2000) << "the event loop stalled while hostile bodies were parsed";
  // And the daemon still takes a real alert.
  EXPECT_EQ(daemon_->post("/v1/alerts", kOp, valid_cap("after-hostile"), kXml).status, 202);
}

TEST_F(HostileIntakeTest, EachFindingHasItsPrecise422) {
  struct Case {
    const char* name;
    std::string body, content_type, code, where;
  };
  std::string dup = json_alert("dup-2").dump();
  dup.insert(1, R"("status":"Actual",)");
  std::string big_number = json_alert("big").dump();
  big_number.insert(1, R"("x":1e999,)");
  std::string refs;
  for (int i = 0; i < 101; ++i) refs += "a,id" + std::to_string(i) + ",2026-11-27T10:00:00+01:00 ";
  TestCap update;
  update.identifier = "many-refs";
  update.status = "Test";
  update.msg_type = "Update";
  update.references = refs;
  TestCap circle;
  circle.identifier = "circle";
  std::string huge_circle = circle.xml();
  huge_circle.insert(huge_circle.find("</area>"), "<circle>44.7,10.9 1e308</circle>");
  std::string flat = circle.xml();
  flat.replace(flat.find("44.77,10.90 44.77,10.97"), 23, "44.77,10.90 44.77,10.90");
  flat.replace(flat.find("44.73,10.97 44.73,10.90"), 23, "44.77,10.90 44.77,10.90");
  std::string negative = circle.xml();
  negative.insert(
      negative.find("<area>"),
      "<resource><resourceDesc>m</resourceDesc><mimeType>image/png</mimeType><size>-1</size></resource>");
  const std::vector<Case> cases = {
      {"duplicate key", dup, kJson, "duplicate_key", "/status"},
      {"1e999", big_number, kJson, "number_out_of_range", "/x"},
      {"NUL in identifier", json_alert(std::string("a\0b", 3)).dump(), kJson, "invalid_character",
       "/identifier"},
      {"U+FFFE in sender",
       [] {
         json j = json_alert("fffe");
         j["sender"] = "pc\xEF\xBF\xBE";
         return j.dump();
       }(),
       kJson, "invalid_character", "/sender"},
      {"101 references", update.xml(), kXml, "too_many_references", "/references"},
      {"huge circle", huge_circle, kXml, "invalid_circle", "/infos/0/areas/0/circles/0"},
      {"zero-area polygon", flat, kXml, "invalid_polygon", "/infos/0/areas/0/polygons/0"},
      {"negative size", negative, kXml, "invalid_field", "/infos/0/resources/0/size"},
      {"500 KB identifier", json_alert(std::string(500'000, 'i')).dump(), kJson, "too_long", "/identifier"},
  };
  for (const Case& c : cases) {
    const HttpResponse r = daemon_->post("/v1/alerts", kOp, c.body, c.content_type);
    EXPECT_EQ(r.status, 422) << c.name << ": " << r.body.substr(0, 300);
    const json e = json::parse(r.body, nullptr, false)["error"];
    EXPECT_EQ(e["code"], c.code) << c.name << ": " << r.body.substr(0, 300);
    EXPECT_EQ(e["where"], c.where) << c.name << ": " << r.body.substr(0, 300);
  }
  // Nothing was stored, and no log line holds the 500 KB identifier.
  EXPECT_TRUE(json::parse(daemon_->get("/v1/alerts", kOp).body)["items"].empty());
  EXPECT_EQ(daemon_->log().find(std::string(1000, 'i')), std::string::npos);
}

// Finding 5: an alert intake accepted can always be cancelled, whatever characters
// its identifier and sender hold.
TEST_F(HostileIntakeTest, AcceptedAlertsWithUnusualCharactersCanBeCancelled) {
  for (const std::string& id :
       {std::string("id-\xC2\x85-nel"), std::string("id-\x7F-del"), std::string("id-\xEF\xBF\xBD-fffd"),
        std::string("id-]]>-cdata"), std::string("id-\xF0\x9F\x8C\x8A-wave"), std::string("id-\"quote'")}) {
    const HttpResponse r = daemon_->post("/v1/alerts", kOp, json_alert(id).dump(), kJson);
    ASSERT_EQ(r.status, 202) << r.body;
    const std::string alert_id = json::parse(r.body)["id"];
    const HttpResponse c = daemon_->post("/v1/alerts/" + alert_id + "/cancel", kOp, "", kJson);
    EXPECT_EQ(c.status, 200) << id << ": " << c.body;
    EXPECT_EQ(json::parse(daemon_->get("/v1/alerts/" + alert_id, kOp).body)["state"], "cancelled") << id;
  }
}

}  // namespace
}  // namespace sirena::testing
