// Unit tests of recipient validation (recipient.h): phones (E.164 via libphonenumber),
// push tokens, topics, zones, locations, BCP 47 languages, key checking, error
// pointers, the no-echo rule for citizen data, NDJSON splitting and line numbers.
#include "daemon/directory/recipient.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace sirena::directory {
namespace {

RecipientRules demo_rules() {
  RecipientRules rules;
  rules.default_region = "IT";
  rules.topics = cap_categories();
  rules.topics.push_back("viabilita");
  rules.topics.push_back("scuole");
  rules.zones = {"soliera-centro", "sozzigalli", "limidi"};
  return rules;
}

const std::string kApns = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
// The shape of a real FCM registration token: instance id, ':', then "APA91b" + base64url.
const std::string kFcm =
    "dQw4w9WgXcQ:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx7Q9BMXf8Z3rCk6vF0JcJ2tq3W8sPq0nYVbGZ_"
    "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-_abcdefghij";

Result<Recipient> parse(const std::string& json, std::string_view id_from_path = {}) {
  return parse_recipient(json, demo_rules(), id_from_path);
}

// Asserts an invalid_recipient error at `where` and returns it.
Error expect_invalid(const std::string& json, const std::string& where) {
  Result<Recipient> r = parse(json);
  EXPECT_FALSE(r.ok()) << json;
  if (r.ok()) return {};
  EXPECT_EQ(r.error().kind, ErrorKind::Invalid);
  EXPECT_EQ(r.error().code, "invalid_recipient") << r.error().message;
  EXPECT_EQ(r.error().where, where) << r.error().message;
  return r.error();
}

std::string with_phone(const std::string& phone) {
  return R"({"id":"r1","phone":")" + phone + R"("})";
}

std::string with_push(const std::string& platform, const std::string& app, const std::string& token) {
  return R"({"id":"r1","push":[{"platform":")" + platform + R"(","app":")" + app + R"(","token":")" + token +
         R"("}]})";
}

TEST(Recipient, ContractExampleParses) {
  const std::string json = R"({"id": "r-000123", "phone": "+393331234567", "language": "it",
    "push": [{"platform": "apns", "app": "it.comune.soliera.app", "token": ")" +
                           kApns + R"("},
             {"platform": "fcm", "app": "soliera-app", "token": ")" +
                           kFcm + R"("}],
    "topics": ["Met", "Geo", "viabilita"], "locations": [{"lat": 44.7376, "lon": 10.9245, "label": "home"}],
    "zones": ["soliera-centro"]})";
  Result<Recipient> r = parse(json);
  ASSERT_TRUE(r.ok()) << r.error().message << " at " << r.error().where;
  EXPECT_EQ(r->id, "r-000123");
  EXPECT_EQ(r->phone, "+393331234567");
  EXPECT_EQ(r->language, "it");
  ASSERT_EQ(r->push.size(), 2u);
  EXPECT_EQ(r->push[0].platform, Platform::Apns);
  EXPECT_EQ(r->push[0].app, "it.comune.soliera.app");
  EXPECT_EQ(r->push[0].token, kApns);
  EXPECT_EQ(r->push[1].platform, Platform::Fcm);
  EXPECT_EQ(r->push[1].token, kFcm);
  EXPECT_EQ(r->topics, (std::vector<std::string>{"Met", "Geo", "viabilita"}));
  ASSERT_EQ(r->locations.size(), 1u);
  EXPECT_DOUBLE_EQ(r->locations[0].lat, 44.7376);
  EXPECT_DOUBLE_EQ(r->locations[0].lon, 10.9245);
  EXPECT_EQ(r->locations[0].label, "home");
  EXPECT_EQ(r->zones, (std::vector<std::string>{"soliera-centro"}));
}

