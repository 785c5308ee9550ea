// The recipient directory end to end: real redis-server, real sirenad with the demo
// configuration (config/demo.yaml and config/zones), driven over HTTP.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>

#include "tests/support/cap_fixture.h"
#include "tests/support/harness.h"

namespace sirena::testing {
namespace {

using nlohmann::json;

constexpr const char* kOp = "demo-soliera-operator";
constexpr const char* kApp = "demo-soliera-app";
constexpr const char* kBastiglia = "demo-bastiglia-operator";
const std::string kApnsToken(64, 'a');
const std::string kFcmToken = "fcm-" + std::string(150, 'x');

json recipient(const std::string& id, double lat, double lon, std::vector<std::string> topics,
               const std::string& language = "it", bool phone = true, bool apns = true, bool fcm = false) {
  json r = {{"id", id}, {"language", language}, {"topics", topics}};
  if (lat != 0) r["locations"] = json::array({{{"lat", lat}, {"lon", lon}, {"label", "home"}}});
  if (phone) r["phone"] = "3331234567";  // Italian mobile, no +39: the tenant's region applies
  json push = json::array();
  if (apns) push.push_back({{"platform", "apns"}, {"app", "it.comune.soliera.app"}, {"token", kApnsToken}});
  if (fcm) push.push_back({{"platform", "fcm"}, {"app", "soliera-app"}, {"token", kFcmToken}});
  if (!push.empty()) r["push"] = push;
  return r;
}

std::string cap(const std::string& identifier, const std::string& severity, const std::string& urgency,
                const std::string& category, const std::string& polygon, const std::string& status = "Actual") {
  TestCap c;
  c.identifier = identifier;
  c.severity = severity;
  c.urgency = urgency;
  c.category = category;
  c.polygon = polygon;
  c.status = status;
  c.event = "Allerta";  // maps to no topic: only the category counts
  c.headline = "Allerta per il Secchia";
  c.instruction = "Salite ai piani alti. È vietato usare i sottopassi.";  // È is not GSM-7
  c.english = true;
  return c.xml();
}

// Soliera centre, Sozzigalli and the west of Bastiglia's Secchia band; not Modena.
const std::string kArea = "44.72,10.90 44.72,10.99 44.76,10.99 44.76,10.90 44.72,10.90";

class DirectoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    redis_ = std::make_unique<RedisServer>(dir_.path());
    redis_->start();
    start();
  }
  void TearDown() override {
    if (daemon_) {
      EXPECT_EQ(daemon_->stop(), 0) << daemon_->log();
    }
  }
  void start(std::map<std::string, std::string> extra = {}) {
    extra["SIRENA_REDIS_URL"] = redis_->url();
    extra["SIRENA_DIRECTORY_ZONES_DIR"] = source_dir() + "/config/zones";
    daemon_ = std::make_unique<Sirenad>(source_dir() + "/config/demo.yaml", dir_.path(), extra);
    daemon_->start();
    ASSERT_TRUE(wait_until([&] { return daemon_->ready(); }, std::chrono::seconds(60))) << daemon_->log();
  }
  HttpResponse put(const std::string& path, const std::string& key, const std::string& body) {
    return http({"PUT", daemon_->base() + path, body, {"Authorization: Bearer " + key}, false});
  }
  HttpResponse del(const std::string& path, const std::string& key) {
    return http({"DELETE", daemon_->base() + path, "", {"Authorization: Bearer " + key}, false});
  }
  json preview(const std::string& body, const std::string& key = kOp) {
    auto r = daemon_->post("/v1/alerts/preview", key, body, "application/cap+xml");
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body, nullptr, false);
  }
  void load_town() {
    std::string nd;
    for (const json& r : {recipient("centro-met", 44.7376, 10.9245, {"Met"}),
                          recipient("sozz-viab", 44.7390, 10.9630, {"viabilita"}),
                          recipient("sozz-en", 44.7395, 10.9640, {"Met"}, "en-GB", false, false, true),
                          recipient("modena-met", 44.6470, 10.9250, {"Met"}),
                          recipient("centro-nochannel", 44.7370, 10.9240, {"Met"}, "it", false, false)}) {
      nd += r.dump() + "\n";
    }
    // Registered by zone only: no location, zone Limidi (which the area overlaps).
    json lz = recipient("limidi-zone", 0, 0, {"Met"});
    lz["zones"] = {"limidi"};
    nd += lz.dump() + "\n";
    auto r = daemon_->post("/v1/recipients/import", kOp, nd, "application/x-ndjson");
    ASSERT_EQ(r.status, 200) << r.body;
    ASSERT_EQ(json::parse(r.body)["rejected"].size(), 0u) << r.body;
    auto b = daemon_->post("/v1/recipients/import", kBastiglia,
                           recipient("b-secchia", 44.7300, 10.9870, {"Met"}).dump() + "\n" +
                               recipient("b-centro", 44.7270, 11.0000, {"Met"}).dump() + "\n",
                           "application/x-ndjson");
    ASSERT_EQ(b.status, 200) << b.body;
  }

  TempDir dir_;
  std::unique_ptr<RedisServer> redis_;
  std::unique_ptr<Sirenad> daemon_;
};

