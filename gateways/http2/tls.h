// TLS for the HTTP/2 client: one SSL_CTX per Pool, one TlsChannel per connection.
//
// The channel never touches the socket. Ciphertext read from TCP is fed in with feed();
// ciphertext to send is drained into the connection's output buffer (memory BIOs), so the
// connection keeps a single write path and flushes once per loop turn, TLS or not.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "daemon/core/result.h"

namespace sirena::http2 {

struct SslCtxFree {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;

// A client context for HTTP/2: TLS 1.2 or later with AEAD ECDHE suites only (RFC 9113 §9.2.1,
// §9.2.2), ALPN "h2" offered (RFC 9113 §3.2), peers verified against the system store plus
// `ca_file` unless `verify_peer` is false.
Result<SslCtxPtr> make_client_context(const std::string& ca_file, bool verify_peer);

class TlsChannel {
 public:
  // `host` is used for SNI (names only, RFC 6066 §3) and for certificate name checks.
  TlsChannel(SSL_CTX* ctx, const std::string& host, bool host_is_ip);
  ~TlsChannel();
  TlsChannel(const TlsChannel&) = delete;
  TlsChannel& operator=(const TlsChannel&) = delete;

  bool valid() const { return ssl_ != nullptr; }

  // Ciphertext from the peer.
  void feed(const char* data, size_t len);

  enum class Step { Done, WantMore, Failed };
  // Advances the handshake; on Failed, `error` says why (OpenSSL's reason and the
  // certificate verification result).
  Step handshake(std::string* error);

  // True once the server selected "h2" by ALPN.
  bool alpn_h2() const;

  // Decrypts into `buf`: > 0 bytes read, 0 when more ciphertext is needed, -1 when the
  // peer closed (close_notify) or the record layer failed (`error` says which).
  int read(char* buf, size_t len, std::string* error);

  // Encrypts `plain` (all of it: the memory BIO grows) and appends the records to `out`.
  bool write(const std::string& plain, std::string* out, std::string* error);

  // Appends pending ciphertext (handshake records, alerts) to `out`.
  void drain(std::string* out);

  // Queues close_notify (best effort; the caller drains and writes it).
  void shutdown();

 private:
  SSL* ssl_ = nullptr;
  BIO* rbio_ = nullptr;  // owned by ssl_
  BIO* wbio_ = nullptr;  // owned by ssl_
};

}  // namespace sirena::http2
