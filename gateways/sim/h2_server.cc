#include "gateways/sim/h2_server.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cstring>

#include "gateways/sim/listener.h"

namespace sirena::sim {

namespace {

constexpr size_t kMaxBody = 65536;          // kept per request; more marks it truncated
constexpr int32_t kStreamWindow = 1 << 20;  // SETTINGS_INITIAL_WINDOW_SIZE we grant
constexpr int32_t kConnectionWindow = 1 << 24;

template <typename T>
T* from_handle(void* data) {
  return static_cast<T*>(data);
}

}  // namespace

// One request/response exchange. Pooled by the server; `serial` (Deferred) changes each
// time it is recycled so the DelayQueue can tell a stale entry.
struct H2Server::Stream final : Deferred {
  Connection* conn = nullptr;
  int32_t id = 0;
  bool answered = false;
  Request req;                       // views into `refs` and `body`
  std::vector<nghttp2_rcbuf*> refs;  // header buffers held until the stream is recycled
  std::string body;
  Response resp;
  size_t body_offset = 0;
  Stream* prev = nullptr;
  Stream* next = nullptr;
  void fire() override;
};

class H2Server::Connection {
 public:
  enum class State {
    Handshake,  // TLS handshake in progress (h2c starts in Open)
    Open,
    Draining,   // GOAWAY sent: answer the streams up to its last_stream_id, then close
    Resetting,  // --reset-every hit: flush what was answered, then close without GOAWAY
    Closed,     // uv_close called; freed in its callback
  };

  explicit Connection(H2Server& server) : server_(server) { tcp_.data = this; }
  ~Connection() = default;

  uv_tcp_t* tcp() { return &tcp_; }
  bool start();
  void flush();
  void close();
  void respond(Stream* s);

 private:
  void set_state(State next);
  void feed(const uint8_t* data, size_t len);
  int on_request(Stream* s);
  void link(Stream* s);
  void unlink(Stream* s);
  bool finished() const;

  static void on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void on_write(uv_write_t* w, int status);
  static int on_begin_headers(nghttp2_session* session, const nghttp2_frame* frame, void* user);
  static int on_header(nghttp2_session* session, const nghttp2_frame* frame, nghttp2_rcbuf* name,
                       nghttp2_rcbuf* value, uint8_t flags, void* user);
  static int on_data_chunk(nghttp2_session* session, uint8_t flags, int32_t stream_id, const uint8_t* data,
                           size_t len, void* user);
  static int on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user);
  static int on_stream_close(nghttp2_session* session, int32_t stream_id, uint32_t error_code, void* user);
  static ssize_t read_body(nghttp2_session* session, int32_t stream_id, uint8_t* buf, size_t length,
                           uint32_t* data_flags, nghttp2_data_source* source, void* user);

  friend class H2Server;
  H2Server& server_;
  uv_tcp_t tcp_{};
  State state_ = State::Open;
  nghttp2_session* session_ = nullptr;
  std::unique_ptr<TlsSession> tls_;
  Stream* streams_ = nullptr;  // every stream nghttp2 has open on this connection
  std::string out_;            // bytes for the next write
  std::string writing_;        // bytes of the write in flight
  uv_write_t write_req_{};
  bool write_in_flight_ = false;
  bool dirty_ = false;
  bool protocol_error_ = false;
  bool reset_requested_ = false;
  uint64_t requests_ = 0;
  int32_t goaway_last_id_ = 0;
};

void H2Server::Stream::fire() {
  conn->respond(this);
}

// ---- Connection -------------------------------------------------------------------

void H2Server::Connection::set_state(State next) {
  // Handshake -> Open -> Draining; any live state -> Resetting; anything -> Closed.
  [[maybe_unused]] bool legal = (state_ == State::Handshake && next == State::Open) ||
                                (state_ == State::Open && next == State::Draining) ||
                                (state_ != State::Closed && next == State::Resetting) ||
                                next == State::Closed;
  assert(legal);
  state_ = next;
}

bool H2Server::Connection::start() {
  nghttp2_session_callbacks* cb = nullptr;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback2(cb, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
  // Framing stays strictly checked; the per-field HTTP semantics checks (RFC 9113 §8.2)
  // cost about 5% of a request here and our handlers validate what they read anyway.
  nghttp2_option* option = nullptr;
  nghttp2_option_new(&option);
  nghttp2_option_set_no_http_messaging(option, 1);
  int rv = nghttp2_session_server_new2(&session_, cb, this, option);
  nghttp2_option_del(option);
  nghttp2_session_callbacks_del(cb);
  if (rv != 0) return false;

  // The server's connection preface is a SETTINGS frame (RFC 9113 §3.4).
  std::array<nghttp2_settings_entry, 2> iv = {{
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, server_.settings_.max_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow},
  }};
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv.data(), iv.size());
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
  if (server_.settings_.tls) {
    tls_ = std::make_unique<TlsSession>(server_.settings_.tls);
    state_ = State::Handshake;
  }
  uv_tcp_nodelay(&tcp_, 1);
  if (uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), on_alloc, on_read) != 0) return false;
  server_.mark_dirty(this);  // h2c: our SETTINGS go out at once
  return true;
}

