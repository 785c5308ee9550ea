// JSON Web Tokens for the push gateways (RFC 7519), signed with OpenSSL:
// ES256 for APNs provider tokens, RS256 for the FCM service-account assertion.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "daemon/core/result.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace sirena::push {

std::string base64url(std::string_view bytes);

class SigningKey {
 public:
  // A PEM private key (PKCS#8 "BEGIN PRIVATE KEY", as Apple's .p8 and Google's JSON carry).
  static Result<SigningKey> from_pem(std::string_view pem);
  static Result<SigningKey> from_file(const std::string& path);
  // header.payload.signature; ES256 for EC P-256 keys, RS256 for RSA keys.
  Result<std::string> sign(const nlohmann::json& header, const nlohmann::json& payload) const;
  bool is_ec() const;

 private:
  std::shared_ptr<EVP_PKEY> key_;
};

}  // namespace sirena::push