TEST(Recipient, MinimalRecipientHasNoChannelAndDefaults) {
  // No phone and no token is allowed: preview reports such recipients as unreachable.
  Result<Recipient> r = parse(R"({"id":"r1"})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->id, "r1");
  EXPECT_TRUE(r->phone.empty());
  EXPECT_EQ(r->language, "it");
  EXPECT_TRUE(r->push.empty());
  EXPECT_TRUE(r->topics.empty());
}

TEST(Recipient, NullAndEmptyOptionalFieldsMeanAbsent) {
  Result<Recipient> r = parse(
      R"({"id":"r1","phone":null,"language":null,"push":null,"topics":null,"locations":null,"zones":null})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->phone.empty());
  EXPECT_EQ(r->language, "it");
  Result<Recipient> empty =
      parse(R"({"id":"r1","phone":"","push":[],"topics":[],"locations":[],"zones":[]})");
  ASSERT_TRUE(empty.ok()) << empty.error().message;
  EXPECT_TRUE(empty->phone.empty());
}

// --- id -------------------------------------------------------------------------------

TEST(RecipientId, Rules) {
  EXPECT_TRUE(parse(R"({"id":"A-z_0.9:x"})").ok());
  EXPECT_TRUE(parse(R"({"id":")" + std::string(64, 'a') + R"("})").ok());
  expect_invalid(R"({"id":")" + std::string(65, 'a') + R"("})", "/id");
  expect_invalid(R"({"id":""})", "/id");
  expect_invalid(R"({"id":"a b"})", "/id");
  expect_invalid(R"({"id":"a/b"})", "/id");
  expect_invalid(R"({"id":"è"})", "/id");
  expect_invalid(R"({"id":12})", "/id");
  expect_invalid(R"({"id":null})", "/id");
  expect_invalid(R"({"phone":"3331234567"})", "/id");
}

TEST(RecipientId, FromPath) {
  Result<Recipient> omitted = parse(R"({"topics":["Met"]})", "r-7");
  ASSERT_TRUE(omitted.ok()) << omitted.error().message;
  EXPECT_EQ(omitted->id, "r-7");
  Result<Recipient> same = parse(R"({"id":"r-7"})", "r-7");
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->id, "r-7");
  Result<Recipient> other = parse(R"({"id":"r-8"})", "r-7");
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().where, "/id");
  Result<Recipient> bad_path = parse(R"({})", "a b");
  ASSERT_FALSE(bad_path.ok());
  EXPECT_EQ(bad_path.error().where, "/id");
}

// --- phone ----------------------------------------------------------------------------

std::string phone_of(const std::string& input) {
  Result<Recipient> r = parse(with_phone(input));
  EXPECT_TRUE(r.ok()) << input << ": " << (r.ok() ? "" : r.error().message);
  return r.ok() ? r->phone : std::string();
}

TEST(RecipientPhone, ItalianMobileWithoutCountryCodeGetsPlus39) {
  EXPECT_EQ(phone_of("3331234567"), "+393331234567");
  EXPECT_EQ(phone_of("333 123 4567"), "+393331234567");
  EXPECT_EQ(phone_of("333-1234567"), "+393331234567");
  EXPECT_EQ(phone_of("+39 333 1234567"), "+393331234567");
  EXPECT_EQ(phone_of("0039 333 1234567"), "+393331234567");  // IDD prefix from Italy
  EXPECT_EQ(phone_of("+393331234567"), "+393331234567");
}

TEST(RecipientPhone, ItalianLandlineKeepsItsLeadingZero) {
  // Italian fixed numbers keep the trunk "0" after +39 (E.164, the "Italian leading zero").
  EXPECT_EQ(phone_of("059 858811"),
            "+3905985881"
            "1");
  EXPECT_EQ(phone_of("+39 06 6982"), "+39066982");
  EXPECT_EQ(phone_of("02 12345678"), "+390212345678");
}

TEST(RecipientPhone, OtherCountriesWithPlus) {
  EXPECT_EQ(phone_of("+44 7911 123456"), "+447911123456");
  EXPECT_EQ(phone_of("+1 650-253-0000"), "+16502530000");
  EXPECT_EQ(phone_of("+49 1512 3456789"), "+4915123456789");
  EXPECT_EQ(phone_of("+33 6 12 34 56 78"), "+33612345678");
}

TEST(RecipientPhone, DefaultRegionComesFromTheRules) {
  RecipientRules rules = demo_rules();
  rules.default_region = "GB";
  Result<Recipient> r = parse_recipient(with_phone("07911 123456"), rules);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->phone, "+447911123456");
}

