#include "daemon/api/alerts_api.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "daemon/alerts/alert_json.h"
#include "daemon/alerts/cap_parser.h"
#include "daemon/alerts/cap_writer.h"
#include "daemon/alerts/lifecycle.h"
#include "daemon/alerts/parse_async.h"
#include "daemon/api/common.h"
#include "daemon/core/ids.h"
#include "daemon/core/log.h"
#include "daemon/dispatch/render.h"
#include "daemon/dispatch/sms_text.h"
#include "daemon/metrics/metrics.h"

namespace sirena::api {
namespace {

// The dispatcher's read models as the API shows them (docs/api.md).
nlohmann::json to_json(const Result<dispatch::Progress>& p) {
  nlohmann::json out = nlohmann::json::object();
  if (!p) return out;
  for (const auto& [ch, c] : *p)
    out[ch] = {{"planned", c.planned}, {"accepted", c.accepted}, {"delivered", c.delivered},
               {"failed", c.failed},   {"expired", c.expired},   {"cancelled", c.cancelled},
               {"skipped", c.skipped}, {"pending", c.pending}};
  return out;
}

nlohmann::json to_json(const dispatch::DeliveryPage& page) {
  nlohmann::json items = nlohmann::json::array();
  for (const auto& d : page.items) {
    nlohmann::json item = {{"tenant", d.tenant},
                           {"channel", d.channel},
                           {"state", d.state},
                           {"attempts", d.attempts},
                           {"error", d.error}};
    if (d.recipient) item["recipient"] = *d.recipient;
    items.push_back(std::move(item));
  }
  return {{"items", std::move(items)}, {"next", page.next ? nlohmann::json(*page.next) : nlohmann::json()}};
}

enum class BodyKind { CapXml, Json, Unsupported };

BodyKind classify(std::optional<std::string_view> content_type) {
  if (!content_type) return BodyKind::Unsupported;
  std::string_view ct = *content_type;
  ct = ct.substr(0, ct.find(';'));
  while (!ct.empty() && ct.back() == ' ') ct.remove_suffix(1);
  std::string lower(ct);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower == "application/cap+xml" || lower == "application/xml" || lower == "text/xml")
    return BodyKind::CapXml;
  if (lower == "application/json") return BodyKind::Json;
  return BodyKind::Unsupported;
}

bool is_drill(const std::string& status) {
  return status == "Test" || status == "Exercise";
}

nlohmann::json summary_json(const alerts::StoredAlert& s, int64_t now_ms) {
  std::string state = s.state;
  // Expiry is reported as it happens; dispatch (a later issue) also acts on it.
  if (state == alerts::state::kAccepted && s.expires_ms && *s.expires_ms <= now_ms)
    state = alerts::state::kExpired;
  nlohmann::json j = {{"id", s.id},
                      {"tenant", s.tenant},
                      {"state", state},
                      {"status", s.status},
                      {"msg_type", s.msg_type},
                      {"test", is_drill(s.status)},
                      {"sender", s.sender},
                      {"identifier", s.identifier},
                      {"sent", s.sent},
                      {"received_at", alerts::cap_datetime(s.received_ms)},
                      {"submitted_by", s.submitted_by}};
  if (s.expires_ms) j["expires_at"] = alerts::cap_datetime(*s.expires_ms);
  j["recipients"] = s.recipients;
  if (!s.approved_by.empty()) j["approved_by"] = s.approved_by;
  if (!s.superseded_by.empty()) j["superseded_by"] = s.superseded_by;
  if (!s.cancelled_by.empty()) j["cancelled_by"] = s.cancelled_by;
  if (is_drill(s.status)) j["label"] = s.status == "Test" ? "TEST" : "EXERCISE";
  return j;
}

// Preview warnings when an alert's polygons and circles reach beyond the tenant's
// towns, as far as its zones tell (cheap: one S2 area estimate and one intersection
// test per zone): no zone meets the area, or the area is over kReachFactor times
// the tenant's zones together. Nothing is said for a tenant without zones.
constexpr double kReachFactor = 4;

nlohmann::json reach_warnings(const directory::Directory::Footprint& f, const std::string& tenant) {
  nlohmann::json out = nlohmann::json::array();
  if (f.zones == 0 || f.alert_km2 <= 0) return out;
  auto km2 = [](double v) { return std::to_string(static_cast<int64_t>(std::ceil(v))); };
  if (!f.meets_a_zone) {
    out.push_back({{"code", "outside_tenant_zones"},
                   {"message", "the alert's area (" + km2(f.alert_km2) + " km²) meets none of the " +
                                   std::to_string(f.zones) + " zones of " + tenant +
                                   " (zones granted by neighbours are not counted): check the coordinates "
                                   "(CAP polygons are lat,lon)"}});
  } else if (f.alert_km2 > kReachFactor * f.zones_km2) {
    out.push_back(
        {{"code", "beyond_tenant_zones"},
         {"message", "the alert's area (" + km2(f.alert_km2) + " km²) is more than " +
                         std::to_string(static_cast<int>(kReachFactor)) + " times the zones of " + tenant +
                         " (" + km2(f.zones_km2) + " km²): it may reach people outside its towns"}});
  }
  return out;
}

}  // namespace

