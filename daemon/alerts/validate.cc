#include "daemon/alerts/validate.h"

#include <array>
#include <cmath>
#include <cstdio>
#include <string>

#include "daemon/alerts/utf8.h"

namespace sirena::alerts {
namespace {

constexpr std::array<std::string_view, 12> kCategories = {"Geo",       "Met",   "Safety", "Security",
                                                          "Rescue",    "Fire",  "Health", "Env",
                                                          "Transport", "Infra", "CBRNE",  "Other"};
constexpr std::array<std::string_view, 9> kResponseTypes = {
    "Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor", "Assess", "AllClear", "None"};
constexpr std::array<std::string_view, 5> kUrgency = {"Immediate", "Expected", "Future", "Past", "Unknown"};
constexpr std::array<std::string_view, 5> kSeverity = {"Extreme", "Severe", "Moderate", "Minor", "Unknown"};
constexpr std::array<std::string_view, 5> kCertainty = {"Observed", "Likely", "Possible", "Unlikely",
                                                        "Unknown"};

template <size_t N>
bool one_of(const std::array<std::string_view, N>& set, std::string_view v) {
  for (std::string_view s : set) {
    if (s == v) return true;
  }
  return false;
}

template <size_t N>
std::string list(const std::array<std::string_view, N>& set) {
  std::string out;
  for (std::string_view s : set) {
    if (!out.empty()) out += ", ";
    out += s;
  }
  return out;
}

Error unprocessable(std::string code, std::string message, std::string where) {
  return make_error(ErrorKind::Invalid, std::move(code), std::move(message), std::move(where));
}

template <size_t N>
sirena::Status check_enum(const std::array<std::string_view, N>& set, std::string_view value,
                          const char* field, const std::string& where) {
  if (one_of(set, value)) return Ok{};
  return unprocessable("invalid_enum",
                       std::string(field) + " \"" + std::string(value) + "\" is not one of: " + list(set),
                       where);
}

// §3.2.1: identifier and sender "MUST NOT include spaces, commas or restricted
// characters (< and &)"; references depend on it.
bool is_cap_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c == ' ' || c == ',' || c == '<' || c == '&' || c == '\t' || c == '\n' || c == '\r') return false;
  }
  return true;
}

bool lat_ok(double v) {
  return v >= -90.0 && v <= 90.0;
}  // also false for NaN
bool lon_ok(double v) {
  return v >= -180.0 && v <= 180.0;
}

}  // namespace

// The triangles from the first point to each edge, their areas unsigned and summed:
// unlike the shoelace sum, a bow tie does not cancel out, and the sum is 0 exactly
// when every point lies on one line through the first (repeated points included).
double ring_area_deg2(const std::vector<Point>& ring) {
  if (ring.size() < 3) return 0;
  const Point& o = ring.front();
  double twice = 0;
  for (size_t i = 1; i + 1 < ring.size(); ++i) {
    const double x1 = ring[i].lon - o.lon, y1 = ring[i].lat - o.lat;
    const double x2 = ring[i + 1].lon - o.lon, y2 = ring[i + 1].lat - o.lat;
    twice += std::fabs(x1 * y2 - x2 * y1);
  }
  return twice / 2;
}

