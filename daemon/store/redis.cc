#include "daemon/store/redis.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include <algorithm>
#include <charconv>
#include <memory>
#include <unordered_map>

#include "daemon/core/log.h"
#include "daemon/core/number.h"
#include "daemon/metrics/metrics.h"

namespace sirena::store {
namespace {

constexpr int64_t kBackoffMinMs = 50;
constexpr int64_t kBackoffMaxMs = 2000;

Error unavailable(const std::string& why) {
  return make_error(ErrorKind::Unavailable, "redis_unavailable",
                    "storage is unavailable (" + why + "); retry shortly");
}

std::string sha1_hex(const std::string& s) {
  unsigned char md[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(s.data()), s.size(), md);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : md) {
    out.push_back(hex[c >> 4]);
    out.push_back(hex[c & 15]);
  }
  return out;
}

// hiredis's own libuv adapter (0.14) ignores a poll error: on POLLERR (a reset while a
// write is pending) libuv stops the poll and reports UV_EBADF, the adapter returns, and
// the context never learns that the connection is gone. This one lets hiredis read,
// which then sees the error and disconnects.
struct UvEvents {
  uv_poll_t handle;
  redisAsyncContext* ctx;
  int events = 0;
};

void uv_on_poll(uv_poll_t* h, int status, int events) {
  auto* p = static_cast<UvEvents*>(h->data);
  if (!p->ctx) return;
  if (status < 0) {
    redisAsyncHandleRead(p->ctx);
    return;
  }
  if (events & UV_READABLE) redisAsyncHandleRead(p->ctx);
  if (p->ctx && (events & UV_WRITABLE)) redisAsyncHandleWrite(p->ctx);
}

void uv_update(UvEvents* p, int add, int remove) {
  p->events = (p->events | add) & ~remove;
  if (p->events)
    uv_poll_start(&p->handle, p->events, uv_on_poll);
  else
    uv_poll_stop(&p->handle);
}

bool attach_to_loop(redisAsyncContext* ac, uv_loop_t* loop) {
  auto* p = new UvEvents;
  if (uv_poll_init_socket(loop, &p->handle, ac->c.fd) != 0) {
    delete p;
    return false;
  }
  p->handle.data = p;
  p->ctx = ac;
  ac->ev.data = p;
  ac->ev.addRead = [](void* d) { uv_update(static_cast<UvEvents*>(d), UV_READABLE, 0); };
  ac->ev.delRead = [](void* d) { uv_update(static_cast<UvEvents*>(d), 0, UV_READABLE); };
  ac->ev.addWrite = [](void* d) { uv_update(static_cast<UvEvents*>(d), UV_WRITABLE, 0); };
  ac->ev.delWrite = [](void* d) { uv_update(static_cast<UvEvents*>(d), 0, UV_WRITABLE); };
  ac->ev.cleanup = [](void* d) {
    auto* events = static_cast<UvEvents*>(d);
    events->ctx = nullptr;  // hiredis frees the context; the handle dies in its close callback
    uv_close(reinterpret_cast<uv_handle_t*>(&events->handle),
             [](uv_handle_t* h) { delete static_cast<UvEvents*>(h->data); });
  };
  return true;
}

}  // namespace

struct Redis::Pending {
  Redis* self;
  Callback cb;
  int64_t started_ns;
};

