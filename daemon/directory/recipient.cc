// Recipient validation: one JSON document (a PUT body or one NDJSON import line) in,
// a normalised Recipient or a 422 out.
//
// Parsing uses simdjson's DOM API with one parser per thread (the import path parses
// hundreds of thousands of lines per second, and a parser reuses its buffers). Every
// line is copied into a thread-local buffer with SIMDJSON_PADDING bytes after it,
// because simdjson reads in 64-byte blocks and a line inside a request body is not
// padded. simdjson is used through error codes only, so nothing here throws.
//
// Errors never echo a phone number, a push token or a location label: error messages
// end up in import reports and may be logged, and citizen data must not (DESIGN.md,
// "logging"). Topic and zone names are tenant vocabulary and are echoed to help fix
// typos.
//
// Error codes (422 both):
//   invalid_recipient  where = JSON pointer of the bad field (RFC 6901), "" for the root;
//   malformed_json     where = 0-based byte offset within the document/line where the
//                      JSON syntax breaks ("0" when it cannot be located).
#include "daemon/directory/recipient.h"

#include <phonenumbers/logger.h>
#include <phonenumbers/phonenumberutil.h>
#include <simdjson.h>
#include <unicode/uloc.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

namespace sirena::directory {

const std::vector<std::string>& cap_categories() {
  // CAP 1.2 §3.2.2, <category>: the code values, in the order the spec lists them.
  static const std::vector<std::string> kCategories = {"Geo",       "Met",   "Safety", "Security",
                                                       "Rescue",    "Fire",  "Health", "Env",
                                                       "Transport", "Infra", "CBRNE",  "Other"};
  return kCategories;
}

namespace {

namespace dom = simdjson::dom;
using i18n::phonenumbers::PhoneNumber;
using i18n::phonenumbers::PhoneNumberUtil;

// Sanity bound on one document: 8 FCM tokens of 4096 bytes are ~33 KiB, so this leaves
// room for raised limits while keeping the per-thread parser buffers bounded.
constexpr size_t kMaxDocumentBytes = 256 * 1024;
constexpr size_t kMaxIdBytes = 64;
constexpr size_t kMaxPhoneBytes = 64;   // a formatted number with spaces and a +CC fits easily
constexpr size_t kApnsTokenBytes = 64;  // 32-byte device token, hex encoded
constexpr size_t kFcmTokenMinBytes = 100;
constexpr size_t kFcmTokenMaxBytes = 4096;
constexpr size_t kMaxAppBytes = 255;
constexpr size_t kMaxLabelBytes = 64;
constexpr size_t kMaxLanguageBytes = 64;
constexpr size_t kMaxNameBytes = 128;  // topic and zone names

Error invalid(std::string message, std::string where) {
  return make_error(ErrorKind::Invalid, "invalid_recipient", std::move(message), std::move(where));
}

bool is_id_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == ':' || c == '-';
}

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// FCM registration tokens are opaque, but every token FCM has issued is URL-safe base64
// plus ':' (e.g. "<instance id>:APA91b..."), 140-200 characters today. The rule is a
// sanity check against truncation, pasted whitespace and other fields put here by
// mistake, with room for Google to lengthen them (FCM documents no maximum; 4096 is
// APNs' payload bound, which no token will approach).
bool is_fcm_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == ':' ||
         c == '-';
}

// An app id ends up in an HTTP header (apns-topic) and a gateway lookup: a bundle id
// ("it.comune.soliera.app"), an FCM project or a Firebase app id ("1:123:android:ab").
bool is_app_char(char c) {
  return is_id_char(c);
}

// A key is echoed in messages and pointers only when it looks like a field name, so
// that a phone number misplaced as a key is not copied into an error.
bool is_printable_name(std::string_view s) {
  if (s.empty() || s.size() > 32) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return is_id_char(c); });
}

