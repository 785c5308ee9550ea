#include "daemon/alerts/alert_json.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "daemon/alerts/validate.h"
#include "daemon/core/json_strict.h"

namespace sirena::alerts {
namespace {

using nlohmann::json;

// RFC 6901: "~" and "/" in a key are escaped as "~0" and "~1".
std::string pointer_token(std::string_view key) {
  std::string out;
  for (char c : key) {
    if (c == '~')
      out += "~0";
    else if (c == '/')
      out += "~1";
    else
      out += c;
  }
  return out;
}

// Reading state shared by every object of one document: the first error wins and
// stops further reading, and notes collect normalisations (e.g. "Z" dates).
struct Context {
  std::optional<Error> error;
  std::vector<std::string> notes;

  bool failed() const { return error.has_value(); }
  void fail(const char* code, std::string message, std::string where) {
    if (!error) error = make_error(ErrorKind::Invalid, code, std::move(message), std::move(where));
  }
};

// One JSON object of the alert form: typed getters that record which keys were
// read, so that finish() can reject the rest (a misspelt key in an emergency alert
// must not pass silently).
class Object {
 public:
  Object(const json& j, std::string at, Context* ctx) : j_(j), at_(std::move(at)), ctx_(ctx) {
    if (!j_.is_object()) ctx_->fail("invalid_field", "expected a JSON object", at_);
  }

  std::string at(std::string_view key) const { return at_ + "/" + pointer_token(key); }

  // The value at `key`, or nullptr when absent or null (reported if required) or of
  // the wrong type (reported).
  const json* get(const char* key, bool required, bool (json::*is_type)() const noexcept, const char* type) {
    if (ctx_->failed() || !j_.is_object()) return nullptr;
    used_.push_back(key);
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) {
      if (required) ctx_->fail("missing_field", std::string("\"") + key + "\" is required", at(key));
      return nullptr;
    }
    if (!((*it).*is_type)()) {
      ctx_->fail("invalid_field", std::string("\"") + key + "\" must be " + type, at(key));
      return nullptr;
    }
    return &*it;
  }

  std::string str(const char* key, bool required = false) {
    const json* v = get(key, required, &json::is_string, "a string");
    return v ? v->get<std::string>() : std::string();
  }

  std::optional<double> number(const char* key, bool required = false) {
    const json* v = get(key, required, &json::is_number, "a number");
    return v ? std::optional<double>(v->get<double>()) : std::nullopt;
  }

  std::optional<Timestamp> datetime(const char* key, bool required = false) {
    const json* v = get(key, required, &json::is_string, "a CAP dateTime string");
    if (!v) return std::nullopt;
    Result<Timestamp> ts = read_cap_datetime(v->get_ref<const std::string&>(), at(key), &ctx_->notes);
    if (!ts) {
      if (!ctx_->error) ctx_->error = std::move(ts).take_error();
      return std::nullopt;
    }
    return std::move(ts).value();
  }

  template <typename E>
  E enumerated(const char* key, std::optional<E> (*parse)(std::string_view), const char* values) {
    const std::string s = str(key, true);
    std::optional<E> v = parse(s);
    if (!v && !ctx_->failed()) {
      ctx_->fail("invalid_enum", "\"" + s.substr(0, 40) + "\" is not one of: " + values, at(key));
    }
    return v.value_or(E{});
  }

  // Calls read(element, pointer) for each element of the array at `key`.
  template <typename F>
  void each(const char* key, bool required, F&& read) {
    const json* v = get(key, required, &json::is_array, "an array");
    for (size_t i = 0; v && i < v->size() && !ctx_->failed(); ++i)
      read((*v)[i], at(key) + "/" + std::to_string(i));
  }

  std::vector<std::string> strings(const char* key, bool required = false) {
    std::vector<std::string> out;
    each(key, required, [&](const json& e, const std::string& where) {
      if (e.is_string())
        out.push_back(e.get<std::string>());
      else
        ctx_->fail("invalid_field", "expected a string", where);
    });
    return out;
  }

