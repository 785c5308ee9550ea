// One HTTP/2 client layer for every push gateway (APNs, FCM): nghttp2 client sessions
// over libuv TCP, with OpenSSL TLS (ALPN "h2") for https:// URLs or h2c with prior
// knowledge (RFC 9113 §3.3) for http:// URLs.
//
// A Pool holds N connections to one origin and spreads requests over them. It
//  - queues requests and starts each when a connection has a free stream, honouring the
//    peer's SETTINGS_MAX_CONCURRENT_STREAMS as it changes (RFC 9113 §6.5.2);
//  - on GOAWAY (RFC 9113 §6.8) opens no new stream on that connection; streams above
//    last_stream_id come back as Failure::Refused (never processed: safe to resend), the
//    others finish; the connection is replaced, with exponential backoff on failure;
//  - sends PING when a connection is idle and closes it when the ack does not come;
//  - times out each stream (Request::timeout) and resets it (RST_STREAM CANCEL);
//  - flushes writes once per loop turn (nghttp2_session_send from a uv_check/uv_idle or
//    prepare hook, never from inside nghttp2 callbacks).
//
// Ownership: the owner keeps the Pool alive until close()'s callback; every submitted
// request's callback runs exactly once (Failure::Closed for those still queued at close).
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/core/clock.h"
#include "daemon/core/result.h"

namespace sirena::http2 {

struct Header {
  std::string name;  // lower case
  std::string value;
};

// Headers and a body that many requests send alike (one alert's APNs headers and payload):
// built once and referenced by each request instead of copied into it.
struct SharedPart {
  std::vector<Header> headers;
  std::string body;
};

struct Request {
  std::string method = "POST";
  std::string path;  // e.g. "/3/device/<token>"
  std::vector<Header> headers;
  std::string body;
  std::shared_ptr<const SharedPart> shared;  // its headers follow `headers`; its body is sent when `body` is empty
  std::chrono::milliseconds timeout{10000};
  std::string tag;  // the owner's label (an alert id): Pool::cancel() drops queued requests by it

  const std::string& payload() const { return body.empty() && shared ? shared->body : body; }
};

struct Response {
  int status = 0;
  std::vector<Header> headers;
  std::string body;
  const std::string* header(std::string_view name) const;
};

enum class Failure {
  None,     // a response arrived (any status)
  Refused,  // not processed by the server (GOAWAY above last_stream_id, REFUSED_STREAM): resend
  Reset,    // the stream was reset or the connection lost after the request went out: may have been processed
  Timeout,  // no response within Request::timeout
  Connect,  // could not connect / TLS handshake failed (the pool keeps retrying)
  Closed,   // the pool was closed
  Cancelled,  // dropped by Pool::cancel() before it started: nothing was sent
};
const char* to_string(Failure f);

using Callback = std::function<void(const Response* response, Failure failure, const std::string& detail)>;

struct PoolOptions {
  std::string url;               // https://host:port or http://host:port (h2c)
  size_t connections = 1;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds ping_interval{30000};  // idle time before a PING
  std::chrono::milliseconds ping_timeout{5000};
  std::chrono::milliseconds backoff_max{10000};
  std::string ca_file;           // extra CA (PEM) for TLS; empty = system store
  bool verify_peer = true;       // false only for tests against self-signed simulators
};

// Connection events an owner may count (exported as sirena_http2_*_total by the app).
enum class PoolEvent {
  Goaway,     // the peer sent GOAWAY (RFC 9113 §6.8): the connection is being replaced
  Reconnect,  // a slot opens a connection again after losing or draining its last one
};
const char* to_string(PoolEvent e);
using PoolObserver = std::function<void(PoolEvent)>;

struct PoolStats {
  size_t connections_open = 0;
  size_t streams_in_flight = 0;
  size_t queued = 0;
  uint64_t goaways = 0;
  uint64_t reconnects = 0;
};

class Pool {
 public:
  Pool(uv_loop_t* loop, PoolOptions options, const Clock& clock);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Checks the URL and starts connecting. 
  Status start();
  void submit(Request request, Callback callback);
  // Drops the queued requests (not yet started on a connection) whose tag is `tag`: each
  // callback runs with Failure::Cancelled before cancel() returns. Started streams run to
  // their end. Returns how many were dropped.
  size_t cancel(std::string_view tag);
  PoolStats stats() const;
  // Called on the loop for every event, after stats() counts it. It must not close the pool.
  void set_observer(PoolObserver observer);
  void close(std::function<void()> done);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sirena::http2