void H2Server::Connection::on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  // One buffer for the whole server: a read is consumed before the callback returns.
  H2Server& server = from_handle<Connection>(h->data)->server_;
  *buf = uv_buf_init(server.read_buffer_, sizeof server.read_buffer_);
}

void H2Server::Connection::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* c = from_handle<Connection>(s->data);
  if (nread == 0 || c->state_ == State::Closed || c->state_ == State::Resetting) return;
  if (nread < 0) return c->close();  // EOF or error: the peer is gone
  if (!c->tls_) return c->feed(reinterpret_cast<const uint8_t*>(buf->base), static_cast<size_t>(nread));

  std::string& plain = c->server_.plain_;
  plain.clear();
  bool ok = c->tls_->receive(buf->base, static_cast<size_t>(nread), plain, c->out_);
  c->server_.mark_dirty(c);
  if (!ok) {
    c->protocol_error_ = true;  // send the alert, then close
    return;
  }
  if (c->state_ == State::Handshake) {
    if (!c->tls_->handshake_done()) return;
    if (!c->tls_->negotiated_h2()) {
      c->protocol_error_ = true;  // RFC 9113 §3.2: h2 over TLS needs ALPN "h2"
      return;
    }
    c->set_state(State::Open);
  }
  if (!plain.empty()) c->feed(reinterpret_cast<const uint8_t*>(plain.data()), plain.size());
}

void H2Server::Connection::feed(const uint8_t* data, size_t len) {
  ssize_t rv = nghttp2_session_mem_recv(session_, data, len);
  server_.mark_dirty(this);
  if (rv >= 0) return;
  if (reset_requested_) {
    // Stop reading and forget the answers still waiting for their delay; the answers
    // already submitted leave with the next flush, then the connection closes.
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
    set_state(State::Resetting);
    for (Stream* s = streams_; s; s = s->next)
      if (!s->answered) ++s->serial;
    return;
  }
  // A protocol error: nghttp2 has queued a GOAWAY with the error code; send it and close.
  protocol_error_ = true;
}

int H2Server::Connection::on_request(Stream* s) {
  ++requests_;
  if (state_ == State::Draining && s->id > goaway_last_id_) {
    // Opened by the client before it saw our GOAWAY: not processed, so it may retry it.
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_REFUSED_STREAM);
    return 0;
  }
  uint64_t delay_ms = 0;
  if (server_.sim_.serve(s->req, s->resp, delay_ms) == Simulator::Verdict::Reset) {
    reset_requested_ = true;
    return NGHTTP2_ERR_CALLBACK_FAILURE;  // stops nghttp2_session_mem_recv here
  }
  if (delay_ms > 0)
    server_.delays_.push(delay_ms, s);
  else
    respond(s);
  if (server_.settings_.goaway_every != 0 && state_ == State::Open &&
      requests_ >= server_.settings_.goaway_every) {
    // RFC 9113 §6.8: last_stream_id is the highest stream we may act on; everything
    // we have seen so far is answered, anything newer is refused above.
    goaway_last_id_ = nghttp2_session_get_last_proc_stream_id(session_);
    nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, goaway_last_id_, NGHTTP2_NO_ERROR, nullptr, 0);
    set_state(State::Draining);
    server_.sim_.ledger().count_goaway();
  }
  return 0;
}

void H2Server::Connection::respond(Stream* s) {
  if (state_ == State::Closed || state_ == State::Resetting || s->answered) return;
  const Response& r = s->resp;
  char status[4];
  int code = r.status >= 100 && r.status <= 999 ? r.status : 500;
  status[0] = static_cast<char>('0' + code / 100);
  status[1] = static_cast<char>('0' + code / 10 % 10);
  status[2] = static_cast<char>('0' + code % 10);
  status[3] = '\0';
  std::array<nghttp2_nv, 16> nva;
  size_t n = 0;
  auto add = [&](std::string_view name, std::string_view value, uint8_t flags) {
    if (n == nva.size()) return;
    nva[n++] = nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                          reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                          value.size(), flags};
  };
  add(":status", std::string_view(status, 3), NGHTTP2_NV_FLAG_NONE);
  // Values unique to one answer (apns-id) would only churn the HPACK dynamic table
  // (RFC 7541 §6.2.2 "never indexed" is meant for such and for secrets).
  for (const Header& h : r.headers)
    add(h.name, h.value, h.name == "apns-id" ? NGHTTP2_NV_FLAG_NO_INDEX : NGHTTP2_NV_FLAG_NONE);
  nghttp2_data_provider body{};
  body.source.ptr = s;
  body.read_callback = read_body;
  s->body_offset = 0;
  // nghttp2 copies the header block, so the stack array may go.
  if (nghttp2_submit_response(session_, s->id, nva.data(), n, r.body.empty() ? nullptr : &body) != 0) return;
  s->answered = true;
  server_.sim_.commit(r);
  server_.mark_dirty(this);
}

