// Pool: the request queue, dispatch over N connections, reconnection with backoff, and the
// failure deadlines of queued requests. The per-connection protocol work is in
// connection.cc; TLS in tls.cc.
#include "gateways/http2/client.h"

#include <algorithm>
#include <deque>
#include <limits>
#include <random>
#include <utility>

#include "daemon/core/log.h"
#include "daemon/core/number.h"
#include "gateways/http2/connection.h"
#include "gateways/http2/tls.h"

namespace sirena::http2 {

const std::string* Response::header(std::string_view name) const {
  for (const Header& h : headers) {
    if (h.name == name) return &h.value;
  }
  return nullptr;
}

const char* to_string(Failure f) {
  switch (f) {
    case Failure::None:
      return "none";
    case Failure::Refused:
      return "refused";
    case Failure::Reset:
      return "reset";
    case Failure::Timeout:
      return "timeout";
    case Failure::Connect:
      return "connect";
    case Failure::Closed:
      return "closed";
    case Failure::Cancelled:
      return "cancelled";
  }
  return "?";
}

const char* to_string(PoolEvent e) {
  switch (e) {
    case PoolEvent::Goaway:
      return "goaway";
    case PoolEvent::Reconnect:
      return "reconnect";
  }
  return "?";
}

namespace {

constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
// First reconnect delay ceiling after a failure; doubles per failure up to backoff_max.
constexpr int64_t kBackoffBaseNs = 100'000'000;
// Recycled Stream objects kept per pool (beyond this, they are freed).
constexpr size_t kMaxCachedStreams = 4096;

int64_t ms_to_ns(std::chrono::milliseconds ms) {
  return static_cast<int64_t>(ms.count()) * 1'000'000;
}

Result<Origin> parse_url(const std::string& url) {
  Origin o;
  std::string_view rest = url;
  if (rest.substr(0, 8) == "https://") {
    o.tls = true;
    o.scheme = "https";
    o.port = 443;
    rest.remove_prefix(8);
  } else if (rest.substr(0, 7) == "http://") {
    o.scheme = "http";
    o.port = 80;
    rest.remove_prefix(7);
  } else {
    return make_error(ErrorKind::BadRequest, "invalid_url",
                      "the URL must start with https:// or http:// (h2c)", url);
  }
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find('/') != std::string_view::npos || rest.find('?') != std::string_view::npos) {
    return make_error(ErrorKind::BadRequest, "invalid_url", "the URL must name an origin only (no path)",
                      url);
  }
  o.authority = std::string(rest);
  std::string_view port;
  bool port_given = false;
  if (!rest.empty() && rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == std::string_view::npos)
      return make_error(ErrorKind::BadRequest, "invalid_url", "unterminated IPv6 literal", url);
    o.host = std::string(rest.substr(1, close - 1));
    rest.remove_prefix(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':')
        return make_error(ErrorKind::BadRequest, "invalid_url", "junk after the IPv6 literal", url);
      port = rest.substr(1);
      port_given = true;
    }
  } else {
    size_t colon = rest.find(':');
    o.host = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) {
      port = rest.substr(colon + 1);
      port_given = true;
    }
  }
  if (o.host.empty()) return make_error(ErrorKind::BadRequest, "invalid_url", "the URL has no host", url);
  if (port_given) {
    auto p = parse_number<uint16_t>(port, 1, 65535);
    if (!p) return make_error(ErrorKind::BadRequest, "invalid_url", "bad port", url);
    o.port = *p;
  }
  struct sockaddr_in sa4;
  struct sockaddr_in6 sa6;
  o.host_is_ip = uv_ip4_addr(o.host.c_str(), 0, &sa4) == 0 || uv_ip6_addr(o.host.c_str(), 0, &sa6) == 0;
  return o;
}

}  // namespace

struct Pool::Impl final : ConnectionOwner {
  enum class State { Created, Running, Closing, Closed };

