// Helpers every API module uses: authentication + authorisation, and JSON output.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "daemon/http/server.h"
#include "daemon/tenants/tenants.h"

namespace sirena::api {

using TenantsSnapshot = std::function<std::shared_ptr<const tenants::Tenants>()>;

// Authenticates the request's key and checks its role may do `action` (401/403).
// `snapshot` receives the tenant data the principal points into; keep it alive while
// the principal is used (a SIGHUP may swap the current one meanwhile).
inline Result<tenants::Principal> admit(const http::Request& req, tenants::Action action,
                                        const TenantsSnapshot& tenants,
                                        std::shared_ptr<const tenants::Tenants>& snapshot) {
  snapshot = tenants();
  auto who = snapshot->authenticate(req.header("authorization"));
  if (!who) return who;
  if (auto ok = tenants::Tenants::authorize(*who, action); !ok) return std::move(ok).take_error();
  return who;
}

// While the directory index is being rebuilt at start-up, anything that reads or
// changes it answers 503 (with Retry-After) rather than a wrong count.
inline Error directory_loading() {
  return make_error(503, "directory_loading", "the recipient directory is still loading after start-up; retry shortly");
}

// Serialises for a response body; invalid UTF-8 is replaced rather than thrown on.
inline std::string dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace sirena::api
