#include "gateways/sms/sms_gateway.h"

#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "daemon/core/log.h"
#include "daemon/core/number.h"
#include "daemon/dispatch/sms_text.h"

namespace sirena::sms {

using dispatch::Outcome;
using dispatch::SendResult;
using nlohmann::json;

namespace {

constexpr size_t kMaxReason = 200;  // bytes of a provider's answer kept as the reason

std::string key_path(const std::string& gateway, std::string_view key) {
  return "gateways." + gateway + "." + std::string(key);
}

Error config_error(const std::string& gateway, std::string_view key, const std::string& what) {
  std::string where = key_path(gateway, key);
  return make_error(ErrorKind::Config, "invalid_config", where + ": " + what, where);
}

bool parse_int(std::string_view text, int64_t min, int64_t max, int64_t* out) {
  auto v = parse_number<int64_t>(text, min, max);
  if (v) *out = *v;
  return v.has_value();
}

// "200, 201,202" -> {200, 201, 202}.
bool parse_codes(std::string_view text, std::vector<int>* out) {
  out->clear();
  while (!text.empty()) {
    size_t comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    size_t first = item.find_first_not_of(' ');
    size_t last = item.find_last_not_of(' ');
    int64_t code = 0;
    if (first == std::string_view::npos || !parse_int(item.substr(first, last - first + 1), 100, 599, &code))
      return false;
    out->push_back(static_cast<int>(code));
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
  }
  return !out->empty();
}

bool contains(const std::vector<int>& codes, long status) {
  return std::find(codes.begin(), codes.end(), static_cast<int>(status)) != codes.end();
}

// Retry-After (RFC 9110 §10.2.3), delay-seconds form, in ms; 0 when absent or a date.
int64_t retry_after_ms(const HttpReply& r) {
  const std::string* v = r.header("retry-after");
  int64_t secs = 0;
  if (!v || !parse_int(*v, 0, 86400, &secs)) return 0;
  return secs * 1000;
}

SendResult outcome(Outcome o, std::string reason = {}, int64_t retry_after = 0) {
  SendResult r;
  r.outcome = o;
  r.reason = std::move(reason);
  r.retry_after_ms = retry_after;
  return r;
}

// A provider's answer, cut and trimmed, as a reason.
std::string reason_text(const std::string& body) {
  size_t first = body.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return {};
  size_t last = body.find_last_not_of(" \t\r\n");
  return body.substr(first, std::min(last - first + 1, kMaxReason));
}

// A reply without an HTTP answer: the request may or may not have reached the provider.
SendResult transport_failure(const HttpReply& r) {
  return outcome(Outcome::Retry, r.error);
}

}  // namespace

// ---- profiles -------------------------------------------------------------------------

class SmsProfile {
 public:
  virtual ~SmsProfile() = default;
  virtual HttpRequest request(const SmsBatch& b) const = 0;
  // One outcome per number of `b`, in order.
  virtual std::vector<SendResult> outcomes(const SmsBatch& b, const HttpReply& r) const = 0;
};

namespace {

class KannelProfile final : public SmsProfile {
 public:
  KannelProfile(const SmsConfig& cfg, std::string gateway) : cfg_(cfg), gateway_(std::move(gateway)) {
    while (!cfg_.dlr_url.empty() && cfg_.dlr_url.back() == '/') cfg_.dlr_url.pop_back();
  }

  HttpRequest request(const SmsBatch& b) const override {
    HttpRequest req;
    req.method = "GET";
    req.url = cfg_.url;
    char sep = cfg_.url.find('?') == std::string::npos ? '?' : '&';
    auto add = [&](std::string_view name, std::string_view value) {
      req.url.push_back(sep);
      req.url.append(name).push_back('=');
      req.url.append(url_escape(value));
      sep = '&';
    };
    std::string to;
    for (const auto& n : b.numbers) {
      if (!to.empty()) to.push_back(' ');  // Kannel splits `to` on spaces
      to.append(n);
    }
    add("username", cfg_.username);
    add("password", cfg_.password);
    if (!cfg_.from.empty()) add("from", cfg_.from);
    add("to", to);
    add("text", b.text);
    // The text travels as UTF-8 whatever the coding; smsbox converts it to UCS-2 when
    // coding=2 (Kannel user guide, "sendsms" CGI parameters).
    add("charset", "UTF-8");
    add("coding", dispatch::count_sms(b.text).encoding == dispatch::SmsEncoding::Ucs2 ? "2" : "0");
    if (!cfg_.dlr_url.empty()) {
      add("dlr-mask", std::to_string(cfg_.dlr_mask));
      add("dlr-url", dlr_url(b));
    }
    return req;
  }

