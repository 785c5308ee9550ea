// Server-side TLS over memory BIOs for the HTTP/2 core: the socket code moves ciphertext,
// OpenSSL never touches a file descriptor, so TLS fits the libuv read/write callbacks.
// ALPN offers only "h2" (RFC 9113 §3.2); a client that does not ask for it is refused.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "daemon/core/result.h"

namespace sirena::sim {

// Owns the SSL_CTX (certificate chain, key, ALPN selection).
class TlsContext {
 public:
  static Result<std::unique_ptr<TlsContext>> load(const std::string& cert, const std::string& key);
  ~TlsContext();
  SSL_CTX* get() const { return ctx_; }

 private:
  explicit TlsContext(SSL_CTX* ctx) : ctx_(ctx) {}
  SSL_CTX* ctx_;
};

// One connection's TLS state.
class TlsSession {
 public:
  explicit TlsSession(SSL_CTX* ctx);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Takes ciphertext from the peer; appends the decrypted bytes to `plain` and any
  // handshake bytes to send to `cipher`. False on a fatal TLS error.
  bool receive(const char* data, size_t len, std::string& plain, std::string& cipher);
  // Encrypts `len` bytes and appends the records to `cipher`. False on a fatal error.
  bool send(const uint8_t* data, size_t len, std::string& cipher);

  bool handshake_done() const { return SSL_is_init_finished(ssl_) == 1; }
  bool negotiated_h2() const;

 private:
  void drain(std::string& cipher);
  SSL* ssl_;
  BIO* in_;   // owned by ssl_
  BIO* out_;  // owned by ssl_
};

}  // namespace sirena::sim
