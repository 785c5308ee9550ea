#include "daemon/alerts/parse_async.h"

#include <optional>
#include <utility>

#include "daemon/alerts/alert_json.h"

namespace sirena::alerts {
namespace {

// Freed in the after-work callback, on the loop's thread.
struct ParseJob {
  uv_work_t work{};
  AlertFormat format;
  std::shared_ptr<const std::string> body;
  ParseLimits limits;
  ParseDone done;
  AfterParse after;
  std::optional<Result<Alert>> result;  // written by the worker, read after it
};

}  // namespace

void parse_alert_async(uv_loop_t* loop, AlertFormat format, std::shared_ptr<const std::string> body,
                       const ParseLimits& limits, ParseDone done, AfterParse after) {
  harden_libxml2();  // xmlInitParser on the loop's (main) thread, before any worker parses
  auto* job =
      new ParseJob{{}, format, std::move(body), limits, std::move(done), std::move(after), std::nullopt};
  job->work.data = job;
  const int rc = uv_queue_work(
      loop, &job->work,
      [](uv_work_t* w) {
        auto* j = static_cast<ParseJob*>(w->data);
        j->result = j->format == AlertFormat::CapXml ? parse_cap_xml(*j->body, j->limits)
                                                     : parse_alert_json(*j->body, j->limits);
        if (j->after && *j->result) j->after(**j->result);
      },
      [](uv_work_t* w, int status) {
        std::unique_ptr<ParseJob> j(static_cast<ParseJob*>(w->data));
        if (status != 0 || !j->result) {  // UV_ECANCELED: the loop is closing
          j->done(make_error(ErrorKind::Unavailable, "shutting_down",
                             "the daemon is stopping; retry on another instance"));
          return;
        }
        j->done(std::move(*j->result));
      });
  if (rc != 0) {
    // uv_queue_work fails only for a null callback, which is never passed here.
    std::unique_ptr<ParseJob> j(job);
    j->done(make_error(ErrorKind::Internal, "internal",
                       std::string("could not queue the parse: ") + uv_strerror(rc)));
  }
}

}  // namespace sirena::alerts
