#include "gateways/http2/connection.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "daemon/core/log.h"

namespace sirena::http2 {
namespace {

constexpr size_t kReadBufferSize = 64 * 1024;
// Our receive windows (RFC 9113 §6.9.2): large enough that small responses never wait for
// WINDOW_UPDATE round trips, small enough to bound what one connection can make us buffer.
constexpr int32_t kStreamWindow = 1 << 20;
constexpr int32_t kConnectionWindow = 16 << 20;

// Invariant checks stay on in release builds: a broken state machine must stop the
// process, not corrupt streams.
#define H2_CHECK(cond, what)                                                                               \
  do {                                                                                                     \
    if (!(cond)) {                                                                                         \
      std::fprintf(stderr, "http2 connection invariant failed: %s (%s) at %s:%d\n", what, #cond, __FILE__, \
                   __LINE__);                                                                              \
      std::abort();                                                                                        \
    }                                                                                                      \
  } while (0)

const std::string kNoDetail;

int64_t ms_to_ns(std::chrono::milliseconds ms) {
  return static_cast<int64_t>(ms.count()) * 1'000'000;
}

nghttp2_nv make_nv(const char* name, size_t name_len, const std::string& value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name)),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name_len, value.size(),
                    NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE};
}

}  // namespace

// The nghttp2 callbacks, built once per process. They only record what happened and call
// back into the connection; none of them sends or receives (STYLE.md habit 6).
struct SessionCallbacks {
  nghttp2_session_callbacks* callbacks = nullptr;

  SessionCallbacks() {
    nghttp2_session_callbacks_new(&callbacks);
    nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
  }
  ~SessionCallbacks() { nghttp2_session_callbacks_del(callbacks); }

  static const SessionCallbacks& get() {
    static const SessionCallbacks instance;
    return instance;
  }

  static Stream* stream(nghttp2_session* session, int32_t id) {
    return static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, id));
  }

  static int on_header(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t /*flags*/,
                       void* /*user*/) {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    Stream* s = stream(session, frame->hd.stream_id);
    if (!s) return 0;
    if (namelen == 7 && std::memcmp(name, ":status", 7) == 0) {
      int status = 0;
      for (size_t i = 0; i < valuelen; ++i) status = status * 10 + (value[i] - '0');
      // RFC 9113 §8.1: 1xx responses come before the final one; we keep only the final.
      s->interim = status >= 100 && status < 200;
      s->response.status = s->interim ? 0 : status;
      return 0;
    }
    if (s->interim) return 0;
    // Recycled streams keep their header strings: overwrite them in place, so a server that
    // answers with the same headers every time costs no allocation here.
    std::vector<Header>& headers = s->response.headers;
    if (s->header_count < headers.size()) {
      Header& h = headers[s->header_count];
      h.name.assign(reinterpret_cast<const char*>(name), namelen);
      h.value.assign(reinterpret_cast<const char*>(value), valuelen);
    } else {
      headers.push_back(Header{std::string(reinterpret_cast<const char*>(name), namelen),
                               std::string(reinterpret_cast<const char*>(value), valuelen)});
    }
    ++s->header_count;
    return 0;
  }

  static int on_data_chunk(nghttp2_session* session, uint8_t /*flags*/, int32_t stream_id,
                           const uint8_t* data, size_t len, void* /*user*/) {
    Stream* s = stream(session, stream_id);
    if (!s || s->too_large) return 0;
    if (s->response.body.size() + len > Connection::kMaxResponseBody) {
      s->too_large = true;
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
      return 0;
    }
    s->response.body.append(reinterpret_cast<const char*>(data), len);
    return 0;
  }

  static int on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    auto* c = static_cast<Connection*>(user);
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS:
      case NGHTTP2_DATA:
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
          if (Stream* s = stream(session, frame->hd.stream_id)) s->complete = true;
        }
        break;
      case NGHTTP2_SETTINGS:
        if (frame->hd.flags & NGHTTP2_FLAG_ACK) break;
        if (c->state_ == Connection::State::AwaitSettings) {
          c->transition(Connection::State::Ready);
          c->rearm_timer();  // from the connect deadline to PING and stream deadlines
          c->owner_.on_ready(c);
        } else if (c->state_ == Connection::State::Ready) {
          // SETTINGS_MAX_CONCURRENT_STREAMS may have grown (RFC 9113 §6.5.2).
          c->owner_.on_capacity(c);
        }
        break;
      case NGHTTP2_GOAWAY:
        // RFC 9113 §6.8: no new streams here. nghttp2 closes our streams above
        // last_stream_id with REFUSED_STREAM right after this callback.
        c->goaway_received_ = true;
        c->goaway_last_stream_id_ = frame->goaway.last_stream_id;
        if (c->state_ == Connection::State::Ready || c->state_ == Connection::State::AwaitSettings) {
          c->transition(Connection::State::Draining);
          c->owner_.on_draining(c, true, frame->goaway.error_code);
        }
        break;
      case NGHTTP2_PING:
        if (frame->hd.flags & NGHTTP2_FLAG_ACK) c->ping_outstanding_ = false;
        break;
      default:
        break;
    }
    return 0;
  }

  static int on_frame_send(nghttp2_session* session, const nghttp2_frame* frame, void* /*user*/) {
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
      if (Stream* s = stream(session, frame->hd.stream_id)) s->headers_sent = true;
    }
    return 0;
  }

  static int on_stream_close(nghttp2_session* /*session*/, int32_t stream_id, uint32_t error_code,
                             void* user) {
    static_cast<Connection*>(user)->on_stream_closed(stream_id, error_code);
    return 0;
  }

  static ssize_t read_body(nghttp2_session* /*session*/, int32_t /*stream_id*/, uint8_t* buf, size_t length,
                           uint32_t* data_flags, nghttp2_data_source* source, void* /*user*/) {
    auto* s = static_cast<Stream*>(source->ptr);
    const std::string& body = s->request.payload();
    size_t n = std::min(length, body.size() - s->body_offset);
    std::memcpy(buf, body.data() + s->body_offset, n);
    s->body_offset += n;
    if (s->body_offset == body.size()) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }
};

