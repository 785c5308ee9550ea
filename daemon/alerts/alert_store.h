// Durable alert records in Redis, and their lifecycle.
//
// Keys (one hash tag per tenant, so a Redis Cluster keeps a tenant on one shard):
//   {t:<tenant>}:alert:<id>         hash   the record (raw bytes, parsed JSON, state, ...)
//   {t:<tenant>}:alerts             zset   every id, score 0, ordered by id (ULID = time)
//   {t:<tenant>}:idem               hash   "sender,identifier,sent" -> id
//   {t:<tenant>}:pending:<triple>   list   effects of references that arrived before their target
//   {t:<tenant>}:unplanned          zset   accepted alerts to be sent whose plan is not complete,
//                                          score = when a replanner may take each up (ms);
//                                          written by the create and approve scripts, removed
//                                          by the dispatcher's plan script
//   {t:<tenant>}:audit              stream create / approve / cancel / supersede entries
//
// Each state change is one Lua script, so it is atomic and takes one round trip.
// Every callback runs on the loop; a Redis failure arrives as a 503 Error.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "daemon/alerts/alert.h"
#include "daemon/alerts/lifecycle.h"
#include "daemon/core/result.h"

namespace sirena::store {
class Redis;
}

namespace sirena::alerts {

struct StoredAlert {
  std::string id;
  std::string tenant;
  std::string state;
  std::string status;
  std::string msg_type;
  std::string sender;
  std::string identifier;
  std::string sent;
  int64_t received_ms = 0;
  std::optional<int64_t> expires_ms;
  int64_t recipients = 0;
  std::string submitted_by;  // key id
  std::string approved_by;
  std::string superseded_by;
  std::string cancelled_by;
  std::string content_type;
  std::string raw;     // the bytes as posted
  std::string parsed;  // alert_to_json(), serialised
};

struct NewAlert {
  std::string tenant;
  const Alert* alert;
  std::string_view raw;
  std::string content_type;
  std::string key_id;
  std::string remote;
  std::string initial_state;  // pending_approval, accepted or draft
  int64_t now_ms;
  int64_t recipients = 0;  // resolved at intake
  // AlertStore::stored_json(*alert), when the caller made it already (off the loop);
  // empty: create() makes it.
  std::string stored_json;
};

// The parsed alert as the store keeps it (field `parsed`): its JSON form.
std::string stored_json(const Alert& a);

struct Created {
  bool created;  // false: the same (sender, identifier, sent) was already stored
  std::string id;
  std::string state;
};

struct Page {
  std::vector<StoredAlert> items;
  std::optional<std::string> next;
};

class AlertStore {
 public:
  explicit AlertStore(store::Redis& redis) : redis_(redis) {}
  // Extra connections for create(): Redis reads at most 16 KiB per client per event-loop
  // turn and fsyncs the AOF once per turn, so several connections let one fsync cover
  // many alerts (a CAP alert with its parsed form is ~5 KB). Owned by the caller.
  void set_writers(std::vector<store::Redis*> writers) { writers_ = std::move(writers); }
  // The most commands waiting for Redis on any of its connections.
  size_t backlog() const;

  void create(const NewAlert& a, std::function<void(Result<Created>)> done);
  // nullopt when the tenant has no such alert.
  void get(const std::string& tenant, const std::string& id,
           std::function<void(Result<std::optional<StoredAlert>>)> done);
  // Newest first; `cursor` is the last id of the previous page.
  void list(const std::string& tenant, const std::string& cursor, int limit,
            std::function<void(Result<Page>)> done);
  // 404 not_found, 409 not_pending_approval, 403 same_key_cannot_approve.
  void approve(const std::string& tenant, const std::string& id, const std::string& key_id,
               const std::string& remote, int64_t now_ms, std::function<void(Result<std::string>)> done);

  // Marks the alert cancelled by `by` (a Cancel's effect, without a CAP Cancel: for when
  // none could be made). Answers the alert's state ("" when there is no such alert).
  void cancel(const std::string& tenant, const std::string& id, const std::string& by,
              const std::string& key_id, const std::string& remote, int64_t now_ms,
              std::function<void(Result<std::string>)> done);

  // Appends an entry to the tenant's audit stream (fire and forget; failures are counted
  // by the Redis client and logged by the caller's metrics).
  void audit(const std::string& tenant, const std::vector<std::pair<std::string, std::string>>& fields,
             std::function<void(sirena::Status)> done);

  static std::string idem_key(const Alert& a);

 private:
  store::Redis& redis_;
  std::vector<store::Redis*> writers_;
  size_t next_writer_ = 0;
};

}  // namespace sirena::alerts