  std::vector<SendResult> outcomes(const SmsBatch& b, const HttpReply& r) const override {
    // 202 "0: Accepted for delivery" and "3: Queued for later delivery" are the answers
    // smsbox gives; any 2xx means it took the messages, so none is resent.
    SendResult one;
    if (r.status == 0)
      one = transport_failure(r);
    else if (r.status >= 200 && r.status < 300)
      one = outcome(Outcome::Accepted, reason_text(r.body));
    else if (r.status == 503 || r.status == 429 || r.status >= 500)
      one = outcome(Outcome::Retry, reason_text(r.body), retry_after_ms(r));
    else
      one = outcome(Outcome::Permanent, reason_text(r.body));
    return std::vector<SendResult>(b.numbers.size(), one);
  }

 private:
  // Kannel fetches it once per number and state, replacing %p (receiver) and %d (DLR type);
  // our own values are escaped so that only those two stay patterns.
  std::string dlr_url(const SmsBatch& b) const {
    return cfg_.dlr_url + "/v1/dlr/" + url_escape(gateway_) + "?secret=" + url_escape(cfg_.dlr_secret) +
           "&alert=" + url_escape(b.alert_id) + "&t=" + url_escape(b.alert_tenant) +
           "&r=" + url_escape(b.tenant) + "&to=%p&type=%d";
  }

  SmsConfig cfg_;
  std::string gateway_;
};

class JsonProfile final : public SmsProfile {
 public:
  enum class Field { To, Text, Reference };

  // The placeholders of a parsed template; false when "{{to}}" or "{{text}}" is missing.
  static bool find_fields(const json& j, const json::json_pointer& at,
                          std::vector<std::pair<json::json_pointer, Field>>* out) {
    if (j.is_string()) {
      const auto& s = j.get_ref<const std::string&>();
      if (s == "{{to}}") out->emplace_back(at, Field::To);
      if (s == "{{text}}") out->emplace_back(at, Field::Text);
      if (s == "{{reference}}") out->emplace_back(at, Field::Reference);
    } else if (j.is_object()) {
      for (const auto& [k, v] : j.items()) find_fields(v, at / k, out);
    } else if (j.is_array()) {
      for (size_t i = 0; i < j.size(); ++i) find_fields(j[i], at / i, out);
    }
    auto has = [&](Field f) {
      return std::any_of(out->begin(), out->end(), [f](const auto& p) { return p.second == f; });
    };
    return has(Field::To) && has(Field::Text);
  }

  JsonProfile(const SmsConfig& cfg, json tpl, std::vector<std::pair<json::json_pointer, Field>> fields,
              size_t batch_size)
      : cfg_(cfg), template_(std::move(tpl)), fields_(std::move(fields)), batch_size_(batch_size) {}

  HttpRequest request(const SmsBatch& b) const override {
    HttpRequest req;
    req.method = cfg_.method;
    req.url = cfg_.url;
    req.body = body(b);
    req.headers = {"Content-Type: application/json", "Accept: application/json"};
    if (!cfg_.auth_header.empty()) req.headers.push_back(cfg_.auth_header);
    return req;
  }