AlertsApi::AlertsApi(alerts::AlertStore& store, directory::Directory& directory,
                     dispatch::Dispatcher& dispatcher, dispatch::Lifecycle& lifecycle, const Clock& clock,
                     metrics::Metrics& metrics, AlertsApiOptions options)
    : store_(store),
      directory_(directory),
      dispatcher_(dispatcher),
      lifecycle_(lifecycle),
      clock_(clock),
      metrics_(metrics),
      options_(options) {}

void AlertsApi::register_routes(Router& router) {
  using tenants::Action;
  router.add("POST", "/v1/alerts", Access::key(Action::SubmitAlert),
             [this](auto& req, auto res, const Call& c) { submit(req, std::move(res), *c.caller); });
  router.add("POST", "/v1/alerts/preview", Access::key(Action::PreviewAlert),
             [this](auto& req, auto res, const Call& c) { preview(req, std::move(res), *c.caller); });
  router.add("GET", "/v1/alerts", Access::key(Action::ReadAlerts),
             [this](auto& req, auto res, const Call& c) { list(req, std::move(res), *c.caller); });
  router.add(
      "GET", "/v1/alerts/{id}", Access::key(Action::ReadAlerts),
      [this](auto& req, auto res, const Call& c) { get(req, std::move(res), *c.caller, c.params[0]); });
  router.add(
      "POST", "/v1/alerts/{id}/approve", Access::key(Action::ApproveAlert),
      [this](auto& req, auto res, const Call& c) { approve(req, std::move(res), *c.caller, c.params[0]); });
  router.add("GET", "/v1/alerts/{id}/deliveries", Access::key(Action::ReadAlerts),
             [this](auto& req, auto res, const Call& c) {
               deliveries(req, std::move(res), *c.caller, c.params[0]);
             });
  router.add(
      "GET", "/v1/alerts/{id}/events", Access::key(Action::ReadAlerts),
      [this](auto& req, auto res, const Call& c) { events(req, std::move(res), *c.caller, c.params[0]); });
  router.add(
      "POST", "/v1/alerts/{id}/cancel", Access::key(Action::CancelAlert),
      [this](auto& req, auto res, const Call& c) { cancel(req, std::move(res), *c.caller, c.params[0]); });
}

std::optional<Error> AlertsApi::storage_busy() const {
  size_t backlog = store_.backlog();
  if (backlog <= options_.intake_max_pending) return std::nullopt;
  return make_error(
      ErrorKind::Unavailable, "storage_busy",
      "storage is falling behind (" + std::to_string(backlog) + " commands waiting); retry shortly");
}

void AlertsApi::reject(Res& res, const Error& e) {
  metrics_.alert_rejected(e.code).Increment();
  res->send_error(e);
}

