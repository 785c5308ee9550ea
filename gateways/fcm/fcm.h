// FCM HTTP v1 over the shared HTTP/2 layer.
//
// OAuth2 service-account flow: an RS256 JWT assertion {iss: client_email, scope, aud:
// token_uri, iat, exp} exchanged at token_uri for an access token, cached until five
// minutes before it expires (and dropped on 401). The exchange uses a second HTTP/2 Pool
// to the token origin (Google's token endpoint speaks h2); messages wait for it.
#pragma once

#include <deque>
#include <string>

#include "gateways/push/jwt.h"
#include "gateways/push/push_gateway.h"

namespace sirena::fcm {

struct FcmConfig {
  std::string url;                   // https://fcm.googleapis.com or the simulator (http:// = h2c)
  std::string project_id;
  std::string service_account_file;  // Google's JSON: client_email, private_key, token_uri
  std::string token_url;             // overrides the file's token_uri when set
  size_t connections = 2;
  size_t max_in_flight = 4000;
  bool verify_peer = true;
};

// The v1 message for one device: notification + data (alert id), android priority HIGH,
// ttl from CAP expires, collapse key. Built as a head that is the same for every device
// of one Content (fcm_message_head, with the TTL in seconds from fcm_ttl_s) finished with
// the device's token (fcm_message_finish); fcm_message does both.
int64_t fcm_ttl_s(const dispatch::Content& c, int64_t now_ms);
std::string fcm_message_head(const dispatch::Content& c, int64_t ttl_s);
void fcm_message_finish(std::string* head, const std::string& token);
std::string fcm_message(const dispatch::Content& c, const std::string& token, int64_t now_ms);

// FCM v1 errors: 200 accepted; UNREGISTERED (404) prunes the token; 401 drops the access
// token (`refresh_token` set) and resends; QUOTA_EXCEEDED (429), UNAVAILABLE (503) and
// INTERNAL (500) are retried honouring retry-after; INVALID_ARGUMENT and the rest fail.
dispatch::SendResult classify_fcm(const http2::Response& r, bool* refresh_token);

// The token server's answer (RFC 6749 §5.1): status 200 and a JSON object with a non-empty
// string "access_token" and, optionally, a whole number "expires_in" (seconds, default 3600).
// Anything else (another status, no JSON, a member of the wrong type or out of range) is an
// Error saying what was wrong: a failed fetch, never an exception in the HTTP/2 callback.
struct AccessToken {
  std::string token;
  int64_t expires_in_s = 3600;
};
Result<AccessToken> parse_token_reply(int status, std::string_view body);

class FcmGateway : public push::PushGateway {
 public:
  static Result<std::unique_ptr<FcmGateway>> create(uv_loop_t* loop, const Clock& clock, std::string name,
                                                     FcmConfig cfg);
  void close(std::function<void()> done) override;

 protected:
  bool ready(const dispatch::Message& m, Done& done) override;
  size_t held() const override { return waiting_.size(); }
  std::vector<Done> drop_held(const std::string& alert_id) override;
  http2::Request build(const dispatch::Message& m) override;
  dispatch::SendResult classify(const http2::Response& r) override;

 private:
  FcmGateway(uv_loop_t* loop, const Clock& clock, std::string name, FcmConfig cfg, http2::PoolOptions pool);
  void fetch_token();

  FcmConfig cfg_;
  push::SigningKey key_;
  std::string client_email_;
  std::string token_uri_;
  std::string token_path_;
  std::string path_;  // /v1/projects/<project>/messages:send
  std::unique_ptr<http2::Pool> token_pool_;
  std::string access_token_;
  int64_t token_expires_ms_ = 0;
  bool fetching_ = false;
  std::deque<std::pair<dispatch::Message, Done>> waiting_;  // for the access token
  push::RenderCache rendered_;
};

}  // namespace sirena::fcm
