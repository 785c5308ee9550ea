// Apple's provider API (APNs over HTTP/2): POST /3/device/<token>.
//
// Follows "Sending notification requests to APNs" and "Handling notification responses
// from APNs" (developer.apple.com, UserNotifications): every answer carries apns-id (the
// request's, or a new UUID); errors are {"reason": "<Apple's name>"}, 410 adds
// "timestamp" (ms since the epoch). Checks, in order:
//   not /3/device/...                       404 BadPath
//   method other than POST                  405 MethodNotAllowed
//   apns-id not a UUID                      400 BadMessageId
//   no authorization                        403 MissingProviderToken
//   not "bearer <JWT>" with alg ES256, kid,
//     iss, iat and a 64-byte signature      403 InvalidProviderToken
//   iat older than one hour                 403 ExpiredProviderToken
//   no apns-topic                           400 MissingTopic
//   empty token / not 64 hex digits         400 MissingDeviceToken / BadDeviceToken
//   apns-push-type not one of Apple's       400 InvalidPushType
//   apns-priority not 10, 5 or 1            400 BadPriority
//   apns-expiration not a number            400 BadExpirationDate
//   apns-collapse-id over 64 bytes          400 BadCollapseId
//   payload over 4096 bytes                 413 PayloadTooLarge
//   payload empty, not JSON or without an
//     "aps" dictionary                      400 PayloadEmpty (Apple's table has no other name)
//   token in --unregistered                 410 Unregistered
// Accepted: 200, empty body. The record holds the token, the payload's top-level
// "alert_id" (a string or a number) and the FNV-1a 64 hash of aps.alert (a string, or
// title + "\n" + body).
#pragma once

#include <string>
#include <unordered_map>

#include "daemon/core/clock.h"
#include "gateways/sim/json.h"
#include "gateways/sim/service.h"

namespace sirena::sim {

class ApnsService final : public Service {
 public:
  ApnsService(const Clock& clock, const RecipientSet& unregistered, uint64_t seed);

  bool is_message(const Request& req) const override;
  void handle(const Request& req, Response& resp) override;
  void fail(int status, const Request& req, Response& resp) override;

  static constexpr size_t kMaxPayload = 4096;    // bytes, for every push type but VoIP
  static constexpr int64_t kTokenMaxAge = 3600;  // seconds: "no older than one hour"

 private:
  // The result of checking one provider token, cached by its text: a client reuses a
  // token for 20 to 60 minutes, so the JWT is decoded once, not per request.
  struct TokenCheck {
    bool valid = false;
    int64_t iat = 0;
  };
  const TokenCheck& check_token(std::string_view jwt);
  void reject(Response& resp, int status, std::string_view reason);
  void set_apns_id(const Request& req, Response& resp);
  void answer_unregistered(Response& resp);

  const Clock& clock_;
  const RecipientSet& unregistered_;
  JsonReader json_;
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, TokenCheck, Hash, std::equal_to<>> tokens_;
  uint64_t id_prefix_;
  uint64_t id_counter_ = 0;
  std::string text_;        // scratch for the alert text
  std::string id_scratch_;  // scratch for a generated apns-id
};

}  // namespace sirena::sim