const char* Connection::to_string(State s) {
  switch (s) {
    case State::Idle:
      return "idle";
    case State::Resolving:
      return "resolving";
    case State::Connecting:
      return "connecting";
    case State::Handshaking:
      return "handshaking";
    case State::AwaitSettings:
      return "await_settings";
    case State::Ready:
      return "ready";
    case State::Draining:
      return "draining";
    case State::Closing:
      return "closing";
    case State::Closed:
      return "closed";
  }
  return "?";
}

Connection::Connection(const ConnectionConfig& config, ConnectionOwner& owner, size_t slot)
    : config_(config), owner_(owner), slot_(slot), read_buf_(new char[kReadBufferSize]) {
  uv_timer_init(config_.loop, &timer_);
  uv_idle_init(config_.loop, &flush_hook_);
  timer_.data = this;
  flush_hook_.data = this;
  tcp_.data = this;
  resolve_req_.data = this;
  connect_req_.data = this;
  write_req_.data = this;
  handles_open_ = 2;
}

Connection::~Connection() {
  H2_CHECK(handles_open_ == 0 && !resolving_, "freed with open handles");
  if (session_) nghttp2_session_del(session_);
}

// The one place the state changes. Every edge is listed; anything else is a bug.
void Connection::transition(State next) {
  bool allowed = false;
  switch (state_) {
    case State::Idle:
      allowed = next == State::Resolving || next == State::Connecting || next == State::Closing;
      break;
    case State::Resolving:
      allowed = next == State::Connecting || next == State::Closing;
      break;
    case State::Connecting:
      allowed = next == State::Handshaking || next == State::AwaitSettings || next == State::Closing;
      break;
    case State::Handshaking:
      allowed = next == State::AwaitSettings || next == State::Closing;
      break;
    case State::AwaitSettings:
      allowed = next == State::Ready || next == State::Draining || next == State::Closing;
      break;
    case State::Ready:
      allowed = next == State::Draining || next == State::Closing;
      break;
    case State::Draining:
      allowed = next == State::Closing;
      break;
    case State::Closing:
      allowed = next == State::Closed;
      break;
    case State::Closed:
      break;
  }
  H2_CHECK(allowed, to_string(next));
  switch (next) {
    case State::Handshaking:
      H2_CHECK(tls_ != nullptr && tcp_connected_, "handshake needs TLS over a connected socket");
      break;
    case State::AwaitSettings:
    case State::Ready:
      H2_CHECK(session_ != nullptr && tcp_connected_, "HTTP/2 needs a session over a connected socket");
      break;
    case State::Closed:
      H2_CHECK(handles_open_ == 0 && !resolving_ && live_.empty() && session_ == nullptr,
               "closed with handles, streams or a session left");
      break;
    default:
      break;
  }
  state_ = next;
}

