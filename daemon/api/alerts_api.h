// The /v1/alerts routes: intake (CAP XML or JSON), read, list, approve, cancel.
//
// Owns nothing but references: the store, metrics and clock outlive it, and the
// tenant snapshot is fetched per request (SIGHUP swaps it).
#pragma once

#include <functional>
#include <memory>

#include "daemon/alerts/alert_store.h"
#include "daemon/api/common.h"
#include "daemon/api/router.h"
#include "daemon/core/clock.h"
#include "daemon/directory/directory.h"
#include "daemon/dispatch/dispatcher.h"
#include "daemon/tenants/tenants.h"

namespace sirena::metrics {
class Metrics;
}

namespace sirena::api {

struct AlertsApiOptions {
  size_t max_body_bytes = 1 << 20;
  // Past this many Redis commands waiting (AlertStore::backlog()), intake answers 503 with
  // Retry-After: it sheds load before Redis or the daemon collapse (redis.intake_max_pending).
  size_t intake_max_pending = 10000;
  uv_loop_t* loop = nullptr;  // where intake parses are queued; null: uv_default_loop()
};

class AlertsApi {
 public:

  AlertsApi(alerts::AlertStore& store, directory::Directory& directory, dispatch::Dispatcher& dispatcher,
            const Clock& clock, metrics::Metrics& metrics, TenantsSnapshot tenants, AlertsApiOptions options);

  void register_routes(Router& router);

 private:
  using Res = std::shared_ptr<http::Responder>;
  void submit(const http::Request& req, Res res);
  void preview(const http::Request& req, Res res);
  void deliveries(const http::Request& req, Res res, const std::string& id);
  void events(const http::Request& req, Res res, const std::string& id);
  // Resolves and plans a stored, accepted alert.
  void start_dispatch(const std::string& tenant, const std::string& id, std::shared_ptr<const alerts::Alert> alert,
                      std::shared_ptr<const directory::Resolution> resolution);
  void audit_grants(const std::string& tenant, const std::string& alert_id, const directory::Resolution& r);
  // The shared first half of submit and preview: content type, size, parse (on the
  // thread pool), sender. `done` runs on the loop, later, with the alert and whether
  // the body was CAP XML.
  using ReadDone = std::function<void(Result<alerts::Alert>&&, bool is_xml)>;
  void read_alert(const http::Request& req, const tenants::Principal& who, ReadDone done);
  void submit_parsed(const http::Request& req, Res res, std::shared_ptr<const tenants::Tenants> snapshot,
                     const tenants::Principal* who, int64_t received_ms, Result<alerts::Alert>&& parsed,
                     bool is_xml);
  void preview_parsed(Res res, const tenants::Principal* who, Result<alerts::Alert>&& parsed);
  void get(const http::Request& req, Res res, const std::string& id);
  void list(const http::Request& req, Res res);
  void approve(const http::Request& req, Res res, const std::string& id);
  void cancel(const http::Request& req, Res res, const std::string& id);

  void reject(Res& res, const Error& e);
  // 503 storage_busy while more Redis commands wait than intake_max_pending.
  std::optional<Error> storage_busy() const;

  alerts::AlertStore& store_;
  directory::Directory& directory_;
  dispatch::Dispatcher& dispatcher_;
  const Clock& clock_;
  metrics::Metrics& metrics_;
  TenantsSnapshot tenants_;
  AlertsApiOptions options_;
};

}  // namespace sirena::api
