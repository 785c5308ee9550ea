// Crafted alerts sent with a valid key (issue 14, findings 5, 6, 10, 11 and 12): every
// one is refused with a precise 4xx, never a 5xx, and none costs more than linear time.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "daemon/alerts/alert_json.h"
#include "daemon/alerts/cap_parser.h"
#include "daemon/alerts/utf8.h"
#include "daemon/alerts/validate.h"
#include "tests/alerts/test_util.h"

namespace sirena::alerts {
namespace {

using nlohmann::json;

json example() {
  return json::parse(test::documented_json_example());
}

const std::string kCap = R"(<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>SOL-2024-001</identifier>
  <sender>protezionecivile@comune.soliera.mo.it</sender>
  <sent>2024-05-16T14:00:00+02:00</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <language>it-IT</language>
    <category>Met</category>
    <event>Piena del Secchia</event>
    <urgency>Immediate</urgency>
    <severity>Severe</severity>
    <certainty>Observed</certainty>
    <headline>Esondazione del Secchia</headline>
    <resource><resourceDesc>map</resourceDesc><mimeType>image/png</mimeType><size>10</size></resource>
    <area>
      <areaDesc>Soliera</areaDesc>
      <polygon>44.74,10.91 44.75,10.93 44.73,10.94 44.74,10.91</polygon>
      <circle>44.7376,10.9245 2.5</circle>
    </area>
  </info>
</alert>
)";

std::string with(const std::string& from, const std::string& to, std::string doc = kCap) {
  const size_t p = doc.find(from);
  EXPECT_NE(p, std::string::npos) << from;
  if (p != std::string::npos) doc.replace(p, from.size(), to);
  return doc;
}

Error xml_error(const std::string& doc, const ParseLimits& limits = {}) {
  Result<Alert> r = parse_cap_xml(doc, limits);
  EXPECT_FALSE(r.ok()) << "accepted";
  return r.ok() ? Error{} : r.error();
}

Error json_error(const std::string& text) {
  Result<Alert> r = parse_alert_json(text);
  EXPECT_FALSE(r.ok()) << "accepted: " << text.substr(0, 200);
  return r.ok() ? Error{} : r.error();
}

// Calls f(pointer, value) for every string in `j` (the alert's text fields).
void each_string(json& j, const std::string& at, const std::function<void(const std::string&, json&)>& f) {
  if (j.is_string()) return f(at, j);
  if (j.is_object()) {
    for (auto& [k, v] : j.items()) each_string(v, at + "/" + k, f);
  } else if (j.is_array()) {
    for (size_t i = 0; i < j.size(); ++i) each_string(j[i], at + "/" + std::to_string(i), f);
  }
}

// ---- Finding 5: characters XML 1.0 does not allow ---------------------------------

TEST(XmlChars, FindsWhatXmlDoesNotAllow) {
  EXPECT_EQ(find_non_xml_char("tab\tLF\nCR\r Citt\xC3\xA0 \xEF\xBF\xBD \xF0\x9F\x8C\x8A \x7F \xC2\x85"),
            std::nullopt);
  EXPECT_EQ(find_non_xml_char(std::string("a\0b", 3)), 1u);
  EXPECT_EQ(find_non_xml_char("ab\x0B"), 2u);
  EXPECT_EQ(find_non_xml_char("\x0C"), 0u);
  EXPECT_EQ(find_non_xml_char("\x1F"), 0u);
  EXPECT_EQ(find_non_xml_char("x\xEF\xBF\xBE"), 1u);  // U+FFFE
  EXPECT_EQ(find_non_xml_char("x\xEF\xBF\xBF"), 1u);  // U+FFFF
  EXPECT_EQ(find_non_xml_char("x\xED\xA0\x80"), 1u);  // a surrogate, as UTF-8
}

TEST(XmlChars, EveryJsonTextFieldRefusesThemWithItsPointer) {
  const char* bad[] = {"\x01", "\x0B", "\x0C", "\x1F", "\xEF\xBF\xBE", "\xEF\xBF\xBF"};
  json base = example();
  size_t fields = 0;
  each_string(base, "", [&](const std::string& where, json&) {
    ++fields;
    for (const char* c : bad) {
      json j = example();
      json& v = j.at(json::json_pointer(where));
      v = v.get<std::string>() + c;
      const Error e = json_error(j.dump());
      EXPECT_EQ(e.kind, ErrorKind::Invalid) << where;
      EXPECT_EQ(e.where, where) << e.code << ": " << e.message;
    }
  });
  EXPECT_GT(fields, 30u);
  // A NUL in the identifier, as the tester sent it.
  json j = example();
  j["identifier"] = std::string("id\0x", 4);
  const Error e = json_error(j.dump());
  EXPECT_EQ(e.code, "invalid_character");
  EXPECT_EQ(e.where, "/identifier");
  EXPECT_NE(e.message.find("U+0000"), std::string::npos) << e.message;
  // An unpaired surrogate escape is not JSON text at all.
  EXPECT_EQ(json_error(R"({"identifier": "a\ud800b"})").code, "malformed_json");
}

TEST(XmlChars, CapXmlRefusesThemToo) {
  for (const std::string& c : {std::string("&#x1;"), std::string("&#xB;"), std::string("\x0B"),
                               std::string("\xEF\xBF\xBE"), std::string("&#xFFFF;")}) {
    const Error e = xml_error(with("<headline>Esondazione", "<headline>Esondazione" + c));
    EXPECT_GE(http_status(e.kind), 400) << c;
    EXPECT_LT(http_status(e.kind), 500) << c;
  }
}

// ---- Finding 10 and 11: duplicate keys, numbers out of range -----------------------

TEST(StrictJson, DuplicateKeysAreRefusedAtAnyDepth) {
  std::string doc = test::documented_json_example();
  doc.insert(doc.find("\"status\": \"Actual\""), "\"status\": \"Test\", ");
  Error e = json_error(doc);
  EXPECT_EQ(e.kind, ErrorKind::Invalid);
  EXPECT_EQ(e.code, "duplicate_key");
  EXPECT_EQ(e.where, "/status");

  doc = test::documented_json_example();
  doc.insert(doc.find("\"radius_km\""), "\"lat\": 1, ");
  e = json_error(doc);
  EXPECT_EQ(e.code, "duplicate_key");
  EXPECT_EQ(e.where, "/infos/0/areas/1/circles/0/lat");

  doc = test::documented_json_example();
  doc.insert(doc.find("\"value\": \"036044\""), "\"value\": \"1\", ");
  e = json_error(doc);
  EXPECT_EQ(e.where, "/infos/0/areas/0/geocodes/0/value");
}

TEST(StrictJson, NumbersOutOfRangeAre422WithTheirPointer) {
  const std::string huge(5000, '9');
  for (const std::string& n : {std::string("1e999"), std::string("-1e999"), huge, "-" + huge, huge + ".5"}) {
    std::string doc = test::documented_json_example();
    const std::string from = "\"radius_km\": 1.5";
    doc.replace(doc.find(from), from.size(), "\"radius_km\": " + n);
    Error e = json_error(doc);
    EXPECT_EQ(e.kind, ErrorKind::Invalid) << n.substr(0, 10);
    EXPECT_EQ(e.code, "number_out_of_range");
    EXPECT_EQ(e.where, "/infos/0/areas/1/circles/0/radius_km");

    doc = test::documented_json_example();
    doc.replace(doc.find("\"altitude\": 0"), 13, "\"altitude\": " + n);
    EXPECT_EQ(json_error(doc).where, "/infos/0/areas/1/altitude");

    doc = test::documented_json_example();
    doc.replace(doc.find("\"size\": 183204"), 14, "\"size\": " + n);
    EXPECT_EQ(json_error(doc).kind, ErrorKind::Invalid);
  }
  // Inside an array of points.
  std::string doc = test::documented_json_example();
  doc.replace(doc.find("[44.7668, 10.9521]"), 18, "[44.7668, 1e400]");
  EXPECT_EQ(json_error(doc).where, "/infos/0/areas/0/polygons/0/1/1");
}

// ---- Finding 6: markup bounds, checked before libxml2 and in linear time ----------

std::string many_attributes(size_t n) {
  std::string attrs;
  for (size_t i = 0; i < n; ++i) attrs += " a" + std::to_string(i) + "=\"\"";
  return with("<note>", "<note" + attrs + ">",
              with("<scope>Public</scope>", "<scope>Public</scope><note>x</note>"));
}

template <typename F>
double seconds(F&& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

TEST(MarkupLimits, ManyAttributesAreRefusedQuickly) {
  std::string doc = many_attributes(128 * 1024);
  doc.resize(std::min(doc.size(), size_t{1} << 20));
  Error e;
  // Before the bound, libxml2 took 92 s on this body; the scan takes milliseconds.
  EXPECT_LT(seconds([&] { e = xml_error(doc); }), 5.0);
  EXPECT_EQ(e.kind, ErrorKind::Invalid);
  EXPECT_EQ(e.code, "too_many_attributes");
  EXPECT_EQ(e.where, "line 8");
  // Namespace declarations count too.
  std::string ns;
  for (int i = 0; i < 40; ++i) ns += " xmlns:p" + std::to_string(i) + "='urn:x" + std::to_string(i) + "'";
  EXPECT_EQ(xml_error(with("<alert ", "<alert" + ns + " ")).code, "too_many_attributes");
  // At the bound the scan lets it through (and the XSD refuses attributes on <note>).
  EXPECT_EQ(xml_error(many_attributes(ParseLimits{}.max_attributes)).code, "schema_violation");
}

TEST(MarkupLimits, UtfSixteenIsScannedToo) {
  const std::string utf8 = with("encoding=\"UTF-8\"", "encoding=\"UTF-16\"", many_attributes(100));
  std::string utf16 = "\xFF\xFE";
  for (char c : utf8) {
    utf16 += c;
    utf16 += '\0';
  }
  EXPECT_EQ(xml_error(utf16).code, "too_many_attributes");
}

TEST(MarkupLimits, ElementsDepthAndTextAreBounded) {
  std::string codes;
  for (int i = 0; i < 60000; ++i) codes += "<code>c</code>";
  Error e;
  EXPECT_LT(seconds([&] { e = xml_error(with("<scope>Public</scope>", "<scope>Public</scope>" + codes)); }),
            5.0);
  EXPECT_EQ(e.code, "too_many_elements");

  std::string nest;
  for (int i = 0; i < 20000; ++i) nest += "<x>";
  e = xml_error(with("<scope>Public</scope>", "<scope>Public</scope><note>" + nest));
  EXPECT_EQ(e.code, "too_deep");
  EXPECT_EQ(e.kind, ErrorKind::Invalid);

  e = xml_error(with("<headline>", "<headline>" + std::string(300 << 10, 'a')));
  EXPECT_EQ(e.code, "text_too_large");
  e = xml_error(with("<headline>", "<headline><![CDATA[" + std::string(300 << 10, 'a') + "]]>"));
  EXPECT_EQ(e.code, "text_too_large");
  // Markup inside comments, CDATA and attribute values is not counted as markup.
  const std::string inert = "<!-- <a b='1' c='2'> --><![CDATA[<x y='1'>]]>";
  ParseLimits tight;
  tight.max_attributes = 1;
  EXPECT_TRUE(parse_cap_xml(with("<headline>Esondazione", "<headline>Esondazione" + inert), tight).ok());
}

TEST(MarkupLimits, HostileBodiesNeverAnswer5xx) {
  std::vector<std::string> bodies = {
      many_attributes(200000),
      std::string(1 << 19, '<'),
      "<a" + std::string(1 << 19, ' ') + "b='",
      "<!DOCTYPE a [" + std::string(1000, '<') + "]><a/>",
      "<a>" + std::string(100000, '&') + "</a>",
      "\xFE\xFF" + std::string(1001, '<'),
      "\x4C\x6F\xA7\x94",
  };
  for (const std::string& b : bodies) {
    Error e;
    EXPECT_LT(seconds([&] { e = xml_error(b); }), 5.0);
    EXPECT_GE(http_status(e.kind), 400) << e.code;
    EXPECT_LT(http_status(e.kind), 500) << e.code << ": " << e.message;
  }
}

// The API parses on libuv's thread pool: parses on several threads at once (each with
// its own XSDs and libxml2 error handler) give the same answers as on one.
TEST(MarkupLimits, ParsesOnSeveralThreadsAtOnce) {
  harden_libxml2();  // as parse_alert_async does, on the calling thread first
  const std::string bad = with("<urgency>Immediate</urgency>", "<urgency>Now</urgency>");
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        Result<Alert> good = parse_cap_xml(kCap);
        Result<Alert> schema = parse_cap_xml(bad);
        Result<Alert> attrs = parse_cap_xml(many_attributes(40));
        if (!good || good->identifier != "SOL-2024-001") ++wrong;
        if (schema || schema.error().code != "schema_violation" ||
            schema.error().where != "/alert/info/urgency")
          ++wrong;
        if (attrs || attrs.error().code != "too_many_attributes") ++wrong;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

// ---- Finding 12: smaller limits -----------------------------------------------------

TEST(SmallerLimits, NegativeResourceSize) {
  Error e = xml_error(with("<size>10</size>", "<size>-1</size>"));
  EXPECT_EQ(e.kind, ErrorKind::Invalid);
  EXPECT_EQ(e.where, "/infos/0/resources/0/size");
  std::string doc = test::documented_json_example();
  doc.replace(doc.find("\"size\": 183204"), 14, "\"size\": -5");
  e = json_error(doc);
  EXPECT_EQ(e.kind, ErrorKind::Invalid);
  EXPECT_EQ(e.where, "/infos/0/resources/0/size");
}

TEST(SmallerLimits, ZeroAreaPolygons) {
  for (const char* ring : {"44.74,10.91 44.74,10.91 44.74,10.91 44.74,10.91",
                           "44.70,10.90 44.71,10.91 44.72,10.92 44.70,10.90",  // on one line
                           "44.74,10.91 44.75,10.93 44.74,10.91 44.75,10.93 44.74,10.91"}) {
    Error e = xml_error(with("44.74,10.91 44.75,10.93 44.73,10.94 44.74,10.91", ring));
    EXPECT_EQ(e.code, "invalid_polygon") << ring;
    EXPECT_EQ(e.where, "/infos/0/areas/0/polygons/0");
  }
  EXPECT_GT(ring_area_deg2({{0, 0}, {0, 1}, {1, 1}, {0, 0}}), 0.4);
}

TEST(SmallerLimits, CircleRadiusIsCapped) {
  Error e = xml_error(with("44.7376,10.9245 2.5", "44.7376,10.9245 1e308"));
  EXPECT_EQ(e.code, "invalid_circle");
  EXPECT_EQ(e.where, "/infos/0/areas/0/circles/0");
  e = xml_error(with("44.7376,10.9245 2.5", "44.7376,10.9245 1000.5"));
  EXPECT_EQ(e.code, "invalid_circle");
  EXPECT_TRUE(parse_cap_xml(with("44.7376,10.9245 2.5", "44.7376,10.9245 1000")).ok());
}

TEST(SmallerLimits, ReferencesAndIdentifierLength) {
  std::string refs;
  for (int i = 0; i < 101; ++i) refs += "a,id" + std::to_string(i) + ",2024-05-16T14:00:00+02:00 ";
  const std::string update = with("<msgType>Alert</msgType>", "<msgType>Update</msgType>");
  Error e = xml_error(
      with("<scope>Public</scope>", "<scope>Public</scope><references>" + refs + "</references>", update));
  EXPECT_EQ(e.code, "too_many_references");
  EXPECT_EQ(e.where, "/references");
  e = xml_error(with("SOL-2024-001", std::string(2000, 'x')));
  EXPECT_EQ(e.code, "too_long");
  EXPECT_EQ(e.where, "/identifier");
}

}  // namespace
}  // namespace sirena::alerts