Result<RedisTarget> parse_redis_url(std::string_view url) {
  RedisTarget t;
  auto bad = [&](const char* why) {
    return make_error(ErrorKind::Config, "invalid_redis_url",
                      std::string("redis.url \"") + std::string(url) + "\": " + why);
  };
  if (url.rfind("unix://", 0) == 0) {
    std::string_view rest = url.substr(7);
    if (auto q = rest.find("?db="); q != std::string_view::npos) {
      std::string_view db = rest.substr(q + 4);
      auto n = parse_number<int>(db, 0);
      if (!n) return bad("bad db number");
      t.db = *n;
      rest = rest.substr(0, q);
    }
    if (rest.empty() || rest[0] != '/') return bad("expected unix:///absolute/path");
    t.unix_path = std::string(rest);
    return t;
  }
  if (url.rfind("redis://", 0) != 0) return bad("expected redis:// or unix://");
  std::string_view rest = url.substr(8);
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view auth = rest.substr(0, at);
    if (auto c = auth.find(':'); c != std::string_view::npos) auth = auth.substr(c + 1);
    t.password = std::string(auth);
    rest = rest.substr(at + 1);
  }
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    std::string_view db = rest.substr(slash + 1);
    if (!db.empty()) {
      auto n = parse_number<int>(db, 0);
      if (!n) return bad("bad db number");
      t.db = *n;
    }
    rest = rest.substr(0, slash);
  }
  auto colon = rest.rfind(':');
  if (colon == std::string_view::npos) {
    t.host = std::string(rest);
  } else {
    t.host = std::string(rest.substr(0, colon));
    std::string_view port = rest.substr(colon + 1);
    auto n = parse_number<int>(port, 1, 65535);
    if (!n) return bad("bad port");
    t.port = *n;
  }
  if (t.host.empty()) return bad("missing host");
  return t;
}

Redis::Redis(uv_loop_t* loop, const Clock& clock, metrics::Metrics& metrics, RedisTarget target)
    : loop_(loop), clock_(clock), metrics_(metrics), target_(std::move(target)) {}

Redis::~Redis() {
  // The app calls stop() and waits for it; a context still alive here is a bug.
  if (ctx_) ctx_->data = nullptr;
}

void Redis::start() {
  timer_.init(loop_, this, uv_timer_init);
  watchdog_.init(loop_, this, uv_timer_init);
  auto period = static_cast<uint64_t>(std::clamp<int64_t>(timeout_ms_ / 4, 10, 1000));
  uv_timer_start(watchdog_.get(), &Redis::on_watchdog, period, period);
  uv_unref(watchdog_.base());  // never what keeps the loop alive
  connect();
}

void Redis::on_watchdog(uv_timer_t* t) {
  auto* self = static_cast<Redis*>(t->data);
  bool stopping = self->state_ == State::Stopping;  // stop() waits for the pending replies
  if ((self->state_ != State::Connected && !stopping) || !self->ctx_ || self->inflight_.empty()) return;
  int64_t waited_ms = (self->clock_.mono_ns() - self->inflight_.front()->started_ns) / 1'000'000;
  if (waited_ms <= self->timeout_ms_) return;
  log::error("redis_timeout", {{"waited_ms", waited_ms}, {"pending", self->inflight_.size()}});
  self->metrics_.unexpected("redis_command_timeout").Increment();
  redisAsyncContext* c = self->ctx_;
  if (!stopping) self->set_state(State::Idle);  // commands issued by the callbacks below fail at once
  // Every pending command's callback runs with no reply; on_disconnect then reconnects
  // (or finishes the stop).
  redisAsyncFree(c);
  if (self->ctx_ == c) {
    self->ctx_ = nullptr;
    if (stopping)
      self->finish_stop();
    else
      self->schedule_reconnect();
  }
}

void Redis::sent(Pending* p) {
  inflight_.push_back(p);
}

void Redis::set_state(State s) {
  bool was = state_ == State::Connected;
  state_ = s;
  bool is = state_ == State::Connected;
  if (was != is) {
    metrics_.redis_connected().Set(is ? 1 : 0);
    if (on_state_) on_state_(is);
  }
}

void Redis::connect() {
  set_state(State::Connecting);
  ctx_ = target_.unix_path.empty() ? redisAsyncConnect(target_.host.c_str(), target_.port)
                                   : redisAsyncConnectUnix(target_.unix_path.c_str());
  if (!ctx_ || ctx_->err) {
    log::warn("redis_connect_failed", {{"error", ctx_ ? ctx_->errstr : "out of memory"}});
    if (ctx_) redisAsyncFree(ctx_);
    ctx_ = nullptr;
    schedule_reconnect();
    return;
  }
  ctx_->data = this;
  if (!attach_to_loop(ctx_, loop_)) {
    redisAsyncFree(ctx_);
    ctx_ = nullptr;
    schedule_reconnect();
    return;
  }
  redisAsyncSetConnectCallback(ctx_, &Redis::on_connect);
  redisAsyncSetDisconnectCallback(ctx_, &Redis::on_disconnect);
}