// Topic and zone names are echoed, but only when short and free of control bytes.
std::string quoted_name(std::string_view s) {
  if (s.size() > 64) return "this name";
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return "this name";
  }
  return "\"" + std::string(s) + "\"";
}

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// The allowed topic closest to an unknown one: a case-insensitive match first, then
// the smallest edit distance up to 2 (typos such as "viabilta" for "viabilita").
std::optional<std::string> closest_topic(std::string_view unknown, const std::vector<std::string>& allowed) {
  if (unknown.size() > kMaxNameBytes) return std::nullopt;
  const std::string u = lower_ascii(unknown);
  std::optional<std::string> best;
  size_t best_distance = 3;
  for (const std::string& t : allowed) {
    const size_t d = edit_distance(u, lower_ascii(t));
    if (d < best_distance) {
      best_distance = d;
      best = t;
    }
  }
  return best;
}

// libphonenumber writes diagnostics to stdout by default; some could carry the number
// being parsed. Mute it once per process.
const PhoneNumberUtil& phone_util() {
  static PhoneNumberUtil* util = [] {
    PhoneNumberUtil* u = PhoneNumberUtil::GetInstance();
    u->SetLogger(new i18n::phonenumbers::NullLogger());  // takes ownership
    return u;
  }();
  return *util;
}

// E.164 (ITU-T E.164 §6) through libphonenumber: the number is parsed with the tenant's
// default region when it has no "+CC", must be a valid number of its country (not only
// of a plausible length), and is stored as "+<CC><NSN>". On failure `why` says what to
// fix and never contains the number.
std::optional<std::string> normalise_phone(std::string_view in, const std::string& region, std::string* why) {
  if (in.size() > kMaxPhoneBytes) {
    *why = "the phone number is too long: write it in E.164 form, e.g. +39...";
    return std::nullopt;
  }
  const PhoneNumberUtil& util = phone_util();
  PhoneNumber number;
  switch (util.Parse(std::string(in), region, &number)) {
    case PhoneNumberUtil::NO_PARSING_ERROR:
      break;
    case PhoneNumberUtil::INVALID_COUNTRY_CODE_ERROR:
      *why = "the phone number has no valid country code: write it as +<country code><number>";
      return std::nullopt;
    case PhoneNumberUtil::TOO_SHORT_AFTER_IDD:
    case PhoneNumberUtil::TOO_SHORT_NSN:
      *why = "the phone number is too short";
      return std::nullopt;
    case PhoneNumberUtil::TOO_LONG_NSN:
      *why = "the phone number is too long";
      return std::nullopt;
    case PhoneNumberUtil::NOT_A_NUMBER:
    default:
      *why = "the phone field does not contain a phone number";
      return std::nullopt;
  }
  if (number.has_extension()) {
    *why = "the phone number has an extension, which SMS cannot reach: remove it";
    return std::nullopt;
  }
  if (!util.IsValidNumber(number)) {
    switch (util.IsPossibleNumberWithReason(number)) {
      case PhoneNumberUtil::TOO_SHORT:
        *why = "the phone number is too short for its country";
        break;
      case PhoneNumberUtil::TOO_LONG:
        *why = "the phone number is too long for its country";
        break;
      case PhoneNumberUtil::INVALID_COUNTRY_CODE:
        *why = "the phone number has no valid country code: write it as +<country code><number>";
        break;
      default:
        *why = "the phone number is not a valid number of its country: check the digits and the country code";
        break;
    }
    return std::nullopt;
  }
  std::string e164;
  util.Format(number, PhoneNumberUtil::E164, &e164);
  return e164;
}

