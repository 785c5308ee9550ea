// The fan-out engine: an accepted alert becomes a durable plan of batches in Redis;
// workers claim batches through a Redis Streams consumer group (so several daemons can
// share the work), send each recipient's messages through the channel's gateway, retry
// what can be retried, and record every outcome, so a restarted daemon skips what was
// done. Channel-agnostic: gateways plug in through dispatch::Gateway.
//
// Redis: the plan, batch, deliv, acc, progress, smsto and dlr keys of store/keys.h, and the
// {dispatch}:p<0..3> streams (consumer group "sirenad").
// Invariants (DESIGN.md "Dispatch invariants"): a batch is acknowledged only after the
// outcomes of all its messages are written; a message recorded as final is never sent
// again; duplicates after a crash are bounded by the messages in flight plus the
// outcomes not yet flushed (flushed every `flush_ms`). A plan is written in two calls,
// its first batch alone and then the rest, so that the first messages go while the rest
// is written; one interrupted in between is planned again (see lua/plan.lua).
//
// All calls on the loop. The app owns the Dispatcher and the gateways it is given.
#pragma once

#include <uv.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "daemon/alerts/alert.h"
#include "daemon/core/clock.h"
#include "daemon/core/result.h"
#include "daemon/directory/directory.h"
#include "daemon/dispatch/gateway.h"
#include "daemon/dispatch/progress.h"
#include "daemon/dispatch/sms_text.h"

namespace sirena::store {
class Redis;
}
namespace sirena::metrics {
class Metrics;
}

namespace sirena::dispatch {

struct DispatchConfig {
  std::string consumer = "sirenad";  // stable per daemon: a restart re-reads its own pending batches
  size_t batch_size = 1000;
  size_t max_batches = 64;  // batches in work at once (the in-flight window)
  int max_attempts = 8;
  int64_t backoff_base_ms = 200;
  int64_t backoff_cap_ms = 30'000;
  int64_t poll_ms = 50;  // how often to look for work added by other daemons
  int64_t flush_ms = 5;  // outcome write-back period
  // Accepted messages whose outcome is not yet durable in Redis. Sending pauses at this
  // many: with the gateway's in-flight limit it bounds what a crash can send twice.
  size_t max_unconfirmed = 10000;
  int64_t reclaim_idle_ms = 30'000;  // batches pending longer than this on another consumer are taken over
};

// Which channels a recipient with push and a phone gets, per the alert tenant's policy.
enum class ChannelPolicy {
  All,        // push and SMS at once (the default for Extreme)
  PushFirst,  // SMS only when no push was accepted, or none within `fallback_ms`
};

struct TenantPolicy {
  SmsPolicy sms;
  std::map<std::string, ChannelPolicy> by_severity{{"Extreme", ChannelPolicy::All}};  // CAP severity
  ChannelPolicy otherwise = ChannelPolicy::PushFirst;
  int64_t fallback_ms = 30'000;
  ChannelPolicy for_severity(const std::string& severity) const {
    auto it = by_severity.find(severity);
    return it == by_severity.end() ? otherwise : it->second;
  }
};

// Kannel's DLR types (a bit each).
enum DlrType : int {
  kDlrDelivered = 1,
  kDlrUndelivered = 2,
  kDlrBuffered = 4,
  kDlrSmscAccepted = 8,
  kDlrSmscRejected = 16
};

class Dispatcher {
 public:
  Dispatcher(uv_loop_t* loop, store::Redis& redis, directory::Directory& directory, const Clock& clock,
             metrics::Metrics& metrics, DispatchConfig config);
  ~Dispatcher();

  // `rate_per_s` 0 = no limit (e.g. FCM's 600k/min project quota is 10000/s).
  void add_gateway(std::unique_ptr<Gateway> gateway, double rate_per_s = 0);
  bool has_channel(Channel c) const;
  // The alert tenants' SMS text and channel policies (at start-up and on SIGHUP).
  void set_policies(std::map<std::string, TenantPolicy> policies);

  // Begins work (after Redis is up): creates the consumer group, re-reads this
  // consumer's pending batches, then polls for new ones.
  void start();
  // Stops claiming work; in-flight requests finish or are left for the restart; `done`
  // runs when gateways are closed.
  void stop(std::function<void()> done);

  // Writes the plan of an accepted alert and queues its batches. Idempotent: an alert
  // that already has a complete plan keeps it. Moves the alert to `dispatching` (or
  // `completed` when nobody is reached) with the plan's last batch; `done` runs then.
  // `alert` is the stored alert in state `accepted`, received at `received_ms`: the
  // dispatcher keeps it rather than read it back from Redis.
  void plan(const std::string& tenant, const std::string& alert_id, const alerts::Alert& alert,
            int64_t received_ms, std::shared_ptr<const directory::Resolution> resolution,
            std::function<void(sirena::Status)> done);

  // Stops this daemon's sends for the alert at once (queued and retrying messages are
  // dropped and recorded as cancelled). The alert's state in Redis is the caller's.
  void cancel(const std::string& alert_id);
  // The same for the alerts an Update or Cancel of `tenant` references (CAP triples).
  void cancel_references(const std::string& tenant, const std::vector<alerts::Reference>& refs);

  // Counts per channel this daemon sends on (progress.h).
  void progress(const std::string& tenant, const std::string& alert_id,
                std::function<void(Result<Progress>)> done);
  // An SMS delivery report for the alert of `alert_tenant`, sent to `number` of a
  // recipient of `recipient_tenant`. Answers what it did: "delivered" or "failed" (the
  // delivery moved), "noted" (an intermediate state), "duplicate" (a final report was seen
  // before), "early" (kept until the acceptance is recorded) or "unknown". Reports are
  // group-committed: those that arrive while one Redis call writes others go together in
  // the next (at most 256 a call); `done` runs once its report is durable, or with the error.
  void delivery_report(const std::string& alert_tenant, const std::string& alert_id,
                       const std::string& recipient_tenant, const std::string& number, int type,
                       std::function<void(Result<std::string>)> done);

  // One page of per-recipient outcomes, optionally filtered by state (progress.h).
  void deliveries(const std::string& tenant, const std::string& alert_id, const std::string& state,
                  const std::string& cursor, size_t limit, std::function<void(Result<DeliveryPage>)> done);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sirena::dispatch
