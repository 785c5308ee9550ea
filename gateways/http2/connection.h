// One HTTP/2 client connection (internal to gateways/http2; the Pool owns these).
//
// A Connection is a libuv TCP socket, optionally a TlsChannel, and an nghttp2 client
// session, driven as one state machine:
//
//   Idle -> Resolving -> Connecting -> [Handshaking] -> AwaitSettings -> Ready -> Draining
//     \________\_____________\______________\_______________\______________\________\-> Closing -> Closed
//
// Streams are started only in Ready, i.e. after the server's first SETTINGS frame, so the
// peer's SETTINGS_MAX_CONCURRENT_STREAMS is known before the first request (RFC 9113 §6.5.2;
// until then the limit is only "unlimited" on paper and a real server would refuse).
//
// Lifetime: the owner creates it with new and calls start(). close() (or any failure) moves
// it to Closing: new streams are refused at once, the owner hears on_down(), and the
// teardown (failing the remaining streams, uv_close of every handle) runs from the flush
// hook, outside any nghttp2 callback. When the last handle's close callback has run, the
// owner hears on_closed() and frees the object there, never earlier.
//
// I/O: everything nghttp2 wants to send is collected into one buffer and written once per
// loop turn from a uv_idle hook (the shape of Node's Http2Session::MaybeScheduleWrite).
// The write is tried synchronously (uv_try_write); only a remainder becomes a uv_write,
// and while that is outstanding new frames wait inside nghttp2, which bounds our own
// buffering to one batch (kMaxWriteBatch).
#pragma once

#include <nghttp2/nghttp2.h>
#include <uv.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "daemon/core/clock.h"
#include "gateways/http2/client.h"
#include "gateways/http2/tls.h"

namespace sirena::http2 {

// Where the pool connects, parsed once from PoolOptions::url.
struct Origin {
  bool tls = false;
  std::string scheme;  // "https" or "http": the :scheme pseudo-header
  std::string host;    // without brackets
  uint16_t port = 0;
  std::string authority;  // :authority as given in the URL (RFC 9113 §8.3.1)
  bool host_is_ip = false;
};

// One request from dispatch to its callback. The Pool recycles these (see StreamCache) so a
// steady request rate allocates no Stream and reuses the response buffers.
struct Stream {
  static constexpr size_t kNoIndex = std::numeric_limits<size_t>::max();

  Request request;
  Callback callback;
  Response response;
  int64_t deadline_ns = 0;
  int32_t id = -1;
  size_t heap_index = kNoIndex;  // position in the connection's deadline heap
  size_t live_index = kNoIndex;  // position in the connection's live list
  size_t body_offset = 0;
  size_t header_count = 0;    // response headers received (response.headers may hold more, for reuse)
  bool headers_sent = false;  // the request HEADERS left: a failure may have been processed
  bool complete = false;      // END_STREAM received
  bool timed_out = false;
  bool too_large = false;
  bool interim = false;          // inside a 1xx header block (RFC 9113 §8.1)
  char content_length[24] = {};  // digits for the content-length header we add
};

// What a connection needs from its pool. Calls may come from inside nghttp2 callbacks:
// implementations may submit new streams (nghttp2 allows submissions there) but must not
// free the connection.
class ConnectionOwner {
 public:
  virtual ~ConnectionOwner() = default;
  virtual void on_ready(class Connection* c) = 0;     // can take streams now
  virtual void on_capacity(class Connection* c) = 0;  // a stream slot may have freed
  virtual void on_success(class Connection* c) = 0;   // a response arrived: the origin is healthy
  // No new streams on `c` (GOAWAY when `goaway`, else stream ids ran out); in-flight ones
  // finish. The owner should open a replacement.
  virtual void on_draining(class Connection* c, bool goaway, uint32_t error_code) = 0;
  // No more streams on `c`; `was_open` tells whether it had reached Ready.
  virtual void on_down(class Connection* c, const std::string& why, bool was_open) = 0;
  virtual void on_closed(class Connection* c) = 0;  // every handle closed: free `c` now
  virtual void recycle(Stream* s) = 0;
};

struct ConnectionConfig {
  uv_loop_t* loop = nullptr;
  const Clock* clock = nullptr;
  const Origin* origin = nullptr;
  const PoolOptions* options = nullptr;
  SSL_CTX* ssl_ctx = nullptr;  // null for h2c
};

class Connection {
 public:
  enum class State {
    Idle,
    Resolving,
    Connecting,
    Handshaking,
    AwaitSettings,
    Ready,
    Draining,
    Closing,
    Closed
  };

