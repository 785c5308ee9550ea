// Carrying out an alert's lifecycle (the rules are alerts/lifecycle.h): store a submitted
// alert in its initial state, stop what an Update or Cancel replaces, approve, cancel,
// and start the dispatch of what is accepted. The API parses and serialises; every
// decision about an alert's way to its citizens is taken here. Alerts whose plan failed
// or that were stored before a restart are taken up by the Replanner (replanner.h).
//
// All calls on the loop. The app owns it; it holds references only.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/alerts/alert.h"
#include "daemon/alerts/alert_store.h"
#include "daemon/core/clock.h"
#include "daemon/core/result.h"
#include "daemon/directory/directory.h"

namespace sirena::metrics {
class Metrics;
}

namespace sirena::dispatch {

class Dispatcher;

struct Submission {
  std::string tenant;
  // The tenant's approval policy (config::Tenant::approval).
  std::vector<std::string> approval_statuses;
  int64_t min_recipients = 0;
  alerts::Alert alert;
  directory::Area drawn;    // directory::Area::from_alert(alert), made off the loop
  std::string stored_json;  // alerts::stored_json(alert), idem; empty: made here
  std::string_view raw;     // the posted bytes; read during submit() only
  std::string content_type, key_id, remote;
  int64_t received_ms = 0;
};

struct Submitted {
  alerts::Created created;
  size_t recipients = 0;  // the resolution's count at intake
  std::shared_ptr<const alerts::Alert> alert;
};

struct Cancelled {
  std::string state;
  std::string cancelled_by;  // the CAP Cancel's alert id, or what cancelled it
  std::string warning;       // set when no CAP Cancel could be issued (the stop holds)
};

class Lifecycle {
 public:
  Lifecycle(alerts::AlertStore& store, directory::Directory& directory, Dispatcher& dispatcher,
            const Clock& clock, metrics::Metrics& metrics)
      : store_(store), directory_(directory), dispatcher_(dispatcher), clock_(clock), metrics_(metrics) {}

  // Resolves, stores the alert in its initial state (draft, recorded, pending_approval or
  // accepted) and, when it is accepted, stops what it replaces at once and plans it.
  // A second submission of the same (sender, identifier, sent) answers the first.
  void submit(Submission s, std::function<void(Result<Submitted>)> done);

  // pending_approval -> accepted by a key other than the submitter's; then stops what it
  // replaces and plans it with a fresh resolution (the directory may have changed).
  // `done` gets the new state once it is durable; the plan follows.
  void approve(const std::string& tenant, const std::string& id, const std::string& key_id,
               const std::string& remote, std::function<void(Result<std::string>)> done);

  // Stops the alert's sends here at once, and for good everywhere with a CAP Cancel that
  // references it (CAP 1.2 §3.2.1), stored through the same path as a posted one. When no
  // CAP Cancel can be made, the store's cancel holds the stop all the same (with a warning).
  // 404 not_found when the tenant has no such alert.
  void cancel(const std::string& tenant, const std::string& id, const std::string& key_id,
              const std::string& remote, std::function<void(Result<Cancelled>)> done);

 private:
  void start_dispatch(const std::string& tenant, const std::string& id,
                      std::shared_ptr<const alerts::Alert> alert, int64_t received_ms,
                      std::shared_ptr<const directory::Resolution> resolution);
  void audit_grants(const std::string& tenant, const std::string& alert_id, const directory::Resolution& r);

  alerts::AlertStore& store_;
  directory::Directory& directory_;
  Dispatcher& dispatcher_;
  const Clock& clock_;
  metrics::Metrics& metrics_;
};

}  // namespace sirena::dispatch
