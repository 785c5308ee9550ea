#include "gateways/sim/apns.h"

#include <array>
#include <charconv>
#include <random>

#include "gateways/sim/jwt.h"
#include "gateways/sim/ledger.h"

namespace sirena::sim {

namespace {

constexpr std::string_view kDevicePrefix = "/3/device/";

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool is_uuid(std::string_view s) {
  // 8-4-4-4-12 hex digits (RFC 4122's canonical form), as Apple asks for apns-id.
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !is_hex(s[i])) return false;
  }
  return true;
}

bool is_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  return true;
}

// Apple's documented apns-push-type values.
bool is_push_type(std::string_view t) {
  static constexpr std::array<std::string_view, 10> kTypes = {
      "alert",        "background", "location",     "voip",       "complication",
      "fileprovider", "mdm",        "liveactivity", "pushtotalk", "widgets"};
  for (auto k : kTypes)
    if (k == t) return true;
  return false;
}

void append_hex(std::string& out, uint64_t v, int digits) {
  static const char kHex[] = "0123456789abcdef";
  for (int i = digits - 1; i >= 0; --i) out.push_back(kHex[(v >> (4 * i)) & 0xf]);
}

}  // namespace

ApnsService::ApnsService(const Clock& clock, const RecipientSet& unregistered, uint64_t seed)
    : clock_(clock), unregistered_(unregistered), id_prefix_(std::mt19937_64(seed ^ 0xa905)()) {}

bool ApnsService::is_message(const Request& req) const {
  return req.path.starts_with(kDevicePrefix);
}

void ApnsService::set_apns_id(const Request& req, Response& resp) {
  if (auto id = req.header("apns-id"); id && is_uuid(*id)) {
    resp.add_header("apns-id", *id);
    return;
  }
  // A version-4-shaped UUID: a random prefix per process and a counter, unique and cheap.
  std::string& id = id_scratch_;
  id.clear();
  uint64_t n = ++id_counter_;
  append_hex(id, id_prefix_ >> 32, 8);
  id.push_back('-');
  append_hex(id, id_prefix_ >> 16, 4);
  id.append("-4");
  append_hex(id, id_prefix_, 3);
  id.push_back('-');
  append_hex(id, 0x8000 | ((n >> 48) & 0x3fff), 4);
  id.push_back('-');
  append_hex(id, n, 12);
  resp.add_header("apns-id", id);
}

void ApnsService::reject(Response& resp, int status, std::string_view reason) {
  resp.status = status;
  resp.add_header("content-type", "application/json");
  resp.body.assign("{\"reason\":\"").append(reason).append("\"}");
}

const ApnsService::TokenCheck& ApnsService::check_token(std::string_view jwt) {
  auto it = tokens_.find(jwt);
  if (it != tokens_.end()) return it->second;
  if (tokens_.size() >= 4096) tokens_.clear();  // bounded: a misbehaving client cannot grow it
  TokenCheck check;
  auto claims = parse_jwt(jwt, json_);
  // Apple: "alg" ES256 and "kid" (the key id) in the header, "iss" (team id) and "iat" in
  // the claims, signed with the P-256 key: a JOSE ES256 signature is 64 bytes.
  if (claims && claims->alg == "ES256" && !claims->kid.empty() && !claims->iss.empty() && claims->iat >= 0 &&
      claims->signature_bytes == 64) {
    check.valid = true;
    check.iat = claims->iat;
  }
  return tokens_.emplace(std::string(jwt), check).first->second;
}

void ApnsService::answer_unregistered(Response& resp) {
  // Apple: "the last time at which APNs confirmed that the device token was no longer
  // valid for the topic", in milliseconds since the epoch.
  resp.status = 410;
  resp.add_header("content-type", "application/json");
  resp.body.assign("{\"reason\":\"Unregistered\",\"timestamp\":")
      .append(std::to_string(clock_.now_ms()))
      .append("}");
}