  std::vector<SendResult> outcomes(const SmsBatch& b, const HttpReply& r) const override {
    size_t n = b.numbers.size();
    if (r.status == 0) return std::vector<SendResult>(n, transport_failure(r));
    // An accepted answer that cannot name a refused number needs no parsing.
    if (contains(cfg_.accept_status, r.status) && r.body.find(cfg_.rejected_field) == std::string::npos)
      return std::vector<SendResult>(n, outcome(Outcome::Accepted));
    auto body = json::parse(r.body, nullptr, false);
    if (contains(cfg_.retry_status, r.status))
      return std::vector<SendResult>(n, outcome(Outcome::Retry, error_reason(r, body), retry_after_ms(r)));
    if (!contains(cfg_.accept_status, r.status))
      return std::vector<SendResult>(n, outcome(Outcome::Permanent, error_reason(r, body)));
    // Accepted, except the numbers the provider lists as refused.
    std::unordered_set<std::string> rejected;
    if (body.is_object()) {
      auto it = body.find(cfg_.rejected_field);
      if (it != body.end() && it->is_array())
        for (const auto& v : *it)
          if (v.is_string()) rejected.insert(v.get<std::string>());
    }
    std::vector<SendResult> out;
    out.reserve(n);
    for (const auto& number : b.numbers)
      out.push_back(rejected.count(number) ? outcome(Outcome::Permanent, "rejected")
                                           : outcome(Outcome::Accepted));
    return out;
  }

 private:
  // "HTTP 429 rate_limited": the status and the provider's error code, never the body
  // itself (it may list phone numbers).
  static std::string error_reason(const HttpReply& r, const json& body) {
    std::string out = "HTTP " + std::to_string(r.status);
    if (body.is_object()) {
      auto it = body.find("error");
      if (it != body.end() && it->is_string()) out += " " + it->get<std::string>().substr(0, kMaxReason);
    }
    return out;
  }

  json filled(const SmsBatch& b, const json& to) const {
    json doc = template_;
    for (const auto& [at, field] : fields_) {
      switch (field) {
        case Field::To:
          doc[at] = to;
          break;
        case Field::Text:
          doc[at] = b.text;
          break;
        case Field::Reference:
          doc[at] = b.alert_id;
          break;
      }
    }
    return doc;
  }

  // The template filled in. With one "{{to}}", the rest is rendered once per text and
  // alert (one number a request renders it once per number otherwise) and each request
  // puts its number(s) where the placeholder was.
  std::string body(const SmsBatch& b) const {
    static const std::string kMarker = "\x01sirena-to\x01";
    const json to = batch_size_ == 1 ? json(b.numbers.front()) : json(b.numbers);
    auto dump = [](const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); };
    if (!split_ || rendered_text_ != b.text || rendered_alert_ != b.alert_id) {
      split_ = false;
      auto tos =
          std::count_if(fields_.begin(), fields_.end(), [](const auto& f) { return f.second == Field::To; });
      if (tos != 1) return dump(filled(b, to));
      std::string whole = dump(filled(b, json(kMarker)));
      const std::string marker = dump(json(kMarker));
      size_t at = whole.find(marker);
      if (at == std::string::npos) return dump(filled(b, to));
      head_ = whole.substr(0, at);
      tail_ = whole.substr(at + marker.size());
      rendered_text_ = b.text;
      rendered_alert_ = b.alert_id;
      split_ = true;
    }
    std::string number = dump(to);
    std::string out;
    out.reserve(head_.size() + number.size() + tail_.size());
    out.append(head_).append(number).append(tail_);
    return out;
  }

  SmsConfig cfg_;
  json template_;
  std::vector<std::pair<json::json_pointer, Field>> fields_;
  size_t batch_size_;
  // The last rendering, split around the number(s).
  mutable bool split_ = false;
  mutable std::string rendered_text_, rendered_alert_, head_, tail_;
};

}  // namespace

// ---- config -----------------------------------------------------------------------------