size_t Connection::free_streams() const {
  if (state_ != State::Ready) return 0;
  uint32_t limit = nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  return limit > live_.size() ? limit - live_.size() : 0;
}

// ---------------------------------------------------------------------------------------
// Connecting

void Connection::start() {
  H2_CHECK(state_ == State::Idle, "start twice");
  started_ns_ = config_.clock->mono_ns();
  arm_timer(started_ns_ + ms_to_ns(config_.options->connect_timeout));

  const Origin& o = *config_.origin;
  // Literal addresses skip the resolver (and its thread pool round trip).
  struct sockaddr_in sa4;
  struct sockaddr_in6 sa6;
  if (uv_ip4_addr(o.host.c_str(), o.port, &sa4) == 0) {
    connect_to(reinterpret_cast<const sockaddr*>(&sa4));
    return;
  }
  if (uv_ip6_addr(o.host.c_str(), o.port, &sa6) == 0) {
    connect_to(reinterpret_cast<const sockaddr*>(&sa6));
    return;
  }
  transition(State::Resolving);
  struct addrinfo hints {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  std::string port = std::to_string(o.port);
  resolving_ = true;
  int rv = uv_getaddrinfo(
      config_.loop, &resolve_req_,
      [](uv_getaddrinfo_t* req, int status, struct addrinfo* res) {
        auto* c = static_cast<Connection*>(req->data);
        c->resolving_ = false;
        if (c->state_ != State::Resolving) {  // closed meanwhile: we only owe the free
          uv_freeaddrinfo(res);
          if (c->handles_open_ == 0) c->on_handle_closed_final();
          return;
        }
        if (status < 0 || !res) {
          uv_freeaddrinfo(res);
          c->fail_connect("resolve " + c->config_.origin->host + ": " + uv_strerror(status));
          return;
        }
        c->connect_to(res->ai_addr);
        uv_freeaddrinfo(res);
      },
      o.host.c_str(), port.c_str(), &hints);
  if (rv < 0) {
    resolving_ = false;
    fail_connect("resolve " + o.host + ": " + uv_strerror(rv));
  }
}

void Connection::connect_to(const struct sockaddr* addr) {
  uv_tcp_init(config_.loop, &tcp_);
  tcp_open_ = true;
  ++handles_open_;
  transition(State::Connecting);
  uv_tcp_nodelay(&tcp_, 1);  // requests are small and latency-bound
  int rv = uv_tcp_connect(&connect_req_, &tcp_, addr, [](uv_connect_t* req, int status) {
    auto* c = static_cast<Connection*>(req->data);
    if (c->state_ != State::Connecting) return;  // closed meanwhile (UV_ECANCELED)
    if (status < 0) {
      c->fail_connect("connect " + c->config_.origin->authority + ": " + uv_strerror(status));
      return;
    }
    c->on_connected();
  });
  if (rv < 0) fail_connect("connect " + config_.origin->authority + ": " + uv_strerror(rv));
}

void Connection::on_connected() {
  tcp_connected_ = true;
  last_recv_ns_ = config_.clock->mono_ns();
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(&tcp_),
      [](uv_handle_t* h, size_t, uv_buf_t* buf) {
        auto* c = static_cast<Connection*>(h->data);
        *buf = uv_buf_init(c->read_buf_.get(), kReadBufferSize);
      },
      [](uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
        static_cast<Connection*>(s->data)->on_read(nread, buf);
      });
  if (config_.ssl_ctx) {
    tls_ = std::make_unique<TlsChannel>(config_.ssl_ctx, config_.origin->host, config_.origin->host_is_ip);
    if (!tls_->valid()) {
      fail_connect("TLS: cannot create a session");
      return;
    }
    transition(State::Handshaking);
    handshake_step();
  } else {
    start_session();  // h2c with prior knowledge (RFC 9113 §3.3)
  }
}

