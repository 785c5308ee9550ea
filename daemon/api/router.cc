#include "daemon/api/router.h"

#include <prometheus/counter.h>

#include "daemon/metrics/metrics.h"

namespace sirena::api {
namespace {

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '/') {
      ++i;
      continue;
    }
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    out.push_back(path.substr(i, j - i));
    i = j;
  }
  return out;
}

}  // namespace

Router::Router(TenantsSnapshot tenants, const Clock& clock, metrics::Metrics& metrics, RateLimits limits)
    : tenants_(std::move(tenants)),
      clock_(clock),
      per_key_(limits.per_key),
      per_address_(limits.per_address) {
  // The router owns its counters; the registry only collects them.
  auto& family = prometheus::BuildCounter()
                     .Name("sirena_http_rate_limited_total")
                     .Help("Requests refused with 429 by the per-key or per-address rate limit")
                     .Register(metrics.registry());
  limited_key_ = &family.Add({{"scope", "key"}});
  limited_address_ = &family.Add({{"scope", "address"}});
}

Router::~Router() = default;

void Router::add(std::string method, std::string pattern, Access access, RouteHandler handler) {
  Route r{std::move(method), pattern, {}, std::move(access), std::move(handler)};
  for (auto s : split_path(pattern)) r.segments.emplace_back(s);
  routes_.push_back(std::move(r));
}

nlohmann::json Router::describe() const {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& r : routes_) {
    nlohmann::json j = {{"method", r.method}, {"path", r.pattern}};
    if (r.access.action) {
      j["access"] = "key";
      j["action"] = tenants::to_string(*r.access.action);
    } else {
      j["access"] = "open";
      j["how"] = r.access.how;
    }
    out.push_back(std::move(j));
  }
  return out;
}

bool Router::admit_rate(RateLimiter& limiter, prometheus::Counter& refused, const std::string& key,
                        http::Responder& res, const char* what) {
  auto retry_after = limiter.take(key, clock_.mono_ns());
  if (!retry_after) return true;
  refused.Increment();
  nlohmann::json body = {{"error",
                          {{"code", "rate_limited"},
                           {"message", std::string("too many requests from this ") + what + "; retry after " +
                                           std::to_string(*retry_after) + " s"}}}};
  res.send(429, "application/json", body.dump(), {{"retry-after", std::to_string(*retry_after)}});
  return false;
}

void Router::dispatch(const http::Request& req, std::shared_ptr<http::Responder> res) {
  auto segs = split_path(req.path);
  bool path_matched = false;
  for (const auto& r : routes_) {
    if (r.segments.size() != segs.size()) continue;
    Call call;
    bool ok = true;
    for (size_t i = 0; i < segs.size() && ok; ++i) {
      const auto& s = r.segments[i];
      if (s.size() > 2 && s.front() == '{' && s.back() == '}')
        call.params.emplace_back(segs[i]);
      else
        ok = s == segs[i];
    }
    if (!ok) continue;
    path_matched = true;
    if (r.method != req.method && !(r.method == "GET" && req.method == "HEAD")) continue;
    res->set_route(r.pattern);
    if (r.access.action) {
      if (!admit_rate(per_address_, *limited_address_, req.remote, *res, "address")) return;
      auto snapshot = tenants_();
      auto who = snapshot->authenticate(req.header("authorization"));
      if (!who) return res->send_error(who.error());
      if (auto allowed = tenants::Tenants::authorize(*who, *r.access.action); !allowed)
        return res->send_error(allowed.error());
      // A key is known by its tenant and id (ids are unique within a tenant only).
      if (!admit_rate(per_key_, *limited_key_, who->tenant->id + "/" + who->key->id, *res, "API key")) return;
      call.caller = Caller{*who, std::move(snapshot)};
    }
    r.handler(req, std::move(res), call);
    return;
  }
  if (path_matched) {
    res->send_error(make_error(ErrorKind::MethodNotAllowed, "method_not_allowed",
                               std::string(req.method) + " is not allowed on " + std::string(req.path)));
  } else {
    res->send_error(
        make_error(ErrorKind::NotFound, "no_such_route", "no API route " + std::string(req.path)));
  }
}

}  // namespace sirena::api