TEST_F(DirectoryTest, RecipientCrudIsTenantScopedAndNormalised) {
  auto created = put("/v1/recipients/r-1", kOp, recipient("r-1", 44.7376, 10.9245, {"Met"}).dump());
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(put("/v1/recipients/r-1", kOp, recipient("r-1", 44.7376, 10.9245, {"Geo"}).dump()).status, 200);
  // The key shipped inside the public app reads and changes nobody (issue 14 finding 4).
  EXPECT_EQ(put("/v1/recipients/r-1", kApp, recipient("r-1", 44.7376, 10.9245, {"Met"}).dump()).status, 403);
  EXPECT_EQ(daemon_->get("/v1/recipients/r-1", kApp).status, 403);
  EXPECT_EQ(del("/v1/recipients/r-1", kApp).status, 403);
  auto got = daemon_->get("/v1/recipients/r-1", kOp);
  ASSERT_EQ(got.status, 200);
  json doc = json::parse(got.body);
  EXPECT_EQ(doc["phone"], "+393331234567") << "stored as E.164";
  EXPECT_EQ(doc["topics"], json({"Geo"}));
  EXPECT_EQ(daemon_->get("/v1/recipients/r-1", kBastiglia).status, 404) << "another tenant's recipient";
  EXPECT_EQ(del("/v1/recipients/r-1", kBastiglia).status, 404);
  EXPECT_EQ(del("/v1/recipients/r-1", kOp).status, 204);
  EXPECT_EQ(daemon_->get("/v1/recipients/r-1", kOp).status, 404);
  EXPECT_EQ(daemon_->log().find("3331234567"), std::string::npos) << "phone numbers never reach the log";
}

// Redis forgets the scripts under a live connection (SCRIPT FLUSH, or a failover the
// client does not see): EVALSHA answers NOSCRIPT, and the daemon sends the script itself
// with the same arguments, so the write still lands.
TEST_F(DirectoryTest, ScriptsFlushedUnderTheDaemonAreSentAgain) {
  ASSERT_EQ(put("/v1/recipients/r-1", kOp, recipient("r-1", 44.7376, 10.9245, {"Met"}).dump()).status, 201);
  ASSERT_EQ(redis_->cli({"SCRIPT", "FLUSH"}), "OK\n");
  auto r = put("/v1/recipients/r-1", kOp, recipient("r-1", 44.7376, 10.9245, {"Geo"}).dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(daemon_->get("/v1/recipients/r-1", kOp).body)["topics"], json({"Geo"}));
  ASSERT_EQ(redis_->cli({"SCRIPT", "FLUSH"}), "OK\n");
  auto imported = daemon_->post("/v1/recipients/import", kOp,
                                recipient("r-2", 44.7376, 10.9245, {"Met"}).dump() + "\n", "application/x-ndjson");
  ASSERT_EQ(imported.status, 200) << imported.body;
  EXPECT_EQ(json::parse(imported.body)["created"], 1);
  EXPECT_EQ(redis_->cli({"HLEN", "{t:soliera}:recipients"}), "2\n");
}