void Connection::handshake_step() {
  std::string error;
  TlsChannel::Step step = tls_->handshake(&error);
  tls_->drain(&out_);
  if (!out_.empty()) schedule_flush();
  if (step == TlsChannel::Step::Failed) {
    fail_connect(error);
    return;
  }
  if (step == TlsChannel::Step::WantMore) return;
  // RFC 9113 §3.2: "h2" must be negotiated by ALPN; we never speak HTTP/1.1 instead.
  if (!tls_->alpn_h2()) {
    fail_connect("TLS: the server did not select h2 by ALPN");
    return;
  }
  start_session();
}

void Connection::start_session() {
  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  // Unanswered pushes would only waste memory; we also announce ENABLE_PUSH=0 below.
  nghttp2_option_set_max_reserved_remote_streams(opt, 0);
  // We do not use RFC 7540 priorities, so closed streams need not be kept for the tree.
  nghttp2_option_set_no_closed_streams(opt, 1);
  int rv = nghttp2_session_client_new2(&session_, SessionCallbacks::get().callbacks, this, opt);
  nghttp2_option_del(opt);
  if (rv != 0) {
    fail_connect(std::string("nghttp2: ") + nghttp2_strerror(rv));
    return;
  }
  // RFC 9113 §3.4: the client preface (magic + SETTINGS) is sent by nghttp2 on the first
  // mem_send; these are the SETTINGS it carries. §8.4: push disabled.
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow},
      {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},  // RFC 9113 §5.3.2, RFC 9218 §2.1
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, sizeof settings / sizeof settings[0]);
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
  transition(State::AwaitSettings);
  schedule_flush();
}

// ---------------------------------------------------------------------------------------
// Streams

bool Connection::submit(Stream* s, std::string* error) {
  if (state_ != State::Ready) {
    *error = std::string("connection is ") + to_string(state_);
    return false;
  }
  const Request& r = s->request;
  const Origin& o = *config_.origin;
  // The name/value bytes stay valid until the stream closes (they live in `s`), so nghttp2
  // may reference them instead of copying (NO_COPY flags). Sized once, filled by index:
  // a request has a dozen headers, and each push_back was a call of its own.
  nv_.resize(5 + r.headers.size() + (r.shared ? r.shared->headers.size() : 0));
  size_t n = 0;
  nv_[n++] = make_nv(":method", 7, r.method);
  nv_[n++] = make_nv(":scheme", 7, o.scheme);
  nv_[n++] = make_nv(":authority", 10, o.authority);
  nv_[n++] = make_nv(":path", 5, r.path);
  bool has_length = false;
  auto add = [&](const std::vector<Header>& headers) {
    for (const Header& h : headers) {
      nv_[n++] = make_nv(h.name.c_str(), h.name.size(), h.value);
      if (h.name == "content-length") has_length = true;
    }
  };
  add(r.headers);
  if (r.shared) add(r.shared->headers);
  const std::string& payload = r.payload();
  if (!payload.empty() && !has_length) {
    char* end =
        std::to_chars(s->content_length, s->content_length + sizeof s->content_length, payload.size()).ptr;
    nv_[n++] = nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>("content-length")),
                          reinterpret_cast<uint8_t*>(s->content_length), 14,
                          static_cast<size_t>(end - s->content_length),
                          NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE};
  }
  nghttp2_data_provider body;
  body.source.ptr = s;
  body.read_callback = SessionCallbacks::read_body;
  s->body_offset = 0;
  s->headers_sent = s->complete = s->timed_out = s->too_large = s->interim = false;
  s->header_count = 0;
  int32_t id = nghttp2_submit_request(session_, nullptr, nv_.data(), n, payload.empty() ? nullptr : &body, s);
  if (id < 0) {
    *error = std::string("nghttp2_submit_request: ") + nghttp2_strerror(id);
    if (id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE) {
      // RFC 9113 §5.1.1: stream ids are never reused; this connection is spent.
      transition(State::Draining);
      owner_.on_draining(this, false, NGHTTP2_NO_ERROR);
      if (live_.empty()) close(Failure::Reset, "stream ids exhausted");
    }
    return false;
  }
  s->id = id;
  s->live_index = live_.size();
  live_.push_back(s);
  heap_push(s);
  if (s->deadline_ns < armed_due_ns_) arm_timer(s->deadline_ns);
  schedule_flush();
  return true;
}