namespace {

sirena::Status check_polygon(const Polygon& p, const std::string& where) {
  // §3.2.4 polygon: "a minimum of four coordinate pairs", "the first and last pairs
  // of coordinates MUST be the same".
  if (p.points.size() < 4) {
    return unprocessable(
        "invalid_polygon",
        "a polygon needs at least 4 lat,lon points (a closed ring), got " + std::to_string(p.points.size()),
        where);
  }
  for (size_t i = 0; i < p.points.size(); ++i) {
    if (!lat_ok(p.points[i].lat) || !lon_ok(p.points[i].lon)) {
      return unprocessable("invalid_polygon",
                           "point " + std::to_string(i) +
                               " is out of range: latitude must be in [-90, 90] and longitude in [-180, 180] "
                               "(points are lat,lon, latitude first)",
                           where);
    }
  }
  const Point& a = p.points.front();
  const Point& b = p.points.back();
  if (a.lat != b.lat || a.lon != b.lon) {
    return unprocessable("invalid_polygon", "the polygon is not closed: repeat the first point as the last",
                         where);
  }
  if (ring_area_deg2(p.points) < kMinRingAreaDeg2) {
    return unprocessable("invalid_polygon",
                         "the polygon encloses no area: its points are repeated or on one line", where);
  }
  return Ok{};
}

sirena::Status check_circle(const Circle& c, const std::string& where) {
  if (!lat_ok(c.center.lat) || !lon_ok(c.center.lon)) {
    return unprocessable(
        "invalid_circle",
        "circle centre out of range: latitude must be in [-90, 90], longitude in [-180, 180]", where);
  }
  if (!(c.radius_km >= 0.0) || !std::isfinite(c.radius_km)) {
    return unprocessable("invalid_circle", "circle radius must be a finite number of km >= 0", where);
  }
  if (c.radius_km > kMaxCircleRadiusKm) {
    return unprocessable("invalid_circle",
                         "circle radius " + std::to_string(c.radius_km) + " km is over the limit of " +
                             std::to_string(static_cast<int>(kMaxCircleRadiusKm)) +
                             " km: describe a larger area with polygons",
                         where);
  }
  return Ok{};
}

sirena::Status check_area(const Area& area, const std::string& where) {
  for (size_t i = 0; i < area.polygons.size(); ++i) {
    if (sirena::Status s = check_polygon(area.polygons[i], where + "/polygons/" + std::to_string(i)); !s)
      return s;
  }
  for (size_t i = 0; i < area.circles.size(); ++i) {
    if (sirena::Status s = check_circle(area.circles[i], where + "/circles/" + std::to_string(i)); !s)
      return s;
  }
  // §3.2.4: ceiling "MUST NOT be used except in combination with the altitude element".
  if (area.ceiling && !area.altitude) {
    return unprocessable("invalid_altitude", "ceiling is given without altitude", where + "/ceiling");
  }
  if (area.ceiling && *area.ceiling < *area.altitude) {
    return unprocessable("invalid_altitude", "ceiling is below altitude", where + "/ceiling");
  }
  return Ok{};
}

sirena::Status check_info(const Info& info, const Alert& alert, const std::string& where) {
  if (info.language.empty()) {
    return unprocessable("invalid_field", "language must not be empty (omit it for en-US)",
                         where + "/language");
  }
  if (info.categories.empty()) {
    return unprocessable("invalid_field", "at least one category is required", where + "/categories");
  }
  for (size_t i = 0; i < info.categories.size(); ++i) {
    if (sirena::Status s = check_enum(kCategories, info.categories[i], "category",
                                      where + "/categories/" + std::to_string(i));
        !s)
      return s;
  }
  for (size_t i = 0; i < info.response_types.size(); ++i) {
    if (sirena::Status s = check_enum(kResponseTypes, info.response_types[i], "response_type",
                                      where + "/response_types/" + std::to_string(i));
        !s)
      return s;
  }
  if (sirena::Status s = check_enum(kUrgency, info.urgency, "urgency", where + "/urgency"); !s) return s;
  if (sirena::Status s = check_enum(kSeverity, info.severity, "severity", where + "/severity"); !s) return s;
  if (sirena::Status s = check_enum(kCertainty, info.certainty, "certainty", where + "/certainty"); !s)
    return s;
  if (info.expires && info.expires->unix_ms <= alert.sent.unix_ms) {
    return unprocessable(
        "expires_before_sent",
        "expires (" + info.expires->text + ") must be later than the alert's sent (" + alert.sent.text + ")",
        where + "/expires");
  }
  for (size_t i = 0; i < info.resources.size(); ++i) {
    if (info.resources[i].size && *info.resources[i].size < 0) {
      return unprocessable("invalid_field", "a resource's size is a number of bytes, 0 or more",
                           where + "/resources/" + std::to_string(i) + "/size");
    }
  }
  for (size_t i = 0; i < info.areas.size(); ++i) {
    if (sirena::Status s = check_area(info.areas[i], where + "/areas/" + std::to_string(i)); !s) return s;
  }
  return Ok{};
}

// Every text field of the alert, with its JSON pointer, must be XML 1.0 text (see
// find_non_xml_char): the JSON form carries what XML cannot, and an alert holding it
// could not be written into its own Cancel. Applies to both intake paths.
class TextCheck {
 public:
  void field(const std::string& value, const std::string& where) {
    if (error_) return;
    const std::optional<size_t> bad = find_non_xml_char(value);
    if (!bad) return;
    error_ = unprocessable("invalid_character",
                           "the text holds " + describe(value, *bad) + " at byte " + std::to_string(*bad) +
                               ", a character XML 1.0 does not allow (control characters other than tab, "
                               "LF and CR, U+FFFE, U+FFFF, unpaired surrogates): remove it",
                           where);
  }
  void fields(const std::vector<std::string>& values, const std::string& where) {
    for (size_t i = 0; i < values.size(); ++i) field(values[i], where + "/" + std::to_string(i));
  }
  void name_values(const std::vector<NameValue>& nvs, const std::string& where) {
    for (size_t i = 0; i < nvs.size(); ++i) {
      field(nvs[i].name, where + "/" + std::to_string(i) + "/name");
      field(nvs[i].value, where + "/" + std::to_string(i) + "/value");
    }
  }
  std::optional<Error> take() { return std::move(error_); }