TEST_F(DirectoryTest, BadRecipientsAreRejectedWithTheField) {
  struct Case {
    json doc;
    std::string where;
  };
  json bad_phone = recipient("x", 44.7, 10.9, {"Met"});
  bad_phone["phone"] = "12";
  json bad_token = recipient("x", 44.7, 10.9, {"Met"});
  bad_token["push"][0]["token"] = "zz";
  json bad_topic = recipient("x", 44.7, 10.9, {"Weather"});
  json bad_lat = recipient("x", 94.7, 10.9, {"Met"});
  json bad_zone = recipient("x", 44.7, 10.9, {"Met"});
  bad_zone["zones"] = {"atlantis"};
  for (const auto& c : std::vector<Case>{{bad_phone, "/phone"},
                                         {bad_token, "/push/0/token"},
                                         {bad_topic, "/topics/0"},
                                         {bad_lat, "/locations/0/lat"},
                                         {bad_zone, "/zones/0"}}) {
    auto r = put("/v1/recipients/x", kOp, c.doc.dump());
    EXPECT_EQ(r.status, 422) << c.where << ": " << r.body;
    EXPECT_EQ(json::parse(r.body)["error"]["where"], c.where) << r.body;
  }
  EXPECT_EQ(daemon_->get("/v1/recipients/x", kOp).status, 404);
}

TEST_F(DirectoryTest, ImportReportsBadLinesAndIsIdempotent) {
  std::string nd = recipient("i-1", 44.7376, 10.9245, {"Met"}).dump() + "\n" + "{not json\n" + "\n" +
                   recipient("i-2", 44.7376, 10.9245, {"Nope"}).dump() + "\n" +
                   recipient("i-3", 44.7376, 10.9245, {"Met"}).dump() + "\n";
  auto r = daemon_->post("/v1/recipients/import", kOp, nd, "application/x-ndjson");
  ASSERT_EQ(r.status, 200) << r.body;
  json body = json::parse(r.body);
  EXPECT_EQ(body["imported"], 2);
  EXPECT_EQ(body["created"], 2);
  ASSERT_EQ(body["rejected"].size(), 2u);
  EXPECT_EQ(body["rejected"][0]["line"], 2);
  EXPECT_EQ(body["rejected"][1]["line"], 4);
  EXPECT_NE(body["rejected"][1]["reason"].get<std::string>().find("Nope"), std::string::npos);
  EXPECT_EQ(body["unchanged"], 0);
  auto again = json::parse(daemon_->post("/v1/recipients/import", kOp, nd, "application/x-ndjson").body);
  EXPECT_EQ(again["imported"], 2);
  EXPECT_EQ(again["created"], 0) << "the same ids again replace, never duplicate";
  EXPECT_EQ(again["unchanged"], 2) << "identical lines write nothing";
}

// A line identical to what is stored writes nothing; a changed one is written and indexed,
// also when an earlier line of the same call changed the recipient and a later one puts
// the stored form back.
TEST_F(DirectoryTest, ImportWritesOnlyWhatChanged) {
  const std::string a = recipient("u-1", 44.7376, 10.9245, {"Met"}).dump() + "\n";
  const std::string b = recipient("u-1", 44.7376, 10.9245, {"Fire"}).dump() + "\n";
  const std::string other = recipient("u-2", 44.7376, 10.9245, {"Met"}).dump() + "\n";
  auto import = [&](const std::string& nd) {
    auto r = daemon_->post("/v1/recipients/import", kOp, nd, "application/x-ndjson");
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body);
  };
  EXPECT_EQ(import(a + other)["created"], 2);
  const std::string events = redis_->cli({"XLEN", "{t:soliera}:changes"});
  json same = import(a + other);
  EXPECT_EQ(same["unchanged"], 2) << same.dump();
  EXPECT_EQ(redis_->cli({"XLEN", "{t:soliera}:changes"}), events) << "no write, no change event";

  json changed = import(b + other);
  EXPECT_EQ(changed["unchanged"], 1) << changed.dump();
  EXPECT_EQ(json::parse(daemon_->get("/v1/recipients/u-1", kOp).body)["topics"], json::array({"Fire"}));
  EXPECT_EQ(preview(cap("changed-1", "Severe", "Expected", "Met", kArea))["recipients"], 1) << "u-1 left Met";

  json back = import(b + a);  // b equals the stored form, then a changes it back
  EXPECT_EQ(back["unchanged"], 1) << back.dump();
  EXPECT_EQ(json::parse(daemon_->get("/v1/recipients/u-1", kOp).body)["topics"], json::array({"Met"}));
  EXPECT_EQ(preview(cap("changed-2", "Severe", "Expected", "Met", kArea))["recipients"], 2) << "u-1 is back in Met";
}