void Connection::on_stream_closed(int32_t stream_id, uint32_t error_code) {
  Stream* s = SessionCallbacks::stream(session_, stream_id);
  if (!s) return;  // detached by teardown
  Failure failure;
  std::string detail;
  if (s->complete && s->response.status >= 200 && !s->too_large) {
    // The whole response arrived (END_STREAM). A reset after that only concerns our half
    // of the stream (RFC 9113 §8.1 allows RST_STREAM NO_ERROR there), and a deadline that
    // expired while the answer was already in is no reason to throw it away.
    failure = Failure::None;
  } else if (s->timed_out) {
    failure = Failure::Timeout;
    detail = "no response within " + std::to_string(s->request.timeout.count()) + " ms";
  } else if (error_code == NGHTTP2_REFUSED_STREAM || !s->headers_sent ||
             (goaway_received_ && stream_id > goaway_last_stream_id_)) {
    // RFC 9113 §8.7: REFUSED_STREAM, or a stream above GOAWAY's last_stream_id, was not
    // processed and is safe to send again.
    failure = Failure::Refused;
    detail = error_code == NGHTTP2_REFUSED_STREAM ? "refused by the server (REFUSED_STREAM)"
             : s->headers_sent                    ? "above the GOAWAY last_stream_id"
                                                  : "never sent";
  } else if (s->too_large) {
    failure = Failure::Reset;
    detail = "response body over " + std::to_string(kMaxResponseBody) + " bytes";
  } else {
    failure = Failure::Reset;
    detail = error_code == NGHTTP2_NO_ERROR
                 ? "stream closed without a complete response"
                 : std::string("stream reset: ") + nghttp2_http2_strerror(error_code);
  }
  heap_remove(s);
  live_remove(s);
  s->response.headers.resize(s->header_count);
  if (failure == Failure::None) owner_.on_success(this);
  s->callback(failure == Failure::None ? &s->response : nullptr, failure,
              failure == Failure::None ? kNoDetail : detail);
  owner_.recycle(s);
  if (state_ == State::Draining && live_.empty()) {
    close(Failure::Reset, "drained after GOAWAY");
  } else if (state_ == State::Ready) {
    owner_.on_capacity(this);
  }
}

void Connection::live_remove(Stream* s) {
  if (s->live_index == Stream::kNoIndex) return;
  Stream* last = live_.back();
  live_[s->live_index] = last;
  last->live_index = s->live_index;
  live_.pop_back();
  s->live_index = Stream::kNoIndex;
}

// A binary min-heap on deadline_ns, indices kept in the streams: O(log n) insert and
// remove, no allocation per request, and the timer only ever needs the top.
void Connection::heap_push(Stream* s) {
  s->heap_index = heap_.size();
  heap_.push_back(s);
  heap_sift_up(s->heap_index);
}

void Connection::heap_remove(Stream* s) {
  size_t i = s->heap_index;
  if (i == Stream::kNoIndex) return;
  Stream* last = heap_.back();
  heap_.pop_back();
  s->heap_index = Stream::kNoIndex;
  if (last == s) return;
  heap_[i] = last;
  last->heap_index = i;
  heap_sift_up(i);
  heap_sift_down(last->heap_index);
}

void Connection::heap_sift_up(size_t i) {
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (heap_[parent]->deadline_ns <= heap_[i]->deadline_ns) break;
    std::swap(heap_[parent], heap_[i]);
    heap_[parent]->heap_index = parent;
    heap_[i]->heap_index = i;
    i = parent;
  }
}

