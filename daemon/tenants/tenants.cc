#include "daemon/tenants/tenants.h"

#include <fnmatch.h>

#include <algorithm>
#include <cassert>

namespace sirena::tenants {

Tenants::Tenants(std::map<std::string, config::Tenant> tenants) : tenants_(std::move(tenants)) {
  for (const auto& [id, t] : tenants_)
    for (const auto& k : t.keys) by_hash_.emplace(k.sha256, Principal{&t, &k});
}

Result<Principal> Tenants::authenticate(std::optional<std::string_view> authorization) const {
  if (!authorization || authorization->empty())
    return make_error(ErrorKind::Unauthenticated, "missing_api_key",
                      "send your API key as \"Authorization: Bearer <key>\"", "authorization");
  std::string_view v = *authorization;
  constexpr std::string_view kBearer = "Bearer ";
  if (v.size() <= kBearer.size() ||
      !std::equal(kBearer.begin(), kBearer.end(), v.begin(), [](char a, char b) {
        return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
      }))
    return make_error(ErrorKind::Unauthenticated, "missing_api_key",
                      "the Authorization header must be \"Bearer <key>\"", "authorization");
  // Keys are looked up by their SHA-256; the plaintext is never stored or logged.
  auto it = by_hash_.find(config::sha256_hex(v.substr(kBearer.size())));
  if (it == by_hash_.end())
    return make_error(ErrorKind::Unauthenticated, "invalid_api_key", "this API key is not known",
                      "authorization");
  return it->second;
}

namespace {

// What each role may do: the single table every route's authorisation reads (router.h).
// `citizen-app` keys ship inside the public app, so anyone can extract them: they may
// use Open311 only (DESIGN.md), which no /v1 route serves yet, so no action here.
constexpr struct Rule {
  Action action;
  bool operator_, approver, citizen_app;
  const char* name;  // for 403 messages and the route listing
} kRules[] = {
    {Action::SubmitAlert, true, false, false, "submit alerts"},
    {Action::ApproveAlert, false, true, false, "approve alerts"},
    {Action::CancelAlert, true, true, false, "cancel alerts"},
    {Action::ReadAlerts, true, true, false, "read alerts"},
    {Action::PreviewAlert, true, true, false, "preview alerts"},
    {Action::WriteRecipients, true, false, false, "write recipients"},
    {Action::ReadRecipients, true, false, false, "read recipients"},
    {Action::WriteZones, true, false, false, "write zones"},
    {Action::ReadZones, true, true, false, "read zones"},
};

const Rule& rule_of(Action action) {
  const auto& rule = kRules[static_cast<int>(action)];
  assert(rule.action == action && "kRules is in Action's order");
  return rule;
}

}  // namespace

bool Tenants::allows(config::Role role, Action action) {
  const Rule& rule = rule_of(action);
  switch (role) {
    case config::Role::Admin:
      return true;
    case config::Role::Operator:
      return rule.operator_;
    case config::Role::Approver:
      return rule.approver;
    case config::Role::CitizenApp:
      return rule.citizen_app;
  }
  return false;
}

const char* to_string(Action action) {
  return rule_of(action).name;
}

Status Tenants::authorize(const Principal& p, Action action) {
  if (allows(p.key->role, action)) return Ok{};
  return make_error(
      ErrorKind::Forbidden, "forbidden_role",
      std::string("a key with role ") + config::to_string(p.key->role) + " may not " + rule_of(action).name);
}

Status Tenants::check_sender(const Principal& p, std::string_view sender) {
  // Entries are exact senders or shell-style patterns ("*@comune.soliera.mo.it").
  std::string text(sender);
  for (const auto& allowed : p.tenant->senders)
    if (allowed == text || fnmatch(allowed.c_str(), text.c_str(), 0) == 0) return Ok{};
  return make_error(
      ErrorKind::Forbidden, "sender_not_allowed",
      "CAP sender \"" + std::string(sender) + "\" is not among tenant " + p.tenant->id + "'s allowed senders",
      "/alert/sender");
}

const config::Tenant* Tenants::find(const std::string& id) const {
  auto it = tenants_.find(id);
  return it == tenants_.end() ? nullptr : &it->second;
}

}  // namespace sirena::tenants