Result<SmsConfig> SmsConfig::from_keys(const std::string& name,
                                       const std::map<std::string, std::string>& keys) {
  SmsConfig c;
  auto get = [&](const char* k) -> const std::string* {
    auto it = keys.find(k);
    return it == keys.end() ? nullptr : &it->second;
  };
  std::string profile = get("profile") ? *get("profile") : name;
  if (profile == "kannel")
    c.profile = Profile::Kannel;
  else if (profile == "generic_json")
    c.profile = Profile::GenericJson;
  else
    return config_error(name, "profile", "must be kannel or generic_json, not \"" + profile + "\"");

  for (auto [key, field] : {std::pair{"url", &c.url},
                            {"username", &c.username},
                            {"password", &c.password},
                            {"from", &c.from},
                            {"dlr_url", &c.dlr_url},
                            {"dlr_secret", &c.dlr_secret},
                            {"method", &c.method},
                            {"auth_header", &c.auth_header},
                            {"body_template", &c.body_template},
                            {"rejected_field", &c.rejected_field}})
    if (const std::string* v = get(key)) *field = *v;

  struct Number {
    const char* key;
    int64_t min, max;
    std::function<void(int64_t)> set;
  };
  const Number numbers[] = {
      {"dlr_mask", 0, 31, [&](int64_t v) { c.dlr_mask = static_cast<int>(v); }},
      {"dlr_timeout_ms", 0, 86'400'000, [&](int64_t v) { c.dlr_timeout_ms = v; }},
      {"batch_size", 1, 1000, [&](int64_t v) { c.batch_size = static_cast<size_t>(v); }},
      {"max_in_flight", 1, 10000, [&](int64_t v) { c.max_in_flight = static_cast<size_t>(v); }},
      {"connections", 1, 10000, [&](int64_t v) { c.connections = static_cast<size_t>(v); }},
      {"timeout_ms", 1, 600000, [&](int64_t v) { c.timeout_ms = v; }},
      {"connect_timeout_ms", 1, 600000, [&](int64_t v) { c.connect_timeout_ms = v; }},
  };
  for (const auto& n : numbers) {
    const std::string* v = get(n.key);
    if (!v) continue;
    int64_t value = 0;
    if (!parse_int(*v, n.min, n.max, &value))
      return config_error(
          name, n.key, "must be an integer from " + std::to_string(n.min) + " to " + std::to_string(n.max));
    n.set(value);
  }
  for (auto [key, field] : {std::pair{"accept_status", &c.accept_status}, {"retry_status", &c.retry_status}})
    if (const std::string* v = get(key); v && !parse_codes(*v, field))
      return config_error(name, key, "must be HTTP status codes separated by commas, e.g. \"200,202\"");
  if (const std::string* v = get("tls_verify")) {
    if (*v != "true" && *v != "false") return config_error(name, "tls_verify", "must be true or false");
    c.verify_peer = *v == "true";
  }
  return c;
}

// ---- gateway ----------------------------------------------------------------------------

struct SmsGateway::Pending {
  SmsBatch batch;
  std::vector<std::function<void(const SendResult&)>> done;  // one per number
};

