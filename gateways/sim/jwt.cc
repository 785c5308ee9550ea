#include "gateways/sim/jwt.h"

#include <openssl/evp.h>

#include <cmath>

namespace sirena::sim {

bool base64url_decode(std::string_view in, std::string& out) {
  if (in.size() % 4 == 1) return false;
  // OpenSSL decodes standard, padded base64: map the URL alphabet back and pad.
  std::string std64(in);
  for (char& c : std64) {
    if (c == '-')
      c = '+';
    else if (c == '_')
      c = '/';
    else if (!std::isalnum(static_cast<unsigned char>(c)))
      return false;
  }
  size_t pad = (4 - std64.size() % 4) % 4;
  std64.append(pad, '=');
  out.resize(std64.size() / 4 * 3);
  int n =
      EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(std64.data()), static_cast<int>(std64.size()));
  if (n < 0) return false;
  out.resize(static_cast<size_t>(n) - pad);  // EVP_DecodeBlock counts the padding as zero bytes
  return true;
}

Result<JwtClaims> parse_jwt(std::string_view token, JsonReader& json) {
  size_t dot1 = token.find('.');
  size_t dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos)
    return make_error(ErrorKind::BadRequest, "malformed", "a JWT has three dot-separated parts");
  std::string header, payload, signature;
  if (!base64url_decode(token.substr(0, dot1), header) ||
      !base64url_decode(token.substr(dot1 + 1, dot2 - dot1 - 1), payload) ||
      !base64url_decode(token.substr(dot2 + 1), signature) || signature.empty())
    return make_error(ErrorKind::BadRequest, "malformed", "JWT parts must be base64url");

  JwtClaims c;
  c.signature_bytes = signature.size();
  auto h = json.parse(header);
  if (!h || !h->is_object())
    return make_error(ErrorKind::BadRequest, "malformed", "the JWT header is not a JSON object");
  if (auto v = json_string(*h, "alg")) c.alg = *v;
  if (auto v = json_string(*h, "kid")) c.kid = *v;
  auto p = json.parse(payload);
  if (!p || !p->is_object())
    return make_error(ErrorKind::BadRequest, "malformed", "the JWT payload is not a JSON object");
  if (auto v = json_string(*p, "iss")) c.iss = *v;
  if (auto v = json_string(*p, "scope")) c.scope = *v;
  if (auto v = json_string(*p, "aud")) c.aud = *v;
  if (auto v = json_number(*p, "iat")) c.iat = static_cast<int64_t>(std::floor(*v));
  if (auto v = json_number(*p, "exp")) c.exp = static_cast<int64_t>(std::floor(*v));
  return c;
}

}  // namespace sirena::sim