ssize_t H2Server::Connection::read_body(nghttp2_session*, int32_t, uint8_t* buf, size_t length,
                                        uint32_t* data_flags, nghttp2_data_source* source, void*) {
  auto* s = static_cast<Stream*>(source->ptr);
  size_t n = std::min(length, s->resp.body.size() - s->body_offset);
  std::memcpy(buf, s->resp.body.data() + s->body_offset, n);
  s->body_offset += n;
  if (s->body_offset == s->resp.body.size()) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

int H2Server::Connection::on_begin_headers(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  auto* c = static_cast<Connection*>(user);
  Stream* s = c->server_.acquire_stream();
  s->conn = c;
  s->id = frame->hd.stream_id;
  c->link(s);
  nghttp2_session_set_stream_user_data(session, s->id, s);
  return 0;
}

int H2Server::Connection::on_header(nghttp2_session* session, const nghttp2_frame* frame, nghttp2_rcbuf* name,
                                    nghttp2_rcbuf* value, uint8_t, void*) {
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
  if (!s) return 0;
  // Keep nghttp2's decoded buffers instead of copying them (the JWT alone is ~200 bytes).
  auto view = [s](nghttp2_rcbuf* buf) {
    nghttp2_rcbuf_incref(buf);
    s->refs.push_back(buf);
    nghttp2_vec v = nghttp2_rcbuf_get_buf(buf);
    return std::string_view(reinterpret_cast<const char*>(v.base), v.len);
  };
  nghttp2_vec n = nghttp2_rcbuf_get_buf(name);
  std::string_view key(reinterpret_cast<const char*>(n.base), n.len);
  if (key == ":method") {
    s->req.method = view(value);
  } else if (key == ":path") {
    std::string_view v = view(value);
    size_t q = v.find('?');
    s->req.path = v.substr(0, q);
    if (q != std::string_view::npos) s->req.query = v.substr(q + 1);
  } else if (key.empty() || key[0] != ':') {
    s->req.headers.push_back(HeaderView{view(name), view(value)});
  }
  return 0;
}

int H2Server::Connection::on_data_chunk(nghttp2_session* session, uint8_t, int32_t stream_id,
                                        const uint8_t* data, size_t len, void*) {
  auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, stream_id));
  if (!s) return 0;
  if (s->body.size() + len > kMaxBody) {
    s->req.body_truncated = true;
    return 0;
  }
  s->body.append(reinterpret_cast<const char*>(data), len);
  return 0;
}

int H2Server::Connection::on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
  if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
      !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
    return 0;
  auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
  if (!s) return 0;
  s->req.body = s->body;
  return static_cast<Connection*>(user)->on_request(s);
}

int H2Server::Connection::on_stream_close(nghttp2_session* session, int32_t stream_id, uint32_t, void* user) {
  auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, stream_id));
  if (!s) return 0;
  auto* c = static_cast<Connection*>(user);
  c->unlink(s);
  c->server_.release_stream(s);
  return 0;
}

void H2Server::Connection::link(Stream* s) {
  s->prev = nullptr;
  s->next = streams_;
  if (streams_) streams_->prev = s;
  streams_ = s;
}

void H2Server::Connection::unlink(Stream* s) {
  if (s->prev) s->prev->next = s->next;
  if (s->next) s->next->prev = s->prev;
  if (streams_ == s) streams_ = s->next;
  s->prev = s->next = nullptr;
}

bool H2Server::Connection::finished() const {
  if (protocol_error_ || state_ == State::Resetting) return true;
  return !nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_);
}

