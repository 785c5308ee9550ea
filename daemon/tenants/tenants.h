// Tenants, API keys and what each role may do.
//
// A Tenants object is an immutable snapshot of the configured tenants. SIGHUP builds a
// new one and swaps the shared_ptr; a request in progress keeps the snapshot it began
// with, so a reload never changes the rules under a running request.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "daemon/config/config.h"
#include "daemon/core/result.h"

namespace sirena::tenants {

enum class Action {
  SubmitAlert,
  ApproveAlert,
  CancelAlert,
  ReadAlerts,
  PreviewAlert,
  WriteRecipients,
  ReadRecipients,
  WriteZones,
  ReadZones,
};

// "submit alerts", "read zones", ...: for messages and the route listing.
const char* to_string(Action action);

struct Principal {
  const config::Tenant* tenant;
  const config::ApiKey* key;
};

class Tenants {
 public:
  explicit Tenants(std::map<std::string, config::Tenant> tenants);

  // Reads "Authorization: Bearer <key>". 401 `missing_api_key` / `invalid_api_key`.
  Result<Principal> authenticate(std::optional<std::string_view> authorization) const;
  // 403 `forbidden_role` when the key's role may not do `action`.
  static Status authorize(const Principal& p, Action action);
  // The per-role table (tenants.cc): may a key with `role` do `action`?
  static bool allows(config::Role role, Action action);
  // 403 `sender_not_allowed` unless `sender` matches one of the tenant's CAP senders
  // (exact, or a shell-style pattern such as "*@comune.soliera.mo.it").
  static Status check_sender(const Principal& p, std::string_view sender);

  const config::Tenant* find(const std::string& id) const;

 private:
  std::map<std::string, config::Tenant> tenants_;
  std::unordered_map<std::string, Principal> by_hash_;  // sha256(key) -> principal
};

}  // namespace sirena::tenants
