#include "gateways/push/jwt.h"

#include <openssl/bio.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <fstream>
#include <sstream>

namespace sirena::push {

std::string base64url(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  for (auto& c : out) c = c == '+' ? '-' : c == '/' ? '_' : c;
  while (!out.empty() && out.back() == '=') out.pop_back();  // RFC 7515 §2: no padding
  return out;
}

Result<SigningKey> SigningKey::from_pem(std::string_view pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())),
                                                BIO_free);
  EVP_PKEY* k = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
  if (!k) return make_error(ErrorKind::Config, "invalid_key", "not a PEM private key");
  SigningKey s;
  s.key_ = std::shared_ptr<EVP_PKEY>(k, EVP_PKEY_free);
  if (EVP_PKEY_base_id(k) != EVP_PKEY_EC && EVP_PKEY_base_id(k) != EVP_PKEY_RSA)
    return make_error(ErrorKind::Config, "invalid_key", "the key must be EC P-256 (APNs) or RSA (FCM)");
  return s;
}

Result<SigningKey> SigningKey::from_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return make_error(ErrorKind::Config, "invalid_key", "cannot read key file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto k = from_pem(ss.str());
  if (!k) return make_error(ErrorKind::Config, "invalid_key", path + ": " + k.error().message);
  return k;
}

bool SigningKey::is_ec() const {
  return key_ && EVP_PKEY_base_id(key_.get()) == EVP_PKEY_EC;
}

Result<std::string> SigningKey::sign(const nlohmann::json& header, const nlohmann::json& payload) const {
  std::string input = base64url(header.dump()) + "." + base64url(payload.dump());
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  size_t len = 0;
  if (EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key_.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()),
                     input.size()) != 1)
    return make_error(ErrorKind::Internal, "jwt_failed", "signing failed");
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1)
    return make_error(ErrorKind::Internal, "jwt_failed", "signing failed");
  sig.resize(len);
  if (is_ec()) {
    // JWS ES256 wants r || s, 32 bytes each (RFC 7518 §3.4), not OpenSSL's DER.
    const unsigned char* p = reinterpret_cast<const unsigned char*>(sig.data());
    std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> es(
        d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size())), ECDSA_SIG_free);
    if (!es) return make_error(ErrorKind::Internal, "jwt_failed", "bad ECDSA signature");
    std::string raw(64, '\0');
    BN_bn2binpad(ECDSA_SIG_get0_r(es.get()), reinterpret_cast<unsigned char*>(raw.data()), 32);
    BN_bn2binpad(ECDSA_SIG_get0_s(es.get()), reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
    sig = raw;
  }
  return input + "." + base64url(sig);
}

}  // namespace sirena::push