void ApnsService::handle(const Request& req, Response& resp) {
  if (!is_message(req)) return reject(resp, 404, "BadPath");
  if (req.method != "POST") return reject(resp, 405, "MethodNotAllowed");
  if (auto id = req.header("apns-id"); id && !is_uuid(*id)) return reject(resp, 400, "BadMessageId");
  set_apns_id(req, resp);

  auto auth = req.header("authorization");
  if (!auth || auth->empty()) return reject(resp, 403, "MissingProviderToken");
  if (!starts_with_nocase(*auth, "bearer ")) return reject(resp, 403, "InvalidProviderToken");
  const TokenCheck& token = check_token(auth->substr(7));
  if (!token.valid) return reject(resp, 403, "InvalidProviderToken");
  if (clock_.now_ms() / 1000 - token.iat > kTokenMaxAge) return reject(resp, 403, "ExpiredProviderToken");

  if (!req.header("apns-topic")) return reject(resp, 400, "MissingTopic");
  std::string_view device = std::string_view(req.path).substr(kDevicePrefix.size());
  if (device.empty()) return reject(resp, 400, "MissingDeviceToken");
  if (device.size() != 64) return reject(resp, 400, "BadDeviceToken");
  for (char c : device)
    if (!is_hex(c)) return reject(resp, 400, "BadDeviceToken");

  if (auto t = req.header("apns-push-type"); t && !is_push_type(*t))
    return reject(resp, 400, "InvalidPushType");
  if (auto p = req.header("apns-priority"); p && *p != "10" && *p != "5" && *p != "1")
    return reject(resp, 400, "BadPriority");
  if (auto e = req.header("apns-expiration"); e && !is_digits(*e))
    return reject(resp, 400, "BadExpirationDate");
  if (auto c = req.header("apns-collapse-id"); c && c->size() > 64) return reject(resp, 400, "BadCollapseId");

  if (req.body_truncated || req.body.size() > kMaxPayload) return reject(resp, 413, "PayloadTooLarge");
  auto root = req.body.empty() ? std::nullopt : json_.parse(req.body);
  simdjson::dom::object aps;
  if (!root || (*root)["aps"].get(aps) != simdjson::SUCCESS) return reject(resp, 400, "PayloadEmpty");

  if (unregistered_.contains(device)) return answer_unregistered(resp);

  // The alert text: aps.alert as a string, or its title and body.
  text_.clear();
  simdjson::dom::element alert;
  if (aps["alert"].get(alert) == simdjson::SUCCESS) {
    std::string_view s;
    if (alert.get(s) == simdjson::SUCCESS) {
      text_.assign(s);
    } else {
      if (auto t = json_string(alert, "title")) text_.assign(*t);
      text_.push_back('\n');
      if (auto b = json_string(alert, "body")) text_.append(*b);
    }
  }
  std::string_view alert_id;
  char number[32];
  simdjson::dom::element id;
  if ((*root)["alert_id"].get(id) == simdjson::SUCCESS) {
    int64_t n;
    if (id.get(alert_id) != simdjson::SUCCESS && id.get(n) == simdjson::SUCCESS) {
      auto r = std::to_chars(number, number + sizeof number, n);
      alert_id = std::string_view(number, static_cast<size_t>(r.ptr - number));
    }
  }
  resp.status = 200;
  resp.add_delivery(device, alert_id, fnv1a64(text_));
}

void ApnsService::fail(int status, const Request& req, Response& resp) {
  set_apns_id(req, resp);
  switch (status) {
    case 400:
      return reject(resp, status, "BadDeviceToken");
    case 403:
      return reject(resp, status, "ExpiredProviderToken");
    case 410:
      return answer_unregistered(resp);
    case 413:
      return reject(resp, status, "PayloadTooLarge");
    case 429:
      return reject(resp, status, "TooManyRequests");
    case 500:
      return reject(resp, status, "InternalServerError");
    case 503:
      return reject(resp, status, "ServiceUnavailable");
    default:
      return reject(resp, status, "InternalServerError");
  }
}

}  // namespace sirena::sim