TEST(RecipientPhone, InvalidNumbersAreRejectedWithoutEchoingThem) {
  const std::vector<std::string> bad = {
      "12345",                    // too short
      "333123456789012",          // too long
      "+39 333",                  // too short after +39
      "hello",                    // not a number
      "+999 123456789",           // no such country code
      "+39 333 1234567 ext. 12",  // extensions cannot get SMS
      "+1 555-0100",              // too short for NANP
      "+39 999 9999999",          // no such Italian range
      std::string(80, '3'),       // beyond the input bound
  };
  for (const std::string& p : bad) {
    Error e = expect_invalid(with_phone(p), "/phone");
    EXPECT_FALSE(e.message.empty());
    // Citizen data never appears in an error that could be logged.
    std::string digits;
    for (char c : p) {
      if (c >= '0' && c <= '9') digits += c;
    }
    if (digits.size() >= 4) {
      EXPECT_EQ(e.message.find(digits.substr(0, 4)), std::string::npos) << e.message;
    }
    EXPECT_EQ(e.message.find(p), std::string::npos) << e.message;
  }
  expect_invalid(R"({"id":"r1","phone":3331234567})", "/phone");
}

// --- push -----------------------------------------------------------------------------

TEST(RecipientPush, ApnsTokenIsNormalisedToLowerCase) {
  std::string upper = kApns;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  Result<Recipient> r = parse(with_push("apns", "it.comune.soliera.app", upper));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->push[0].token, kApns);
}

TEST(RecipientPush, BadApnsTokens) {
  for (const std::string& t :
       {kApns.substr(1), kApns + "0", "g" + kApns.substr(1), kApns.substr(0, 32) + " " + kApns.substr(33),
        std::string("<") + kApns.substr(2) + ">"}) {
    Error e = expect_invalid(with_push("apns", "it.comune.soliera.app", t), "/push/0/token");
    EXPECT_EQ(e.message.find(t), std::string::npos);
    EXPECT_EQ(e.message.find(kApns.substr(4, 16)), std::string::npos) << e.message;
  }
}

TEST(RecipientPush, FcmTokenSanity) {
  EXPECT_TRUE(parse(with_push("fcm", "soliera-app", kFcm)).ok());
  EXPECT_TRUE(parse(with_push("fcm", "1:123456789:android:abc", std::string(100, 'A'))).ok());
  EXPECT_TRUE(parse(with_push("fcm", "soliera-app", std::string(4096, 'A'))).ok());
  for (const std::string& t :
       {std::string(99, 'A'), std::string(4097, 'A'), kFcm.substr(0, 50) + " " + kFcm.substr(51),
        kFcm.substr(0, 50) + "/" + kFcm.substr(51), kFcm.substr(0, 50) + "=" + kFcm.substr(51),
        std::string("")}) {
    Error e = expect_invalid(with_push("fcm", "soliera-app", t), "/push/0/token");
    EXPECT_EQ(e.message.find(kFcm.substr(0, 20)), std::string::npos) << e.message;
  }
  // An APNs token declared as FCM is too short to be a registration token.
  expect_invalid(with_push("fcm", "soliera-app", kApns), "/push/0/token");
}

TEST(RecipientPush, PlatformAppAndShape) {
  expect_invalid(with_push("gcm", "soliera-app", kFcm), "/push/0/platform");
  expect_invalid(with_push("APNS", "soliera-app", kApns), "/push/0/platform");
  expect_invalid(with_push("apns", "", kApns), "/push/0/app");
  expect_invalid(with_push("apns", "bad app", kApns), "/push/0/app");
  expect_invalid(R"({"id":"r1","push":[{"platform":"apns","token":")" + kApns + R"("}]})", "/push/0/app");
  expect_invalid(R"({"id":"r1","push":[{"platform":"apns","app":"a"}]})", "/push/0/token");
  expect_invalid(R"({"id":"r1","push":[{"app":"a","token":")" + kApns + R"("}]})", "/push/0/platform");
  expect_invalid(
      R"({"id":"r1","push":[{"platform":"apns","app":"a","token":")" + kApns + R"(","topic":"x"}]})",
      "/push/0/topic");
  expect_invalid(R"({"id":"r1","push":["x"]})", "/push/0");
  expect_invalid(R"({"id":"r1","push":{"platform":"apns"}})", "/push");
  // The second entry is the bad one: the pointer says so.
  expect_invalid(R"({"id":"r1","push":[{"platform":"apns","app":"a","token":")" + kApns +
                     R"("},{"platform":"apns","app":"a","token":"00"}]})",
                 "/push/1/token");
}

