// The shared building blocks: UTF-8 check, CAP dateTime, references, and the
// semantic validator on hand-built alerts.
#include "daemon/alerts/validate.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "daemon/alerts/utf8.h"

namespace sirena::alerts {
namespace {

TEST(Utf8, FindsTheFirstBadByte) {
  EXPECT_EQ(find_invalid_utf8(""), std::nullopt);
  EXPECT_EQ(find_invalid_utf8("Citt\xC3\xA0 \xE2\x82\xAC \xF0\x9F\x8C\x8A"), std::nullopt);
  EXPECT_EQ(find_invalid_utf8("ab\xFF"), 2u);
  EXPECT_EQ(find_invalid_utf8("a\xC0\xAF"), 1u);         // overlong '/'
  EXPECT_EQ(find_invalid_utf8("\xE0\x80\xAF"), 0u);      // overlong
  EXPECT_EQ(find_invalid_utf8("x\xED\xA0\x80"), 1u);     // surrogate U+D800
  EXPECT_EQ(find_invalid_utf8("\xF4\x90\x80\x80"), 0u);  // above U+10FFFF
  EXPECT_EQ(find_invalid_utf8("abc\xE2\x82"), 3u);       // truncated
  EXPECT_EQ(find_invalid_utf8("\xC3\x28"), 0u);          // bad continuation
  EXPECT_EQ(find_invalid_utf8("\xF0\x9F\x8C\x28"), 0u);
}

TEST(CapDateTime, Parses) {
  auto t = parse_cap_datetime("2003-06-17T14:57:00-07:00");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->unix_ms, 1055887020000);
  EXPECT_EQ(t->text, "2003-06-17T14:57:00-07:00");
  EXPECT_EQ(parse_cap_datetime("1970-01-01T00:00:00-00:00")->unix_ms, 0);
  EXPECT_EQ(parse_cap_datetime("1970-01-01T00:00:00+14:00")->unix_ms, -14 * 3600 * 1000);
  EXPECT_EQ(parse_cap_datetime("2024-02-29T00:00:00+00:00")->unix_ms, 1709164800000);
  EXPECT_EQ(parse_cap_datetime("2000-02-29T12:00:00.5+00:00")->unix_ms, 951825600500);
  EXPECT_EQ(parse_cap_datetime("1969-12-31T23:59:59+00:00")->unix_ms, -1000);
  bool z = false;
  EXPECT_EQ(parse_cap_datetime("2024-05-16T12:00:00Z", &z)->unix_ms, 1715860800000);
  EXPECT_TRUE(z);
}

TEST(CapDateTime, Rejects) {
  for (const char* bad : {"",
                          "2024-05-16",
                          "2024-05-16T12:00:00",
                          "2024-05-16T12:00:00+2:00",
                          "2024-13-01T00:00:00+00:00",
                          "2023-02-29T00:00:00+00:00",
                          "1900-02-29T00:00:00+00:00",
                          "2024-04-31T00:00:00+00:00",
                          "2024-05-16T24:00:00+00:00",
                          "2024-05-16T12:60:00+00:00",
                          "2024-05-16T12:00:60+00:00",
                          "2024-05-16T12:00:00+15:00",
                          "2024-05-16T12:00:00+01:60",
                          "2024-05-16T12:00:00.+00:00",
                          "2024-05-16T12:00:00+00:00 ",
                          "0000-01-01T00:00:00+00:00",
                          "2024-05-16t12:00:00+00:00",
                          "2024-05-16T12:00:00z",
                          "+2024-05-16T12:00:00+00:00",
                          "2024-05-16T12:00:00+00:00Z"}) {
    EXPECT_FALSE(parse_cap_datetime(bad)) << bad;
  }
}

TEST(References, Split) {
  auto r = read_references("a,b,2024-05-16T12:00:00+00:00  c,d,e\n", "/references");
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[1].sender, "c");
  EXPECT_EQ((*r)[1].sent, "e");  // content is checked by validate_semantics
  EXPECT_TRUE(read_references("", "/references")->empty());
  const Result<std::vector<Reference>> bad = read_references("a,b,c x,y", "/references");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, "invalid_references");
  EXPECT_EQ(bad.error().where, "/references/1");
}