void AlertsApi::read_alert(const http::Request& req, const tenants::Principal& who, ReadDone done) {
  auto content_type = req.header("content-type");
  BodyKind kind = classify(content_type);
  if (kind == BodyKind::Unsupported)
    return done(
        make_error(ErrorKind::UnsupportedMediaType, "unsupported_media_type",
                   "send CAP as application/cap+xml (or application/xml, text/xml) or the JSON form as "
                   "application/json; got " +
                       std::string(content_type ? *content_type : "no Content-Type"),
                   "content-type"));
  if (req.body.size() > options_.max_body_bytes)
    return done(make_error(ErrorKind::TooLarge, "body_too_large",
                           "the body has " + std::to_string(req.body.size()) + " bytes; the limit is " +
                               std::to_string(options_.max_body_bytes) + " (http.max_body_bytes)"));
  alerts::ParseLimits limits;
  limits.max_bytes = options_.max_body_bytes;
  const bool is_xml = kind == BodyKind::CapXml;
  // The parse runs on libuv's thread pool: a hostile body costs a pool thread, never
  // the loop. The worker gets its own copy of the body, since h2o frees the request's
  // memory if the client goes away meanwhile. The area and the stored JSON form are
  // made there too, into `made`, which the loop reads only once the work is done.
  auto made = std::make_shared<Parsed>();
  alerts::parse_alert_async(
      options_.loop ? options_.loop : uv_default_loop(),
      is_xml ? alerts::AlertFormat::CapXml : alerts::AlertFormat::Json,
      std::make_shared<const std::string>(req.body), limits,
      [who, is_xml, made, done = std::move(done)](Result<alerts::Alert>&& parsed) {
        if (!parsed) return done(std::move(parsed).take_error());
        if (auto ok = tenants::Tenants::check_sender(who, parsed->sender); !ok)
          return done(std::move(ok).take_error());
        made->alert = std::move(parsed).value();
        made->is_xml = is_xml;
        done(std::move(*made));
      },
      [made](const alerts::Alert& a) {
        made->drawn = directory::Area::from_alert(a);
        made->stored_json = alerts::stored_json(a);
      });
}

void AlertsApi::preview(const http::Request& req, Res res, const Caller& who) {
  if (!directory_.loaded()) return res->send_error(directory_loading());
  read_alert(req, *who, [this, res, who](Result<Parsed>&& parsed) {
    if (res->alive()) preview_parsed(res, who, std::move(parsed));
  });
}

// The second half of preview, on the loop once the pool has parsed the body.
void AlertsApi::preview_parsed(Res res, const Caller& who, Result<Parsed>&& parsed) {
  if (!parsed) return res->send_error(parsed.error());
  const alerts::Alert& alert = parsed->alert;
  auto r = directory_.resolve(who->tenant->id, alert, parsed->drawn);
  nlohmann::json by_channel = {{"sms", 0}, {"apns", 0}, {"fcm", 0}};
  for (const auto& [ch, n] : r.by_channel) by_channel[ch] = n;
  dispatch::SmsPolicy policy;
  policy.max_segments = static_cast<size_t>(who->tenant->sms.max_segments);
  policy.text_parameter = who->tenant->sms.text_parameter;
  nlohmann::json sms = nlohmann::json::array();
  for (const auto& [language, count] : r.sms_by_language) {
    const alerts::Info* info = dispatch::pick_info(alert, language);
    if (!info) continue;
    std::string text = dispatch::render_sms(alert, *info, policy);
    auto c = dispatch::count_sms(text);
    sms.push_back({{"language", language},
                   {"info_language", info->language},
                   {"recipients", count},
                   {"encoding", dispatch::to_string(c.encoding)},
                   {"segments", c.segments},
                   {"text", text}});
  }
  nlohmann::json body = {
      {"recipients", r.recipients},
      {"by_channel", by_channel},
      {"by_language", r.by_language},
      {"by_tenant", r.by_tenant},
      {"sms", sms},
      {"unreachable", r.unreachable},
      {"status", alerts::to_string(alert.status)},
      {"test", alert.status == alerts::Status::Test || alert.status == alerts::Status::Exercise}};
  body["warnings"] = reach_warnings(directory_.footprint(who->tenant->id, parsed->drawn), who->tenant->id);
  res->send_json(200, dump(body));
}

void AlertsApi::submit(const http::Request& req, Res res, const Caller& who) {
  // Received now, before parsing and resolution: latencies (time to first message,
  // delivery) count from the POST.
  const int64_t received_ms = clock_.now_ms();
  if (!directory_.loaded()) return reject(res, directory_loading());
  if (auto busy = storage_busy()) return reject(res, *busy);
  // `req` stays valid while the responder is alive: h2o keeps the request until it
  // is answered or the client has gone.
  // `who` is copied with its tenants snapshot, which keeps the principal valid.
  read_alert(req, *who, [this, req, res, who, received_ms](Result<Parsed>&& parsed) {
    if (res->alive()) submit_parsed(req, res, who, received_ms, std::move(parsed));
  });
}