TEST(RecipientPush, DuplicateTokensCollapseAndCountIsLimited) {
  const std::string entry = R"({"platform":"apns","app":"a","token":")" + kApns + R"("})";
  Result<Recipient> r = parse(R"({"id":"r1","push":[)" + entry + "," + entry + "]}");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->push.size(), 1u);
  std::string many;
  for (int i = 0; i < 9; ++i) many += (i ? "," : "") + entry;
  expect_invalid(R"({"id":"r1","push":[)" + many + "]}", "/push");
}

// --- topics and zones -----------------------------------------------------------------

TEST(RecipientTopics, MustBeInTheTenantList) {
  Result<Recipient> r = parse(R"({"id":"r1","topics":["Met","scuole","Met","CBRNE"]})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->topics, (std::vector<std::string>{"Met", "scuole", "CBRNE"}));  // duplicates collapse

  Error e = expect_invalid(R"({"id":"r1","topics":["Met","Mett"]})", "/topics/1");
  EXPECT_NE(e.message.find("\"Mett\""), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("did you mean \"Met\""), std::string::npos) << e.message;

  e = expect_invalid(R"({"id":"r1","topics":["met"]})", "/topics/0");  // exact match only
  EXPECT_NE(e.message.find("did you mean \"Met\""), std::string::npos) << e.message;

  e = expect_invalid(R"({"id":"r1","topics":["viabilta"]})", "/topics/0");
  EXPECT_NE(e.message.find("did you mean \"viabilita\""), std::string::npos) << e.message;

  e = expect_invalid(R"({"id":"r1","topics":["astronomy"]})", "/topics/0");
  EXPECT_EQ(e.message.find("did you mean"), std::string::npos) << e.message;

  expect_invalid(R"({"id":"r1","topics":[1]})", "/topics/0");
  expect_invalid(R"({"id":"r1","topics":"Met"})", "/topics");
}

TEST(RecipientTopics, CountIsLimited) {
  RecipientRules rules = demo_rules();
  rules.max_topics = 2;
  Result<Recipient> r = parse_recipient(R"({"id":"r1","topics":["Met","Geo","Fire"]})", rules);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().where, "/topics");
}

