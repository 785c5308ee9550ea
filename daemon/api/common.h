// Helpers every API module uses: the tenants snapshot, common errors and JSON output.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "daemon/http/server.h"
#include "daemon/tenants/tenants.h"

namespace sirena::api {

using TenantsSnapshot = std::function<std::shared_ptr<const tenants::Tenants>()>;

// While the directory index is being rebuilt at start-up, anything that reads or
// changes it answers 503 (with Retry-After) rather than a wrong count.
inline Error directory_loading() {
  return make_error(ErrorKind::Unavailable, "directory_loading",
                    "the recipient directory is still loading after start-up; retry shortly");
}

// Serialises for a response body; invalid UTF-8 is replaced rather than thrown on.
inline std::string dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace sirena::api
