// The HTTP/2 server core of `sirena-sim apns|fcm`: nghttp2 server sessions directly on
// libuv TCP, h2c with prior knowledge (RFC 9113 §3.3) or TLS with ALPN h2 (§3.2).
// nghttp2's server API rather than h2o: the fault options need control h2o 2.2.5 does not
// expose (GOAWAY after N streams, closing a connection mid-stream, our own
// SETTINGS_MAX_CONCURRENT_STREAMS).
//
// Every complete request goes through the Simulator; its answer is submitted at once or
// from the DelayQueue. Writes are flushed once per loop turn from a uv_prepare hook
// (every nghttp2_session_mem_send output collected into one buffer, one write), never
// from inside nghttp2 callbacks. Faults:
//   --goaway-every N  after the Nth request on a connection: GOAWAY(NO_ERROR,
//                     last_stream_id = the highest stream we have seen, RFC 9113 §6.8);
//                     streams up to it are answered, then the connection closes;
//   --reset-every N   the Nth message request (counted over all connections) is not
//                     answered: answers already submitted are flushed, then the TCP
//                     connection is closed at once with no GOAWAY, dropping every other
//                     stream on it (delayed answers included, and none of those count);
//   --max-streams N   our SETTINGS_MAX_CONCURRENT_STREAMS (§6.5.2), enforced by nghttp2.
//
// Ownership: the owner keeps the server alive until close() and the loop has run the
// close callbacks; connections free themselves in their handle's close callback.
#pragma once

#include <uv.h>

#include <memory>
#include <string>
#include <vector>

#include "daemon/core/result.h"
#include "gateways/sim/delay_queue.h"
#include "gateways/sim/options.h"
#include "gateways/sim/simulator.h"
#include "gateways/sim/tls.h"

namespace sirena::sim {

class H2Server {
 public:
  struct Settings {
    uint32_t max_streams = 1000;
    uint64_t goaway_every = 0;
    SSL_CTX* tls = nullptr;  // not owned; nullptr: h2c
  };

  H2Server(uv_loop_t* loop, Simulator& sim, DelayQueue& delays, Settings settings);
  ~H2Server();
  H2Server(const H2Server&) = delete;
  H2Server& operator=(const H2Server&) = delete;

  // Binds and listens; returns the bound port.
  Result<int> listen(const Endpoint& at);
  // Stops accepting and closes every connection.
  void close();

  class Connection;
  struct Stream;

 private:
  friend class Connection;
  Stream* acquire_stream();
  void release_stream(Stream* s);
  void mark_dirty(Connection* c);
  void forget(Connection* c);
  static void on_connection(uv_stream_t* listener, int status);
  static void on_prepare(uv_prepare_t* p);

  uv_loop_t* loop_;
  Simulator& sim_;
  DelayQueue& delays_;
  Settings settings_;
  uv::Handle<uv_tcp_t> listener_;
  uv::Handle<uv_prepare_t> prepare_;
  std::vector<Connection*> connections_;
  std::vector<Connection*> dirty_;
  std::vector<std::unique_ptr<Stream>> streams_;  // every Stream ever made; they are reused
  std::vector<Stream*> free_streams_;
  char read_buffer_[65536];
  std::string plain_;   // decrypted bytes of one TLS read
  std::string frames_;  // frames of one flush, before TLS encrypts them
};

}  // namespace sirena::sim