void Redis::schedule_reconnect() {
  if (state_ == State::Stopping || state_ == State::Stopped) return;
  set_state(State::Idle);
  backoff_ms_ = backoff_ms_ == 0 ? kBackoffMinMs : std::min(backoff_ms_ * 2, kBackoffMaxMs);
  metrics_.redis_reconnects().Increment();
  uv_timer_start(timer_.get(), &Redis::on_timer, static_cast<uint64_t>(backoff_ms_), 0);
}

void Redis::on_timer(uv_timer_t* t) {
  auto* self = static_cast<Redis*>(t->data);
  if (self->state_ == State::Idle) self->connect();
}

void Redis::on_connect(const redisAsyncContext* ac, int status) {
  auto* self = static_cast<Redis*>(ac->data);
  if (!self) return;
  if (status != REDIS_OK) {
    // hiredis frees the context after this callback returns.
    self->ctx_ = nullptr;
    if (self->state_ == State::Stopping) {
      self->finish_stop();
      return;
    }
    log::warn("redis_connect_failed", {{"error", ac->errstr}});
    self->schedule_reconnect();
    return;
  }
  if (!self->target_.password.empty())
    self->command({"AUTH", self->target_.password}, [](Reply, const Error*) {});
  if (self->target_.db != 0)
    self->command({"SELECT", std::to_string(self->target_.db)}, [](Reply, const Error*) {});
  // Scripts used before are loaded again, so that a Redis restart (empty script cache)
  // does not cost every script a NOSCRIPT round trip.
  for (const auto& [text, sha] : self->scripts_)
    self->command({"SCRIPT", "LOAD", *text}, [](Reply, const Error*) {});
  self->backoff_ms_ = 0;
  log::info("redis_connected", {{"target", self->target_.unix_path.empty()
                                               ? self->target_.host + ":" + std::to_string(self->target_.port)
                                               : self->target_.unix_path}});
  self->set_state(State::Connected);
}

void Redis::on_disconnect(const redisAsyncContext* ac, int status) {
  auto* self = static_cast<Redis*>(ac->data);
  if (!self) return;
  self->ctx_ = nullptr;  // hiredis frees it after this callback
  if (self->state_ == State::Stopping) {
    self->finish_stop();
    return;
  }
  log::warn("redis_disconnected", {{"status", status}, {"error", ac->errstr ? ac->errstr : ""}});
  self->schedule_reconnect();
}

void Redis::stop(std::function<void()> done) {
  on_stopped_ = std::move(done);
  if (timer_) uv_timer_stop(timer_.get());
  if (ctx_ && (state_ == State::Connected || state_ == State::Connecting)) {
    state_ = State::Stopping;
    redisAsyncDisconnect(ctx_);  // pending replies are delivered first
    return;
  }
  state_ = State::Stopping;
  finish_stop();
}

void Redis::finish_stop() {
  set_state(State::Stopped);
  // One after the other, as before: on_stopped_ runs once both are freed.
  watchdog_.reset([this] {
    timer_.reset([this] {
      if (on_stopped_) on_stopped_();
    });
  });
}

bool Redis::refuse(const Callback& cb) {
  if (state_ != State::Connected || !ctx_) {
    Error e = unavailable("not connected");
    cb(Reply(), &e);
    return true;
  }
  if (max_pending_ && inflight_.size() >= max_pending_) {
    metrics_.unexpected("redis_pending_limit").Increment();
    Error e = unavailable(std::to_string(inflight_.size()) + " commands wait for Redis");
    cb(Reply(), &e);
    return true;
  }
  return false;
}

void Redis::command(const std::vector<std::string_view>& argv, Callback cb) {
  if (refuse(cb)) return;
  send(argv, new Pending{this, std::move(cb), clock_.mono_ns()});
}

