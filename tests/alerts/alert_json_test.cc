// The JSON alert form (docs/alert-json.md): the documented example, every error
// code with its JSON pointer, and round trips.
#include "daemon/alerts/alert_json.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/alerts/test_util.h"

namespace sirena::alerts {
namespace {

using nlohmann::json;

json example() {
  return json::parse(test::documented_json_example());
}

Error rejected(const json& j) {
  Result<Alert> r = parse_alert_json(j.dump());
  EXPECT_FALSE(r.ok()) << "accepted";
  return r.ok() ? Error{} : r.error();
}

void expect_error(const json& j, const std::string& code, const std::string& where) {
  const Error e = rejected(j);
  EXPECT_EQ(e.kind, ErrorKind::Invalid);
  EXPECT_EQ(e.code, code) << e.message;
  EXPECT_EQ(e.where, where) << e.message;
}

TEST(AlertJson, DocumentedExampleParses) {
  const Result<Alert> r = parse_alert_json(test::documented_json_example());
  ASSERT_TRUE(r.ok()) << r.error().code << ": " << r.error().message << " at " << r.error().where;
  EXPECT_EQ(r->identifier, "SOL-2024-0516-001");
  EXPECT_EQ(r->msg_type, MsgType::Alert);
  ASSERT_EQ(r->infos.size(), 1u);
  const Info& info = r->infos[0];
  EXPECT_EQ(info.language, "it-IT");
  EXPECT_EQ(info.categories, (std::vector<std::string>{"Met", "Safety"}));
  ASSERT_EQ(info.areas.size(), 2u);
  EXPECT_EQ(info.areas[0].polygons.at(0).points.size(), 5u);
  EXPECT_DOUBLE_EQ(info.areas[1].circles.at(0).radius_km, 1.5);
  EXPECT_EQ(info.resources.at(0).size, 183204);
  EXPECT_EQ(info.expires->unix_ms - r->sent.unix_ms, 24 * 3600 * 1000);
  EXPECT_EQ(r->cap_version, "1.2");
  EXPECT_TRUE(r->normalisations.empty());
}

TEST(AlertJson, RoundTripKeepsEverything) {
  const Result<Alert> a = parse_alert_json(test::documented_json_example());
  ASSERT_TRUE(a.ok());
  const json out = alert_to_json(*a);
  json in = example();
  in["cap_version"] = "1.2";
  in["normalisations"] = json::array();
  EXPECT_EQ(out, in);  // the documented example is already in canonical form
  const Result<Alert> b = parse_alert_json(out.dump());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(alert_to_json(*b), out);
}

TEST(AlertJson, MalformedJsonGivesTheByteOffset) {
  const Error e = parse_alert_json(R"({"identifier": "x",,})").error();
  EXPECT_EQ(e.kind, ErrorKind::BadRequest);
  EXPECT_EQ(e.code, "malformed_json");
  EXPECT_EQ(e.where, "byte 19");  // the second comma
  EXPECT_EQ(parse_alert_json("").error().code, "malformed_json");
  EXPECT_EQ(parse_alert_json("{} extra").error().code, "malformed_json");
}

TEST(AlertJson, InvalidUtf8) {
  std::string doc = test::documented_json_example();
  const size_t at = doc.find("Soliera");
  doc[at] = '\xC0';
  const Error e = parse_alert_json(doc).error();
  EXPECT_EQ(e.kind, ErrorKind::BadRequest);
  EXPECT_EQ(e.code, "invalid_utf8");
  EXPECT_EQ(e.where, "byte " + std::to_string(at));
}

TEST(AlertJson, SizeAndDepthLimits) {
  ParseLimits limits;
  limits.max_bytes = 10;
  EXPECT_EQ(parse_alert_json(test::documented_json_example(), limits).error().code, "body_too_large");
  EXPECT_EQ(parse_alert_json(test::documented_json_example(), limits).error().kind, ErrorKind::TooLarge);
  std::string deep = R"({"identifier": )" + std::string(100000, '[') + std::string(100000, ']') + "}";
  EXPECT_EQ(parse_alert_json(deep).error().code, "too_deep");
  limits = {};
  limits.max_depth = 5;  // the example nests points at depth 8
  EXPECT_EQ(parse_alert_json(test::documented_json_example(), limits).error().code, "too_deep");
}

TEST(AlertJson, MissingFields) {
  for (const char* key : {"identifier", "sender", "sent", "status", "msg_type", "scope"}) {
    json j = example();
    j.erase(key);
    expect_error(j, "missing_field", std::string("/") + key);
  }
  json j = example();
  j["infos"][0].erase("event");
  expect_error(j, "missing_field", "/infos/0/event");
  j = example();
  j["infos"][0]["areas"][1]["circles"][0].erase("radius_km");
  expect_error(j, "missing_field", "/infos/0/areas/1/circles/0/radius_km");
  j = example();
  j["identifier"] = nullptr;
  expect_error(j, "missing_field", "/identifier");
}

TEST(AlertJson, WrongTypes) {
  json j = example();
  j["identifier"] = 42;
  expect_error(j, "invalid_field", "/identifier");
  j = example();
  j["infos"][0]["areas"][0]["polygons"][0][2] = "44.75,10.95";
  expect_error(j, "invalid_field", "/infos/0/areas/0/polygons/0/2");
  j = example();
  j["infos"][0]["areas"][0]["polygons"][0][2] = {44.75};
  expect_error(j, "invalid_field", "/infos/0/areas/0/polygons/0/2");
  j = example();
  j["infos"][0]["areas"][1] = "Soliera";
  expect_error(j, "invalid_field", "/infos/0/areas/1");
  j = example();
  j["infos"][0]["categories"] = "Met";
  expect_error(j, "invalid_field", "/infos/0/categories");
  j = example();
  j["infos"][0]["resources"][0]["size"] = 1.5;
  expect_error(j, "invalid_field", "/infos/0/resources/0/size");
  j = example();
  j["infos"][0]["resources"][0]["size"] = 18446744073709551615u;
  expect_error(j, "invalid_field", "/infos/0/resources/0/size");
  j = example();
  j["cap_version"] = "2.0";
  expect_error(j, "invalid_field", "/cap_version");
  EXPECT_EQ(parse_alert_json("[]").error().code, "invalid_field");
  EXPECT_EQ(alert_from_json(json("text")).error().code, "invalid_field");
}

TEST(AlertJson, UnknownKeysAreRefused) {
  json j = example();
  j["expiers"] = "2024-05-17T14:00:00+02:00";
  expect_error(j, "unknown_field", "/expiers");
  j = example();
  j["infos"][0]["areas"][0]["polygon"] = json::array();
  expect_error(j, "unknown_field", "/infos/0/areas/0/polygon");
  j = example();
  j["references"] = {
      {{"sender", "a"}, {"identifier", "b"}, {"sent", "2024-05-16T13:00:00+02:00"}, {"a/b~", 1}}};
  expect_error(j, "unknown_field", "/references/0/a~1b~0");
}

TEST(AlertJson, Enums) {
  json j = example();
  j["status"] = "Real";
  expect_error(j, "invalid_enum", "/status");
  j = example();
  j["msg_type"] = "alert";
  expect_error(j, "invalid_enum", "/msg_type");
  j = example();
  j["infos"][0]["urgency"] = "Now";
  expect_error(j, "invalid_enum", "/infos/0/urgency");
  j = example();
  j["infos"][0]["categories"][1] = "Flood";
  expect_error(j, "invalid_enum", "/infos/0/categories/1");
  j = example();
  j["infos"][0]["response_types"][0] = "Run";
  expect_error(j, "invalid_enum", "/infos/0/response_types/0");
}

TEST(AlertJson, DatesAndReferences) {
  json j = example();
  j["sent"] = "16/05/2024 14:00";
  expect_error(j, "invalid_datetime", "/sent");
  j = example();
  j["infos"][0]["expires"] = "2024-05-16T11:00:00-00:00";
  expect_error(j, "expires_before_sent", "/infos/0/expires");
  j = example();
  j["msg_type"] = "Update";
  expect_error(j, "missing_references", "/references");
  j["references"] = {
      {{"sender", "protezione civile"}, {"identifier", "b"}, {"sent", "2024-05-16T13:00:00+02:00"}}};
  expect_error(j, "invalid_references", "/references/0");
  j["references"][0]["sender"] = "protezionecivile@comune.soliera.mo.it";
  const Result<Alert> ok = parse_alert_json(j.dump());
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->references.at(0).identifier, "b");