TEST(RecipientZones, MustBeKnown) {
  Result<Recipient> r = parse(R"({"id":"r1","zones":["sozzigalli","limidi","sozzigalli"]})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->zones, (std::vector<std::string>{"sozzigalli", "limidi"}));
  Error e = expect_invalid(R"({"id":"r1","zones":["limidi","bastiglia-secchia"]})", "/zones/1");
  EXPECT_NE(e.message.find("\"bastiglia-secchia\""), std::string::npos);
  std::string many;
  for (int i = 0; i < 17; ++i) many += std::string(i ? "," : "") + "\"limidi\"";
  expect_invalid(R"({"id":"r1","zones":[)" + many + "]}", "/zones");
}

TEST(RecipientTopics, TopicBitsFollowRuleOrder) {
  const RecipientRules rules = demo_rules();
  EXPECT_EQ(topic_bits({"Geo"}, rules), 1u);
  EXPECT_EQ(topic_bits({"Met", "Other"}, rules), (1u << 1) | (1u << 11));
  EXPECT_EQ(topic_bits({"viabilita", "scuole"}, rules), (1u << 12) | (1u << 13));
  EXPECT_EQ(topic_bits({"unknown"}, rules), 0u);
  EXPECT_EQ(topic_bits({}, rules), 0u);

  RecipientRules wide;
  for (int i = 0; i < 70; ++i) wide.topics.push_back("t" + std::to_string(i));
  EXPECT_EQ(topic_bits({"t63"}, wide), uint64_t{1} << 63);
  EXPECT_EQ(topic_bits({"t64", "t69"}, wide), 0u);  // beyond the 64 bits of the index
}

TEST(RecipientTopics, CapCategories) {
  EXPECT_EQ(cap_categories().size(), 12u);
  EXPECT_EQ(cap_categories().front(), "Geo");
  EXPECT_EQ(cap_categories().back(), "Other");
}

// --- locations ------------------------------------------------------------------------

TEST(RecipientLocations, RangesAndTypes) {
  Result<Recipient> r = parse(
      R"({"id":"r1","locations":[{"lat":-90,"lon":-180},{"lat":90,"lon":180,"label":"work"},{"lat":0,"lon":0,"label":null}]})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->locations.size(), 3u);
  EXPECT_EQ(r->locations[0].lat, -90);
  EXPECT_EQ(r->locations[1].lon, 180);
  EXPECT_EQ(r->locations[1].label, "work");

  expect_invalid(R"({"id":"r1","locations":[{"lat":90.0001,"lon":0}]})", "/locations/0/lat");
  expect_invalid(R"({"id":"r1","locations":[{"lat":0,"lon":-180.5}]})", "/locations/0/lon");
  expect_invalid(R"({"id":"r1","locations":[{"lat":0,"lon":0},{"lat":"44.7","lon":10.9}]})",
                 "/locations/1/lat");
  expect_invalid(R"({"id":"r1","locations":[{"lat":44.7}]})", "/locations/0/lon");
  expect_invalid(R"({"id":"r1","locations":[{"lon":10.9}]})", "/locations/0/lat");
  expect_invalid(R"({"id":"r1","locations":[{"lat":44.7,"lon":10.9,"alt":3}]})", "/locations/0/alt");
  expect_invalid(R"({"id":"r1","locations":[{"lat":44.7,"lon":10.9,"label":7}]})", "/locations/0/label");
  expect_invalid(
      R"({"id":"r1","locations":[{"lat":44.7,"lon":10.9,"label":")" + std::string(65, 'x') + R"("}]})",
      "/locations/0/label");
  expect_invalid(R"({"id":"r1","locations":[[44.7,10.9]]})", "/locations/0");
  std::string many;
  for (int i = 0; i < 9; ++i) many += std::string(i ? "," : "") + R"({"lat":1,"lon":1})";
  expect_invalid(R"({"id":"r1","locations":[)" + many + "]}", "/locations");
}

TEST(RecipientLocations, OutOfRangeNumbersAreNotFinite) {
  // 1e400 overflows a double: simdjson rejects it as a malformed number.
  Result<Recipient> r = parse(R"({"id":"r1","locations":[{"lat":1e400,"lon":0}]})");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "malformed_json");
}

// --- language -------------------------------------------------------------------------

std::string language_of(const std::string& tag) {
  Result<Recipient> r = parse(R"({"id":"r1","language":")" + tag + R"("})");
  EXPECT_TRUE(r.ok()) << tag << ": " << (r.ok() ? "" : r.error().message);
  return r.ok() ? r->language : std::string();
}

TEST(RecipientLanguage, Bcp47IsCanonicalised) {
  EXPECT_EQ(language_of("it"), "it");
  EXPECT_EQ(language_of("IT"), "it");
  EXPECT_EQ(language_of("en-GB"), "en-GB");
  EXPECT_EQ(language_of("EN-gb"), "en-GB");
  EXPECT_EQ(language_of("zh-hant-tw"), "zh-Hant-TW");
  EXPECT_EQ(language_of("sr-latn-rs"), "sr-Latn-RS");
  EXPECT_EQ(language_of("es-419"), "es-419");
  EXPECT_EQ(language_of("fur"), "fur");  // Friulian, a regional language of Italy
  EXPECT_EQ(language_of("lld"), "lld");  // Ladin
  EXPECT_EQ(language_of("de-DE-1996"), "de-DE-1996");
  EXPECT_EQ(language_of("iw"), "he");  // deprecated subtag replaced (RFC 5646 §3.1.7)
}

TEST(RecipientLanguage, IllFormedTagsAreRejected) {
  for (const char* tag : {"", "en_US", "en-", "-en", "english", "abcd", "und", "x-private", "123", "it IT",
                          "it-ITALIA-", "e", "en--GB", "it\\u0000"}) {
    expect_invalid(R"({"id":"r1","language":")" + std::string(tag) + R"("})", "/language");
  }
  expect_invalid(R"({"id":"r1","language":")" + std::string(70, 'a') + R"("})", "/language");
  expect_invalid(R"({"id":"r1","language":["it"]})", "/language");
}

// --- keys and JSON ----------------------------------------------------------------------

TEST(RecipientKeys, UnknownKeysAreRejected) {
  Error e = expect_invalid(R"({"id":"r1","phnoe":"3331234567"})", "/phnoe");
  EXPECT_NE(e.message.find("phnoe"), std::string::npos);
  // A key that is not a field name (here a phone number) is not echoed.
  e = expect_invalid(R"({"id":"r1","+39 333 1234567":true})", "");
  EXPECT_EQ(e.message.find("333"), std::string::npos) << e.message;
  expect_invalid(R"({"id":"r1","topics":["Met"],"topics":["Geo"]})", "/topics");
  expect_invalid(R"({"id":"r1","id":"r2"})", "/id");
}

TEST(RecipientKeys, RootMustBeAnObject) {
  expect_invalid("[]", "");
  expect_invalid("\"r1\"", "");
  expect_invalid("null", "");
  expect_invalid("42", "");
}

TEST(RecipientJson, MalformedJsonGivesTheByteOffset) {
  struct Case {
    std::string json;
    std::string where;
  };
  const std::vector<Case> cases = {
      {R"({"id":"r1",})", "11"},    // trailing comma: the '}' at byte 11
      {R"({"id" "r1"})", "6"},      // missing ':'
      {R"({"id":"r1")", "10"},      // truncated: just past the last byte
      {R"({"id":r1})", "6"},        // bare word
      {"{\"id\":\"r\x01\"}", "8"},  // raw control character in a string
      {"{\"id\":\"r\xff\"}", "8"},  // invalid UTF-8
      {"", "0"},
      {R"({"id":"r1"} {"id":"r2"})", "12"},           // two documents on one line
      {R"({"id":"r1" "p\"x"})", "11"},                // unexpected string, with an escaped quote
      {R"({"id":"r1","topics":["Met" 42]})", "27"},   // unexpected number
      {R"({"id":"r1","topics":["Met",tru]})", "30"},  // bad literal: the byte that broke it
  };
  for (const Case& c : cases) {
    Result<Recipient> r = parse(c.json);
    ASSERT_FALSE(r.ok()) << c.json;
    EXPECT_EQ(r.error().kind, ErrorKind::Invalid);
    EXPECT_EQ(r.error().code, "malformed_json") << c.json;
    EXPECT_EQ(r.error().where, c.where) << c.json << ": " << r.error().message;
    EXPECT_FALSE(r.error().message.empty());
  }
}

