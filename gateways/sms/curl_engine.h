// One HTTP/1.1 client engine for the SMS providers: libcurl's multi-socket API driven by a
// libuv loop (the pattern of curl's docs/examples/multi-uv.c).
//
//  - one uv_timer_t serves CURLMOPT_TIMERFUNCTION; one uv_poll_t per socket serves
//    CURLMOPT_SOCKETFUNCTION. Connection sockets are opened and closed through libcurl's
//    OPENSOCKET/CLOSESOCKET callbacks and keep their handle as long as they are open (a
//    kept-alive connection is not re-registered with epoll for every request; an idle one
//    stays polled for reading, to notice the server closing it); the descriptor is closed
//    in the handle's close callback, so its number is never reused while a handle for it
//    is closing. Other sockets libcurl watches get a handle through curl_multi_assign()
//    until CURL_POLL_REMOVE;
//  - curl_multi_info_read() is drained after every curl_multi_socket_action();
//  - a poll error (status < 0) reaches libcurl as CURL_CSELECT_ERR;
//  - connections stay in the multi's cache and are reused (CURLMOPT_MAXCONNECTS,
//    CURLMOPT_MAX_HOST_CONNECTIONS); easy handles are recycled through a free list;
//  - at most `max_in_flight` requests run at once; later ones wait in a FIFO here.
//
// Ownership: the owner keeps the engine alive until close()'s callback has run. Every
// submitted request's callback runs exactly once, on the loop: with the reply, or with
// status 0 and `error` set (transport failure, timeout, or the engine closed). Only a
// request submitted to a closed engine, or one libcurl refuses outright (out of memory),
// is answered before submit() returns. Destroying an engine that was not closed closes it
// in the background and drops the callbacks.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "daemon/core/result.h"

namespace sirena::sms {

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  std::string body;
  int64_t timeout_ms = 0;  // total time; 0 = the engine's default
  std::string tag;         // the owner's label (an alert id): cancel() drops queued requests by it
};

struct HttpReply {
  long status = 0;  // 0: no HTTP answer (see `error`)
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // names in lower case
  std::string error;                                         // libcurl's error text when status == 0
  double seconds = 0;                                        // total time of the transfer
  long connects = 0;  // new connections this request opened (0 = reused one)
  bool cancelled = false;  // dropped by cancel() before it started: nothing was sent

  const std::string* header(std::string_view name) const;  // `name` in lower case
};

using ReplyCallback = std::function<void(const HttpReply&)>;

struct EngineOptions {
  size_t max_in_flight = 16;        // concurrent requests
  size_t max_host_connections = 0;  // CURLMOPT_MAX_HOST_CONNECTIONS; 0 = max_in_flight
  size_t max_connects = 0;          // CURLMOPT_MAXCONNECTS (connection cache); 0 = max_in_flight
  int64_t connect_timeout_ms = 3000;
  int64_t timeout_ms = 10000;  // default total time of a request
  bool verify_peer = true;     // false only for tests against self-signed servers
};

class CurlEngine {
 public:
  static Result<std::unique_ptr<CurlEngine>> create(uv_loop_t* loop, EngineOptions options);
  ~CurlEngine();
  CurlEngine(const CurlEngine&) = delete;
  CurlEngine& operator=(const CurlEngine&) = delete;

  void submit(HttpRequest request, ReplyCallback done);
  size_t in_flight() const;  // requests handed to libcurl
  size_t queued() const;     // requests waiting for a free slot
  // Drops the queued requests (not yet handed to libcurl) whose tag is `tag`: each is
  // answered, before cancel() returns, with status 0 and `cancelled` set. Requests already
  // started run to their end. Returns how many were dropped.
  size_t cancel(std::string_view tag);
  // Answers every outstanding request with an error reply, closes every handle, then
  // runs `done` (on the loop; never before close() returns).
  void close(std::function<void()> done);

 private:
  struct Impl;
  explicit CurlEngine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// RFC 3986 percent-encoding of everything but the unreserved characters ('+' is %2B).
std::string url_escape(std::string_view text);

}  // namespace sirena::sms