  j = example();
  j["sent"] = "2024-05-16T12:00:00Z";
  const Result<Alert> z = parse_alert_json(j.dump());
  ASSERT_TRUE(z.ok());
  ASSERT_EQ(z->normalisations.size(), 1u);
  // Stored and read back, the note is not added twice.
  const Result<Alert> again = parse_alert_json(alert_to_json(*z).dump());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->normalisations, z->normalisations);
}

TEST(AlertJson, GeometryErrorsPointAtTheShape) {
  json j = example();
  j["infos"][0]["areas"][0]["polygons"][0].erase(4);
  expect_error(j, "invalid_polygon", "/infos/0/areas/0/polygons/0");
  j = example();
  j["infos"][0]["areas"][0]["polygons"][0][0] = {10.9385, 444.7612};
  expect_error(j, "invalid_polygon", "/infos/0/areas/0/polygons/0");
  j = example();
  j["infos"][0]["areas"][1]["circles"][0]["radius_km"] = -1;
  expect_error(j, "invalid_circle", "/infos/0/areas/1/circles/0");
  j = example();
  j["infos"][0]["areas"][1].erase("altitude");
  expect_error(j, "invalid_altitude", "/infos/0/areas/1/ceiling");
}

TEST(AlertJson, ScopeNeedsItsCompanion) {
  json j = example();
  j["scope"] = "Private";
  expect_error(j, "missing_addresses", "/addresses");
  j["addresses"] = "sindaco@comune.soliera.mo.it";
  EXPECT_TRUE(parse_alert_json(j.dump()).ok());
}