void H2Server::Connection::flush() {
  if (state_ == State::Closed || write_in_flight_) return;  // on_write flushes again
  if (state_ != State::Handshake) {
    // nghttp2 hands out one frame a call. Over TLS the frames are gathered and encrypted
    // together: a record per frame (a response is often one small HEADERS frame) would
    // cost a record's overhead on both sides for every answer.
    std::string& frames = tls_ ? server_.frames_ : out_;
    if (tls_) frames.clear();
    while (true) {
      const uint8_t* data = nullptr;
      ssize_t n = nghttp2_session_mem_send(session_, &data);
      if (n < 0) return close();
      if (n == 0) break;
      frames.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
    }
    if (tls_ && !frames.empty() &&
        !tls_->send(reinterpret_cast<const uint8_t*>(frames.data()), frames.size(), out_))
      return close();
  }
  if (!out_.empty()) {
    uv_buf_t buf = uv_buf_init(out_.data(), static_cast<unsigned>(out_.size()));
    int n = uv_try_write(reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1);
    if (n < 0 && n != UV_EAGAIN) return close();
    size_t done = n > 0 ? static_cast<size_t>(n) : 0;
    if (done < out_.size()) {
      // The socket is full: hand the rest to libuv and stop producing until it drains.
      writing_.assign(out_, done);
      out_.clear();
      uv_buf_t rest = uv_buf_init(writing_.data(), static_cast<unsigned>(writing_.size()));
      write_in_flight_ = true;
      if (uv_write(&write_req_, reinterpret_cast<uv_stream_t*>(&tcp_), &rest, 1, on_write) != 0)
        return close();
      return;
    }
    out_.clear();
  }
  if (protocol_error_ || (state_ != State::Handshake && finished())) close();
}

void H2Server::Connection::on_write(uv_write_t* w, int status) {
  auto* c = from_handle<Connection>(w->handle->data);
  c->write_in_flight_ = false;
  if (c->state_ == State::Closed) return;
  if (status < 0) return c->close();
  c->writing_.clear();
  c->server_.mark_dirty(c);
}

void H2Server::Connection::close() {
  if (state_ == State::Closed) return;
  set_state(State::Closed);
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
  // nghttp2_session_del does not report closed streams: recycle them here.
  while (Stream* s = streams_) {
    unlink(s);
    server_.release_stream(s);
  }
  nghttp2_session_del(session_);
  session_ = nullptr;
  server_.forget(this);
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_),
           [](uv_handle_t* h) { delete from_handle<Connection>(h->data); });
}

// ---- H2Server ---------------------------------------------------------------------

H2Server::H2Server(uv_loop_t* loop, Simulator& sim, DelayQueue& delays, Settings settings)
    : loop_(loop), sim_(sim), delays_(delays), settings_(settings) {}

H2Server::~H2Server() {
  close();
}

H2Server::Stream* H2Server::acquire_stream() {
  if (free_streams_.empty()) {
    streams_.push_back(std::make_unique<Stream>());
    return streams_.back().get();
  }
  Stream* s = free_streams_.back();
  free_streams_.pop_back();
  return s;
}

void H2Server::release_stream(Stream* s) {
  ++s->serial;  // a queued delayed answer for it is now stale
  s->conn = nullptr;
  s->id = 0;
  s->answered = false;
  for (nghttp2_rcbuf* buf : s->refs) nghttp2_rcbuf_decref(buf);
  s->refs.clear();
  s->body.clear();
  s->req.clear();
  s->resp.clear();
  free_streams_.push_back(s);
}

void H2Server::mark_dirty(Connection* c) {
  if (c->dirty_) return;
  c->dirty_ = true;
  dirty_.push_back(c);
}

void H2Server::forget(Connection* c) {
  connections_.erase(std::find(connections_.begin(), connections_.end(), c));
  if (c->dirty_) dirty_.erase(std::find(dirty_.begin(), dirty_.end(), c));
  c->dirty_ = false;
}

void H2Server::on_prepare(uv_prepare_t* p) {
  // Once per loop turn, just before libuv waits for I/O: everything submitted by reads
  // and timers in this turn goes out in one write per connection.
  auto* self = static_cast<H2Server*>(p->data);
  while (!self->dirty_.empty()) {
    Connection* c = self->dirty_.back();
    self->dirty_.pop_back();
    c->dirty_ = false;
    c->flush();
  }
}

void H2Server::on_connection(uv_stream_t* listener, int status) {
  auto* self = static_cast<H2Server*>(listener->data);
  if (status != 0) return;
  auto* c = new Connection(*self);
  uv_tcp_init(self->loop_, c->tcp());
  if (uv_accept(listener, reinterpret_cast<uv_stream_t*>(c->tcp())) != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(c->tcp()),
             [](uv_handle_t* h) { delete from_handle<Connection>(h->data); });
    return;
  }
  self->connections_.push_back(c);
  if (!c->start()) c->close();
}

Result<int> H2Server::listen(const Endpoint& at) {
  auto port = open_listener(loop_, at, on_connection, this, &listener_);
  if (!port) return port;
  prepare_.init(loop_, this, uv_prepare_init);
  uv_prepare_start(prepare_.get(), on_prepare);
  return port;
}

void H2Server::close() {
  listener_.reset();
  while (!connections_.empty()) connections_.back()->close();
  prepare_.reset();
}

}  // namespace sirena::sim