  // Most bytes collected for one write; the rest waits in nghttp2 for the next turn.
  static constexpr size_t kMaxWriteBatch = 256 * 1024;
  // Response bodies are small JSON documents; anything bigger is reset, not buffered.
  static constexpr size_t kMaxResponseBody = 1024 * 1024;

  Connection(const ConnectionConfig& config, ConnectionOwner& owner, size_t slot);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void start();

  // Streams this connection may still start: the peer's SETTINGS_MAX_CONCURRENT_STREAMS minus
  // those in flight; 0 unless Ready.
  size_t free_streams() const;
  size_t in_flight() const { return live_.size(); }
  State state() const { return state_; }
  bool open() const { return state_ == State::Ready || state_ == State::Draining; }
  size_t slot() const { return slot_; }

  // Starts `s` (Ready only). On false the stream was not started and `error` says why; the
  // connection may have moved to Draining (stream ids exhausted).
  bool submit(Stream* s, std::string* error);

  // Stops the connection: in-flight streams end with `why` (Refused if their HEADERS never
  // left). Idempotent.
  void close(Failure why, const std::string& detail);

  static const char* to_string(State s);

 private:
  friend struct SessionCallbacks;

  void transition(State next);
  void fail_connect(const std::string& detail) { close(Failure::Connect, detail); }

  // Connecting.
  void connect_to(const struct sockaddr* addr);
  void on_connected();
  void handshake_step();
  void start_session();

  // Reading.
  void on_read(ssize_t nread, const uv_buf_t* buf);
  void receive(const char* data, size_t len);
  void after_io();

  // Writing.
  void schedule_flush();
  void flush();
  void write_out();
  void on_write_done(int status);

  // Timers: stream deadlines, PING, connect deadline.
  void on_timer();
  void arm_timer(int64_t due_ns);
  void rearm_timer();
  void heap_push(Stream* s);
  void heap_remove(Stream* s);
  void heap_sift_up(size_t i);
  void heap_sift_down(size_t i);
  void live_remove(Stream* s);

  // nghttp2 events.
  void on_stream_closed(int32_t stream_id, uint32_t error_code);

  void teardown();
  void close_handle(uv_handle_t* h);
  void on_handle_closed_final();

  ConnectionConfig config_;
  ConnectionOwner& owner_;
  size_t slot_;
  State state_ = State::Idle;

  uv_getaddrinfo_t resolve_req_{};
  uv_connect_t connect_req_{};
  uv_write_t write_req_{};
  uv_tcp_t tcp_{};
  uv_timer_t timer_{};
  uv_idle_t flush_hook_{};
  bool tcp_open_ = false;  // tcp_ initialised (must be closed)
  bool tcp_connected_ = false;
  bool resolving_ = false;  // resolve_req_ outstanding
  bool flush_scheduled_ = false;
  bool write_in_flight_ = false;
  bool teardown_pending_ = false;
  int handles_open_ = 0;

  std::unique_ptr<TlsChannel> tls_;
  nghttp2_session* session_ = nullptr;

  std::string out_;       // ciphertext (or h2c frames) waiting for the next write
  std::string inflight_;  // bytes owned by the outstanding uv_write
  std::string plain_;     // TLS only: frames from nghttp2 before encryption
  std::unique_ptr<char[]> read_buf_;
  std::vector<nghttp2_nv> nv_;  // reused for every request

  std::vector<Stream*> live_;  // every stream started and not yet closed
  std::vector<Stream*> heap_;  // min-heap on deadline_ns (streams not yet timed out)

  int64_t started_ns_ = 0;
  int64_t last_recv_ns_ = 0;
  int64_t ping_sent_ns_ = 0;
  bool ping_outstanding_ = false;
  int64_t armed_due_ns_ = std::numeric_limits<int64_t>::max();

  bool goaway_received_ = false;
  int32_t goaway_last_stream_id_ = std::numeric_limits<int32_t>::max();

  Failure close_failure_ = Failure::Reset;
  std::string close_detail_;
};

}  // namespace sirena::http2
