#include "daemon/dispatch/report_writer.h"

#include <optional>

#include "daemon/core/turn_hook.h"
#include "daemon/dispatch/scripts.h"
#include "daemon/store/redis.h"

namespace sirena::dispatch {

ReportWriter::ReportWriter(uv_loop_t* loop, store::Redis& redis) : loop_(loop), redis_(redis) {}

ReportWriter::~ReportWriter() = default;

void ReportWriter::add(Report r) {
  waiting_.push_back(std::move(r));
  // Stopping: the hook is closed, and nothing waits for another turn.
  if (waiting_.size() >= kMaxReports || stopping_) return write();
  if (calls_ == 0) schedule();  // else the answer of the call under way does
}

void ReportWriter::stop() {
  stopping_ = true;
  write();
  if (hook_) hook_->close(nullptr);
}

void ReportWriter::schedule() {
  if (stopping_) return write();
  if (!hook_)
    hook_ = std::make_unique<TurnHook>(loop_, [this] {
      if (calls_ == 0) write();  // else its answer schedules again
    });
  hook_->schedule();
}

void ReportWriter::write() {
  if (waiting_.empty()) return;
  auto batch = std::make_shared<std::vector<Report>>(std::move(waiting_));
  waiting_.clear();
  std::vector<std::string_view> keys, argv;
  keys.reserve(batch->size());
  argv.reserve(4 * batch->size());
  for (const Report& r : *batch) {
    keys.push_back(r.prefix);
    argv.insert(argv.end(), {r.alert_id, r.recipient, r.state, r.reason});
  }
  ++calls_;
  redis_.eval(scripts::dlr(), keys, argv, [this, batch](store::Reply r, const Error* e) {
    // The reports that came meanwhile go at the end of this loop turn, with any it brings.
    if (--calls_ == 0 && !waiting_.empty()) schedule();
    std::optional<Error> failed;
    if (e)
      failed = *e;
    else if (r.is_error())
      failed = make_error(ErrorKind::Internal, "storage_error", "dlr script: " + std::string(r.str()));
    else if (!r.is_array() || r.size() != batch->size())
      failed = make_error(ErrorKind::Internal, "storage_error", "dlr script: not one answer per report");
    for (size_t k = 0; k < batch->size(); ++k) {
      auto& done = (*batch)[k].done;
      if (failed)
        done(*failed);
      else
        done(r[k].string());
    }
  });
}

}  // namespace sirena::dispatch