// BCP 47 (RFC 5646) through ICU: well-formed when ICU consumes the whole tag, then
// canonicalised by ICU (RFC 5646 §2.1.1 case conventions: "en-GB", "zh-Hant-TW";
// deprecated subtags replaced). Languages repeat across lines, so results are cached
// per thread; the cache is bounded so that hostile input cannot grow it.
std::optional<std::string> canonical_language(std::string_view tag) {
  if (tag.empty() || tag.size() > kMaxLanguageBytes) return std::nullopt;
  for (char c : tag) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok) return std::nullopt;  // also keeps '_' (ICU locale ids) and NUL out
  }
  thread_local std::unordered_map<std::string, std::optional<std::string>> cache;
  const std::string key(tag);
  if (auto it = cache.find(key); it != cache.end()) return it->second;

  std::optional<std::string> result;
  char locale_id[ULOC_FULLNAME_CAPACITY + 1] = {};
  int32_t parsed = 0;
  UErrorCode status = U_ZERO_ERROR;
  const int32_t n = uloc_forLanguageTag(key.c_str(), locale_id, ULOC_FULLNAME_CAPACITY, &parsed, &status);
  if (U_SUCCESS(status) && status != U_STRING_NOT_TERMINATED_WARNING && n >= 0 &&
      parsed == static_cast<int32_t>(key.size())) {
    char canonical[ULOC_FULLNAME_CAPACITY + 1] = {};
    status = U_ZERO_ERROR;
    const int32_t m =
        uloc_toLanguageTag(locale_id, canonical, ULOC_FULLNAME_CAPACITY, /*strict=*/true, &status);
    if (U_SUCCESS(status) && status != U_STRING_NOT_TERMINATED_WARNING && m > 0) {
      // RFC 5646 §2.2.1 also allows 4-letter (reserved) and 5-8-letter language subtags,
      // which ICU accepts ("english"), and "und" carries no language at all: neither can
      // choose a CAP <info>, so the primary subtag must have 2 or 3 letters.
      const std::string_view c(canonical, static_cast<size_t>(m));
      const size_t primary = std::min(c.find('-'), c.size());
      if ((primary == 2 || primary == 3) && c.substr(0, primary) != "und") result = std::string(c);
    }
  }
  if (cache.size() < 1024) cache.emplace(key, result);
  return result;
}

// Reading state of one document: the first error wins and stops the rest.
class Validator {
 public:
  explicit Validator(const RecipientRules& rules) : rules_(rules) {}

  bool failed() const { return error_.has_value(); }
  Error take_error() { return std::move(*error_); }

  bool fail(std::string message, std::string where) {
    if (!error_) error_ = invalid(std::move(message), std::move(where));
    return false;
  }

  bool document(dom::element root, std::string_view id_from_path, Recipient* r);

 private:
  bool string_field(dom::element v, const std::string& at, const char* what, std::string_view* out) {
    if (v.get_string().get(*out) != simdjson::SUCCESS)
      return fail(std::string(what) + " must be a string", at);
    return true;
  }
  bool array_field(dom::element v, const std::string& at, const char* what, size_t max, dom::array* out) {
    if (v.get_array().get(*out) != simdjson::SUCCESS)
      return fail(std::string(what) + " must be an array", at);
    if (out->size() > max)
      return fail(std::string(what) + " has more than " + std::to_string(max) + " entries", at);
    return true;
  }
  // An unknown or repeated key: reject, since a misspelt key would otherwise drop data
  // silently (a "topcs" field means no alerts for that citizen).
  bool bad_key(std::string_view key, const std::string& at, bool duplicate) {
    const bool show = is_printable_name(key);
    const std::string where = show ? at + "/" + std::string(key) : at;
    if (duplicate) return fail("key \"" + std::string(key) + "\" appears twice", where);
    if (!show) return fail("an object has an unknown key", where);
    return fail("unknown key \"" + std::string(key) + "\"", where);
  }

  bool id(dom::element v, std::string* out);
  bool phone(dom::element v, std::string* out);
  bool language(dom::element v, std::string* out);
  bool push(dom::element v, std::vector<PushToken>* out);
  bool push_token(dom::element v, const std::string& at, PushToken* out);
  bool topics(dom::element v, std::vector<std::string>* out);
  bool locations(dom::element v, std::vector<Location>* out);
  bool location(dom::element v, const std::string& at, Location* out);
  bool coordinate(dom::element v, const std::string& at, const char* what, double limit, double* out);
  bool zones(dom::element v, std::vector<std::string>* out);

  const RecipientRules& rules_;
  std::optional<Error> error_;
};