 private:
  static std::string describe(const std::string& s, size_t at) {
    const auto c = static_cast<unsigned char>(s[at]);
    char buf[16];
    if (c < 0x80) {
      std::snprintf(buf, sizeof buf, "U+%04X", c);
    } else if (c == 0xEF && at + 2 < s.size()) {
      std::snprintf(buf, sizeof buf, "U+FFF%c", s[at + 2] == '\xBE' ? 'E' : 'F');
    } else {
      return "a byte that is not UTF-8";
    }
    return buf;
  }
  std::optional<Error> error_;
};

std::optional<Error> check_text(const Alert& a) {
  TextCheck t;
  t.field(a.identifier, "/identifier");
  t.field(a.sender, "/sender");
  t.field(a.sent.text, "/sent");
  t.field(a.source, "/source");
  t.field(a.restriction, "/restriction");
  t.field(a.addresses, "/addresses");
  t.fields(a.codes, "/codes");
  t.field(a.note, "/note");
  for (size_t i = 0; i < a.references.size(); ++i) {
    const std::string at = "/references/" + std::to_string(i);
    t.field(a.references[i].sender, at + "/sender");
    t.field(a.references[i].identifier, at + "/identifier");
    t.field(a.references[i].sent, at + "/sent");
  }
  t.field(a.incidents, "/incidents");
  for (size_t i = 0; i < a.infos.size(); ++i) {
    const Info& info = a.infos[i];
    const std::string at = "/infos/" + std::to_string(i);
    t.field(info.language, at + "/language");
    t.fields(info.categories, at + "/categories");
    t.field(info.event, at + "/event");
    t.fields(info.response_types, at + "/response_types");
    t.field(info.urgency, at + "/urgency");
    t.field(info.severity, at + "/severity");
    t.field(info.certainty, at + "/certainty");
    t.field(info.audience, at + "/audience");
    t.name_values(info.event_codes, at + "/event_codes");
    if (info.effective) t.field(info.effective->text, at + "/effective");
    if (info.onset) t.field(info.onset->text, at + "/onset");
    if (info.expires) t.field(info.expires->text, at + "/expires");
    t.field(info.sender_name, at + "/sender_name");
    t.field(info.headline, at + "/headline");
    t.field(info.description, at + "/description");
    t.field(info.instruction, at + "/instruction");
    t.field(info.web, at + "/web");
    t.field(info.contact, at + "/contact");
    t.name_values(info.parameters, at + "/parameters");
    for (size_t r = 0; r < info.resources.size(); ++r) {
      const Resource& res = info.resources[r];
      const std::string rat = at + "/resources/" + std::to_string(r);
      t.field(res.desc, rat + "/desc");
      t.field(res.mime_type, rat + "/mime_type");
      t.field(res.uri, rat + "/uri");
      t.field(res.digest, rat + "/digest");
    }
    for (size_t r = 0; r < info.areas.size(); ++r) {
      const std::string aat = at + "/areas/" + std::to_string(r);
      t.field(info.areas[r].desc, aat + "/desc");
      t.name_values(info.areas[r].geocodes, aat + "/geocodes");
    }
  }
  return t.take();
}

sirena::Status check_references(const Alert& alert) {
  for (size_t i = 0; i < alert.references.size(); ++i) {
    const Reference& r = alert.references[i];
    const std::string where = "/references/" + std::to_string(i);
    if (!is_cap_token(r.sender) || !is_cap_token(r.identifier) || !parse_cap_datetime(r.sent)) {
      return unprocessable("invalid_references",
                           "each reference is \"sender,identifier,sent\": sender and identifier without "
                           "spaces or commas, sent a CAP dateTime like 2024-05-16T14:00:00+02:00",
                           where);
    }
  }
  // CAP says Update and Cancel SHOULD reference what they replace; we require it,
  // because without it the dispatcher cannot stop or replace the earlier alert.
  if ((alert.msg_type == MsgType::Update || alert.msg_type == MsgType::Cancel) && alert.references.empty()) {
    return unprocessable("missing_references",
                         std::string("an ") + to_string(alert.msg_type) +
                             " must reference the alert(s) it replaces: add references "
                             "\"sender,identifier,sent\"",
                         "/references");
  }
  return Ok{};
}

int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {  // Howard Hinnant's algorithm
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

bool digits(std::string_view s, size_t pos, size_t n, int* out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

}  // namespace

std::optional<Timestamp> parse_cap_datetime(std::string_view t, bool* used_z) {
  int y, mo, d, h, mi, se;
  if (!digits(t, 0, 4, &y) || t.size() < 19 || t[4] != '-' || !digits(t, 5, 2, &mo) || t[7] != '-' ||
      !digits(t, 8, 2, &d) || t[10] != 'T' || !digits(t, 11, 2, &h) || t[13] != ':' ||
      !digits(t, 14, 2, &mi) || t[16] != ':' || !digits(t, 17, 2, &se)) {
    return std::nullopt;
  }
  size_t pos = 19;
  int ms = 0;
  if (pos < t.size() && t[pos] == '.') {
    size_t start = ++pos;
    int scale = 100;
    while (pos < t.size() && t[pos] >= '0' && t[pos] <= '9') {
      ms += (t[pos] - '0') * scale;
      scale /= 10;
      ++pos;
    }
    if (pos == start) return std::nullopt;
  }
  int offset_min = 0;
  bool z = false;
  if (pos + 1 == t.size() && t[pos] == 'Z') {
    z = true;
  } else {
    int oh, om;
    if (pos + 6 != t.size() || (t[pos] != '+' && t[pos] != '-') || !digits(t, pos + 1, 2, &oh) ||
        t[pos + 3] != ':' || !digits(t, pos + 4, 2, &om) || oh > 14 || om > 59) {
      return std::nullopt;
    }
    offset_min = (oh * 60 + om) * (t[pos] == '-' ? -1 : 1);
  }
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > kDays[mo - 1] + (mo == 2 && leap ? 1 : 0) || h > 23 ||
      mi > 59 || se > 59) {
    return std::nullopt;
  }
  if (used_z) *used_z = z;
  const int64_t secs = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d)) * 86400 +
                       h * 3600 + mi * 60 + se - static_cast<int64_t>(offset_min) * 60;
  return Timestamp{std::string(t), secs * 1000 + ms};
}

