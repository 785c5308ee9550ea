// `redis.url: managed`: sirenad starts and owns a private redis-server.
//
// The server listens only on a unix socket under `dir` (no TCP port to collide with),
// keeps its data there with AOF on, and is restarted with backoff if it dies. stop()
// sends SIGTERM (Redis flushes the AOF and exits) and calls `done` when it has exited.
#pragma once

#include <uv.h>

#include <functional>
#include <string>

#include "daemon/config/config.h"
#include "daemon/uv/handle.h"

namespace sirena::store {

class ManagedRedis {
 public:
  ManagedRedis(uv_loop_t* loop, config::RedisConfig cfg);
  ~ManagedRedis();

  // Creates the directory and spawns the server. Returns the unix:// URL to connect to.
  Result<std::string> start();
  void stop(std::function<void()> done);
  int pid() const { return pid_; }

 private:
  Status spawn();
  static void on_exit(uv_process_t* p, int64_t status, int term_signal);
  void close_timer();

  uv_loop_t* loop_;
  config::RedisConfig cfg_;
  std::string dir_;  // absolute
  std::string socket_path_;
  uv::Handle<uv_process_t> process_;  // while redis-server runs
  uv::Handle<uv_timer_t> restart_timer_;
  int pid_ = 0;
  bool stopping_ = false;
  int restarts_ = 0;
  std::function<void()> on_stopped_;
};

}  // namespace sirena::store