  struct Slot {
    Connection* active = nullptr;  // the connection taking new streams for this slot
    int attempt = 0;               // failures since the last healthy connection
    int64_t reconnect_at = -1;     // mono ns; -1 = none scheduled
    bool opened_before = false;
    bool healthy = false;  // the active connection has answered at least once
  };

  struct Pending {
    Request request;
    Callback callback;
    int64_t submitted_ns;
  };

  Impl(uv_loop_t* loop, PoolOptions options, const Clock& clock)
      : loop_(loop), options_(std::move(options)), clock_(clock), rng_(std::random_device{}()) {}

  ~Impl() override {
    for (auto* s : stream_cache_) delete s;
  }

  // ----- public API

  Status start() {
    if (state_ != State::Created)
      return make_error(ErrorKind::Conflict, "already_started", "the pool was already started");
    if (options_.connections == 0)
      return make_error(ErrorKind::BadRequest, "invalid_options", "connections must be at least 1");
    auto origin = parse_url(options_.url);
    if (!origin) return std::move(origin).take_error();
    origin_ = std::move(*origin);
    if (origin_.tls) {
      auto ctx = make_client_context(options_.ca_file, options_.verify_peer);
      if (!ctx) return std::move(ctx).take_error();
      ssl_ctx_ = std::move(*ctx);
    }
    config_.loop = loop_;
    config_.clock = &clock_;
    config_.origin = &origin_;
    config_.options = &options_;
    config_.ssl_ctx = ssl_ctx_.get();
    uv_timer_init(loop_, &timer_);
    timer_.data = this;
    state_ = State::Running;
    down_since_ns_ = clock_.mono_ns();
    slots_.resize(options_.connections);
    for (size_t i = 0; i < slots_.size(); ++i) open_slot(i);
    rearm();
    return Ok{};
  }

  void submit(Request request, Callback callback) {
    if (state_ == State::Closing || state_ == State::Closed) {
      callback(nullptr, Failure::Closed, "pool closed");
      return;
    }
    int64_t now = clock_.mono_ns();
    // FIFO: a new request never overtakes queued ones.
    if (queue_.empty()) {
      if (Connection* c = best_connection()) {
        start_on(c, std::move(request), std::move(callback), now);
        return;
      }
    }
    queue_.push_back(Pending{std::move(request), std::move(callback), now});
    if (queue_.size() == 1) rearm();
  }

