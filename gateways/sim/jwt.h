// JWT shape checks (RFC 7519, JWS compact serialisation RFC 7515 §7.1) for APNs provider
// tokens (ES256) and FCM service-account assertions (RS256). The simulator holds no keys,
// so signatures are checked for length only: ES256 is the 64-byte JOSE r||s form
// (RFC 7518 §3.4), a DER signature, a common client bug, is rejected as real APNs does.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "daemon/core/result.h"
#include "gateways/sim/json.h"

namespace sirena::sim {

struct JwtClaims {
  std::string alg, kid;
  std::string iss, scope, aud;
  int64_t iat = -1;  // seconds since the epoch; -1 when absent
  int64_t exp = -1;
  size_t signature_bytes = 0;
};

// Splits and decodes a compact JWT; checks the parts are base64url and the header and
// payload are JSON objects. Claims that are absent stay empty or -1. Error::message says
// what is wrong (the callers map it onto their protocol's error).
Result<JwtClaims> parse_jwt(std::string_view token, JsonReader& json);

// base64url without padding (RFC 4648 §5); false on a character outside the alphabet.
bool base64url_decode(std::string_view in, std::string& out);

}  // namespace sirena::sim
