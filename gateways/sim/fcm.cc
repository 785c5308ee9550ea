#include "gateways/sim/fcm.h"

#include <random>

#include "gateways/sim/form.h"
#include "gateways/sim/jwt.h"
#include "gateways/sim/ledger.h"

namespace sirena::sim {

namespace {

constexpr std::string_view kProjectsPrefix = "/v1/projects/";
constexpr std::string_view kSendSuffix = "/messages:send";
constexpr std::string_view kJwtBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer";

void append_hex(std::string& out, uint64_t v, int digits) {
  static const char kHex[] = "0123456789abcdef";
  for (int i = digits - 1; i >= 0; --i) out.push_back(kHex[(v >> (4 * i)) & 0xf]);
}

// Project ids are 6 to 30 lower-case letters, digits and hyphens; we accept any such run.
bool is_project_id(std::string_view p) {
  if (p.empty() || p.size() > 64) return false;
  for (char c : p)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  return true;
}

// Registration tokens are opaque, but only ever use URL-safe characters and a colon.
// (ASCII tests: std::isalnum looks the locale up for each of a token's ~150 characters,
// which was 8% of this simulator's CPU.)
bool is_registration_token(std::string_view t) {
  if (t.empty() || t.size() > 4096) return false;
  for (char c : t) {
    char lower = static_cast<char>(c | 0x20);
    bool ok = (lower >= 'a' && lower <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == ':' ||
              c == '.';
    if (!ok) return false;
  }
  return true;
}

// A protobuf Duration in JSON: decimal seconds with up to nine fraction digits and "s".
bool is_duration(std::string_view d) {
  if (d.size() < 2 || d.back() != 's') return false;
  d.remove_suffix(1);
  size_t dot = d.find('.');
  std::string_view whole = d.substr(0, dot);
  std::string_view frac = dot == std::string_view::npos ? std::string_view() : d.substr(dot + 1);
  if (whole.empty() || (dot != std::string_view::npos && (frac.empty() || frac.size() > 9))) return false;
  for (char c : whole)
    if (c < '0' || c > '9') return false;
  for (char c : frac)
    if (c < '0' || c > '9') return false;
  return true;
}

bool scope_allows_fcm(std::string_view scope) {
  // Space-delimited (RFC 6749 §3.3).
  while (!scope.empty()) {
    size_t sp = scope.find(' ');
    std::string_view s = scope.substr(0, sp);
    if (s == "https://www.googleapis.com/auth/firebase.messaging" ||
        s == "https://www.googleapis.com/auth/cloud-platform")
      return true;
    if (sp == std::string_view::npos) break;
    scope.remove_prefix(sp + 1);
  }
  return false;
}

void append_title_body(std::string& out, simdjson::dom::object n) {
  std::string_view s;
  if (n["title"].get(s) == simdjson::SUCCESS) out.append(s);
  out.push_back('\n');
  if (n["body"].get(s) == simdjson::SUCCESS) out.append(s);
}

}  // namespace

FcmService::FcmService(const Clock& clock, const RecipientSet& unregistered, uint64_t seed)
    : clock_(clock), unregistered_(unregistered), token_prefix_(std::mt19937_64(seed ^ 0xfc3)()) {}

bool FcmService::is_message(const Request& req) const {
  return req.path.starts_with(kProjectsPrefix) && req.path.ends_with(kSendSuffix);
}

void FcmService::error(Response& resp, int code, std::string_view status, std::string_view message,
                       std::string_view fcm_code) {
  resp.status = code;
  resp.add_header("content-type", "application/json; charset=UTF-8");
  std::string& b = resp.body;
  b.assign("{\"error\":{\"code\":").append(std::to_string(code)).append(",\"message\":\"").append(message);
  b.append("\",\"status\":\"").append(status).append("\"");
  if (!fcm_code.empty()) {
    b.append(
        ",\"details\":[{\"@type\":\"type.googleapis.com/google.firebase.fcm.v1.FcmError\",\"errorCode\":\"");
    b.append(fcm_code).append("\"}]");
  }
  b.append("}}");
}

void FcmService::oauth_error(Response& resp, std::string_view error, std::string_view description) {
  resp.status = 400;
  resp.add_header("content-type", "application/json; charset=utf-8");
  resp.body.assign("{\"error\":\"").append(error).append("\",\"error_description\":\"").append(description);
  resp.body.append("\"}");
}

void FcmService::handle(const Request& req, Response& resp) {
  if (req.path == "/token") {
    if (req.method != "POST") return oauth_error(resp, "invalid_request", "The token endpoint takes POST.");
    return issue_token(req, resp);
  }
  if (!is_message(req) || req.method != "POST")
    return error(resp, 404, "NOT_FOUND", "The requested URL was not found on this server.", "");
  std::string_view project = std::string_view(req.path).substr(kProjectsPrefix.size());
  project.remove_suffix(kSendSuffix.size());
  if (!is_project_id(project))
    return error(resp, 404, "NOT_FOUND", "The requested URL was not found on this server.", "");
  send(req, resp, project);
}

void FcmService::issue_token(const Request& req, Response& resp) {
  auto grant = form_value(req.body, "grant_type");
  if (!grant || *grant != kJwtBearer)
    return oauth_error(resp, "unsupported_grant_type", "Invalid grant_type.");
  auto assertion = form_value(req.body, "assertion");
  if (!assertion) return oauth_error(resp, "invalid_request", "Missing required parameter: assertion");
  auto claims = parse_jwt(*assertion, json_);
  if (!claims) return oauth_error(resp, "invalid_grant", "Invalid JWT: malformed.");
  // RS256 with the service account's RSA key: 2048 bits and up, so 256 bytes and up.
  if (claims->alg != "RS256" || claims->signature_bytes < 256 || claims->signature_bytes > 512)
    return oauth_error(resp, "invalid_grant", "Invalid JWT Signature.");
  if (claims->iss.empty()) return oauth_error(resp, "invalid_grant", "Invalid JWT: no iss.");
  if (!claims->aud.ends_with("/token")) return oauth_error(resp, "invalid_grant", "Invalid JWT: bad aud.");
  int64_t now = clock_.now_ms() / 1000;
  // Google: "Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
  if (claims->iat < 0 || claims->exp < 0 || claims->exp <= now || claims->exp - claims->iat > 3600 ||
      claims->iat > now + 300)
    return oauth_error(
        resp, "invalid_grant",
        "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
        "Check your iat and exp values in the JWT claim.");
  if (!scope_allows_fcm(claims->scope)) return oauth_error(resp, "invalid_scope", "Invalid OAuth scope.");

  std::string token = "ya29.sim-";
  append_hex(token, token_prefix_, 16);
  append_hex(token, ++counter_, 16);
  if (access_tokens_.size() >= 65536) access_tokens_.clear();
  access_tokens_[token] = clock_.now_ms() + kTokenLifetime * 1000;
  resp.status = 200;
  resp.add_header("content-type", "application/json; charset=utf-8");
  resp.add_header("cache-control", "no-cache, no-store, max-age=0, must-revalidate");
  resp.body.assign("{\"access_token\":\"").append(token).append("\",\"expires_in\":");
  resp.body.append(std::to_string(kTokenLifetime)).append(",\"token_type\":\"Bearer\"}");
}

void FcmService::send(const Request& req, Response& resp, std::string_view project) {
  auto auth = req.header("authorization");
  if (!auth || auth->size() <= 7)
    return error(
        resp, 401, "UNAUTHENTICATED",
        "Request is missing required authentication credential. Expected OAuth 2 access token, login "
        "cookie or other valid authentication credential.",
        "");
  auto it = access_tokens_.find(auth->substr(7));
  if ((*auth)[6] != ' ' || (auth->substr(0, 6) != "Bearer" && auth->substr(0, 6) != "bearer") ||
      it == access_tokens_.end() || it->second <= clock_.now_ms())
    return error(
        resp, 401, "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
        "other valid authentication credential.",
        "");

  constexpr std::string_view kInvalid = "Request contains an invalid argument.";
  auto root = json_.parse(req.body);
  simdjson::dom::object message;
  if (!root || (*root)["message"].get(message) != simdjson::SUCCESS)
    return error(resp, 400, "INVALID_ARGUMENT", kInvalid, "INVALID_ARGUMENT");

  // Exactly one target (the Message resource's "union field target").
  std::string_view token, topic, condition;
  bool has_token = message["token"].get(token) == simdjson::SUCCESS;
  bool has_topic = message["topic"].get(topic) == simdjson::SUCCESS;
  bool has_condition = message["condition"].get(condition) == simdjson::SUCCESS;
  if (int(has_token) + int(has_topic) + int(has_condition) != 1)
    return error(resp, 400, "INVALID_ARGUMENT", kInvalid, "INVALID_ARGUMENT");
  if (has_token && !is_registration_token(token))
    return error(resp, 400, "INVALID_ARGUMENT",
                 "The registration token is not a valid FCM registration token", "INVALID_ARGUMENT");

  // data is map<string, string>: every value must be a string.
  alert_id_.clear();
  simdjson::dom::object data;
  if (message["data"].get(data) == simdjson::SUCCESS) {
    for (auto field : data) {
      std::string_view v;
      if (field.value.get(v) != simdjson::SUCCESS)
        return error(resp, 400, "INVALID_ARGUMENT", kInvalid, "INVALID_ARGUMENT");
      if (field.key == "alert_id") alert_id_.assign(v);
    }
  }
  text_.clear();
  simdjson::dom::object android, notification;
  bool has_android = message["android"].get(android) == simdjson::SUCCESS;
  if (has_android) {
    std::string_view v;
    if (android["priority"].get(v) == simdjson::SUCCESS && v != "HIGH" && v != "NORMAL" && v != "high" &&
        v != "normal")
      return error(resp, 400, "INVALID_ARGUMENT", kInvalid, "INVALID_ARGUMENT");
    if (android["ttl"].get(v) == simdjson::SUCCESS && !is_duration(v))
      return error(resp, 400, "INVALID_ARGUMENT", kInvalid, "INVALID_ARGUMENT");
  }
  if (message["notification"].get(notification) == simdjson::SUCCESS)
    append_title_body(text_, notification);
  else if (has_android && android["notification"].get(notification) == simdjson::SUCCESS)
    append_title_body(text_, notification);

  if (has_token && unregistered_.contains(token))
    return error(resp, 404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED");

  bool validate_only = false;
  if ((*root)["validate_only"].get(validate_only) != simdjson::SUCCESS) validate_only = false;
  resp.status = 200;
  resp.add_header("content-type", "application/json; charset=UTF-8");
  resp.body.assign("{\"name\":\"projects/").append(project).append("/messages/");
  if (validate_only) {
    resp.body.append("fake_message_id\"}");
    return;
  }
  // Shaped like FCM's ids: "0:<time-ish>%<hex>".
  resp.body.append("0:").append(std::to_string(clock_.now_ms() * 1000 + (++counter_ % 1000))).push_back('%');
  append_hex(resp.body, token_prefix_ ^ counter_, 16);
  resp.body.append("\"}");
  recipient_.clear();
  if (has_token)
    recipient_.assign(token);
  else if (has_topic)
    recipient_.assign("topic:").append(topic);
  else
    recipient_.assign("condition:").append(condition);
  resp.add_delivery(recipient_, alert_id_, fnv1a64(text_));
}

void FcmService::fail(int status, const Request&, Response& resp) {
  switch (status) {
    case 400:
      return error(resp, 400, "INVALID_ARGUMENT", "Request contains an invalid argument.",
                   "INVALID_ARGUMENT");
    case 401:
      return error(resp, 401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service",
                   "THIRD_PARTY_AUTH_ERROR");
    case 403:
      return error(resp, 403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH");
    case 404:
      return error(resp, 404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED");
    case 429:
      return error(resp, 429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Send requests'.",
                   "QUOTA_EXCEEDED");
    case 503:
      return error(resp, 503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE");
    default:
      return error(resp, status, "INTERNAL", "Internal error encountered.", "INTERNAL");
  }
}

}  // namespace sirena::sim
