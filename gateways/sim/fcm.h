// Firebase Cloud Messaging HTTP v1 (firebase.google.com/docs/reference/fcm/rest/v1) and
// the OAuth 2.0 token endpoint of Google's server-to-server flow
// (developers.google.com/identity/protocols/oauth2/service-account), both on the same
// HTTP/2 listener (h2c or TLS+ALPN h2; an HTTP/1.1 client must use prior knowledge).
//
// POST /token, form grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>:
//   the JWT needs alg RS256 and a 2048..4096-bit signature, iss, a scope holding
//   .../auth/firebase.messaging or .../auth/cloud-platform, an aud ending in "/token",
//   iat, and exp with exp > now and exp - iat <= 3600. Errors are 400
//   {"error": "unsupported_grant_type" | "invalid_grant" | "invalid_scope", "error_description"}.
//   Success: {"access_token", "expires_in": 3600, "token_type": "Bearer"}.
// POST /v1/projects/{project}/messages:send, authorization: Bearer <a token from /token>:
//   errors are google.rpc.Status {"error": {"code", "message", "status", "details":
//   [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode"}]}}:
//   no or unknown/expired token          401 UNAUTHENTICATED (no FcmError detail)
//   bad JSON, no message, not exactly one
//     of token/topic/condition, a bad
//     token, non-string data values, bad
//     android.priority or android.ttl    400 INVALID_ARGUMENT
//   token in --unregistered              404 NOT_FOUND / UNREGISTERED
//   injected: 401 THIRD_PARTY_AUTH_ERROR, 403 SENDER_ID_MISMATCH, 429 QUOTA_EXCEEDED
//   (RESOURCE_EXHAUSTED), 500 INTERNAL, 503 UNAVAILABLE.
//   Success: 200 {"name": "projects/<project>/messages/<id>"}; "validate_only": true
//   answers the same without counting a message.
// The record holds the token (or "topic:<t>" / "condition:<c>"), data.alert_id and the
// hash of notification (else android.notification) title + "\n" + body.
#pragma once

#include <string>
#include <unordered_map>

#include "daemon/core/clock.h"
#include "gateways/sim/json.h"
#include "gateways/sim/service.h"

namespace sirena::sim {

class FcmService final : public Service {
 public:
  FcmService(const Clock& clock, const RecipientSet& unregistered, uint64_t seed);

  bool is_message(const Request& req) const override;
  void handle(const Request& req, Response& resp) override;
  void fail(int status, const Request& req, Response& resp) override;

  static constexpr int64_t kTokenLifetime = 3600;  // seconds, as Google's endpoint grants

 private:
  void issue_token(const Request& req, Response& resp);
  void send(const Request& req, Response& resp, std::string_view project);
  // A google.rpc.Status error; `fcm_code` empty: no FcmError detail.
  void error(Response& resp, int code, std::string_view status, std::string_view message,
             std::string_view fcm_code);
  void oauth_error(Response& resp, std::string_view error, std::string_view description);

  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  const Clock& clock_;
  const RecipientSet& unregistered_;
  JsonReader json_;
  std::unordered_map<std::string, int64_t, Hash, std::equal_to<>> access_tokens_;  // token -> expiry (ms)
  uint64_t token_prefix_;
  uint64_t counter_ = 0;
  std::string text_, recipient_, alert_id_;
};

}  // namespace sirena::sim
