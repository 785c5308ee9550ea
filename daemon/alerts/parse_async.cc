#include "daemon/alerts/parse_async.h"

#include <optional>
#include <utility>

#include "daemon/alerts/alert_json.h"
#include "daemon/core/turn_hook.h"

namespace sirena::alerts {

struct ParsePool::Body {
  AlertFormat format;
  std::shared_ptr<const std::string> bytes;
  ParseLimits limits;
  ParseDone done;
  AfterParse after;
  std::optional<Result<Alert>> result;  // written by the worker, read after it
};

// Freed in the after-work callback, on the loop's thread.
struct ParsePool::Job {
  uv_work_t work{};
  std::vector<Body> bodies;
};

ParsePool::ParsePool(uv_loop_t* loop)
    : loop_(loop), hook_(std::make_unique<TurnHook>(loop, [this] { submit(); })) {
  harden_libxml2();  // xmlInitParser on the loop's (main) thread, before any worker parses
}

ParsePool::~ParsePool() = default;

void ParsePool::parse(AlertFormat format, std::shared_ptr<const std::string> body, const ParseLimits& limits,
                      ParseDone done, AfterParse after) {
  if (!gathering_) gathering_ = std::make_unique<Job>();
  gathered_bytes_ += body->size();
  gathering_->bodies.push_back(Body{format, std::move(body), limits, std::move(done), std::move(after), {}});
  if (gathering_->bodies.size() >= kMaxJobs || gathered_bytes_ >= kMaxBytes) {
    hook_->cancel();
    submit();
  } else {
    hook_->schedule();
  }
}

void ParsePool::submit() {
  if (!gathering_) return;
  Job* job = gathering_.release();
  gathered_bytes_ = 0;
  job->work.data = job;
  ++jobs_queued_;
  const int rc = uv_queue_work(
      loop_, &job->work,
      [](uv_work_t* w) {
        for (Body& b : static_cast<Job*>(w->data)->bodies) {
          b.result = b.format == AlertFormat::CapXml ? parse_cap_xml(*b.bytes, b.limits)
                                                     : parse_alert_json(*b.bytes, b.limits);
          if (b.after && *b.result) b.after(**b.result);
        }
      },
      [](uv_work_t* w, int status) {
        std::unique_ptr<Job> j(static_cast<Job*>(w->data));
        for (Body& b : j->bodies) {
          if (status != 0 || !b.result)  // UV_ECANCELED: the loop is closing
            b.done(make_error(ErrorKind::Unavailable, "shutting_down", "the daemon is stopping; retry on another instance"));
          else
            b.done(std::move(*b.result));
        }
      });
  if (rc != 0) {
    // uv_queue_work fails only for a null callback, which is never passed here.
    std::unique_ptr<Job> j(job);
    for (Body& b : j->bodies)
      b.done(make_error(ErrorKind::Internal, "internal", std::string("could not queue the parse: ") + uv_strerror(rc)));
  }
}

}  // namespace sirena::alerts