bool Validator::document(dom::element root, std::string_view id_from_path, Recipient* r) {
  dom::object obj;
  if (root.get_object().get(obj) != simdjson::SUCCESS) return fail("a recipient must be a JSON object", "");
  enum Field : unsigned {
    kId = 1,
    kPhone = 2,
    kLanguage = 4,
    kPush = 8,
    kTopics = 16,
    kLocations = 32,
    kZones = 64
  };
  static constexpr std::pair<std::string_view, unsigned> kFields[] = {
      {"id", kId},         {"phone", kPhone},         {"language", kLanguage}, {"push", kPush},
      {"topics", kTopics}, {"locations", kLocations}, {"zones", kZones}};
  unsigned seen = 0;
  for (dom::key_value_pair field : obj) {
    const std::string_view key = field.key;
    unsigned bit = 0;
    for (const auto& [name, b] : kFields) {
      if (key == name) bit = b;
    }
    if (bit == 0 || (seen & bit)) return bad_key(key, "", bit != 0);
    seen |= bit;
    // null is accepted for every optional field and means "absent".
    if (field.value.is_null() && bit != kId) continue;
    bool ok = true;
    switch (bit) {
      case kId:
        ok = id(field.value, &r->id);
        break;
      case kPhone:
        ok = phone(field.value, &r->phone);
        break;
      case kLanguage:
        ok = language(field.value, &r->language);
        break;
      case kPush:
        ok = push(field.value, &r->push);
        break;
      case kTopics:
        ok = topics(field.value, &r->topics);
        break;
      case kLocations:
        ok = locations(field.value, &r->locations);
        break;
      case kZones:
        ok = zones(field.value, &r->zones);
        break;
    }
    if (!ok) return false;
  }
  if (!id_from_path.empty()) {
    if (!(seen & kId)) {
      r->id = std::string(id_from_path);
      // The path id passes the same rule as a body id.
      if (r->id.size() > kMaxIdBytes || !std::all_of(r->id.begin(), r->id.end(), is_id_char))
        return fail("the recipient id in the URL must be 1 to 64 of A-Z a-z 0-9 . _ : -", "/id");
    } else if (r->id != id_from_path) {
      return fail("\"id\" does not match the recipient id in the URL", "/id");
    }
  } else if (!(seen & kId)) {
    return fail("\"id\" is required", "/id");
  }
  return true;
}

bool Validator::id(dom::element v, std::string* out) {
  std::string_view s;
  if (!string_field(v, "/id", "\"id\"", &s)) return false;
  if (s.empty() || s.size() > kMaxIdBytes || !std::all_of(s.begin(), s.end(), is_id_char))
    return fail("\"id\" must be 1 to 64 of A-Z a-z 0-9 . _ : -", "/id");
  out->assign(s);
  return true;
}

bool Validator::phone(dom::element v, std::string* out) {
  std::string_view s;
  if (!string_field(v, "/phone", "\"phone\"", &s)) return false;
  if (s.empty()) return true;  // "" clears the phone, like null
  std::string why;
  std::optional<std::string> e164 = normalise_phone(s, rules_.default_region, &why);
  if (!e164) return fail(std::move(why), "/phone");
  *out = std::move(*e164);
  return true;
}

bool Validator::language(dom::element v, std::string* out) {
  std::string_view s;
  if (!string_field(v, "/language", "\"language\"", &s)) return false;
  std::optional<std::string> tag = canonical_language(s);
  if (!tag)
    return fail("\"language\" must be a BCP 47 language tag such as \"it\" or \"en-GB\"", "/language");
  *out = std::move(*tag);
  return true;
}

bool Validator::push(dom::element v, std::vector<PushToken>* out) {
  dom::array arr;
  if (!array_field(v, "/push", "\"push\"", rules_.max_push, &arr)) return false;
  size_t i = 0;
  for (dom::element e : arr) {
    PushToken t;
    if (!push_token(e, "/push/" + std::to_string(i), &t)) return false;
    ++i;
    // The same token twice would mean two notifications per alert.
    const bool dup = std::any_of(out->begin(), out->end(), [&](const PushToken& o) {
      return o.platform == t.platform && o.token == t.token;
    });
    if (!dup) out->push_back(std::move(t));
  }
  return true;
}