Result<std::unique_ptr<SmsGateway>> SmsGateway::create(uv_loop_t* loop, std::string name, SmsConfig cfg) {
  if (!cfg.url.starts_with("http://") && !cfg.url.starts_with("https://"))
    return config_error(name, "url", "must be an http:// or https:// URL");
  if (cfg.max_in_flight == 0) return config_error(name, "max_in_flight", "must be at least 1");
  std::unique_ptr<SmsProfile> profile;
  size_t batch_size = cfg.batch_size;
  if (cfg.profile == Profile::Kannel) {
    if (batch_size == 0) batch_size = 100;
    if (cfg.username.empty()) return config_error(name, "username", "is required by the kannel profile");
    if (cfg.password.empty()) return config_error(name, "password", "is required by the kannel profile");
    if (!cfg.dlr_url.empty() && !cfg.dlr_url.starts_with("http://") && !cfg.dlr_url.starts_with("https://"))
      return config_error(name, "dlr_url", "must be an http:// or https:// URL");
    if (!cfg.dlr_url.empty() && cfg.dlr_secret.empty())
      return config_error(name, "dlr_secret",
                          "is required with dlr_url (it authenticates the delivery reports)");
    profile = std::make_unique<KannelProfile>(cfg, name);
  } else {
    if (batch_size == 0) batch_size = 1;
    if (cfg.method.empty()) return config_error(name, "method", "must not be empty");
    if (!cfg.auth_header.empty() && cfg.auth_header.find(':') == std::string::npos)
      return config_error(name, "auth_header",
                          "must be a full header line, e.g. \"Authorization: Bearer ...\"");
    auto tpl = json::parse(cfg.body_template, nullptr, false);
    if (tpl.is_discarded()) return config_error(name, "body_template", "is not a JSON document");
    std::vector<std::pair<json::json_pointer, JsonProfile::Field>> fields;
    if (!JsonProfile::find_fields(tpl, json::json_pointer(), &fields))
      return config_error(name, "body_template", "needs the string values \"{{to}}\" and \"{{text}}\"");
    profile = std::make_unique<JsonProfile>(cfg, std::move(tpl), std::move(fields), batch_size);
  }

  EngineOptions eo;
  eo.max_in_flight = cfg.max_in_flight;
  eo.max_host_connections = cfg.connections ? cfg.connections : cfg.max_in_flight;
  eo.max_connects = eo.max_host_connections;
  eo.timeout_ms = cfg.timeout_ms;
  eo.connect_timeout_ms = cfg.connect_timeout_ms;
  eo.verify_peer = cfg.verify_peer;
  auto engine = CurlEngine::create(loop, eo);
  if (!engine) return std::move(engine).take_error();
  std::unique_ptr<SmsGateway> gw(new SmsGateway(loop, std::move(name), batch_size, cfg.max_in_flight,
                                                std::move(profile), std::move(engine).value()));
  // Reports that prove the SMSC has the message: delivered, undelivered, SMSC accepted/rejected.
  constexpr int kReportBits = 1 | 2 | 8 | 16;
  if (cfg.profile == Profile::Kannel && !cfg.dlr_url.empty() && (cfg.dlr_mask & kReportBits))
    gw->report_timeout_ms_ = cfg.dlr_timeout_ms;
  return gw;
}

SmsGateway::SmsGateway(uv_loop_t* loop, std::string name, size_t batch_size, size_t max_in_flight,
                       std::unique_ptr<SmsProfile> profile, std::unique_ptr<CurlEngine> engine)
    : loop_(loop),
      name_(std::move(name)),
      batch_size_(batch_size),
      max_in_flight_(max_in_flight),
      profile_(std::move(profile)),
      engine_(std::move(engine)),
      flush_hook_(loop, [this] { flush(); }) {}

// flush_hook_'s and engine_'s destructors close them in the background if close() was not called.
SmsGateway::~SmsGateway() = default;

void SmsGateway::send(const dispatch::Message& m, std::function<void(const SendResult&)> done) {
  if (closing_) return done(outcome(Outcome::Retry, "gateway closed"));
  // One malformed number must not sink the batch it would share (Kannel splits `to` on
  // white space; a JSON provider refuses the whole request).
  if (m.address.empty() || m.address.find_first_of(" \t\r\n") != std::string::npos)
    return done(outcome(Outcome::Permanent, "invalid number"));
  const dispatch::Content& c = *m.content;
  std::string key;
  key.reserve(c.alert_id.size() + c.alert_tenant.size() + m.tenant.size() + c.body.size() + 3);
  key.append(c.alert_id)
      .append(1, '\0')
      .append(c.alert_tenant)
      .append(1, '\0')
      .append(m.tenant)
      .append(1, '\0');
  key.append(c.body);
  auto [it, fresh] = open_by_key_.try_emplace(std::move(key), nullptr);
  if (fresh) {
    auto p = std::make_shared<Pending>();
    p->batch = SmsBatch{c.alert_id, c.alert_tenant, m.tenant, c.body, {}};
    it->second = p.get();
    open_.push_back(std::move(p));
  }
  Pending* p = it->second;
  p->batch.numbers.push_back(m.address);
  p->done.push_back(std::move(done));
  ++outstanding_;
  if (p->batch.numbers.size() >= batch_size_) {
    auto pos = std::find_if(open_.begin(), open_.end(), [p](const auto& o) { return o.get() == p; });
    std::shared_ptr<Pending> full = std::move(*pos);
    open_.erase(pos);
    open_by_key_.erase(it);
    submit(std::move(full));
  } else {
    // The rest of this loop turn may add numbers to the batch; it leaves on the next.
    flush_hook_.schedule();
  }
}

