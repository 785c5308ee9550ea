// The process: owns the loop's subsystems, wires them, and handles signals.
//
// Start-up order: (managed Redis) -> Redis client -> HTTP server. Shutdown (SIGTERM,
// SIGINT) runs the other way: stop accepting, let in-flight requests finish (bounded),
// close Redis, stop the managed Redis, then stop the loop. SIGHUP reloads tenants and
// keys from the same file; a bad file is logged and the old configuration stays.
#pragma once

#include <uv.h>

#include <memory>
#include <string>

#include "daemon/config/config.h"
#include "daemon/core/clock.h"
#include "daemon/core/result.h"

namespace sirena::app {

class App {
 public:
  App(uv_loop_t* loop, config::Config cfg);
  ~App();

  Status start();
  // Begins a graceful shutdown; the loop stops when it is done.
  void shutdown();
  void reload();
  // After a failed start(): stops the managed Redis it may have spawned.
  void abort_start();
  int exit_code() const { return exit_code_; }

 private:
  Status add_gateways();
  void load_directory();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int exit_code_ = 0;
};

}  // namespace sirena::app
