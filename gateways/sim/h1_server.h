// The HTTP/1.1 side of the simulators, on h2o's libuv build (as the daemon's API server):
//  - Mode::Simulator serves `sirena-sim sms` through the Simulator pipeline (and, like
//    every h2o listener, h2c with prior knowledge too);
//  - Mode::Admin is the optional --admin listener: only GET /stats and POST /reset, so
//    tests and shell scripts can use plain curl against the HTTP/2-only apns/fcm servers.
// h2o rather than llhttp: it already serves the daemon here at over 600k requests/s, does
// keep-alive, pipelining, chunked bodies and TLS with ALPN, and needs no parser glue.
// --reset-every shuts the request's socket down (shutdown(2), so answers already written
// still leave before the FIN); h2o then sees the error and closes it. --goaway-every and
// --max-streams are HTTP/2 notions and do not apply here.
#pragma once

#define H2O_USE_LIBUV 1
#include <h2o.h>
#include <uv.h>

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "daemon/core/result.h"
#include "gateways/sim/delay_queue.h"
#include "gateways/sim/options.h"
#include "gateways/sim/simulator.h"

namespace sirena::sim {

class H1Server {
 public:
  enum class Mode { Simulator, Admin };

  H1Server(uv_loop_t* loop, Simulator& sim, DelayQueue& delays, Mode mode);
  ~H1Server();
  H1Server(const H1Server&) = delete;
  H1Server& operator=(const H1Server&) = delete;

  // Binds and listens (TLS when cert is not empty); returns the bound port.
  Result<int> listen(const Endpoint& at, const std::string& cert = {}, const std::string& key = {});
  // Stops accepting and shuts every connection down; h2o closes them as it sees the EOF.
  void close();
  // True once every accepted connection has been closed and freed.
  bool idle() const { return sockets_.empty(); }
  // After close() and idle(): frees h2o's context and configuration (their handles close
  // on the next loop turn), so a leak checker sees nothing at exit.
  void dispose();

  struct Pending;
  struct Socket;

 private:
  struct RouteHandler {
    h2o_handler_t super;
    H1Server* server;
  };
  static int on_req(h2o_handler_t* self, h2o_req_t* req);
  static void on_connection(uv_stream_t* listener, int status);
  Pending* acquire();
  void release(Pending* p);
  void answer(Pending* p);
  void reset_connection(h2o_req_t* req);

  uv_loop_t* loop_;
  Simulator& sim_;
  DelayQueue& delays_;
  Mode mode_;
  h2o_globalconf_t globalconf_{};
  h2o_context_t ctx_{};
  h2o_accept_ctx_t accept_ctx_{};
  bool context_ready_ = false;  // initialised and not disposed
  bool accepting_ = false;
  SSL_CTX* ssl_ctx_ = nullptr;
  uv::Handle<uv_tcp_t> listener_;
  std::vector<std::unique_ptr<Pending>> pending_;  // pooled for the server's lifetime
  std::vector<Pending*> free_;
  std::unordered_map<std::string, Socket*> sockets_;  // by peer address, for --reset-every
};

}  // namespace sirena::sim
