#include "gateways/apns/apns.h"

#include <nlohmann/json.hpp>

#include "daemon/core/log.h"

namespace sirena::apns {
namespace {

constexpr size_t kMaxPayload = 4096;            // APNs limit for regular pushes
constexpr int64_t kJwtRefreshMs = 30 * 60'000;  // inside Apple's 20..60 minute window

}  // namespace

std::string apns_payload(const dispatch::Content& m, bool critical_alerts) {
  bool critical = critical_alerts && m.severity == "Extreme";
  auto build = [&](const std::string& title, const std::string& body) {
    nlohmann::json aps = {{"alert", {{"title", title}, {"body", body}}},
                          {"interruption-level", critical ? "critical" : "time-sensitive"}};
    if (critical)
      aps["sound"] = {{"critical", 1}, {"name", "default"}, {"volume", 1.0}};
    else
      aps["sound"] = "default";
    nlohmann::json p = {{"aps", aps}, {"alert_id", m.alert_id}, {"test", m.test}};
    return p.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  };
  std::string out = build(m.title, m.body);
  if (out.size() <= kMaxPayload) return out;
  // Too big: shorten the body (then the title) by what is over, plus room for escapes.
  size_t over = out.size() - kMaxPayload;
  std::string body = push::cut_utf8(m.body, m.body.size() > over + 16 ? m.body.size() - over - 16 : 0);
  out = build(m.title, body);
  if (out.size() <= kMaxPayload) return out;
  over = out.size() - kMaxPayload;
  return build(push::cut_utf8(m.title, m.title.size() > over + 16 ? m.title.size() - over - 16 : 0), body);
}

Result<std::unique_ptr<ApnsGateway>> ApnsGateway::create(uv_loop_t* loop, const Clock& clock,
                                                         std::string name, ApnsConfig cfg) {
  if (cfg.team_id.empty() || cfg.key_id.empty())
    return make_error(ErrorKind::Config, "invalid_config",
                      "gateways." + name + ": team_id and key_id are required");
  auto key = push::SigningKey::from_file(cfg.key_file);
  if (!key)
    return make_error(ErrorKind::Config, "invalid_config",
                      "gateways." + name + ".key_file: " + key.error().message);
  if (!key->is_ec())
    return make_error(ErrorKind::Config, "invalid_config",
                      "gateways." + name + ".key_file: APNs keys are EC P-256");
  http2::PoolOptions pool;
  pool.url = cfg.url;
  pool.connections = cfg.connections;
  pool.verify_peer = cfg.verify_peer;
  std::unique_ptr<ApnsGateway> g(
      new ApnsGateway(loop, clock, std::move(name), std::move(cfg), std::move(key).value(), std::move(pool)));
  if (auto s = g->start(); !s) return std::move(s).take_error();
  return g;
}

ApnsGateway::ApnsGateway(uv_loop_t* loop, const Clock& clock, std::string name, ApnsConfig cfg,
                         push::SigningKey key, http2::PoolOptions pool)
    : PushGateway(loop, clock, std::move(name), dispatch::Channel::Apns, std::move(pool), cfg.max_in_flight),
      cfg_(std::move(cfg)),
      key_(std::move(key)) {}

const std::string& ApnsGateway::token() {
  int64_t now = clock_.now_ms();
  if (jwt_.empty() || refresh_now_ || now - jwt_issued_ms_ >= kJwtRefreshMs) {
    auto signed_jwt =
        key_.sign({{"alg", "ES256"}, {"kid", cfg_.key_id}}, {{"iss", cfg_.team_id}, {"iat", now / 1000}});
    if (signed_jwt) {
      jwt_ = "bearer " + *signed_jwt;
      jwt_issued_ms_ = now;
      refresh_now_ = false;
      rendered_.clear();  // their authorization header carries the old JWT
    }
  }
  return jwt_;
}

http2::Request ApnsGateway::build(const dispatch::Message& m) {
  const std::string& jwt = token();  // first: a new JWT empties the cache
  const dispatch::Content& c = *m.content;
  int64_t expiration = c.expires_ms ? c.expires_ms / 1000 : clock_.now_ms() / 1000 + 86400;
  // Everything but the device token is the same for every device of this Content and topic.
  auto part = rendered_.find(&c, m.app, expiration);
  if (!part) {
    auto p = std::make_shared<http2::SharedPart>();
    p->headers = {{"authorization", jwt},
                  {"apns-topic", m.app},
                  {"apns-push-type", "alert"},
                  {"apns-priority", "10"},
                  {"apns-expiration", std::to_string(expiration)},
                  {"apns-collapse-id", c.collapse_id},
                  {"content-type", "application/json"}};
    p->body = apns_payload(c, cfg_.critical_alerts);
    rendered_.put(m.content, m.app, expiration, p);
    part = std::move(p);
  }
  http2::Request req;
  req.path.reserve(10 + m.address.size());
  req.path.append("/3/device/").append(m.address);
  req.shared = std::move(part);
  return req;
}

dispatch::SendResult ApnsGateway::classify(const http2::Response& r) {
  bool refresh = false;
  auto out = classify_apns(r, &refresh);
  if (refresh) refresh_now_ = true;  // a fresh JWT on the next request; this one is resent
  return out;
}

dispatch::SendResult classify_apns(const http2::Response& r, bool* refresh_jwt) {
  dispatch::SendResult out;
  if (r.status == 200) {
    out.outcome = dispatch::Outcome::Accepted;
    return out;
  }
  auto body = nlohmann::json::parse(r.body, nullptr, false);
  out.reason = body.is_object() ? body.value("reason", "") : "";
  if (out.reason.empty()) out.reason = "HTTP " + std::to_string(r.status);
  // Apple's table: 410 Unregistered and 400 BadDeviceToken mean the token is gone.
  if (r.status == 410 || out.reason == "BadDeviceToken" || out.reason == "Unregistered" ||
      out.reason == "DeviceTokenNotForTopic") {
    out.outcome = dispatch::Outcome::Unregistered;
  } else if (r.status == 403 && out.reason == "ExpiredProviderToken") {
    *refresh_jwt = true;
    out.outcome = dispatch::Outcome::Retry;
  } else if (push::PushGateway::transient(r.status)) {
    out.outcome = dispatch::Outcome::Retry;
    out.retry_after_ms = push::PushGateway::retry_after_ms(r);
  } else {
    out.outcome = dispatch::Outcome::Permanent;
  }
  return out;
}

}  // namespace sirena::apns
