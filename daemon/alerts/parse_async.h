// Alert intake off the event loop: the CAP XML or JSON parse of a posted body runs on
// libuv's thread pool, so a costly body (a megabyte of polygons, a schema check)
// delays no other request and no dispatch.
//
// The bodies posted during one loop turn go to the pool together: one job per turn (or
// per kMaxJobs bodies, or kMaxBytes of them, whichever comes first), not one per body.
// Handing work to the pool costs a futex wake-up and a completion each; at thousands of
// alerts a second, one per body was a tenth of the loop's time. Big bodies still spread
// over the pool's threads.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "daemon/alerts/alert.h"
#include "daemon/alerts/cap_parser.h"
#include "daemon/core/result.h"

namespace sirena {
class TurnHook;
}

namespace sirena::alerts {

enum class AlertFormat { CapXml, Json };

using ParseDone = std::function<void(Result<Alert>&&)>;
// More work on the alert while still on the pool thread, after a successful parse (the
// API builds the alert's geometry there). It must touch nothing the loop uses.
using AfterParse = std::function<void(const Alert&)>;

class ParsePool {
 public:
  static constexpr size_t kMaxJobs = 32;
  static constexpr size_t kMaxBytes = 256 * 1024;

  // Installs the libxml2 hardening on the calling (the loop's) thread first
  // (harden_libxml2), before any worker parses.
  explicit ParsePool(uv_loop_t* loop);
  ~ParsePool();  // bodies not yet handed to the pool are dropped, their `done` not run
  ParsePool(const ParsePool&) = delete;
  ParsePool& operator=(const ParsePool&) = delete;

  // Parses `body` with parse_cap_xml or parse_alert_json on the pool and calls `done`
  // on the loop's thread with the result (never from inside this call); `after`, when
  // given, runs on the worker right after a successful parse. The body is shared with
  // the worker thread and must not change. Call on the loop's thread.
  void parse(AlertFormat format, std::shared_ptr<const std::string> body, const ParseLimits& limits,
             ParseDone done, AfterParse after = {});

  // Jobs handed to the pool so far (for tests: bodies posted in one turn share one).
  size_t jobs_queued() const { return jobs_queued_; }

 private:
  struct Body;
  struct Job;
  void submit();  // hands the bodies gathered so far to the pool as one job

  uv_loop_t* loop_;
  std::unique_ptr<Job> gathering_;  // bodies of this turn not yet handed over
  size_t gathered_bytes_ = 0;
  std::unique_ptr<TurnHook> hook_;
  size_t jobs_queued_ = 0;
};

}  // namespace sirena::alerts