void Connection::heap_sift_down(size_t i) {
  for (;;) {
    size_t smallest = i;
    size_t l = 2 * i + 1, r = l + 1;
    if (l < heap_.size() && heap_[l]->deadline_ns < heap_[smallest]->deadline_ns) smallest = l;
    if (r < heap_.size() && heap_[r]->deadline_ns < heap_[smallest]->deadline_ns) smallest = r;
    if (smallest == i) return;
    std::swap(heap_[smallest], heap_[i]);
    heap_[smallest]->heap_index = smallest;
    heap_[i]->heap_index = i;
    i = smallest;
  }
}

// ---------------------------------------------------------------------------------------
// Timer: one per connection for the connect deadline, stream deadlines and PING. Activity
// does not re-arm it (shrpx_connection.cc's idle timeout shape): reads only record
// last_recv_ns_, and when the timer fires it works out what is really due and re-arms for
// the earliest remaining deadline.

void Connection::arm_timer(int64_t due_ns) {
  if (state_ == State::Closing || state_ == State::Closed) return;
  int64_t now = config_.clock->mono_ns();
  int64_t delay_ms = due_ns > now ? (due_ns - now + 999'999) / 1'000'000 : 0;
  armed_due_ns_ = due_ns;
  uv_timer_start(
      &timer_, [](uv_timer_t* t) { static_cast<Connection*>(t->data)->on_timer(); },
      static_cast<uint64_t>(delay_ms), 0);
}

void Connection::on_timer() {
  armed_due_ns_ = std::numeric_limits<int64_t>::max();
  if (state_ == State::Closing || state_ == State::Closed) return;
  int64_t now = config_.clock->mono_ns();
  const PoolOptions& opt = *config_.options;
  if (!open()) {
    int64_t deadline = started_ns_ + ms_to_ns(opt.connect_timeout);
    if (now >= deadline) {
      fail_connect("no HTTP/2 session within " + std::to_string(opt.connect_timeout.count()) + " ms (" +
                   to_string(state_) + ")");
      return;
    }
    arm_timer(deadline);
    return;
  }
  bool queued_frames = false;
  while (!heap_.empty() && heap_[0]->deadline_ns <= now) {
    Stream* s = heap_[0];
    heap_remove(s);
    s->timed_out = true;
    // RFC 9113 §6.4 / §7 CANCEL: the response is no longer wanted. nghttp2 closes the
    // stream when the frame goes out (or drops a HEADERS still queued), and
    // on_stream_closed reports Failure::Timeout.
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
    queued_frames = true;
  }
  if (ping_outstanding_) {
    if (now >= ping_sent_ns_ + ms_to_ns(opt.ping_timeout)) {
      close(Failure::Reset, "no PING ack within " + std::to_string(opt.ping_timeout.count()) + " ms");
      return;
    }
  } else if (now >= last_recv_ns_ + ms_to_ns(opt.ping_interval)) {
    // RFC 9113 §6.7: a PING proves the peer (and every middlebox) still carries this connection.
    nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, nullptr);
    ping_outstanding_ = true;
    ping_sent_ns_ = now;
    queued_frames = true;
  }
  if (queued_frames) schedule_flush();
  rearm_timer();
}

// Arms the timer for what is due next on an open connection: the PING (or its ack
// deadline) and the earliest stream deadline.
void Connection::rearm_timer() {
  const PoolOptions& opt = *config_.options;
  int64_t due = ping_outstanding_ ? ping_sent_ns_ + ms_to_ns(opt.ping_timeout)
                                  : last_recv_ns_ + ms_to_ns(opt.ping_interval);
  if (!heap_.empty()) due = std::min(due, heap_[0]->deadline_ns);
  arm_timer(due);
}

// ---------------------------------------------------------------------------------------
// Reading

