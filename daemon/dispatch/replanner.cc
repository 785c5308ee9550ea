#include "daemon/dispatch/replanner.h"

#include <nlohmann/json.hpp>

#include "daemon/alerts/alert_json.h"
#include "daemon/alerts/alert_store.h"
#include "daemon/alerts/lifecycle.h"
#include "daemon/core/log.h"
#include "daemon/directory/directory.h"
#include "daemon/dispatch/dispatcher.h"
#include "daemon/metrics/metrics.h"
#include "daemon/store/keys.h"
#include "daemon/store/redis.h"

namespace sirena::dispatch {
namespace {

std::string unplanned_key(const std::string& tenant) {
  return store::keys::unplanned(tenant);
}

}  // namespace

Replanner::Replanner(uv_loop_t* loop, store::Redis& redis, alerts::AlertStore& store,
                     directory::Directory& directory, Dispatcher& dispatcher, const Clock& clock,
                     metrics::Metrics& metrics, ReplanConfig config)
    : loop_(loop),
      redis_(redis),
      store_(store),
      directory_(directory),
      dispatcher_(dispatcher),
      clock_(clock),
      metrics_(metrics),
      cfg_(config),
      backoff_(cfg_.backoff_base_ms, cfg_.backoff_cap_ms) {}

Replanner::~Replanner() {
  *alive_ = false;
  stop();
}

void Replanner::start(std::vector<std::string> tenants) {
  tenants_ = std::move(tenants);
  for (const auto& t : tenants_) scan_stored(t, "");
  if (timer_) return;
  timer_.init(loop_, this, uv_timer_init);
  auto interval = static_cast<uint64_t>(cfg_.interval_ms);
  uv_timer_start(
      timer_.get(), [](uv_timer_t* t) { static_cast<Replanner*>(t->data)->pass(); }, 0, interval);
}

void Replanner::stop() {
  timer_.reset();
}

void Replanner::pass() {
  if (!redis_.connected() || !directory_.loaded()) return;
  std::string now = std::to_string(clock_.now_ms());
  std::string page = std::to_string(cfg_.page);
  for (const auto& tenant : tenants_) {
    if (!reading_.insert(tenant).second) continue;  // the last read has not answered yet
    redis_.command({"ZRANGEBYSCORE", unplanned_key(tenant), "-inf", now, "LIMIT", "0", page},
                   [this, alive = alive_, tenant](store::Reply r, const Error* e) {
                     if (!*alive) return;
                     reading_.erase(tenant);
                     if (e || !r.is_array()) return;
                     for (store::Reply id : r) take_up(tenant, id.string());
                   });
  }
}

void Replanner::take_up(const std::string& tenant, const std::string& id) {
  if (id.empty() || !in_hand_.insert(id).second) return;
  int attempt = ++attempts_[id];
  // Pushed back before anything else: a failure below leaves it to the next due time.
  std::string due = std::to_string(clock_.now_ms() + backoff_.delay_ms(attempt) + cfg_.backoff_base_ms);
  redis_.command({"ZADD", unplanned_key(tenant), "XX", due, id}, [](store::Reply, const Error*) {});
  auto finish = [this, alive = alive_, tenant, id](bool drop) {
    if (!*alive) return;
    in_hand_.erase(id);
    if (!drop) return;
    attempts_.erase(id);
    redis_.command({"ZREM", unplanned_key(tenant), id}, [](store::Reply, const Error*) {});
  };
  store_.get(
      tenant, id,
      [this, alive = alive_, tenant, id, attempt, finish](Result<std::optional<alerts::StoredAlert>> s) {
        if (!*alive) return;
        if (!s) return finish(false);
        if (!*s || (*s)->state != alerts::state::kAccepted)
          return finish(true);  // gone, or no longer to be sent
        auto parsed = alerts::alert_from_json(nlohmann::json::parse((*s)->parsed, nullptr, false));
        if (!parsed || !alerts::reaches_citizens(parsed->status, parsed->msg_type)) {
          metrics_.unexpected(parsed ? "replan_not_for_citizens" : "replan_unreadable_alert").Increment();
          log::error("replan_dropped", {{"tenant", tenant}, {"id", id}});
          return finish(true);
        }
        auto alert = std::make_shared<const alerts::Alert>(std::move(parsed).value());
        auto resolution = std::make_shared<const directory::Resolution>(directory_.resolve(tenant, *alert));
        log::warn("dispatch_replanning", {{"tenant", tenant}, {"id", id}, {"attempt", attempt}});
        metrics_.unexpected("dispatch_replanned").Increment();
        dispatcher_.plan(tenant, id, *alert, (*s)->received_ms, resolution,
                         [this, alive, tenant, id, alert, finish](Status st) {
                           if (!*alive) return;
                           if (!st) {
                             metrics_.unexpected("dispatch_plan_failed").Increment();
                             log::error("dispatch_plan_failed",
                                        {{"tenant", tenant}, {"id", id}, {"error", st.error().message}});
                             return finish(false);
                           }
                           // The plan script took it out of the set; the attempts are forgotten.
                           attempts_.erase(id);
                           finish(false);
                         });
      });
}

// Alerts stored before the `unplanned` set existed: any still `accepted` (and not a
// Cancel) joins it, due now. Paged, one page after the other.
void Replanner::scan_stored(const std::string& tenant, const std::string& cursor) {
  store_.list(tenant, cursor, 500, [this, alive = alive_, tenant](Result<alerts::Page> page) {
    if (!*alive || !page) return;
    std::string now = std::to_string(clock_.now_ms());
    for (const auto& s : page->items)
      if (s.state == alerts::state::kAccepted && s.msg_type != "Cancel")
        redis_.command({"ZADD", unplanned_key(tenant), "NX", now, s.id}, [](store::Reply, const Error*) {});
    if (page->next) scan_stored(tenant, *page->next);
  });
}

}  // namespace sirena::dispatch
