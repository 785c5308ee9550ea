// Maps "METHOD /path/with/{params}" to handlers, and admits each request before its
// handler runs: every route states who may call it (Access), and the router
// authenticates, authorises and rate-limits, so no handler can forget to.
//
// Order for a keyed route: the client address's bucket (before the key is looked at, so
// a flood of wrong keys is bounded too), 401 without a valid key, 403 for a role the
// tenants table does not allow (tenants.cc, the single source of truth), then the key's
// bucket. Refused requests get 429 `rate_limited` with Retry-After and are counted in
// sirena_http_rate_limited_total{scope="address"|"key"}.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "daemon/api/common.h"
#include "daemon/api/rate_limit.h"
#include "daemon/core/clock.h"
#include "daemon/http/server.h"

namespace prometheus {
class Counter;
}

namespace sirena::api {

using Params = std::vector<std::string>;  // the {param} segments, in order

// Who may call a route.
struct Access {
  // A Bearer API key of a role that may do `action`.
  static Access key(tenants::Action action) { return Access{action, {}}; }
  // No API key is looked at: probes and metrics ("public"), or a route that
  // authenticates by other means, which `how` names (the DLR route: its gateway's secret).
  static Access open(std::string how) { return Access{std::nullopt, std::move(how)}; }

  std::optional<tenants::Action> action;
  std::string how;
};

// The caller of a keyed route: its principal, and the tenant snapshot the principal
// points into (keep it alive while the principal is used: a SIGHUP may swap the current one).
struct Caller {
  tenants::Principal principal;
  std::shared_ptr<const tenants::Tenants> snapshot;
  const tenants::Principal* operator->() const { return &principal; }
  const tenants::Principal& operator*() const { return principal; }
};

struct Call {
  Params params;
  std::optional<Caller> caller;  // set exactly for Access::key routes
};

using RouteHandler = std::function<void(const http::Request&, std::shared_ptr<http::Responder>, const Call&)>;

struct RateLimits {
  BucketLimit per_key;      // per API key (its id within its tenant)
  BucketLimit per_address;  // per client IP address, on keyed routes
};

class Router {
 public:
  // `tenants` gives the current snapshot; `clock` times the buckets; the rate-limit
  // counter family is registered in `metrics`' registry.
  Router(TenantsSnapshot tenants, const Clock& clock, metrics::Metrics& metrics, RateLimits limits);
  ~Router();

  // `pattern` is a path whose segments are literals or "{name}".
  void add(std::string method, std::string pattern, Access access, RouteHandler handler);
  // Answers 404 `no_such_route`, 405 `method_not_allowed`, 401, 403 and 429 itself.
  void dispatch(const http::Request& req, std::shared_ptr<http::Responder> res);

  // Every route, for the start-up log and the route x role test:
  // [{"method", "path", "access": "key" | "open", "action" | "how"}].
  nlohmann::json describe() const;

 private:
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<std::string> segments;
    Access access;
    RouteHandler handler;
  };
  // false when refused (the response is sent).
  bool admit_rate(RateLimiter& limiter, prometheus::Counter& refused, const std::string& key,
                  http::Responder& res, const char* what);

  std::vector<Route> routes_;
  TenantsSnapshot tenants_;
  const Clock& clock_;
  RateLimiter per_key_, per_address_;
  prometheus::Counter* limited_key_;
  prometheus::Counter* limited_address_;
};

}  // namespace sirena::api