bool Validator::push_token(dom::element v, const std::string& at, PushToken* out) {
  dom::object obj;
  if (v.get_object().get(obj) != simdjson::SUCCESS)
    return fail("a push entry must be an object {platform, app, token}", at);
  std::string_view platform, app, token;
  bool has_platform = false, has_app = false, has_token = false;
  for (dom::key_value_pair field : obj) {
    const std::string_view key = field.key;
    bool* seen = key == "platform" ? &has_platform
                 : key == "app"    ? &has_app
                 : key == "token"  ? &has_token
                                   : nullptr;
    if (seen == nullptr || *seen) return bad_key(key, at, seen != nullptr);
    *seen = true;
    const std::string where = at + "/" + std::string(key);
    std::string_view* dst = key == "platform" ? &platform : key == "app" ? &app : &token;
    if (!string_field(field.value, where,
                      key == "platform" ? "\"platform\""
                      : key == "app"    ? "\"app\""
                                        : "\"token\"",
                      dst))
      return false;
  }
  if (!has_platform) return fail("\"platform\" is required (\"apns\" or \"fcm\")", at + "/platform");
  if (!has_app) return fail("\"app\" is required", at + "/app");
  if (!has_token) return fail("\"token\" is required", at + "/token");

  if (platform == "apns") {
    out->platform = Platform::Apns;
  } else if (platform == "fcm") {
    out->platform = Platform::Fcm;
  } else {
    return fail("\"platform\" must be \"apns\" or \"fcm\"", at + "/platform");
  }
  if (app.empty() || app.size() > kMaxAppBytes || !std::all_of(app.begin(), app.end(), is_app_char))
    return fail("\"app\" must be 1 to 255 of A-Z a-z 0-9 . _ : - (a bundle id or FCM app id)", at + "/app");
  out->app.assign(app);

  if (out->platform == Platform::Apns) {
    // APNs device tokens are 32 bytes, sent as 64 hex digits in the request path
    // (POST /3/device/<token>). Stored lower case so that one device is one token.
    if (token.size() != kApnsTokenBytes || !std::all_of(token.begin(), token.end(), is_hex))
      return fail("an APNs token must be 64 hexadecimal digits", at + "/token");
    out->token.assign(token);
    for (char& c : out->token) {
      if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
    }
  } else {
    if (token.size() < kFcmTokenMinBytes || token.size() > kFcmTokenMaxBytes ||
        !std::all_of(token.begin(), token.end(), is_fcm_char))
      return fail("an FCM token must be 100 to 4096 of A-Z a-z 0-9 _ : - (a registration token)",
                  at + "/token");
    out->token.assign(token);
  }
  return true;
}

bool Validator::topics(dom::element v, std::vector<std::string>* out) {
  dom::array arr;
  if (!array_field(v, "/topics", "\"topics\"", rules_.max_topics, &arr)) return false;
  size_t i = 0;
  for (dom::element e : arr) {
    const std::string at = "/topics/" + std::to_string(i++);
    std::string_view s;
    if (!string_field(e, at, "a topic", &s)) return false;
    // Exact match: topic names are bits of the index, so "met" is not "Met".
    auto it = std::find(rules_.topics.begin(), rules_.topics.end(), s);
    if (it == rules_.topics.end()) {
      std::string msg = "unknown topic " + quoted_name(s);
      if (std::optional<std::string> near = closest_topic(s, rules_.topics)) {
        msg += ": did you mean \"" + *near + "\"?";
      } else {
        msg += ": topics are the CAP categories and the tenant's own topics";
      }
      return fail(std::move(msg), at);
    }
    if (std::find(out->begin(), out->end(), s) == out->end()) out->emplace_back(s);
  }
  return true;
}

bool Validator::coordinate(dom::element v, const std::string& at, const char* what, double limit,
                           double* out) {
  double d = 0;
  if (v.get_double().get(d) != simdjson::SUCCESS)
    return fail(std::string("\"") + what + "\" must be a number", at);
  if (!std::isfinite(d) || d < -limit || d > limit) {
    return fail(std::string("\"") + what + "\" must be between -" +
                    (limit == 90 ? "90 and 90" : "180 and 180") + " (WGS 84 degrees)",
                at);
  }
  *out = d;
  return true;
}

