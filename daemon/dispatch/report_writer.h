// SMS delivery reports, group-committed to Redis (lua/dlr.lua): one script call at a
// time; the reports that arrive while one is under way go together in the next, which
// starts at the end of the loop turn when none is under way, else when the one under way
// is answered, or at once when kMaxReports wait. Each report is answered from its call's
// reply, so after Redis's fsync. Each call costs Redis a script run and sirenad a round
// trip however many reports it carries.
//
// All calls on the loop. Owned by the dispatcher; stop() before the Redis client stops.
#pragma once

#include <uv.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "daemon/core/result.h"

namespace sirena {
class TurnHook;
}
namespace sirena::store {
class Redis;
}

namespace sirena::dispatch {

class ReportWriter {
 public:
  static constexpr size_t kMaxReports = 256;  // reports a call carries at most

  struct Report {
    std::string prefix;  // the alert tenant's key prefix (store::keys::tenant)
    std::string alert_id;
    std::string recipient;  // "<R>|<number>"
    const char* state;      // "delivered", "failed" or "" (an intermediate report)
    const char* reason;
    // lua/dlr.lua's answer: "unknown", "noted", "duplicate", "early" or the state.
    std::function<void(Result<std::string>)> done;
  };

  ReportWriter(uv_loop_t* loop, store::Redis& redis);
  ~ReportWriter();
  ReportWriter(const ReportWriter&) = delete;
  ReportWriter& operator=(const ReportWriter&) = delete;

  void add(Report r);
  // Writes what waits now; later reports are written one call each.
  void stop();
  int calls_under_way() const { return calls_; }

 private:
  void schedule();
  void write();

  uv_loop_t* loop_;
  store::Redis& redis_;
  std::vector<Report> waiting_;
  std::unique_ptr<TurnHook> hook_;  // made by the first report; closed by stop()
  int calls_ = 0;
  bool stopping_ = false;
};

}  // namespace sirena::dispatch