// A body of many slices (the API parses 256 KiB at a time and stores each slice while the
// next ones are parsed): lines reach Redis in file order, so the same id twice ends with its
// later line, in the store and in the index; bad lines keep their numbers; "imported" counts
// recipients, not lines.
TEST_F(DirectoryTest, AManySliceImportKeepsFileOrder) {
  std::string nd = recipient("twice", 44.7376, 10.9245, {"Met"}).dump() + "\n";
  size_t lines = 1;
  std::vector<size_t> bad;
  while (nd.size() < (1u << 20) + (300u << 10)) {  // more than five slices
    ++lines;
    if (lines % 1000 == 0) {
      nd += "{not json\n";
      bad.push_back(lines);
    } else {
      nd += recipient("many-" + std::to_string(lines), 44.7376, 10.9245, {"Met"}).dump() + "\n";
    }
  }
  nd += recipient("twice", 44.7376, 10.9245, {"Fire", "Health"}).dump() + "\n";
  ++lines;
  auto r = daemon_->post("/v1/recipients/import", kOp, nd, "application/x-ndjson");
  ASSERT_EQ(r.status, 200) << r.body;
  json body = json::parse(r.body);
  EXPECT_EQ(body["imported"], lines - bad.size() - 1) << "\"twice\" is one recipient";
  EXPECT_EQ(body["created"], lines - bad.size() - 1);
  ASSERT_EQ(body["rejected"].size(), bad.size());
  for (size_t i = 0; i < bad.size(); ++i) EXPECT_EQ(body["rejected"][i]["line"], bad[i]);
  auto got = daemon_->get("/v1/recipients/twice", kOp);
  ASSERT_EQ(got.status, 200);
  EXPECT_EQ(json::parse(got.body)["topics"], json::array({"Fire", "Health"})) << "the later line wins";
  // The index agrees: a Met alert reaches every "many-" recipient but not "twice" any more.
  json p = preview(cap("slices-1", "Severe", "Expected", "Met", kArea));
  EXPECT_EQ(p["recipients"], lines - bad.size() - 2) << p.dump();
}