bool Validator::location(dom::element v, const std::string& at, Location* out) {
  dom::object obj;
  if (v.get_object().get(obj) != simdjson::SUCCESS)
    return fail("a location must be an object {lat, lon, label}", at);
  bool has_lat = false, has_lon = false, has_label = false;
  for (dom::key_value_pair field : obj) {
    const std::string_view key = field.key;
    bool* seen = key == "lat" ? &has_lat : key == "lon" ? &has_lon : key == "label" ? &has_label : nullptr;
    if (seen == nullptr || *seen) return bad_key(key, at, seen != nullptr);
    *seen = true;
    if (key == "lat") {
      if (!coordinate(field.value, at + "/lat", "lat", 90, &out->lat)) return false;
    } else if (key == "lon") {
      if (!coordinate(field.value, at + "/lon", "lon", 180, &out->lon)) return false;
    } else if (!field.value.is_null()) {
      std::string_view label;
      if (!string_field(field.value, at + "/label", "\"label\"", &label)) return false;
      if (label.size() > kMaxLabelBytes) return fail("\"label\" is longer than 64 bytes", at + "/label");
      out->label.assign(label);
    }
  }
  if (!has_lat) return fail("\"lat\" is required", at + "/lat");
  if (!has_lon) return fail("\"lon\" is required", at + "/lon");
  return true;
}

bool Validator::locations(dom::element v, std::vector<Location>* out) {
  dom::array arr;
  if (!array_field(v, "/locations", "\"locations\"", rules_.max_locations, &arr)) return false;
  size_t i = 0;
  for (dom::element e : arr) {
    Location loc;
    if (!location(e, "/locations/" + std::to_string(i++), &loc)) return false;
    out->push_back(std::move(loc));
  }
  return true;
}

bool Validator::zones(dom::element v, std::vector<std::string>* out) {
  dom::array arr;
  if (!array_field(v, "/zones", "\"zones\"", rules_.max_zones, &arr)) return false;
  size_t i = 0;
  for (dom::element e : arr) {
    const std::string at = "/zones/" + std::to_string(i++);
    std::string_view s;
    if (!string_field(e, at, "a zone", &s)) return false;
    if (s.size() > kMaxNameBytes || rules_.zones.find(std::string(s)) == rules_.zones.end())
      return fail("unknown zone " + quoted_name(s) + ": create it first (PUT /v1/zones/{name})", at);
    if (std::find(out->begin(), out->end(), s) == out->end()) out->emplace_back(s);
  }
  return true;
}

// nlohmann's SAX parser, used only after simdjson has rejected a document, to say
// where: simdjson's DOM API reports what went wrong but not at which byte.
class ErrorLocator final : public nlohmann::json_sax<nlohmann::json> {
 public:
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return true; }
  bool key(string_t&) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  // nlohmann passes the number of bytes read, the failing one or the unexpected token
  // included (`last_token` is not that token alone, so it is not used).
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& ex) override {
    const std::string_view what = ex.what();
    position_ = position;
    if (what.find("unexpected end of input") != std::string_view::npos)
      kind_ = Kind::EndOfInput;
    else if (what.find("unexpected ") != std::string_view::npos)
      kind_ = Kind::UnexpectedToken;
    else
      kind_ = Kind::LexerError;
    return false;
  }

  // The 0-based offset to report: the start of an unexpected token, the byte that
  // broke lexing (a control character in a string, invalid UTF-8, a bad literal), or
  // just past the last byte when the input ends early.
  size_t offset(std::string_view json) const {
    if (!position_ || kind_ == Kind::EndOfInput) return json.size();
    const size_t end = std::min(*position_, json.size());  // exclusive
    if (end == 0) return 0;
    if (kind_ == Kind::LexerError) return end - 1;
    size_t i = end - 1;
    if (json[i] == '"') {  // a string token: back to its opening quote (not an escaped one)
      while (i > 0) {
        --i;
        if (json[i] != '"') continue;
        size_t backslashes = 0;
        while (i > backslashes && json[i - 1 - backslashes] == '\\') ++backslashes;
        if (backslashes % 2 == 0) return i;
      }
      return 0;
    }
    const auto in_literal = [](char c) {
      return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' ||
             c == '+' || c == '-';
    };
    while (i > 0 && in_literal(json[i]) && in_literal(json[i - 1])) --i;  // a number or true/false/null
    return i;
  }

 private:
  enum class Kind { EndOfInput, UnexpectedToken, LexerError };
  std::optional<size_t> position_;
  Kind kind_ = Kind::LexerError;
};