// The second half of submit, on the loop once the pool has parsed the body.
void AlertsApi::submit_parsed(const http::Request& req, Res res, const Caller& who, int64_t received_ms,
                              Result<Parsed>&& parsed) {
  if (!parsed) return reject(res, parsed.error());
  // Again after the parse: a burst passes the first check together, before any of it
  // has reached Redis.
  if (auto busy = storage_busy()) return reject(res, *busy);

  const config::Tenant& tenant = *who->tenant;
  dispatch::Submission sub;
  sub.tenant = tenant.id;
  sub.approval_statuses = tenant.approval.statuses;
  sub.min_recipients = tenant.approval.min_recipients;
  sub.alert = std::move(parsed->alert);
  sub.drawn = std::move(parsed->drawn);
  sub.stored_json = std::move(parsed->stored_json);
  sub.raw = req.body;
  sub.content_type = parsed->is_xml ? "application/cap+xml" : "application/json";
  sub.key_id = who->key->id;
  sub.remote = req.remote;
  sub.received_ms = received_ms;
  lifecycle_.submit(
      std::move(sub), [this, res, tenant_id = tenant.id, key_id = who->key->id, remote = req.remote,
                       received_ms](Result<dispatch::Submitted> r) mutable {
        if (!r) return reject(res, r.error());
        const alerts::Alert& a = *r->alert;
        const alerts::Created& c = r->created;
        const bool test = a.status == alerts::Status::Test || a.status == alerts::Status::Exercise;
        log::info(c.created ? "alert_accepted" : "alert_duplicate",
                  {{"tenant", tenant_id},
                   {"id", c.id},
                   {"state", c.state},
                   {"status", alerts::to_string(a.status)},
                   {"msg_type", alerts::to_string(a.msg_type)},
                   {"test", test},
                   {"identifier", a.identifier},
                   {"key", key_id},
                   {"remote", remote},
                   {"normalisations", a.normalisations},
                   {"ms_from_post", clock_.now_ms() - received_ms}});
        nlohmann::json body = {{"id", c.id},
                               {"state", c.state},
                               {"recipients", r->recipients},
                               {"status", alerts::to_string(a.status)},
                               {"msg_type", alerts::to_string(a.msg_type)},
                               {"test", test}};
        if (c.state == alerts::state::kRecorded)
          body["note"] =
              "CAP System, Ack and Error messages are stored for the record and never sent to citizens";
        if (!c.created) body["duplicate"] = true;
        if (!a.normalisations.empty()) body["normalisations"] = a.normalisations;
        res->send_json(c.created ? 202 : 200, dump(body));
      });
}

void AlertsApi::get(const http::Request& req, Res res, const Caller& who, const std::string& id) {
  auto accept = req.header("accept");
  bool want_cap = accept && accept->find("application/cap+xml") != std::string_view::npos;
  store_.get(who->tenant->id, id, [this, res, want_cap](Result<std::optional<alerts::StoredAlert>> r) {
    if (!r) return res->send_error(r.error());
    // Another tenant's alert is indistinguishable from a missing one.
    if (!*r) return res->send_error(make_error(ErrorKind::NotFound, "not_found", "no such alert"));
    const alerts::StoredAlert& s = **r;
    if (want_cap) {
      if (s.content_type != "application/cap+xml")
        return res->send_error(
            make_error(ErrorKind::NotAcceptable, "not_acceptable",
                       "this alert was submitted as JSON; its original bytes are not CAP XML"));
      return res->send(200, "application/cap+xml", s.raw);
    }
    auto j = std::make_shared<nlohmann::json>(summary_json(s, clock_.now_ms()));
    (*j)["alert"] = nlohmann::json::parse(s.parsed, nullptr, false);
    dispatcher_.progress(s.tenant, s.id, [res, j](Result<dispatch::Progress> p) {
      (*j)["progress"] = to_json(p);
      res->send_json(200, dump(*j));
    });
  });
}