void Connection::on_read(ssize_t nread, const uv_buf_t* buf) {
  if (state_ == State::Closing || state_ == State::Closed) return;
  if (nread == 0) return;  // EAGAIN
  if (nread < 0) {
    std::string why = nread == UV_EOF ? "connection closed by the server"
                                      : std::string("read: ") + uv_strerror(static_cast<int>(nread));
    if (open()) {
      close(Failure::Reset, why);
    } else {
      fail_connect(why);
    }
    return;
  }
  last_recv_ns_ = config_.clock->mono_ns();
  if (!tls_) {
    receive(buf->base, static_cast<size_t>(nread));
    after_io();
    return;
  }
  tls_->feed(buf->base, static_cast<size_t>(nread));
  if (state_ == State::Handshaking) {
    handshake_step();
    if (state_ != State::AwaitSettings) return;
  }
  // Decrypt into plain_ is not possible here (plain_ belongs to the write side), so reuse
  // the read buffer: its bytes were already handed to the TLS channel.
  for (;;) {
    std::string error;
    int n = tls_->read(read_buf_.get(), kReadBufferSize, &error);
    if (n == 0) break;
    if (n < 0) {
      close(Failure::Reset, error);
      return;
    }
    receive(read_buf_.get(), static_cast<size_t>(n));
    if (state_ == State::Closing) return;
  }
  tls_->drain(&out_);  // TLS 1.3 key updates, alerts
  after_io();
}

void Connection::receive(const char* data, size_t len) {
  if (!session_ || state_ == State::Closing) return;
  ssize_t rv = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(data), len);
  if (rv < 0)
    close(Failure::Reset, std::string("HTTP/2 protocol error: ") + nghttp2_strerror(static_cast<int>(rv)));
}

void Connection::after_io() {
  if (state_ == State::Closing || state_ == State::Closed || !session_) return;
  if (nghttp2_session_want_write(session_) || !out_.empty()) schedule_flush();
  if (state_ == State::Draining && live_.empty()) {
    close(Failure::Reset, "drained after GOAWAY");
  } else if (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_)) {
    close(Failure::Reset, "session finished");
  }
}

// ---------------------------------------------------------------------------------------
// Writing: once per loop turn from an idle hook. An active idle handle also keeps the next
// poll from blocking, so frames queued from any phase (timers, poll, check, close
// callbacks) leave in the next turn.

void Connection::schedule_flush() {
  if (flush_scheduled_) return;
  flush_scheduled_ = true;
  uv_idle_start(&flush_hook_, [](uv_idle_t* h) {
    auto* c = static_cast<Connection*>(h->data);
    c->flush_scheduled_ = false;
    uv_idle_stop(h);
    if (!c->teardown_pending_) c->flush();
    if (c->teardown_pending_) c->teardown();
  });
}

void Connection::flush() {
  if (state_ == State::Closing || state_ == State::Closed) return;
  if (write_in_flight_ || !tcp_connected_) return;  // on_write_done flushes again
  if (session_) {
    std::string& frames = tls_ ? plain_ : out_;
    for (;;) {
      const uint8_t* data = nullptr;
      ssize_t n = nghttp2_session_mem_send(session_, &data);
      if (n < 0) {
        close(Failure::Reset,
              std::string("nghttp2_session_mem_send: ") + nghttp2_strerror(static_cast<int>(n)));
        return;
      }
      if (n == 0) break;
      frames.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
      if (frames.size() >= kMaxWriteBatch) {
        schedule_flush();  // the rest next turn, after this batch
        break;
      }
    }
    if (teardown_pending_) return;
    if (tls_ && !plain_.empty()) {
      std::string error;
      bool ok = tls_->write(plain_, &out_, &error);
      plain_.clear();
      if (!ok) {
        close(Failure::Reset, error);
        return;
      }
    }
  }
  write_out();
  if (state_ == State::Draining && live_.empty()) close(Failure::Reset, "drained after GOAWAY");
}

void Connection::write_out() {
  if (out_.empty()) return;
  // Most writes complete at once: try them synchronously and only queue the remainder.
  uv_buf_t b = uv_buf_init(out_.data(), static_cast<unsigned>(out_.size()));
  int n = uv_try_write(reinterpret_cast<uv_stream_t*>(&tcp_), &b, 1);
  if (n == static_cast<int>(out_.size())) {
    out_.clear();
    return;
  }
  if (n < 0 && n != UV_EAGAIN) {
    close(Failure::Reset, std::string("write: ") + uv_strerror(n));
    return;
  }
  size_t done = n > 0 ? static_cast<size_t>(n) : 0;
  inflight_.assign(out_, done, std::string::npos);
  out_.clear();
  b = uv_buf_init(inflight_.data(), static_cast<unsigned>(inflight_.size()));
  int rv = uv_write(
      &write_req_, reinterpret_cast<uv_stream_t*>(&tcp_), &b, 1,
      [](uv_write_t* req, int status) { static_cast<Connection*>(req->data)->on_write_done(status); });
  if (rv < 0) {
    close(Failure::Reset, std::string("write: ") + uv_strerror(rv));
    return;
  }
  write_in_flight_ = true;
}