  void finish() {
    if (ctx_->failed() || !j_.is_object()) return;
    for (const auto& [key, value] : j_.items()) {
      bool known = false;
      for (const char* u : used_) known = known || key == u;
      if (!known) {
        ctx_->fail("unknown_field", "unknown key \"" + key.substr(0, 40) + "\" (see docs/alert-json.md)",
                   at(key));
        return;
      }
    }
  }

 private:
  const json& j_;
  std::string at_;
  Context* ctx_;
  std::vector<const char*> used_;
};

NameValue read_name_value(const json& j, const std::string& at, Context* ctx) {
  Object o(j, at, ctx);
  NameValue nv{o.str("name", true), o.str("value", true)};
  o.finish();
  return nv;
}

std::vector<NameValue> name_values(Object& o, const char* key, Context* ctx) {
  std::vector<NameValue> out;
  o.each(key, false,
         [&](const json& e, const std::string& at) { out.push_back(read_name_value(e, at, ctx)); });
  return out;
}

Polygon read_polygon(const json& j, const std::string& at, Context* ctx) {
  Polygon p;
  if (!j.is_array()) {
    ctx->fail("invalid_field", "a polygon is an array of [lat, lon] points", at);
    return p;
  }
  for (size_t i = 0; i < j.size(); ++i) {
    const json& pt = j[i];
    if (!pt.is_array() || pt.size() != 2 || !pt[0].is_number() || !pt[1].is_number()) {
      ctx->fail("invalid_field", "a point is [lat, lon], two numbers", at + "/" + std::to_string(i));
      return p;
    }
    p.points.push_back(Point{pt[0].get<double>(), pt[1].get<double>()});
  }
  return p;
}

Area read_area(const json& j, const std::string& at, Context* ctx) {
  Object o(j, at, ctx);
  Area a;
  a.desc = o.str("desc", true);
  o.each("polygons", false,
         [&](const json& e, const std::string& p) { a.polygons.push_back(read_polygon(e, p, ctx)); });
  o.each("circles", false, [&](const json& e, const std::string& p) {
    Object c(e, p, ctx);
    Circle circle;
    circle.center.lat = c.number("lat", true).value_or(0);
    circle.center.lon = c.number("lon", true).value_or(0);
    circle.radius_km = c.number("radius_km", true).value_or(0);
    c.finish();
    a.circles.push_back(circle);
  });
  a.geocodes = name_values(o, "geocodes", ctx);
  a.altitude = o.number("altitude");
  a.ceiling = o.number("ceiling");
  o.finish();
  return a;
}

Resource read_resource(const json& j, const std::string& at, Context* ctx) {
  Object o(j, at, ctx);
  Resource r;
  r.desc = o.str("desc", true);
  r.mime_type = o.str("mime_type", true);
  if (const json* size = o.get("size", false, &json::is_number_integer, "an integer number of bytes")) {
    if (size->is_number_unsigned() && size->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      ctx->fail("invalid_field", "size is too large", o.at("size"));
    } else {
      r.size = size->get<int64_t>();
    }
  }
  r.uri = o.str("uri");
  r.digest = o.str("digest");
  o.finish();
  return r;
}

Info read_info(const json& j, const std::string& at, Context* ctx) {
  Object o(j, at, ctx);
  Info info;
  if (std::string language = o.str("language"); !language.empty()) info.language = std::move(language);
  info.categories = o.strings("categories", true);
  info.event = o.str("event", true);
  info.response_types = o.strings("response_types");
  info.urgency = o.str("urgency", true);
  info.severity = o.str("severity", true);
  info.certainty = o.str("certainty", true);
  info.audience = o.str("audience");
  info.event_codes = name_values(o, "event_codes", ctx);
  info.effective = o.datetime("effective");
  info.onset = o.datetime("onset");
  info.expires = o.datetime("expires");
  info.sender_name = o.str("sender_name");
  info.headline = o.str("headline");
  info.description = o.str("description");
  info.instruction = o.str("instruction");
  info.web = o.str("web");
  info.contact = o.str("contact");
  info.parameters = name_values(o, "parameters", ctx);
  o.each("resources", false,
         [&](const json& e, const std::string& p) { info.resources.push_back(read_resource(e, p, ctx)); });
  o.each("areas", false,
         [&](const json& e, const std::string& p) { info.areas.push_back(read_area(e, p, ctx)); });
  o.finish();
  return info;
}

Alert read_alert(const json& j, Context* ctx) {
  Object o(j, "", ctx);
  Alert a;
  a.identifier = o.str("identifier", true);
  a.sender = o.str("sender", true);
  a.sent = o.datetime("sent", true).value_or(Timestamp{});
  a.status = o.enumerated("status", parse_status, "Actual, Exercise, System, Test, Draft");
  a.msg_type = o.enumerated("msg_type", parse_msg_type, "Alert, Update, Cancel, Ack, Error");
  a.scope = o.enumerated("scope", parse_scope, "Public, Restricted, Private");
  a.source = o.str("source");
  a.restriction = o.str("restriction");
  a.addresses = o.str("addresses");
  a.codes = o.strings("codes");
  a.note = o.str("note");
  o.each("references", false, [&](const json& e, const std::string& p) {
    Object r(e, p, ctx);
    a.references.push_back(Reference{r.str("sender", true), r.str("identifier", true), r.str("sent", true)});
    r.finish();
  });
  a.incidents = o.str("incidents");
  o.each("infos", false,
         [&](const json& e, const std::string& p) { a.infos.push_back(read_info(e, p, ctx)); });
  // Written by alert_to_json; accepted so that stored alerts round-trip.
  if (std::string version = o.str("cap_version"); !version.empty()) {
    if (version != "1.2" && version != "1.1")
      ctx->fail("invalid_field", "cap_version is \"1.2\" or \"1.1\"", "/cap_version");
    a.cap_version = std::move(version);
  }
  a.normalisations = o.strings("normalisations");
  o.finish();
  for (std::string& note : ctx->notes) {  // a stored alert already carries its notes
    if (std::find(a.normalisations.begin(), a.normalisations.end(), note) == a.normalisations.end()) {
      a.normalisations.push_back(std::move(note));
    }
  }
  return a;
}

Result<Alert> from_json(const json& j, const ParseLimits* limits) {
  Context ctx;
  Alert alert = read_alert(j, &ctx);
  if (ctx.error) return std::move(*ctx.error);
  if (limits) {
    if (sirena::Status s = check_limits(alert, *limits); !s) return std::move(s).take_error();
  }
  if (sirena::Status s = validate_semantics(alert); !s) return std::move(s).take_error();
  return alert;
}

void put_if(json& j, const char* key, const std::string& v) {
  if (!v.empty()) j[key] = v;
}

json name_values_json(const std::vector<NameValue>& nvs) {
  json out = json::array();
  for (const NameValue& nv : nvs) out.push_back({{"name", nv.name}, {"value", nv.value}});
  return out;
}

void put_array_if(json& j, const char* key, json array) {
  if (!array.empty()) j[key] = std::move(array);
}

json area_json(const Area& area) {
  json j = {{"desc", area.desc}};
  json polygons = json::array();
  for (const Polygon& p : area.polygons) {
    json points = json::array();
    for (const Point& pt : p.points) points.push_back({pt.lat, pt.lon});
    polygons.push_back(std::move(points));
  }
  put_array_if(j, "polygons", std::move(polygons));
  json circles = json::array();
  for (const Circle& c : area.circles) {
    circles.push_back({{"lat", c.center.lat}, {"lon", c.center.lon}, {"radius_km", c.radius_km}});
  }
  put_array_if(j, "circles", std::move(circles));
  put_array_if(j, "geocodes", name_values_json(area.geocodes));
  if (area.altitude) j["altitude"] = *area.altitude;
  if (area.ceiling) j["ceiling"] = *area.ceiling;
  return j;
}

json info_json(const Info& info) {
  json j = {{"language", info.language}, {"categories", info.categories}, {"event", info.event},
            {"urgency", info.urgency},   {"severity", info.severity},     {"certainty", info.certainty}};
  put_array_if(j, "response_types", json(info.response_types));
  put_if(j, "audience", info.audience);
  put_array_if(j, "event_codes", name_values_json(info.event_codes));
  if (info.effective) j["effective"] = info.effective->text;
  if (info.onset) j["onset"] = info.onset->text;
  if (info.expires) j["expires"] = info.expires->text;
  put_if(j, "sender_name", info.sender_name);
  put_if(j, "headline", info.headline);
  put_if(j, "description", info.description);
  put_if(j, "instruction", info.instruction);
  put_if(j, "web", info.web);
  put_if(j, "contact", info.contact);
  put_array_if(j, "parameters", name_values_json(info.parameters));
  json resources = json::array();
  for (const Resource& r : info.resources) {
    json rj = {{"desc", r.desc}, {"mime_type", r.mime_type}};
    if (r.size) rj["size"] = *r.size;
    put_if(rj, "uri", r.uri);
    put_if(rj, "digest", r.digest);
    resources.push_back(std::move(rj));
  }
  put_array_if(j, "resources", std::move(resources));
  json areas = json::array();
  for (const Area& a : info.areas) areas.push_back(area_json(a));
  put_array_if(j, "areas", std::move(areas));
  return j;
}

Result<Alert> parse_alert_json_unguarded(std::string_view bytes, const ParseLimits& limits) {
  if (sirena::Status s = check_body(bytes, limits, true); !s) return std::move(s).take_error();
  // Duplicate keys, numbers out of range and depth are refused before the document
  // is built (see parse_json_strict).
  json j;
  if (sirena::Status s = parse_json_strict(bytes, limits.max_depth, &j); !s) return std::move(s).take_error();
  return from_json(j, &limits);
}

}  // namespace