Result<Timestamp> read_cap_datetime(std::string_view text, const std::string& where,
                                    std::vector<std::string>* notes) {
  bool used_z = false;
  std::optional<Timestamp> ts = parse_cap_datetime(text, &used_z);
  if (!ts) {
    return unprocessable("invalid_datetime",
                         "\"" + std::string(text.substr(0, 64)) +
                             "\" is not a CAP dateTime: write YYYY-MM-DDThh:mm:ss+hh:mm, e.g. "
                             "2024-05-16T14:00:00+02:00",
                         where);
  }
  if (used_z && notes)
    notes->push_back(where + ": read time zone \"Z\" as +00:00 (CAP 1.2 §3.3.2 wants -00:00)");
  return *std::move(ts);
}

Result<std::vector<Reference>> read_references(std::string_view text, const std::string& where) {
  std::vector<Reference> out;
  size_t i = 0;
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (i < text.size()) {
    while (i < text.size() && is_space(text[i])) ++i;
    size_t start = i;
    while (i < text.size() && !is_space(text[i])) ++i;
    if (start == i) break;
    std::string_view token = text.substr(start, i - start);
    const size_t c1 = token.find(',');
    const size_t c2 = c1 == std::string_view::npos ? c1 : token.find(',', c1 + 1);
    if (c2 == std::string_view::npos || token.find(',', c2 + 1) != std::string_view::npos) {
      return unprocessable("invalid_references",
                           "reference " + std::to_string(out.size()) + " (\"" +
                               std::string(token.substr(0, 80)) +
                               "\") is not a \"sender,identifier,sent\" triple; separate triples with spaces",
                           where + "/" + std::to_string(out.size()));
    }
    out.push_back(Reference{std::string(token.substr(0, c1)), std::string(token.substr(c1 + 1, c2 - c1 - 1)),
                            std::string(token.substr(c2 + 1))});
  }
  return out;
}

