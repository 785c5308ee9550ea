// "202 means it goes out": every accepted alert gets a plan, even when the first try
// failed (Redis lost mid-plan, a daemon killed before it planned).
//
// The create and approve scripts put each sendable alert in its tenant's `unplanned`
// zset (alert_store.h) in the same call that makes it durable; the plan script takes it
// out when the plan is complete. The Replanner takes up what is left: every `interval_ms`
// it reads, per tenant, up to `page` entries that are due, pushes each one's due time
// back by a capped exponential backoff (so neither it nor another daemon takes it up
// again meanwhile), reads the alert and plans it. An alert that is no longer `accepted`
// (cancelled, superseded, planned by another daemon) is dropped from the set.
//
// At start-up it also pages through every stored alert of a tenant once, so that alerts
// stored before the set existed are found too (no limit of N newest).
//
// All calls on the loop. The app owns it; stop() before the Redis client is stopped.
#pragma once

#include <uv.h>

#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "daemon/core/clock.h"
#include "daemon/dispatch/flow.h"
#include "daemon/uv/handle.h"

namespace sirena::store {
class Redis;
}
namespace sirena::metrics {
class Metrics;
}
namespace sirena::alerts {
class AlertStore;
}
namespace sirena::directory {
class Directory;
}

namespace sirena::dispatch {

class Dispatcher;

struct ReplanConfig {
  int64_t interval_ms = 1000;
  size_t page = 100;  // entries read per tenant and pass
  int64_t backoff_base_ms = 1000;
  int64_t backoff_cap_ms = 60'000;
};

class Replanner {
 public:
  Replanner(uv_loop_t* loop, store::Redis& redis, alerts::AlertStore& store, directory::Directory& directory,
            Dispatcher& dispatcher, const Clock& clock, metrics::Metrics& metrics, ReplanConfig config = {});
  ~Replanner();

  // Starts the passes for these tenants (and the one-off scan of their stored alerts).
  void start(std::vector<std::string> tenants);
  void set_tenants(std::vector<std::string> tenants) { tenants_ = std::move(tenants); }
  void stop();

  // One pass now (tests drive it; the timer calls it too).
  void pass();

 private:
  void take_up(const std::string& tenant, const std::string& id);
  void scan_stored(const std::string& tenant, const std::string& cursor);

  uv_loop_t* loop_;
  store::Redis& redis_;
  alerts::AlertStore& store_;
  directory::Directory& directory_;
  Dispatcher& dispatcher_;
  const Clock& clock_;
  metrics::Metrics& metrics_;
  ReplanConfig cfg_;
  Backoff backoff_;
  std::vector<std::string> tenants_;
  uv::Handle<uv_timer_t> timer_;
  std::unordered_set<std::string> reading_;        // tenants whose due entries are being read
  std::unordered_set<std::string> in_hand_;        // alerts being read or planned here
  std::unordered_map<std::string, int> attempts_;  // by alert id, while it stays unplanned
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace sirena::dispatch