TEST(AlertJson, NullOptionalsAndDefaults) {
  json j = example();
  j["note"] = nullptr;
  j["infos"][0].erase("language");
  j["infos"][0]["areas"] = nullptr;
  const Result<Alert> r = parse_alert_json(j.dump());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->note, "");
  EXPECT_EQ(r->infos[0].language, "en-US");
  EXPECT_TRUE(r->infos[0].areas.empty());
}

TEST(AlertJson, CancelWithoutInfos) {
  const json j = {{"identifier", "SOL-2"},
                  {"sender", "protezionecivile@comune.soliera.mo.it"},
                  {"sent", "2024-05-16T18:00:00+02:00"},
                  {"status", "Actual"},
                  {"msg_type", "Cancel"},
                  {"scope", "Public"},
                  {"references",
                   {{{"sender", "protezionecivile@comune.soliera.mo.it"},
                     {"identifier", "SOL-2024-0516-001"},
                     {"sent", "2024-05-16T14:00:00+02:00"}}}}};
  const Result<Alert> r = parse_alert_json(j.dump());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->msg_type, MsgType::Cancel);
  EXPECT_TRUE(r->infos.empty());
}

TEST(AlertJson, CountLimits) {
  ParseLimits limits;
  limits.max_polygon_points = 4;
  EXPECT_EQ(parse_alert_json(test::documented_json_example(), limits).error().code, "too_many_points");
}

}  // namespace
}  // namespace sirena::alerts