Result<Alert> parse_alert_json(std::string_view bytes, const ParseLimits& limits) {
  try {
    return parse_alert_json_unguarded(bytes, limits);
  } catch (const std::exception& e) {  // std::bad_alloc; json accessors are type-checked first
    return make_error(ErrorKind::Internal, "internal", std::string("JSON intake failed: ") + e.what(), "");
  }
}

Result<Alert> alert_from_json(const json& j) {
  try {
    return from_json(j, nullptr);
  } catch (const std::exception& e) {
    return make_error(ErrorKind::Internal, "internal",
                      std::string("reading a JSON alert failed: ") + e.what(), "");
  }
}

json alert_to_json(const Alert& a) {
  json j = {{"identifier", a.identifier},
            {"sender", a.sender},
            {"sent", a.sent.text},
            {"status", to_string(a.status)},
            {"msg_type", to_string(a.msg_type)},
            {"scope", to_string(a.scope)}};
  put_if(j, "source", a.source);
  put_if(j, "restriction", a.restriction);
  put_if(j, "addresses", a.addresses);
  put_array_if(j, "codes", json(a.codes));
  put_if(j, "note", a.note);
  json refs = json::array();
  for (const Reference& r : a.references) {
    refs.push_back({{"sender", r.sender}, {"identifier", r.identifier}, {"sent", r.sent}});
  }
  put_array_if(j, "references", std::move(refs));
  put_if(j, "incidents", a.incidents);
  json infos = json::array();
  for (const Info& info : a.infos) infos.push_back(info_json(info));
  put_array_if(j, "infos", std::move(infos));
  j["cap_version"] = a.cap_version;
  j["normalisations"] = a.normalisations;
  return j;
}

}  // namespace sirena::alerts