  size_t cancel(std::string_view tag) {
    std::vector<Pending> dropped;
    for (auto it = queue_.begin(); it != queue_.end();) {
      if (it->request.tag == tag) {
        dropped.push_back(std::move(*it));
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
    if (dropped.empty()) return 0;
    rearm();  // the head of the queue may have changed
    // Answered once the queue is consistent again: a callback may submit or cancel more.
    for (Pending& p : dropped) p.callback(nullptr, Failure::Cancelled, "cancelled before it started");
    return dropped.size();
  }

  void set_observer(PoolObserver observer) { observer_ = std::move(observer); }

  PoolStats stats() const {
    PoolStats s;
    for (const Connection* c : connections_) {
      if (c->open()) ++s.connections_open;
      s.streams_in_flight += c->in_flight();
    }
    s.queued = queue_.size();
    s.goaways = goaways_;
    s.reconnects = reconnects_;
    return s;
  }

  void close(std::function<void()> done) {
    if (state_ == State::Created || state_ == State::Closed) {
      // Never started: nothing on the loop to wait for, only requests queued before start().
      state_ = State::Closed;
      fail_queue();
      if (done) done();
      return;
    }
    if (state_ == State::Closing) {
      // A second close: chain the callbacks.
      auto first = std::move(close_done_);
      close_done_ = [first = std::move(first), done = std::move(done)] {
        if (first) first();
        if (done) done();
      };
      return;
    }
    state_ = State::Closing;
    close_done_ = std::move(done);
    for (Slot& s : slots_) s.reconnect_at = -1;
    uv_timer_stop(&timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), [](uv_handle_t* h) {
      auto* self = static_cast<Impl*>(h->data);
      self->timer_closed_ = true;
      self->maybe_finish_close();
    });
    // Connections first, so no queued request can start while we fail the queue.
    std::vector<Connection*> all = connections_;
    for (Connection* c : all) c->close(Failure::Closed, "pool closed");
    fail_queue();
  }

  void fail_queue() {
    while (!queue_.empty()) {
      Pending p = std::move(queue_.front());
      queue_.pop_front();
      p.callback(nullptr, Failure::Closed, "pool closed");
    }
  }

  // Called by ~Pool when the owner did not wait for close(): finish asynchronously and
  // free ourselves then (the loop still holds our handles).
  void abandon() {
    delete_self_ = true;
    if (state_ != State::Closing) close(nullptr);
  }

  bool closed() const { return state_ == State::Closed || state_ == State::Created; }

  // ----- ConnectionOwner

  void on_ready(Connection* c) override {
    down_since_ns_ = -1;
    log::debug("http2_connection_ready", {{"origin", origin_.authority}, {"slot", c->slot()}});
    pump();
  }

  void on_capacity(Connection*) override {
    if (!queue_.empty()) pump();
  }

  void on_success(Connection* c) override {
    Slot& s = slots_[c->slot()];
    if (s.active == c) {
      s.healthy = true;
      s.attempt = 0;
    }
  }

  void on_draining(Connection* c, bool goaway, uint32_t error_code) override {
    if (goaway) {
      ++goaways_;
      if (observer_) observer_(PoolEvent::Goaway);
    }
    log::info("http2_goaway",
              {{"origin", origin_.authority},
               {"slot", c->slot()},
               {"error", goaway ? nghttp2_http2_strerror(error_code) : "stream ids exhausted"},
               {"in_flight", c->in_flight()}});
    replace(c, "draining");
  }

  void on_down(Connection* c, const std::string& why, bool was_open) override {
    if (state_ == State::Running) {
      log::warn(
          "http2_connection_down",
          {{"origin", origin_.authority}, {"slot", c->slot()}, {"reason", why}, {"was_open", was_open}});
    }
    if (!was_open) last_error_ = why;
    replace(c, why);
  }

  void on_closed(Connection* c) override {
    connections_.erase(std::find(connections_.begin(), connections_.end(), c));
    delete c;  // its last handle's close callback has run: nothing references it
    maybe_finish_close();
  }

  void recycle(Stream* s) override {
    s->callback = nullptr;   // releases what the callback captured
    s->request = Request{};  // and the payload and token: the cache holds no citizen data
    s->response.status = 0;
    s->response.body.clear();  // headers are overwritten in place by the next response
    s->id = -1;
    if (stream_cache_.size() < kMaxCachedStreams) {
      stream_cache_.push_back(s);
    } else {
      delete s;
    }
  }

 private:
  // ----- connections

  void open_slot(size_t i) {
    Slot& s = slots_[i];
    if (s.opened_before) {
      ++reconnects_;
      if (observer_) observer_(PoolEvent::Reconnect);
    }
    s.opened_before = true;
    s.healthy = false;
    s.reconnect_at = -1;
    auto* c = new Connection(config_, *this, i);
    connections_.push_back(c);
    s.active = c;
    c->start();  // may fail at once: on_down then schedules the retry
  }

  // `c` takes no more new streams: schedule its slot's replacement. A connection that
  // answered at least once is replaced at once; one that never did counts as a failure
  // and backs off (exponential, full jitter), so a server that accepts and immediately
  // drops us is not hammered.
  void replace(Connection* c, const std::string&) {
    Slot& s = slots_[c->slot()];
    if (s.active == c) {
      s.active = nullptr;
      if (s.healthy) {
        s.attempt = 0;
      } else {
        ++s.attempt;
      }
      if (state_ == State::Running) {
        int64_t delay = 0;
        if (s.attempt > 0) {
          int64_t ceiling = ms_to_ns(options_.backoff_max);
          int shift = std::min(s.attempt - 1, 30);
          if (kBackoffBaseNs <= (ceiling >> shift)) ceiling = kBackoffBaseNs << shift;
          delay = std::uniform_int_distribution<int64_t>(0, std::max<int64_t>(ceiling, 0))(rng_);
        }
        s.reconnect_at = clock_.mono_ns() + delay;
      }
    }
    if (down_since_ns_ < 0 && !any_ready()) down_since_ns_ = clock_.mono_ns();
    rearm();
  }

  bool any_ready() const {
    for (const Slot& s : slots_) {
      if (s.active && s.active->state() == Connection::State::Ready) return true;
    }
    return false;
  }

  // The Ready connection with the most free stream slots, or null.
  Connection* best_connection() const {
    Connection* best = nullptr;
    size_t best_free = 0;
    for (const Slot& s : slots_) {
      if (!s.active) continue;
      size_t free = s.active->free_streams();
      if (free > best_free) {
        best = s.active;
        best_free = free;
      }
    }
    return best;
  }

  // ----- requests

  Stream* acquire() {
    if (stream_cache_.empty()) return new Stream();
    Stream* s = stream_cache_.back();
    stream_cache_.pop_back();
    return s;
  }

  void start_on(Connection* c, Request&& request, Callback&& callback, int64_t submitted_ns) {
    Stream* s = acquire();
    s->request = std::move(request);
    s->callback = std::move(callback);
    s->deadline_ns = submitted_ns + ms_to_ns(s->request.timeout);
    std::string error;
    if (c->submit(s, &error)) return;
    // Not started. If the connection ran out of stream ids it is draining now and the
    // request goes back to the head of the queue; anything else is reported.
    Request r = std::move(s->request);
    Callback cb = std::move(s->callback);
    recycle(s);
    if (c->state() == Connection::State::Draining || c->state() == Connection::State::Closing) {
      queue_.push_front(Pending{std::move(r), std::move(cb), submitted_ns});
      rearm();
      return;
    }
    cb(nullptr, Failure::Refused, error);
  }

  // Starts queued requests while some connection has a free stream. Re-entrant calls
  // (from callbacks run here) leave the work to the outer loop.
  void pump() {
    if (pumping_) return;
    pumping_ = true;
    int64_t now = clock_.mono_ns();  // one reading per pump: expiry here is coarse anyway
    bool popped = false;
    while (!queue_.empty() && state_ == State::Running) {
      Pending& front = queue_.front();
      if (now >= front.submitted_ns + ms_to_ns(front.request.timeout)) {
        Pending p = std::move(front);
        queue_.pop_front();
        p.callback(nullptr, Failure::Timeout, "queued for longer than the request timeout");
        popped = true;
        continue;
      }
      Connection* c = best_connection();
      if (!c) break;
      Pending p = std::move(front);
      queue_.pop_front();
      popped = true;
      start_on(c, std::move(p.request), std::move(p.callback), p.submitted_ns);
    }
    pumping_ = false;
    if (popped && !queue_.empty()) rearm();  // a new head of the queue may be due sooner
  }

  // ----- the pool timer: reconnects and queued-request deadlines

  int64_t next_due() const {
    int64_t due = kNever;
    for (const Slot& s : slots_) {
      if (s.reconnect_at >= 0) due = std::min(due, s.reconnect_at);
    }
    if (!queue_.empty()) {
      const Pending& f = queue_.front();
      due = std::min(due, f.submitted_ns + ms_to_ns(f.request.timeout));
      if (down_since_ns_ >= 0) {
        due =
            std::min(due, std::max(f.submitted_ns, down_since_ns_) + 2 * ms_to_ns(options_.connect_timeout));
      }
    }
    return due;
  }

  void rearm() {
    if (state_ != State::Running) return;
    int64_t due = next_due();
    if (due == kNever || (uv_is_active(reinterpret_cast<uv_handle_t*>(&timer_)) && due >= timer_due_)) return;
    int64_t now = clock_.mono_ns();
    int64_t delay_ms = due > now ? (due - now + 999'999) / 1'000'000 : 0;
    timer_due_ = due;
    uv_timer_start(
        &timer_, [](uv_timer_t* t) { static_cast<Impl*>(t->data)->on_timer(); },
        static_cast<uint64_t>(delay_ms), 0);
  }

  void on_timer() {
    timer_due_ = kNever;
    int64_t now = clock_.mono_ns();
    for (size_t i = 0; i < slots_.size() && state_ == State::Running; ++i) {
      if (slots_[i].reconnect_at >= 0 && now >= slots_[i].reconnect_at) open_slot(i);
    }
    // Queued requests fail in FIFO order: Timeout past their own deadline, Connect after
    // 2 × connect_timeout with no connection up (so callers can back off; the pool keeps
    // reconnecting meanwhile).
    while (!queue_.empty() && state_ == State::Running) {
      Pending& f = queue_.front();
      Failure failure = Failure::None;
      std::string detail;
      if (now >= f.submitted_ns + ms_to_ns(f.request.timeout)) {
        failure = Failure::Timeout;
        detail = "queued for longer than the request timeout";
      } else if (down_since_ns_ >= 0 &&
                 now >= std::max(f.submitted_ns, down_since_ns_) + 2 * ms_to_ns(options_.connect_timeout)) {
        failure = Failure::Connect;
        detail = "no connection to " + origin_.authority + (last_error_.empty() ? "" : ": " + last_error_);
      } else {
        break;
      }
      Pending p = std::move(f);
      queue_.pop_front();
      p.callback(nullptr, failure, detail);
    }
    rearm();
  }

  void maybe_finish_close() {
    if (state_ != State::Closing || !connections_.empty() || !timer_closed_) return;
    state_ = State::Closed;
    auto done = std::move(close_done_);
    if (delete_self_) delete this;
    if (done) done();
  }

  uv_loop_t* loop_;
  PoolOptions options_;
  const Clock& clock_;
  State state_ = State::Created;
  Origin origin_;
  SslCtxPtr ssl_ctx_;
  ConnectionConfig config_;

  std::vector<Slot> slots_;
  std::vector<Connection*> connections_;  // every connection not yet freed (active, draining, closing)
  std::deque<Pending> queue_;
  std::vector<Stream*> stream_cache_;
  bool pumping_ = false;

  uv_timer_t timer_{};
  int64_t timer_due_ = kNever;
  bool timer_closed_ = false;
  int64_t down_since_ns_ = -1;  // since when no connection is Ready; -1 while one is
  std::string last_error_;

  uint64_t goaways_ = 0;
  uint64_t reconnects_ = 0;
  PoolObserver observer_;
  std::mt19937_64 rng_;

  std::function<void()> close_done_;
  bool delete_self_ = false;
};

Pool::Pool(uv_loop_t* loop, PoolOptions options, const Clock& clock)
    : impl_(std::make_unique<Impl>(loop, std::move(options), clock)) {}

// Destroying a pool that is still running is a misuse we survive: the Impl closes itself
// and is freed by its last close callback (the loop must keep running for that).
Pool::~Pool() {
  if (impl_ && !impl_->closed()) {
    impl_->abandon();
    (void)impl_.release();
  }
}

Status Pool::start() {
  return impl_->start();
}
void Pool::submit(Request request, Callback callback) {
  impl_->submit(std::move(request), std::move(callback));
}
size_t Pool::cancel(std::string_view tag) {
  return impl_->cancel(tag);
}
PoolStats Pool::stats() const {
  return impl_->stats();
}
void Pool::set_observer(PoolObserver observer) {
  impl_->set_observer(std::move(observer));
}
void Pool::close(std::function<void()> done) {
  impl_->close(std::move(done));
}

}  // namespace sirena::http2