void Redis::send(const std::vector<std::string_view>& argv, Pending* p) {
  std::vector<const char*> ptrs;
  std::vector<size_t> lens;
  ptrs.reserve(argv.size());
  lens.reserve(argv.size());
  for (auto a : argv) {
    ptrs.push_back(a.data());
    lens.push_back(a.size());
  }
  if (redisAsyncCommandArgv(ctx_, &Redis::on_reply, p, static_cast<int>(argv.size()), ptrs.data(),
                            lens.data()) != REDIS_OK) {
    Error e = unavailable("command not sent");
    p->cb(Reply(), &e);
    delete p;
    return;
  }
  sent(p);
}

void Redis::send_formatted(std::string_view cmd, Callback cb) {
  if (refuse(cb)) return;
  auto* p = new Pending{this, std::move(cb), clock_.mono_ns()};
  if (redisAsyncFormattedCommand(ctx_, &Redis::on_reply, p, cmd.data(), cmd.size()) != REDIS_OK) {
    Error e = unavailable("command not sent");
    p->cb(Reply(), &e);
    delete p;
    return;
  }
  sent(p);
}

void Redis::on_reply(redisAsyncContext*, void* reply, void* privdata) {
  std::unique_ptr<Pending> p(static_cast<Pending*>(privdata));
  auto& inflight = p->self->inflight_;
  if (!inflight.empty() && inflight.front() == p.get()) {
    inflight.pop_front();
  } else if (auto it = std::find(inflight.begin(), inflight.end(), p.get()); it != inflight.end()) {
    inflight.erase(it);
  }
  auto* r = static_cast<redisReply*>(reply);
  p->self->metrics_.redis_command_duration().Observe(
      static_cast<double>(p->self->clock_.mono_ns() - p->started_ns) / 1e9);
  if (!r) {
    Error e = unavailable("connection lost");
    p->cb(Reply(), &e);
    return;
  }
  p->cb(Reply(r), nullptr);
}

void Redis::eval(const std::string& script, const std::vector<std::string_view>& keys,
                 const std::vector<std::string_view>& args, Callback cb) {
  auto& sha = scripts_[&script];
  if (sha.empty()) {
    sha = sha1_hex(script);
    // Loaded ahead of its first EVALSHA on the same connection (and again on every
    // reconnect), so NOSCRIPT is left for a Redis that lost its cache unseen.
    if (connected()) command({"SCRIPT", "LOAD", script}, [](Reply, const Error*) {});
  }
  std::string nkeys = std::to_string(keys.size());
  std::vector<const char*> ptrs{"EVALSHA", sha.data(), nkeys.data()};
  std::vector<size_t> lens{7, sha.size(), nkeys.size()};
  for (const auto* list : {&keys, &args})
    for (auto a : *list) {
      ptrs.push_back(a.data());
      lens.push_back(a.size());
    }
  char* formatted = nullptr;
  int len = redisFormatCommandArgv(&formatted, static_cast<int>(ptrs.size()), ptrs.data(), lens.data());
  if (len < 0) {
    Error e = unavailable("out of memory");
    return cb(Reply(), &e);
  }
  // One formatted command is kept for the fallback: its arguments after the SHA are
  // those of the EVAL, so the caller's (possibly large) arguments are not copied again.
  std::shared_ptr<char> cmd(formatted, redisFreeCommand);
  std::string_view text(formatted, static_cast<size_t>(len));
  send_formatted(
      text, [this, &script, cmd, text, n = ptrs.size(), cb = std::move(cb)](Reply r, const Error* e) mutable {
        if (r.is_error() && r.str().starts_with("NOSCRIPT")) {
          std::string head = "*" + std::to_string(n) + "\r\n$7\r\nEVALSHA\r\n$40\r\n";
          std::string again = "*" + std::to_string(n) + "\r\n$4\r\nEVAL\r\n$" +
                              std::to_string(script.size()) + "\r\n" + script + "\r\n";
          again.append(text.substr(head.size() + 40 + 2));  // after "<sha>\r\n"
          send_formatted(again, std::move(cb));
          return;
        }
        cb(r, e);
      });
}

}  // namespace sirena::store