// The CLI as an operator runs it while Redis is down: `sirena import` (a file sent as
// several requests) and `sirena send` send their requests again while sirenad answers 503,
// and go on once Redis is back: every recipient is stored, the alert is accepted, and a bad
// line is numbered as in the file (not as in the request that carried it).
TEST_F(DirectoryTest, CliWaitsOutARedisOutageAndNumbersLinesAsInTheFile) {
  const std::string file = dir_.path() + "/town.ndjson", alert = dir_.path() + "/alert.xml";
  constexpr size_t kLines = 400, kBad = 301;
  {
    std::ofstream f(file);
    for (size_t i = 1; i <= kLines; ++i)
      f << (i == kBad ? std::string("{not json") : recipient("cli-" + std::to_string(i), 44.7376, 10.9245, {"Met"}).dump())
        << "\n";
    std::ofstream(alert) << cap("cli-alert-1", "Severe", "Expected", "Met", kArea);
  }
  redis_->stop();
  ASSERT_TRUE(wait_until([&] { return daemon_->get("/v1/recipients/cli-1", kOp).status == 503; }, std::chrono::seconds(10)))
      << "sirenad notices that Redis is gone";
  // sirena --url U --key K --retry-for 60 ARGS... >OUT 2>ERR
  auto sirena = [&](const std::string& name, std::vector<std::string> args) {
    std::vector<std::string> argv{"/bin/sh", "-c", "out=$1; shift; exec \"$0\" \"$@\" >\"$out\"",
                                  bin_dir() + "/sirena", dir_.path() + "/" + name + ".out",
                                  "--url", daemon_->base(), "--key", kOp, "--retry-for", "60"};
    argv.insert(argv.end(), args.begin(), args.end());
    return std::make_unique<Process>(argv, std::map<std::string, std::string>{}, dir_.path() + "/" + name + ".err");
  };
  auto read = [&](const std::string& name) {
    std::ifstream in(dir_.path() + "/" + name);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  auto import = sirena("import", {"import", file, "--batch-bytes", "8192"});
  auto send = sirena("send", {"send", alert});
  for (const char* err : {"import.err", "send.err"})
    ASSERT_TRUE(wait_until([&] { return read(err).find("retrying") != std::string::npos; }, std::chrono::seconds(10)))
        << err << ": " << read(err);
  redis_->start();
  ASSERT_EQ(import->wait_exit(std::chrono::seconds(60)), 0) << read("import.err");
  ASSERT_EQ(send->wait_exit(std::chrono::seconds(60)), 0) << read("send.err");

  json result = json::parse(read("import.out"));
  EXPECT_EQ(result["imported"], kLines - 1) << result.dump();
  ASSERT_EQ(result["rejected"].size(), 1u) << result.dump();
  EXPECT_EQ(result["rejected"][0]["line"], kBad) << "numbered as in the file";
  EXPECT_EQ(redis_->cli({"HLEN", "{t:soliera}:recipients"}), std::to_string(kLines - 1) + "\n");
  EXPECT_EQ(daemon_->get("/v1/recipients/cli-" + std::to_string(kLines), kOp).status, 200);

  json accepted = json::parse(read("send.out"), nullptr, false);
  ASSERT_TRUE(accepted.is_object() && accepted.contains("id")) << read("send.out");
  EXPECT_EQ(daemon_->get("/v1/alerts/" + accepted["id"].get<std::string>(), kOp).status, 200);
}

TEST_F(DirectoryTest, ImportOverTheLimitIsRefusedWhole) {
  EXPECT_EQ(daemon_->stop(), 0);
  start({{"SIRENA_DIRECTORY_IMPORT_MAX_BYTES", "2048"}});
  std::string nd;
  for (int i = 0; nd.size() <= 2048; ++i) nd += recipient("big-" + std::to_string(i), 44.73, 10.92, {"Met"}).dump() + "\n";
  auto r = daemon_->post("/v1/recipients/import", kOp, nd, "application/x-ndjson");
  EXPECT_EQ(r.status, 413) << r.body;
  EXPECT_NE(r.body.find("2048"), std::string::npos) << "the answer names the limit";
  EXPECT_EQ(daemon_->get("/v1/recipients/big-0", kOp).status, 404) << "nothing half-imported";
}

TEST_F(DirectoryTest, ZonesAreValidated) {
  std::string square = R"({"type":"Polygon","coordinates":[[[10.90,44.70],[10.95,44.70],[10.95,44.75],[10.90,44.75],[10.90,44.70]]]})";
  EXPECT_EQ(put("/v1/zones/test-square", kOp, square).status, 201);
  EXPECT_EQ(put("/v1/zones/test-square", kOp, square).status, 200);
  auto list = json::parse(daemon_->get("/v1/zones", kOp).body);
  EXPECT_NE(std::find(list["items"].begin(), list["items"].end(), "test-square"), list["items"].end());
  EXPECT_NE(std::find(list["items"].begin(), list["items"].end(), "sozzigalli"), list["items"].end())
      << "file zones are listed too";
  std::string bowtie = R"({"type":"Polygon","coordinates":[[[10.90,44.70],[10.95,44.75],[10.95,44.70],[10.90,44.75],[10.90,44.70]]]})";
  auto b = put("/v1/zones/bowtie", kOp, bowtie);
  EXPECT_EQ(b.status, 422) << b.body;
  EXPECT_EQ(json::parse(b.body)["error"]["code"], "self_intersecting");
  std::string open = R"({"type":"Polygon","coordinates":[[[10.90,44.70],[10.95,44.70],[10.95,44.75],[10.90,44.75]]]})";
  EXPECT_EQ(json::parse(put("/v1/zones/open", kOp, open).body)["error"]["code"], "unclosed_ring");
  EXPECT_EQ(put("/v1/zones/Bad_Name", kOp, square).status, 422);
  EXPECT_EQ(daemon_->get("/v1/zones/bowtie", kOp).status, 404);
}

// Issue 14 findings 10, 11 and 12 for zones: a ring that encloses nothing, a duplicate
// key, a number out of range, and the per-tenant cap (directory.max_zones_per_tenant).
TEST_F(DirectoryTest, ZonesRefuseZeroAreaDuplicateKeysHugeNumbersAndTheCap) {
  struct Case {
    const char* body;
    const char* code;
  };
  for (
      const Case& c : {
          Case{
              R"({"type":"Polygon","coordinates":[[[10.90,44.70],[10.91,44.71],[10.92,44.72],[10.90,44.70]]]})",
              "zero_area_ring"},
          Case{R"({"type":"Polygon","coordinates":[[[10.9,44.7],[10.9,44.7],[10.9,44.7],[10.9,44.7]]]})",
               "invalid_geojson"},  // S2: fewer than 3 distinct positions
          Case{
              R"({"type":"Polygon","coordinates":[[[10.90,44.70],[10.92,44.72],[10.91,44.71],[10.90,44.70]]]})",
              "zero_area_ring"},  // back and forth on one line
          Case{
              R"({"type":"Polygon","type":"Point","coordinates":[[[10.90,44.70],[10.95,44.70],[10.95,44.75],[10.90,44.70]]]})",
              "duplicate_key"},
          Case{
              R"({"type":"Polygon","coordinates":[[[1e999,44.70],[10.95,44.70],[10.95,44.75],[10.90,44.70]]]})",
              "number_out_of_range"},
      }) {
    auto r = put("/v1/zones/z-bad", kOp, c.body);
    EXPECT_EQ(r.status, 422) << c.body << ": " << r.body;
    EXPECT_EQ(json::parse(r.body, nullptr, false)["error"]["code"], c.code) << r.body;
  }
  EXPECT_EQ(daemon_->get("/v1/zones/z-bad", kOp).status, 404);

  ASSERT_EQ(daemon_->stop(), 0);
  start({{"SIRENA_DIRECTORY_MAX_ZONES_PER_TENANT", "6"}});
  const size_t have = json::parse(daemon_->get("/v1/zones", kOp).body)["items"].size();
  ASSERT_LT(have, 6u) << "the demo's file zones leave room for a test zone";
  const std::string square =
      R"({"type":"Polygon","coordinates":[[[10.90,44.70],[10.95,44.70],[10.95,44.75],[10.90,44.75],[10.90,44.70]]]})";
  for (size_t i = have; i < 6; ++i)
    EXPECT_EQ(put("/v1/zones/z-" + std::to_string(i), kOp, square).status, 201);
  auto over = put("/v1/zones/z-over", kOp, square);
  EXPECT_EQ(over.status, 422) << over.body;
  EXPECT_EQ(json::parse(over.body)["error"]["code"], "too_many_zones");
  EXPECT_EQ(put("/v1/zones/z-" + std::to_string(have), kOp, square).status, 200) << "replacing stays allowed";
}

// Issue 14 findings 10 and 11 for recipients (simdjson): a duplicate key and numbers
// out of range are 422, never a 5xx.
TEST_F(DirectoryTest, RecipientsRefuseDuplicateKeysAndHugeNumbers) {
  const std::string loc = R"("locations":[{"lat":44.7,"lon":10.9}])";
  for (const std::string& body :
       {std::string(R"({"id":"r-x","language":"it","language":"en","topics":["Met"]})"),
        std::string(R"({"id":"r-x","language":"it","locations":[{"lat":1e999,"lon":10.9}]})"),
        R"({"id":"r-x","language":"it","locations":[{"lat":)" + std::string(5000, '9') + R"(,"lon":10.9}]})",
        R"({"id":"r-x","language":"it",)" + loc + "," + loc + "}"}) {
    auto r = put("/v1/recipients/r-x", kOp, body);
    EXPECT_EQ(r.status, 422) << body.substr(0, 120) << ": " << r.body;
  }
}

// Issue 14 finding 12: preview warns when an alert reaches beyond the tenant's towns.
TEST_F(DirectoryTest, PreviewWarnsWhenTheAreaReachesBeyondTheTenantsZones) {
  EXPECT_TRUE(preview(cap("in-town", "Severe", "Expected", "Met", kArea))["warnings"].empty());
  // Rome: nowhere near Soliera.
  json far = preview(
      cap("far", "Severe", "Expected", "Met", "41.85,12.45 41.85,12.55 41.95,12.55 41.95,12.45 41.85,12.45"));
  ASSERT_EQ(far["warnings"].size(), 1u) << far.dump();
  EXPECT_EQ(far["warnings"][0]["code"], "outside_tenant_zones");
  // All of Emilia around Soliera.
  json wide =
      preview(cap("wide", "Severe", "Expected", "Met", "44.0,10.0 44.0,12.0 45.5,12.0 45.5,10.0 44.0,10.0"));
  ASSERT_EQ(wide["warnings"].size(), 1u) << wide.dump();
  EXPECT_EQ(wide["warnings"][0]["code"], "beyond_tenant_zones");
}

TEST_F(DirectoryTest, PreviewCountsByChannelLanguageAndTenantWithoutSideEffects) {
  load_town();
  std::string audit_before = redis_->cli({"XLEN", "{t:bastiglia}:audit"});
  // Severe + Expected: topic filter applies (no "everyone" rule).
  json p = preview(cap("prev-1", "Severe", "Expected", "Met", kArea));
  // centro-met, sozz-en, limidi-zone (by zone), centro-nochannel; b-secchia via the grant.
  EXPECT_EQ(p["recipients"], 5) << p.dump();
  EXPECT_EQ(p["by_tenant"]["soliera"], 4);
  EXPECT_EQ(p["by_tenant"]["bastiglia"], 1) << "only Bastiglia's recipients inside bastiglia-secchia";
  EXPECT_EQ(p["by_channel"]["sms"], 3);
  EXPECT_EQ(p["by_channel"]["apns"], 3);
  EXPECT_EQ(p["by_channel"]["fcm"], 1);
  EXPECT_EQ(p["by_language"]["en-GB"], 1);
  EXPECT_EQ(p["unreachable"], 1);
  ASSERT_EQ(p["sms"].size(), 1u) << "only Italian speakers have phones here";
  EXPECT_EQ(p["sms"][0]["language"], "it");
  EXPECT_EQ(p["sms"][0]["encoding"], "UCS-2") << "È is not in GSM-7";
  EXPECT_GE(p["sms"][0]["segments"], 1);
  // Extreme + Immediate reaches everyone in the area, whatever their topics.
  json e = preview(cap("prev-2", "Extreme", "Immediate", "Met", kArea));
  EXPECT_EQ(e["recipients"], 6) << e.dump();
  // A Test alert's SMS is marked.
  json t = preview(cap("prev-3", "Severe", "Expected", "Met", kArea, "Test"));
  EXPECT_NE(t["sms"][0]["text"].get<std::string>().find("TEST"), std::string::npos) << t.dump();
  EXPECT_EQ(redis_->cli({"XLEN", "{t:bastiglia}:audit"}), audit_before) << "preview has no side effects";
  auto list = json::parse(daemon_->get("/v1/alerts", kOp).body);
  EXPECT_TRUE(list["items"].empty());
}

TEST_F(DirectoryTest, SubmitRecordsRecipientsAndAuditsTheGrant) {
  load_town();
  auto r = daemon_->post("/v1/alerts", kOp, cap("sub-1", "Severe", "Expected", "Met", kArea), "application/cap+xml");
  ASSERT_EQ(r.status, 202) << r.body;
  json body = json::parse(r.body);
  EXPECT_EQ(body["recipients"], 5);
  auto got = json::parse(daemon_->get("/v1/alerts/" + body["id"].get<std::string>(), kOp).body);
  EXPECT_EQ(got["recipients"], 5);
  std::string audit = redis_->cli({"XRANGE", "{t:bastiglia}:audit", "-", "+"});
  EXPECT_NE(audit.find("grant_used"), std::string::npos) << audit;
  EXPECT_NE(audit.find(body["id"].get<std::string>()), std::string::npos);
  EXPECT_NE(audit.find("soliera"), std::string::npos);
  // Bastiglia's own alerts never reach Soliera's citizens: no grant that way.
  std::string bcap = cap("b-1", "Extreme", "Immediate", "Met", kArea);
  bcap.replace(bcap.find("protezionecivile@comune.soliera.mo.it"), 37, "protezionecivile@comune.bastiglia.mo.it");
  json bp = json::parse(daemon_->post("/v1/alerts/preview", kBastiglia, bcap, "application/cap+xml").body);
  EXPECT_EQ(bp["by_tenant"].value("soliera", 0), 0) << bp.dump();
  EXPECT_EQ(bp["by_tenant"]["bastiglia"], 1) << bp.dump();
}

TEST_F(DirectoryTest, HundredThousandImportedSurviveARestartWithIdenticalPreview) {
  std::mt19937 rng(42);
  std::uniform_real_distribution<double> lat(44.70, 44.78), lon(10.88, 11.02);
  const char* topics[] = {"Met", "Geo", "Safety", "viabilita", "scuole"};
  const int kTotal = 100000, kPerRequest = 20000;
  for (int start = 0; start < kTotal; start += kPerRequest) {
    std::string nd;
    for (int i = start; i < start + kPerRequest; ++i) {
      json r = recipient("bulk-" + std::to_string(i), lat(rng), lon(rng), {topics[i % 5]}, i % 7 ? "it" : "en",
                         i % 3 != 0, i % 2 == 0, i % 5 == 0);
      nd += r.dump() + "\n";
    }
    auto r = daemon_->post("/v1/recipients/import", kOp, nd, "application/x-ndjson");
    ASSERT_EQ(r.status, 200) << r.body.substr(0, 500);
    ASSERT_EQ(json::parse(r.body)["imported"], kPerRequest);
  }
  std::string alert = cap("bulk-prev", "Severe", "Expected", "Met", kArea);
  json before = preview(alert);
  ASSERT_GT(before["recipients"].get<int>(), 5000);
  EXPECT_EQ(daemon_->stop(), 0);
  start();
  json after = preview(alert);
  EXPECT_EQ(before, after);
  EXPECT_NE(daemon_->log().find("directory_loaded"), std::string::npos);
}

// Start-up reads the index from block strings that every write appends to (rewritten
// from the hash when half garbage). Updates, deletions, a rewrite, and a store written
// before blocks existed must all load into the index the live daemon had.
TEST_F(DirectoryTest, UpdatesDeletionsAndAStoreWithoutBlocksSurviveARestart) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> lat(44.70, 44.78), lon(10.88, 11.02);
  const char* topics[] = {"Met", "Geo", "Safety", "viabilita", "scuole"};
  auto import = [&](int from, int to, int round) {
    std::string nd;
    for (int i = from; i < to; ++i)
      nd += recipient("u-" + std::to_string(i), lat(rng), lon(rng), {topics[(i + round) % 5]}, round % 2 ? "en" : "it",
                      true, i % 2 == 0)
                .dump() +
            "\n";
    auto r = daemon_->post("/v1/recipients/import", kOp, nd, "application/x-ndjson");
    ASSERT_EQ(r.status, 200) << r.body.substr(0, 500);
  };
  // 3000 recipients span three blocks of 1024 slots; the second import moves everyone and
  // rewrites the two full blocks (2048 records appended each).
  import(0, 3000, 0);
  import(0, 3000, 1);
  import(500, 700, 2);
  for (int i = 0; i < 3000; i += 37) ASSERT_EQ(del("/v1/recipients/u-" + std::to_string(i), kOp).status, 204);
  // Block 0 (slots 0-1023, u-0 to u-1023) was rewritten: 1024 live records, then 200
  // updates and 28 deletions appended.
  EXPECT_EQ(std::stoi(redis_->cli({"HGET", "{t:soliera}:index_blocks", "0"})), 1252);
  std::string alert = cap("upd-prev", "Extreme", "Immediate", "Met", kArea);
  std::string met_only = cap("upd-met", "Severe", "Expected", "Met", kArea);
  json before = preview(alert), before_met = preview(met_only);
  ASSERT_GT(before["recipients"].get<int>(), 500) << before.dump();
  EXPECT_EQ(daemon_->stop(), 0);
  start();
  EXPECT_EQ(preview(alert), before);
  EXPECT_EQ(preview(met_only), before_met);

  // As a store of an earlier version: the hash only. Start-up writes the blocks first.
  EXPECT_EQ(daemon_->stop(), 0);
  for (const char* key : {"index_block:0", "index_block:1", "index_block:2", "index_blocks", "index_blocks_built"})
    redis_->cli({"DEL", std::string("{t:soliera}:") + key});
  start();
  EXPECT_EQ(preview(alert), before);
  EXPECT_EQ(preview(met_only), before_met);
  EXPECT_EQ(std::stoi(redis_->cli({"EXISTS", "{t:soliera}:index_blocks_built"})), 1);
}

}  // namespace
}  // namespace sirena::testing