void Connection::on_write_done(int status) {
  write_in_flight_ = false;
  inflight_.clear();
  if (state_ == State::Closing || state_ == State::Closed) return;
  if (status < 0) {
    close(Failure::Reset, std::string("write: ") + uv_strerror(status));
    return;
  }
  if (!out_.empty() || (session_ && nghttp2_session_want_write(session_))) schedule_flush();
}

// ---------------------------------------------------------------------------------------
// Closing

void Connection::close(Failure why, const std::string& detail) {
  if (state_ == State::Closing || state_ == State::Closed) return;
  bool was_open = open();
  transition(State::Closing);
  close_failure_ = why;
  close_detail_ = detail;
  uv_timer_stop(&timer_);
  if (tcp_connected_) uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
  if (resolving_) uv_cancel(reinterpret_cast<uv_req_t*>(&resolve_req_));
  // The teardown runs from the flush hook: we may be inside an nghttp2 callback now.
  teardown_pending_ = true;
  schedule_flush();
  owner_.on_down(this, detail, was_open);
}

void Connection::teardown() {
  teardown_pending_ = false;
  // Detach every stream first, so no nghttp2 callback below can reach them.
  std::vector<Stream*> doomed;
  doomed.swap(live_);
  for (Stream* s : doomed) {
    if (session_) nghttp2_session_set_stream_user_data(session_, s->id, nullptr);
    s->live_index = Stream::kNoIndex;
    s->heap_index = Stream::kNoIndex;
  }
  heap_.clear();
  // RFC 9113 §6.8: say goodbye with GOAWAY (and close_notify), best effort: one
  // non-blocking write, and only if nothing else is queued on the socket.
  if (session_ && tcp_connected_ && !write_in_flight_) {
    nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR);
    std::string& frames = tls_ ? plain_ : out_;
    const uint8_t* data = nullptr;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(session_, &data)) > 0 && frames.size() < kMaxWriteBatch) {
      frames.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
    }
    std::string ignored;
    if (tls_) {
      if (!plain_.empty()) tls_->write(plain_, &out_, &ignored);
      tls_->shutdown();
      tls_->drain(&out_);
    }
    if (!out_.empty()) {
      uv_buf_t b = uv_buf_init(out_.data(), static_cast<unsigned>(out_.size()));
      uv_try_write(reinterpret_cast<uv_stream_t*>(&tcp_), &b, 1);
    }
  }
  if (session_) {
    nghttp2_session_del(session_);
    session_ = nullptr;
  }
  if (tcp_open_) close_handle(reinterpret_cast<uv_handle_t*>(&tcp_));
  close_handle(reinterpret_cast<uv_handle_t*>(&timer_));
  close_handle(reinterpret_cast<uv_handle_t*>(&flush_hook_));
  // Fail the streams last: their callbacks may re-enter the pool, which no longer counts
  // this connection. Streams whose HEADERS never left were not processed: Refused.
  for (Stream* s : doomed) {
    Failure f = close_failure_;
    if (s->timed_out) {
      f = Failure::Timeout;
    } else if (f != Failure::Closed && !s->headers_sent) {
      f = Failure::Refused;
    }
    s->callback(nullptr, f, close_detail_);
    owner_.recycle(s);
  }
}

void Connection::close_handle(uv_handle_t* h) {
  if (uv_is_closing(h)) return;
  uv_close(h, [](uv_handle_t* closed) {
    auto* c = static_cast<Connection*>(closed->data);
    if (--c->handles_open_ == 0 && !c->resolving_) c->on_handle_closed_final();
  });
}

// Handles die in their close callback (libuv docs/src/handle.rst): only when the last one
// has closed, and no resolver request is outstanding, may the owner free us.
void Connection::on_handle_closed_final() {
  transition(State::Closed);
  owner_.on_closed(this);  // frees `this`
}

}  // namespace sirena::http2
