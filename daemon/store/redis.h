// An asynchronous Redis connection on the libuv loop (hiredis async + its libuv adapter).
//
// Commands issued during one loop turn leave in one write (hiredis buffers them until
// the socket is writable), so callers pipeline simply by issuing commands. The client
// reconnects with capped exponential backoff; while it is down every command fails at
// once with a 503-class Error, so callers can answer "retry later" instead of hanging.
//
// hiredis's async API has no command timeouts, so a Redis that hangs (rather than closes)
// would leave callers waiting: a watchdog drops the connection when the oldest command
// has waited longer than set_command_timeout() (default 10 s). Its callers get the same
// 503-class error as on a lost connection, and the client reconnects.
//
// Ownership: the app owns one Redis; it must outlive every pending callback. stop()
// disconnects and calls `done` once hiredis has released everything.
#pragma once

#include <uv.h>

#include <deque>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "daemon/core/clock.h"
#include "daemon/core/result.h"
#include "daemon/store/reply.h"
#include "daemon/uv/handle.h"

namespace sirena::metrics {
class Metrics;
}

struct redisAsyncContext;

namespace sirena::store {

struct RedisTarget {
  std::string host;  // empty for a unix socket
  int port = 6379;
  std::string unix_path;  // set for unix:// URLs
  int db = 0;
  std::string password;
};

// Parses redis://[:password@]host:port[/db] and unix:///path[?db=N].
Result<RedisTarget> parse_redis_url(std::string_view url);

class Redis {
 public:
  // `reply` is valid only during the callback. On transport failure `reply` is null and
  // `error` says why; a Redis error reply arrives as a reply with is_error().
  using Callback = std::function<void(Reply reply, const Error* error)>;

  Redis(uv_loop_t* loop, const Clock& clock, metrics::Metrics& metrics, RedisTarget target);
  ~Redis();
  Redis(const Redis&) = delete;
  Redis& operator=(const Redis&) = delete;

  void set_command_timeout(int64_t ms) { timeout_ms_ = ms; }  // before start()
  // At most `n` commands wait for their replies (0: no bound). Past it a command fails at
  // once with the same 503-class error as on a lost connection, so a Redis that falls
  // behind costs bounded memory and callers answer "retry later" instead of piling up.
  void set_max_pending(size_t n) { max_pending_ = n; }
  // Commands sent and not yet answered.
  size_t pending() const { return inflight_.size(); }
  void start();
  void stop(std::function<void()> done);
  bool connected() const { return state_ == State::Connected; }

  // Called on every change between connected and not connected.
  void set_state_listener(std::function<void(bool connected)> fn) { on_state_ = std::move(fn); }

  void command(const std::vector<std::string_view>& argv, Callback cb);
  // EVALSHA with a transparent EVAL fallback on NOSCRIPT (after a Redis restart the
  // script cache is empty).
  void eval(const std::string& script, const std::vector<std::string_view>& keys,
            const std::vector<std::string_view>& args, Callback cb);

 private:
  enum class State { Idle, Connecting, Connected, Stopping, Stopped };
  struct Pending;

  void connect();
  void schedule_reconnect();
  void finish_stop();
  void set_state(State s);
  bool refuse(const Callback& cb);  // not connected, or too much pending: fails `cb`
  void send(const std::vector<std::string_view>& argv, Pending* p);
  void send_formatted(std::string_view cmd, Callback cb);  // a command already in RESP form
  static void on_connect(const redisAsyncContext* ac, int status);
  static void on_disconnect(const redisAsyncContext* ac, int status);
  static void on_reply(redisAsyncContext* ac, void* reply, void* privdata);
  static void on_timer(uv_timer_t* t);
  static void on_watchdog(uv_timer_t* t);
  void sent(Pending* p);

  uv_loop_t* loop_;
  const Clock& clock_;
  metrics::Metrics& metrics_;
  RedisTarget target_;
  State state_ = State::Idle;
  redisAsyncContext* ctx_ = nullptr;
  uv::Handle<uv_timer_t> timer_;     // reconnects
  uv::Handle<uv_timer_t> watchdog_;  // command timeouts
  int64_t timeout_ms_ = 10000;
  size_t max_pending_ = 0;
  std::deque<Pending*> inflight_;  // sent, in order (replies come in order)
  int64_t backoff_ms_ = 0;
  std::function<void(bool)> on_state_;
  std::function<void()> on_stopped_;
  std::unordered_map<const std::string*, std::string> scripts_;  // script text -> SHA1
};

}  // namespace sirena::store