void SmsGateway::flush() {
  auto batches = std::move(open_);
  open_.clear();
  open_by_key_.clear();
  for (auto& p : batches) submit(std::move(p));
}

void SmsGateway::submit(std::shared_ptr<Pending> p) {
  ++stats_.requests;
  stats_.messages += p->batch.numbers.size();
  stats_.segments += dispatch::count_sms(p->batch.text).segments * p->batch.numbers.size();
  HttpRequest req = profile_->request(p->batch);
  req.tag = p->batch.alert_id;  // for cancel()
  engine_->submit(std::move(req), [this, p](const HttpReply& reply) { on_reply(*p, reply); });
}

void SmsGateway::cancel(const std::string& alert_id) {
  std::vector<std::shared_ptr<Pending>> dropped;
  for (auto it = open_.begin(); it != open_.end();) {
    if ((*it)->batch.alert_id == alert_id) {
      dropped.push_back(std::move(*it));
      it = open_.erase(it);
    } else {
      ++it;
    }
  }
  std::erase_if(open_by_key_, [&](const auto& kv) { return kv.second->batch.alert_id == alert_id; });
  // Answered once this gateway is consistent again: a `done` may send more.
  for (auto& p : dropped) {
    outstanding_ -= p->done.size();
    for (auto& d : p->done) d(outcome(Outcome::Cancelled, "alert cancelled"));
  }
  engine_->cancel(alert_id);  // on_reply() answers those (reply.cancelled)
}

void SmsGateway::on_reply(Pending& p, const HttpReply& reply) {
  if (reply.cancelled) {  // never sent
    --stats_.requests;
    stats_.messages -= p.batch.numbers.size();
    stats_.segments -= dispatch::count_sms(p.batch.text).segments * p.batch.numbers.size();
    outstanding_ -= p.done.size();
    for (auto& d : p.done) d(outcome(Outcome::Cancelled, "alert cancelled"));
    return;
  }
  auto results = profile_->outcomes(p.batch, reply);
  ++stats_.replies[static_cast<int>(reply.status)];
  if (observe_reply_) observe_reply_(static_cast<int>(reply.status));
  outstanding_ -= p.done.size();
  if (reply.status == 0) log::debug("sms_request_failed", {{"gateway", name_}, {"error", reply.error}});
  for (size_t i = 0; i < p.done.size(); ++i) {
    SendResult& r = results[i];
    r.http_status = static_cast<int>(reply.status);
    if (r.outcome == Outcome::Accepted)
      ++stats_.accepted;
    else if (r.outcome == Outcome::Retry)
      ++stats_.retried;
    else
      ++stats_.failed;
    p.done[i](r);
  }
}

size_t SmsGateway::capacity() const {
  if (closing_ || engine_->queued() >= max_in_flight_) return 0;
  size_t limit = max_in_flight_ * batch_size_;
  return outstanding_ >= limit ? 0 : limit - outstanding_;
}

void SmsGateway::close(std::function<void()> done) {
  if (closing_) return;  // one close per gateway
  closing_ = true;
  close_done_ = std::move(done);
  closes_pending_ = 2;  // the flush hook and the engine
  flush_hook_.close([this] { closed_one(); });
  engine_->close([this] { closed_one(); });  // answers the requests in flight (Retry)
  auto batches = std::move(open_);
  open_.clear();
  open_by_key_.clear();
  for (auto& p : batches) {
    outstanding_ -= p->done.size();
    for (auto& d : p->done) d(outcome(Outcome::Retry, "gateway closed"));
  }
}

void SmsGateway::closed_one() {
  if (--closes_pending_ > 0) return;
  if (auto done = std::move(close_done_)) done();  // may destroy the gateway
}

HttpRequest SmsGateway::request_for(const SmsBatch& batch) const {
  return profile_->request(batch);
}

std::vector<SendResult> SmsGateway::outcomes(const SmsBatch& batch, const HttpReply& reply) const {
  return profile_->outcomes(batch, reply);
}

}  // namespace sirena::sms