void AlertsApi::list(const http::Request& req, Res res, const Caller& who) {
  int limit = 50;
  if (auto l = req.query_param("limit")) {
    char* end = nullptr;
    long v = std::strtol(l->c_str(), &end, 10);
    if (l->empty() || *end || v < 1 || v > 500)
      return res->send_error(
          make_error(ErrorKind::BadRequest, "invalid_parameter", "limit must be between 1 and 500", "limit"));
    limit = static_cast<int>(v);
  }
  std::string cursor = req.query_param("cursor").value_or("");
  if (!cursor.empty() && !looks_like_ulid(cursor))
    return res->send_error(make_error(ErrorKind::BadRequest, "invalid_parameter",
                                      "cursor must be a value of \"next\"", "cursor"));
  store_.list(who->tenant->id, cursor, limit, [this, res](Result<alerts::Page> r) {
    if (!r) return res->send_error(r.error());
    nlohmann::json items = nlohmann::json::array();
    int64_t now = clock_.now_ms();
    for (const auto& s : r->items) items.push_back(summary_json(s, now));
    nlohmann::json body = {{"items", items}, {"next", r->next ? nlohmann::json(*r->next) : nlohmann::json()}};
    res->send_json(200, dump(body));
  });
}

void AlertsApi::approve(const http::Request& req, Res res, const Caller& who, const std::string& id) {
  std::string tenant = who->tenant->id, key = who->key->id;
  lifecycle_.approve(tenant, id, key, req.remote, [res, id, tenant, key](Result<std::string> r) {
    if (!r) return res->send_error(r.error());
    log::info("alert_approved", {{"tenant", tenant}, {"id", id}, {"key", key}});
    res->send_json(200, dump({{"id", id}, {"state", *r}}));
  });
}

void AlertsApi::cancel(const http::Request& req, Res res, const Caller& who, const std::string& id) {
  std::string tenant = who->tenant->id, key = who->key->id;
  lifecycle_.cancel(tenant, id, key, req.remote, [res, id, tenant, key](Result<dispatch::Cancelled> c) {
    if (!c) return res->send_error(c.error());
    nlohmann::json body = {{"id", id}, {"state", c->state}};
    if (!c->cancelled_by.empty()) body["cancelled_by"] = c->cancelled_by;
    if (!c->warning.empty())
      body["warning"] = c->warning;
    else
      log::info("alert_cancelled",
                {{"tenant", tenant}, {"id", id}, {"cancel_id", c->cancelled_by}, {"key", key}});
    res->send_json(200, dump(body));
  });
}

}  // namespace sirena::api

