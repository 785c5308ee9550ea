// The inbound HTTP server: h2o (libuv build) serving HTTP/1.1, h2c and, when a
// certificate is configured, TLS with ALPN h2/http1.1.
//
// The server knows nothing about routes. Each request becomes a Request plus a
// Responder and goes to one Handler. The handler may answer at once or later (after
// Redis replies); a Responder outlives a client that went away, and answering a
// vanished request is a no-op.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "daemon/config/config.h"
#include "daemon/core/clock.h"
#include "daemon/core/result.h"

struct st_h2o_req_t;

namespace sirena::metrics {
class Metrics;
}

namespace sirena::http {

struct Request {
  std::string_view method;
  std::string_view path;   // without the query
  std::string_view query;  // after '?', may be empty
  std::string_view body;
  std::string remote;  // peer IP address
  st_h2o_req_t* raw = nullptr;

  std::optional<std::string_view> header(std::string_view lower_case_name) const;
  std::optional<std::string> query_param(std::string_view name) const;  // percent-decoded
};

class Responder {
 public:
  Responder(st_h2o_req_t* req, const Clock& clock, metrics::Metrics& metrics);
  ~Responder();
  Responder(const Responder&) = delete;
  Responder& operator=(const Responder&) = delete;

  // Called when h2o disposes of the request before it was answered: the client reset
  // the stream or closed the connection (set by the server).
  void on_abandoned(std::function<void()> f) { on_abandoned_ = std::move(f); }
  // Whether the handler has been called (the server queues requests first; server.h).
  bool handled() const { return handled_; }
  void set_handled() { handled_ = true; }
  // The route label for metrics ("/v1/alerts/{id}"); set by the router.
  void set_route(std::string route) { route_ = std::move(route); }
  bool alive() const { return req_ != nullptr; }
  bool sent() const { return sent_; }

  void send(int status, std::string_view content_type, std::string_view body,
            const std::vector<std::pair<std::string, std::string>>& headers = {});
  // {"error": {"code", "message", "where"}} with http_status(e.kind), plus Retry-After
  // for Unavailable and WWW-Authenticate for Unauthenticated.
  void send_error(const Error& e);
  void send_json(int status, const std::string& json_text);

  // A streamed response (Server-Sent Events): start once, write chunks, end. Chunks are
  // copied and sent one at a time as the connection drains. Writing to a response whose
  // client has gone is a no-op; alive() tells.
  void start_stream(int status, std::string_view content_type);
  void write(std::string_view chunk);
  void end();

 private:
  friend struct RequestGuard;
  friend struct StreamGenerator;
  void flush_stream();
  struct StreamGenerator* stream_ = nullptr;  // lives in the request pool
  std::vector<std::string> pending_chunks_;
  bool stream_busy_ = false;
  bool stream_ending_ = false;
  st_h2o_req_t* req_;
  struct RequestGuard* guard_;
  const Clock& clock_;
  metrics::Metrics& metrics_;
  int64_t started_ns_;
  std::string route_ = "unmatched";
  bool sent_ = false;
  std::function<void()> on_abandoned_;
  bool handled_ = false;
};

using Handler = std::function<void(const Request&, std::shared_ptr<Responder>)>;

// A request is not handed to the handler from inside h2o's read callback: it is queued
// and run from a uv_check callback, after every socket of this loop turn has been read.
// A stream the client reset in the same burst (HTTP/2 "rapid reset", CVE-2023-44487) is
// gone by then and costs no handler and no Redis work. A connection that abandons more
// than http.limits.max_resets_per_connection requests in 10 s is closed.
//
// HTTP/1.1 framing that a proxy in front could read differently (request smuggling) is
// refused with 400 and the connection closed: two Content-Length fields, or
// Content-Length with Transfer-Encoding (h2o 2.2.5 silently uses the first length, or the
// chunking). Two Authorization fields are refused with 400 on every protocol.
class Server {
 public:
  Server(uv_loop_t* loop, const config::HttpConfig& cfg, const Clock& clock, metrics::Metrics& metrics,
         Handler handler);
  ~Server();

  // Binds and listens. The largest body any route accepts is `max_body_bytes` (h2o
  // buffers whole bodies; larger ones get h2o's own 413).
  Status start(size_t max_body_bytes);
  // Stops accepting connections and asks open ones to finish (HTTP/2 GOAWAY,
  // HTTP/1 "Connection: close"). `in_flight()` then drains to 0.
  void stop_accepting();
  int port() const { return port_; }
  int64_t in_flight() const { return in_flight_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
  int64_t in_flight_ = 0;
};

}  // namespace sirena::http