Alert minimal() {
  Alert a;
  a.identifier = "id-1";
  a.sender = "s@x";
  a.sent = *parse_cap_datetime("2024-05-16T12:00:00+00:00");
  Info info;
  info.categories = {"Met"};
  info.event = "e";
  info.urgency = "Immediate";
  info.severity = "Severe";
  info.certainty = "Observed";
  Area area;
  area.desc = "d";
  area.polygons.push_back(Polygon{{{1, 1}, {1, 2}, {2, 2}, {1, 1}}});
  info.areas.push_back(area);
  a.infos.push_back(info);
  return a;
}

std::string code_of(const Alert& a) {
  const sirena::Status s = validate_semantics(a);
  return s.ok() ? "ok" : s.error().code + " " + s.error().where;
}

TEST(ValidateSemantics, SharedRules) {
  EXPECT_EQ(code_of(minimal()), "ok");
  Alert a = minimal();
  a.infos[0].areas[0].polygons[0].points[1].lat = std::nan("");
  EXPECT_EQ(code_of(a), "invalid_polygon /infos/0/areas/0/polygons/0");
  a = minimal();
  a.infos[0].areas[0].circles.push_back(Circle{{0, 0}, std::numeric_limits<double>::infinity()});
  EXPECT_EQ(code_of(a), "invalid_circle /infos/0/areas/0/circles/0");
  a = minimal();
  a.infos[0].areas[0].circles.push_back(Circle{{90, -180}, 0});
  EXPECT_EQ(code_of(a), "ok");
  a = minimal();
  a.infos[0].categories.clear();
  EXPECT_EQ(code_of(a), "invalid_field /infos/0/categories");
  a = minimal();
  a.infos[0].certainty = "Sure";
  EXPECT_EQ(code_of(a), "invalid_enum /infos/0/certainty");
  a = minimal();
  a.infos[0].language.clear();
  EXPECT_EQ(code_of(a), "invalid_field /infos/0/language");
  a = minimal();
  a.sender = "a,b";
  EXPECT_EQ(code_of(a), "invalid_field /sender");
  a = minimal();
  a.msg_type = MsgType::Ack;  // Ack and Error may go without references
  EXPECT_EQ(code_of(a), "ok");
  a.references.push_back(Reference{"s", "i", "2024-13-01T00:00:00+00:00"});
  EXPECT_EQ(code_of(a), "invalid_references /references/0");
}

TEST(ValidateSemantics, Limits) {
  Alert a = minimal();
  ParseLimits limits;
  EXPECT_TRUE(check_limits(a, limits).ok());
  limits.max_polygon_points = 3;
  EXPECT_EQ(check_limits(a, limits).error().code, "too_many_points");
}

TEST(AlertModel, EnumNamesRoundTrip) {
  for (Status s : {Status::Actual, Status::Exercise, Status::System, Status::Test, Status::Draft}) {
    EXPECT_EQ(parse_status(to_string(s)), s);
  }
  for (MsgType m : {MsgType::Alert, MsgType::Update, MsgType::Cancel, MsgType::Ack, MsgType::Error}) {
    EXPECT_EQ(parse_msg_type(to_string(m)), m);
  }
  for (Scope s : {Scope::Public, Scope::Restricted, Scope::Private}) EXPECT_EQ(parse_scope(to_string(s)), s);
  EXPECT_EQ(parse_status("actual"), std::nullopt);
  EXPECT_EQ(parse_scope(""), std::nullopt);
}

TEST(AlertModel, LatestExpiry) {
  Alert a = minimal();
  EXPECT_EQ(latest_expiry_ms(a), std::nullopt);
  a.infos[0].expires = Timestamp{"x", 5};
  a.infos.push_back(a.infos[0]);
  a.infos[1].expires = Timestamp{"y", 9};
  a.infos.push_back(a.infos[0]);
  a.infos[2].expires.reset();
  EXPECT_EQ(latest_expiry_ms(a), 9);
}

}  // namespace
}  // namespace sirena::alerts