TEST(RecipientJson, DocumentSizeIsBounded) {
  const std::string big = R"({"id":"r1","zones":[)" + std::string(300 * 1024, ' ') + "]}";
  Result<Recipient> r = parse(big);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "invalid_recipient");
}

TEST(RecipientJson, RoundTripsThroughRecipientToJson) {
  const std::string json = R"({"id":"r-1","phone":"333 1234567","language":"EN-gb",
    "push":[{"platform":"apns","app":"it.comune.soliera.app","token":")" +
                           kApns + R"("},{"platform":"fcm","app":"soliera-app","token":")" + kFcm + R"("}],
    "topics":["Met","viabilita"],"locations":[{"lat":44.7376,"lon":10.9245,"label":"home"},{"lat":-0.1,"lon":1e-7}],
    "zones":["limidi"]})";
  Result<Recipient> r = parse(json);
  ASSERT_TRUE(r.ok()) << r.error().message;
  const nlohmann::json j = recipient_to_json(*r);
  EXPECT_EQ(j["id"], "r-1");
  EXPECT_EQ(j["phone"], "+393331234567");
  EXPECT_EQ(j["language"], "en-GB");
  EXPECT_EQ(j["push"][0]["platform"], "apns");
  EXPECT_EQ(j["push"][1]["platform"], "fcm");
  EXPECT_EQ(j["push"][1]["token"], kFcm);
  EXPECT_EQ(j["locations"][0]["label"], "home");
  EXPECT_EQ(j["locations"][1]["label"], "");
  EXPECT_EQ(j["zones"], nlohmann::json::array({"limidi"}));
  Result<Recipient> back = parse(j.dump());
  ASSERT_TRUE(back.ok()) << back.error().message;
  // Recipient::operator== is unusable until PushToken and Location get one: compare
  // the JSON forms (doubles included, exactly).
  EXPECT_EQ(recipient_to_json(*back), j);
}