namespace sirena::api {

namespace {

// A decimal number that fits 63 bits (`max` lower), digits only: no sign, space or prefix.
bool decimal_at_most(std::string_view d, uint64_t max) {
  if (d.empty() || d.size() > 20) return false;
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(d.data(), d.data() + d.size(), v);
  return ec == std::errc() && end == d.data() + d.size() && v <= max;
}

// The deliveries listing's cursor is what Dispatcher::deliveries put in "next": an HSCAN
// cursor (Redis's cursors are unsigned 64-bit decimals; anything else is "ERR invalid
// cursor", which used to surface as a 500), or "a<batch>.<skip>" in the listing's second
// phase. Empty: the first page.
bool valid_deliveries_cursor(std::string_view c) {
  if (c.empty()) return true;
  if (c.front() != 'a') return decimal_at_most(c, UINT64_MAX);
  size_t dot = c.find('.');
  if (dot == std::string_view::npos) return false;
  return decimal_at_most(c.substr(1, dot - 1), INT64_MAX) && decimal_at_most(c.substr(dot + 1), INT64_MAX);
}

}  // namespace

void AlertsApi::deliveries(const http::Request& req, Res res, const Caller& who, const std::string& id) {
  std::string state = req.query_param("state").value_or("");
  static const char* kStates[] = {"", "accepted", "delivered", "failed", "expired", "cancelled"};
  if (std::none_of(std::begin(kStates), std::end(kStates), [&](const char* s) { return state == s; }))
    return res->send_error(make_error(ErrorKind::BadRequest, "invalid_parameter",
                                      "state must be accepted, delivered, failed, expired or cancelled",
                                      "state"));
  std::string cursor = req.query_param("cursor").value_or("");
  if (!valid_deliveries_cursor(cursor))
    return res->send_error(make_error(ErrorKind::BadRequest, "invalid_parameter",
                                      "cursor must be the \"next\" of a previous page of this listing",
                                      "cursor"));
  int limit = 100;
  if (auto l = req.query_param("limit")) {
    char* end = nullptr;
    long v = std::strtol(l->c_str(), &end, 10);
    if (l->empty() || *end || v < 1 || v > 1000)
      return res->send_error(make_error(ErrorKind::BadRequest, "invalid_parameter",
                                        "limit must be between 1 and 1000", "limit"));
    limit = static_cast<int>(v);
  }
  std::string tenant = who->tenant->id;
  // 404 for an alert the tenant does not have, before looking at its deliveries.
  store_.get(tenant, id,
             [this, res, tenant, id, state, cursor, limit](Result<std::optional<alerts::StoredAlert>> r) {
               if (!r) return res->send_error(r.error());
               if (!*r) return res->send_error(make_error(ErrorKind::NotFound, "not_found", "no such alert"));
               dispatcher_.deliveries(tenant, id, state, cursor, static_cast<size_t>(limit),
                                      [res](Result<dispatch::DeliveryPage> d) {
                                        if (!d) return res->send_error(d.error());
                                        res->send_json(200, dump(to_json(*d)));
                                      });
             });
}

namespace {

// One Server-Sent Events subscriber: polls the alert's progress every 250 ms, sends an
// event when it changes, and ends the stream once the alert is final.
struct EventStream {
  uv_timer_t timer;
  std::shared_ptr<http::Responder> res;
  std::function<void(EventStream*)> tick;
  std::string last;
  bool busy = false;
  bool ended = false;  // end() called; the final chunk may still be on its way
};

bool is_final(const std::string& state) {
  auto st = alerts::parse_state(state);
  return st && alerts::is_final(*st);
}

}  // namespace

void AlertsApi::events(const http::Request& /*req*/, Res res, const Caller& who, const std::string& id) {
  std::string tenant = who->tenant->id;
  store_.get(tenant, id, [this, res, tenant, id](Result<std::optional<alerts::StoredAlert>> r) {
    if (!r) return res->send_error(r.error());
    if (!*r) return res->send_error(make_error(ErrorKind::NotFound, "not_found", "no such alert"));
    res->start_stream(200, "text/event-stream");
    auto* es = new EventStream;
    es->res = res;
    uv_timer_init(uv_default_loop(), &es->timer);
    es->timer.data = es;
    es->tick = [this, tenant, id](EventStream* s) {
      if (s->busy) return;
      // The responder is kept until h2o has sent the last chunk and disposed of the
      // request (alive() turns false); dropping it earlier would lose the final chunk.
      auto finish = [s] {
        s->res->end();
        s->ended = true;
      };
      if (!s->res->alive()) {
        uv_timer_stop(&s->timer);
        s->res.reset();
        uv_close(reinterpret_cast<uv_handle_t*>(&s->timer),
                 [](uv_handle_t* h) { delete static_cast<EventStream*>(h->data); });
        return;
      }
      if (s->ended) return;
      s->busy = true;
      store_.get(tenant, id, [this, s, tenant, id, finish](Result<std::optional<alerts::StoredAlert>> a) {
        if (!a || !*a) {
          s->busy = false;
          return;
        }
        std::string state = summary_json(**a, clock_.now_ms())["state"];
        dispatcher_.progress(tenant, id, [s, state, id, finish](Result<dispatch::Progress> p) {
          s->busy = false;
          nlohmann::json ev = {{"id", id}, {"state", state}, {"progress", to_json(p)}};
          std::string text = ev.dump();
          if (text != s->last) {
            s->res->write("event: progress\ndata: " + text + "\n\n");
            s->last = text;
          }
          if (is_final(state)) finish();
        });
      });
    };
    uv_timer_start(
        &es->timer,
        [](uv_timer_t* t) {
          auto* s = static_cast<EventStream*>(t->data);
          s->tick(s);
        },
        0, 250);
  });
}

}  // namespace sirena::api
