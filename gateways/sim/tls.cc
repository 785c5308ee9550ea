#include "gateways/sim/tls.h"

#include <nghttp2/nghttp2.h>
#include <openssl/err.h>

#include <cstring>

namespace sirena::sim {

namespace {

int select_h2(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
              unsigned int inlen, void*) {
  // nghttp2_select_next_protocol returns 1 when "h2" is in the client's list.
  if (nghttp2_select_next_protocol(const_cast<unsigned char**>(out), outlen, in, inlen) != 1)
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  return SSL_TLSEXT_ERR_OK;
}

// SSL_get_error() needs this thread's error queue empty before each I/O call. It nearly
// always is, and ERR_clear_error() walks every slot of it: clear only what is there.
void clear_errors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

}  // namespace

Result<std::unique_ptr<TlsContext>> TlsContext::load(const std::string& cert, const std::string& key) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) return make_error(ErrorKind::Config, "tls", "cannot create an SSL_CTX");
  std::unique_ptr<TlsContext> owner(new TlsContext(ctx));
  // RFC 9113 §9.2: TLS 1.2 or later, no compression, no renegotiation.
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1)
    return make_error(ErrorKind::Config, "tls", "--tls: cannot load the certificate chain " + cert);
  if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1)
    return make_error(ErrorKind::Config, "tls", "--tls: cannot load the private key " + key);
  if (SSL_CTX_check_private_key(ctx) != 1)
    return make_error(ErrorKind::Config, "tls", "--tls: the key does not match the certificate");
  SSL_CTX_set_alpn_select_cb(ctx, select_h2, nullptr);
  return owner;
}

TlsContext::~TlsContext() {
  SSL_CTX_free(ctx_);
}

TlsSession::TlsSession(SSL_CTX* ctx)
    : ssl_(SSL_new(ctx)), in_(BIO_new(BIO_s_mem())), out_(BIO_new(BIO_s_mem())) {
  BIO_set_mem_eof_return(in_, -1);  // an empty input BIO means "want read", not EOF
  SSL_set_bio(ssl_, in_, out_);
  SSL_set_accept_state(ssl_);
}

TlsSession::~TlsSession() {
  SSL_free(ssl_);
}

bool TlsSession::negotiated_h2() const {
  const unsigned char* proto = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl_, &proto, &len);
  return len == 2 && std::memcmp(proto, "h2", 2) == 0;
}

void TlsSession::drain(std::string& cipher) {
  char* data = nullptr;
  long n = BIO_get_mem_data(out_, &data);
  if (n > 0) {
    cipher.append(data, static_cast<size_t>(n));
    (void)BIO_reset(out_);
  }
}

bool TlsSession::receive(const char* data, size_t len, std::string& plain, std::string& cipher) {
  BIO_write(in_, data, static_cast<int>(len));
  if (!handshake_done()) {
    int rc = SSL_do_handshake(ssl_);
    drain(cipher);
    if (rc != 1) {
      int err = SSL_get_error(ssl_, rc);
      clear_errors();
      return err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE;
    }
  }
  char buf[16384];
  while (true) {
    int n = SSL_read(ssl_, buf, sizeof buf);
    if (n > 0) {
      plain.append(buf, static_cast<size_t>(n));
      continue;
    }
    int err = SSL_get_error(ssl_, n);
    drain(cipher);  // post-handshake messages (tickets, key updates)
    clear_errors();
    return err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE;
  }
}

bool TlsSession::send(const uint8_t* data, size_t len, std::string& cipher) {
  while (len > 0) {
    int n = SSL_write(ssl_, data, static_cast<int>(len));
    if (n <= 0) {
      clear_errors();
      return false;
    }
    data += n;
    len -= static_cast<size_t>(n);
  }
  drain(cipher);
  return true;
}

}  // namespace sirena::sim
