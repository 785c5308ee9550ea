// APNs (Apple Push Notification service) provider API over the shared HTTP/2 layer.
//
// Token-based authentication: an ES256 provider JWT {iss: team id, iat} with the key id
// in its header, refreshed every 30 minutes (Apple accepts a token between 20 and 60
// minutes old; refreshing more often than every 20 is refused), and at once on
// 403 ExpiredProviderToken. One Pool per team/key.
#pragma once

#include <string>

#include "gateways/push/jwt.h"
#include "gateways/push/push_gateway.h"

namespace sirena::apns {

struct ApnsConfig {
  std::string url;               // https://api.push.apple.com or the simulator (http:// = h2c)
  std::string team_id;
  std::string key_id;
  std::string key_file;          // the .p8 key (PEM, EC P-256)
  bool critical_alerts = false;  // the app has Apple's critical-alert entitlement
  size_t connections = 2;
  size_t max_in_flight = 4000;
  bool verify_peer = true;
};

// The APNs payload for one alert in one language (the same for every device): aps.alert
// {title, body}, interruption-level by severity, the alert id in custom data, cut (at a
// UTF-8 boundary) to fit 4096 bytes.
std::string apns_payload(const dispatch::Content& c, bool critical_alerts);

// Apple's error table: 200 accepted; 410 Unregistered, 400 BadDeviceToken (and
// DeviceTokenNotForTopic) prune the token; 403 ExpiredProviderToken is resent with a fresh
// JWT (`refresh_jwt` set); 429 and 5xx are retried (Retry-After honoured); the rest fail.
dispatch::SendResult classify_apns(const http2::Response& r, bool* refresh_jwt);

class ApnsGateway : public push::PushGateway {
 public:
  static Result<std::unique_ptr<ApnsGateway>> create(uv_loop_t* loop, const Clock& clock, std::string name,
                                                      ApnsConfig cfg);

 protected:
  http2::Request build(const dispatch::Message& m) override;
  dispatch::SendResult classify(const http2::Response& r) override;

 private:
  ApnsGateway(uv_loop_t* loop, const Clock& clock, std::string name, ApnsConfig cfg, push::SigningKey key,
              http2::PoolOptions pool);
  const std::string& token();

  ApnsConfig cfg_;
  push::SigningKey key_;
  std::string jwt_;
  int64_t jwt_issued_ms_ = 0;
  bool refresh_now_ = false;
  push::RenderCache rendered_;
};

}  // namespace sirena::apns