sirena::Status validate_semantics(const Alert& alert) {
  if (std::optional<Error> e = check_text(alert)) return std::move(*e);
  if (!is_cap_token(alert.identifier)) {
    return unprocessable("invalid_field",
                         "identifier must be non-empty, without spaces, commas, '<' or '&' (CAP 1.2 §3.2.1)",
                         "/identifier");
  }
  if (!is_cap_token(alert.sender)) {
    return unprocessable("invalid_field",
                         "sender must be non-empty, without spaces, commas, '<' or '&' (CAP 1.2 §3.2.1)",
                         "/sender");
  }
  // §3.2.1 scope: Restricted needs <restriction>, Private needs <addresses>.
  if (alert.scope == Scope::Restricted && alert.restriction.empty()) {
    return unprocessable("missing_restriction", "scope Restricted needs a restriction saying who may see it",
                         "/restriction");
  }
  if (alert.scope == Scope::Private && alert.addresses.empty()) {
    return unprocessable("missing_addresses", "scope Private needs addresses listing the recipients",
                         "/addresses");
  }
  if (sirena::Status s = check_references(alert); !s) return s;
  for (size_t i = 0; i < alert.infos.size(); ++i) {
    if (sirena::Status s = check_info(alert.infos[i], alert, "/infos/" + std::to_string(i)); !s) return s;
  }
  return Ok{};
}

sirena::Status check_body(std::string_view bytes, const ParseLimits& limits, bool utf8) {
  if (bytes.size() > limits.max_bytes) {
    return make_error(ErrorKind::TooLarge, "body_too_large",
                      "the body is " + std::to_string(bytes.size()) + " bytes; the limit is " +
                          std::to_string(limits.max_bytes),
                      "");
  }
  if (std::optional<size_t> bad = utf8 ? find_invalid_utf8(bytes) : std::nullopt) {
    return make_error(ErrorKind::BadRequest, "invalid_utf8",
                      "the body is not valid UTF-8 at byte " + std::to_string(*bad) +
                          "; send UTF-8 (XML may declare another encoding in <?xml ... encoding=\"...\"?>)",
                      "byte " + std::to_string(*bad));
  }
  return Ok{};
}

sirena::Status check_limits(const Alert& alert, const ParseLimits& limits) {
  // Identifiers and senders are repeated in every reference to the alert (its Cancel,
  // its Updates) and in logs; real ones are tens of bytes.
  for (const auto& [value, where] :
       {std::pair{&alert.identifier, "/identifier"}, std::pair{&alert.sender, "/sender"}}) {
    if (value->size() > limits.max_token_bytes) {
      return unprocessable("too_long",
                           std::string(where + 1) + " is " + std::to_string(value->size()) +
                               " bytes; at most " + std::to_string(limits.max_token_bytes) + " are accepted",
                           where);
    }
  }
  if (alert.references.size() > limits.max_references) {
    return unprocessable("too_many_references",
                         "the alert references " + std::to_string(alert.references.size()) +
                             " alerts; at most " + std::to_string(limits.max_references) +
                             " are accepted: send several Updates or Cancels",
                         "/references");
  }
  if (alert.infos.size() > limits.max_infos) {
    return unprocessable("too_many_infos",
                         "the alert has " + std::to_string(alert.infos.size()) + " info blocks; at most " +
                             std::to_string(limits.max_infos) + " are accepted",
                         "/infos");
  }
  size_t points = 0;
  for (size_t i = 0; i < alert.infos.size(); ++i) {
    const Info& info = alert.infos[i];
    if (info.areas.size() > limits.max_areas) {
      return unprocessable("too_many_areas",
                           "info " + std::to_string(i) + " has " + std::to_string(info.areas.size()) +
                               " areas; at most " + std::to_string(limits.max_areas) + " are accepted",
                           "/infos/" + std::to_string(i) + "/areas");
    }
    for (const Area& area : info.areas) {
      for (const Polygon& p : area.polygons) points += p.points.size();
    }
  }
  if (points > limits.max_polygon_points) {
    return unprocessable("too_many_points",
                         "the polygons hold " + std::to_string(points) + " points in all; at most " +
                             std::to_string(limits.max_polygon_points) + " are accepted: simplify them",
                         "/infos");
  }
  return Ok{};
}

}  // namespace sirena::alerts
