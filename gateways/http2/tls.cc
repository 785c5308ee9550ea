#include "gateways/http2/tls.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <cstring>

namespace sirena::http2 {
namespace {

// ALPN protocol list in wire format (RFC 7301 §3.1): length-prefixed "h2" only. We never
// fall back to HTTP/1.1: the push gateways speak HTTP/2 only.
constexpr unsigned char kAlpnH2[] = {2, 'h', '2'};

std::string openssl_errors() {
  std::string out;
  char buf[256];
  while (unsigned long e = ERR_get_error()) {
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

// SSL_get_error() reads this thread's error queue, which must be empty before each I/O
// call. It nearly always is: clearing it only when something is queued saves
// ERR_clear_error()'s walk over every slot (with a free() each), which was 3% of
// sirenad's CPU over TLS, called before every SSL_read of a read loop.
void clear_errors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

}  // namespace

Result<SslCtxPtr> make_client_context(const std::string& ca_file, bool verify_peer) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return make_error(ErrorKind::Internal, "tls_context", "SSL_CTX_new: " + openssl_errors());
  // RFC 9113 §9.2: TLS 1.2 or higher.
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  // RFC 9113 §9.2.2 forbids the non-ephemeral and non-AEAD TLS 1.2 suites; TLS 1.3 suites
  // are all acceptable and are configured separately by OpenSSL.
  if (SSL_CTX_set_cipher_list(ctx.get(), "ECDHE+AESGCM:ECDHE+CHACHA20") != 1) {
    return make_error(ErrorKind::Internal, "tls_context", "cipher list: " + openssl_errors());
  }
  // RFC 9113 §9.2.1: compression and renegotiation must be off.
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_set_alpn_protos(ctx.get(), kAlpnH2, sizeof kAlpnH2) != 0) {
    return make_error(ErrorKind::Internal, "tls_context", "ALPN: " + openssl_errors());
  }
  if (verify_peer) {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1) ERR_clear_error();  // no system store: ca_file only
    if (!ca_file.empty() && SSL_CTX_load_verify_locations(ctx.get(), ca_file.c_str(), nullptr) != 1) {
      return make_error(ErrorKind::BadRequest, "tls_ca_file", "cannot load CA file: " + openssl_errors(),
                        ca_file);
    }
  } else {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  }
  return ctx;
}

TlsChannel::TlsChannel(SSL_CTX* ctx, const std::string& host, bool host_is_ip) {
  ssl_ = SSL_new(ctx);
  if (!ssl_) return;
  rbio_ = BIO_new(BIO_s_mem());
  wbio_ = BIO_new(BIO_s_mem());
  if (!rbio_ || !wbio_) {
    BIO_free(rbio_);
    BIO_free(wbio_);
    SSL_free(ssl_);
    ssl_ = nullptr;
    return;
  }
  // An empty memory BIO means "no data yet", not end of file.
  BIO_set_mem_eof_return(rbio_, -1);
  SSL_set_bio(ssl_, rbio_, wbio_);
  SSL_set_connect_state(ssl_);
  if (host_is_ip) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), host.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl_, host.c_str());  // SNI: names only (RFC 6066 §3)
    SSL_set1_host(ssl_, host.c_str());
  }
}

TlsChannel::~TlsChannel() {
  if (ssl_) SSL_free(ssl_);  // frees both BIOs
}

void TlsChannel::feed(const char* data, size_t len) {
  BIO_write(rbio_, data, static_cast<int>(len));
}

TlsChannel::Step TlsChannel::handshake(std::string* error) {
  clear_errors();
  int rv = SSL_do_handshake(ssl_);
  if (rv == 1) return Step::Done;
  int err = SSL_get_error(ssl_, rv);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return Step::WantMore;
  *error = "TLS handshake failed";
  std::string reasons = openssl_errors();
  if (!reasons.empty()) *error += ": " + reasons;
  long verify = SSL_get_verify_result(ssl_);
  if (verify != X509_V_OK) {
    *error += std::string("; certificate: ") + X509_verify_cert_error_string(verify);
  }
  return Step::Failed;
}

bool TlsChannel::alpn_h2() const {
  const unsigned char* proto = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl_, &proto, &len);
  return len == 2 && std::memcmp(proto, "h2", 2) == 0;
}

int TlsChannel::read(char* buf, size_t len, std::string* error) {
  clear_errors();
  int n = SSL_read(ssl_, buf, static_cast<int>(len));
  if (n > 0) return n;
  int err = SSL_get_error(ssl_, n);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return 0;
  if (err == SSL_ERROR_ZERO_RETURN) {
    *error = "TLS close_notify from peer";
  } else {
    *error = "TLS read failed: " + openssl_errors();
  }
  return -1;
}

bool TlsChannel::write(const std::string& plain, std::string* out, std::string* error) {
  clear_errors();
  // SSL_write cuts the buffer into records of at most 16 KiB; with a memory BIO it never
  // blocks, so one call takes everything.
  int n = SSL_write(ssl_, plain.data(), static_cast<int>(plain.size()));
  if (n <= 0) {
    *error = "TLS write failed: " + openssl_errors();
    return false;
  }
  drain(out);
  return true;
}

void TlsChannel::drain(std::string* out) {
  size_t pending = BIO_ctrl_pending(wbio_);
  if (pending == 0) return;
  size_t old = out->size();
  out->resize(old + pending);
  int n = BIO_read(wbio_, out->data() + old, static_cast<int>(pending));
  out->resize(old + (n > 0 ? static_cast<size_t>(n) : 0));
}

void TlsChannel::shutdown() {
  clear_errors();
  SSL_shutdown(ssl_);
  clear_errors();
}

}  // namespace sirena::http2