Error malformed(std::string_view json, simdjson::error_code code) {
  const char* what = "invalid JSON syntax";
  switch (code) {
    case simdjson::UTF8_ERROR:
      what = "the JSON text is not valid UTF-8";
      break;
    case simdjson::NUMBER_ERROR:
      what = "a number is malformed or out of range";
      break;
    case simdjson::STRING_ERROR:
    case simdjson::UNESCAPED_CHARS:
      what = "a string has a bad escape or an unescaped control character";
      break;
    case simdjson::UNCLOSED_STRING:
      what = "a string is not closed";
      break;
    case simdjson::DEPTH_ERROR:
      what = "the JSON is nested too deeply";
      break;
    case simdjson::EMPTY:
      what = "no JSON value: the document is empty";
      break;
    default:
      break;
  }
  ErrorLocator locator;
  nlohmann::json::sax_parse(json.begin(), json.end(), &locator, nlohmann::json::input_format_t::json,
                            /*strict=*/true);
  return make_error(ErrorKind::Invalid, "malformed_json", what, std::to_string(locator.offset(json)));
}

}  // namespace

Result<Recipient> parse_recipient(std::string_view json, const RecipientRules& rules,
                                  std::string_view id_from_path) {
  if (json.size() > kMaxDocumentBytes)
    return invalid("a recipient document must be at most " + std::to_string(kMaxDocumentBytes) + " bytes",
                   "");
  // One parser and one padded copy buffer per thread: both keep their capacity, so a
  // steady import allocates nothing here.
  thread_local dom::parser parser;
  thread_local std::unique_ptr<char[]> padded;
  thread_local size_t padded_capacity = 0;
  if (padded_capacity < json.size()) {
    padded_capacity = std::max<size_t>(json.size(), 4096);
    padded = std::make_unique<char[]>(padded_capacity + simdjson::SIMDJSON_PADDING);
  }
  if (!json.empty()) std::memcpy(padded.get(), json.data(), json.size());
  std::memset(padded.get() + json.size(), 0, simdjson::SIMDJSON_PADDING);

  dom::element root;
  if (const simdjson::error_code code = parser.parse(padded.get(), json.size(), false).get(root);
      code != simdjson::SUCCESS) {
    return malformed(json, code);
  }
  Recipient r;
  Validator v(rules);
  if (!v.document(root, id_from_path, &r)) return v.take_error();
  return r;
}

void parse_ndjson(std::string_view body, const RecipientRules& rules,
                  const std::function<void(size_t line, Result<Recipient>&&)>& fn) {
  // A UTF-8 byte order mark, as spreadsheet exports write, is not part of line 1.
  if (body.substr(0, 3) == "\xEF\xBB\xBF") body.remove_prefix(3);
  size_t line = 0;
  size_t pos = 0;
  while (pos < body.size()) {
    ++line;
    const size_t nl = body.find('\n', pos);
    const size_t end = nl == std::string_view::npos ? body.size() : nl;
    std::string_view text = body.substr(pos, end - pos);
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    const bool blank =
        std::all_of(text.begin(), text.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
    if (!blank) fn(line, parse_recipient(text, rules));
    pos = end + 1;
  }
}

nlohmann::json recipient_to_json(const Recipient& r) {
  nlohmann::json j = nlohmann::json::object();
  j["id"] = r.id;
  if (!r.phone.empty()) j["phone"] = r.phone;
  j["language"] = r.language;
  nlohmann::json push = nlohmann::json::array();
  for (const PushToken& t : r.push) {
    push.push_back(
        {{"platform", t.platform == Platform::Apns ? "apns" : "fcm"}, {"app", t.app}, {"token", t.token}});
  }
  j["push"] = std::move(push);
  j["topics"] = r.topics;
  nlohmann::json locations = nlohmann::json::array();
  for (const Location& l : r.locations)
    locations.push_back({{"lat", l.lat}, {"lon", l.lon}, {"label", l.label}});
  j["locations"] = std::move(locations);
  j["zones"] = r.zones;
  return j;
}

uint64_t topic_bits(const std::vector<std::string>& topics, const RecipientRules& rules) {
  uint64_t bits = 0;
  const size_t n = std::min<size_t>(rules.topics.size(), 64);
  for (const std::string& t : topics) {
    for (size_t i = 0; i < n; ++i) {
      if (rules.topics[i] == t) {
        bits |= uint64_t{1} << i;
        break;
      }
    }
  }
  return bits;
}

}  // namespace sirena::directory