TEST(RecipientJson, EmptyPhoneIsOmitted) {
  Result<Recipient> r = parse(R"({"id":"r1"})");
  ASSERT_TRUE(r.ok());
  const nlohmann::json j = recipient_to_json(*r);
  EXPECT_FALSE(j.contains("phone"));
  EXPECT_TRUE(j["push"].is_array());
  EXPECT_TRUE(j["topics"].is_array());
  EXPECT_TRUE(j["locations"].is_array());
  EXPECT_TRUE(j["zones"].is_array());
  EXPECT_EQ(j.size(), 6u);
}

// --- NDJSON ---------------------------------------------------------------------------

struct Line {
  size_t number;
  bool ok;
  std::string id_or_code;
  std::string where;
};

std::vector<Line> ndjson(std::string_view body) {
  std::vector<Line> out;
  parse_ndjson(body, demo_rules(), [&](size_t line, Result<Recipient>&& r) {
    if (r.ok())
      out.push_back({line, true, r->id, ""});
    else
      out.push_back({line, false, r.error().code, r.error().where});
  });
  return out;
}

TEST(RecipientNdjson, BadLinesInTheMiddleDoNotStopTheRest) {
  const std::string body =
      "{\"id\":\"a\",\"phone\":\"3331234567\"}\n"
      "{\"id\":\"b\",\"phone\":\"12\"}\n"
      "{\"id\":\"c\",\n"
      "\n"
      "   \t \n"
      "{\"id\":\"d\",\"topics\":[\"Nope\"]}\n"
      "{\"id\":\"e\"}\n";
  const std::vector<Line> lines = ndjson(body);
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[0].number, 1u);
  EXPECT_TRUE(lines[0].ok);
  EXPECT_EQ(lines[1].number, 2u);
  EXPECT_FALSE(lines[1].ok);
  EXPECT_EQ(lines[1].id_or_code, "invalid_recipient");
  EXPECT_EQ(lines[1].where, "/phone");
  EXPECT_EQ(lines[2].number, 3u);
  EXPECT_EQ(lines[2].id_or_code, "malformed_json");
  EXPECT_EQ(lines[2].where, "10");  // the end of the line: the offset is within the line
  EXPECT_EQ(lines[3].number, 6u);   // blank lines 4 and 5 are skipped but counted
  EXPECT_EQ(lines[3].where, "/topics/0");
  EXPECT_EQ(lines[4].number, 7u);
  EXPECT_TRUE(lines[4].ok);
  EXPECT_EQ(lines[4].id_or_code, "e");
}

TEST(RecipientNdjson, CrlfLastLineWithoutNewlineAndBom) {
  const std::vector<Line> lines =
      ndjson("\xEF\xBB\xBF{\"id\":\"a\"}\r\n\r\n{\"id\":\"b\"}\r\n{\"id\":\"c\"}");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0].number, 1u);
  EXPECT_EQ(lines[0].id_or_code, "a");
  EXPECT_EQ(lines[1].number, 3u);
  EXPECT_EQ(lines[1].id_or_code, "b");
  EXPECT_EQ(lines[2].number, 4u);
  EXPECT_EQ(lines[2].id_or_code, "c");
}

TEST(RecipientNdjson, EmptyAndBlankBodies) {
  EXPECT_TRUE(ndjson("").empty());
  EXPECT_TRUE(ndjson("\n\n\r\n  \n").empty());
  const std::vector<Line> lines = ndjson("\n\n{\"id\":\"x\"}\n\n");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].number, 3u);
}

TEST(RecipientNdjson, PaddingIsNeverReadFromTheBody) {
  // Each line is parsed on its own: a line followed by more bytes in the body must not
  // see them, and a body ending exactly at a page is fine (ASan checks the rest).
  const std::vector<Line> lines = ndjson("{\"id\":\"a\"}\n{\"id\":\"b\"} x\n{\"id\":\"c\"");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_TRUE(lines[0].ok);
  EXPECT_FALSE(lines[1].ok);
  EXPECT_EQ(lines[1].where, "11");
  EXPECT_FALSE(lines[2].ok);
}

}  // namespace
}  // namespace sirena::directory
