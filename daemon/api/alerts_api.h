// The /v1/alerts routes: intake (CAP XML or JSON), read, list, approve, cancel. Parses,
// calls dispatch::Lifecycle (what happens to an alert) or the read models, serialises.
//
// Owns nothing but references: the store, metrics and clock outlive it. The router
// admits each request (key, role, rate) before a handler here runs.
#pragma once

#include <functional>
#include <memory>

#include "daemon/alerts/alert_store.h"
#include "daemon/api/common.h"
#include "daemon/api/router.h"
#include "daemon/core/clock.h"
#include "daemon/directory/directory.h"
#include "daemon/dispatch/dispatcher.h"
#include "daemon/dispatch/lifecycle.h"
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
            dispatch::Lifecycle& lifecycle, const Clock& clock, metrics::Metrics& metrics,
            AlertsApiOptions options);

  void register_routes(Router& router);

 private:
  using Res = std::shared_ptr<http::Responder>;
  // Each route's handler; the router has admitted `who` (router.h).
  void submit(const http::Request& req, Res res, const Caller& who);
  void preview(const http::Request& req, Res res, const Caller& who);
  void deliveries(const http::Request& req, Res res, const Caller& who, const std::string& id);
  void events(const http::Request& req, Res res, const Caller& who, const std::string& id);
  // The shared first half of submit and preview: content type, size, parse (on the
  // thread pool), sender. `done` runs on the loop, later, with the alert, what it draws
  // (built on the pool with the parse: S2 polygons cost more than the parse) and
  // whether the body was CAP XML.
  struct Parsed {
    alerts::Alert alert;
    directory::Area drawn;
    std::string stored_json;  // alerts::stored_json(alert), made on the pool too
    bool is_xml = false;
  };
  using ReadDone = std::function<void(Result<Parsed>&&)>;
  void read_alert(const http::Request& req, const tenants::Principal& who, ReadDone done);
  void submit_parsed(const http::Request& req, Res res, const Caller& who, int64_t received_ms,
                     Result<Parsed>&& parsed);
  void preview_parsed(Res res, const Caller& who, Result<Parsed>&& parsed);
  void get(const http::Request& req, Res res, const Caller& who, const std::string& id);
  void list(const http::Request& req, Res res, const Caller& who);
  void approve(const http::Request& req, Res res, const Caller& who, const std::string& id);
  void cancel(const http::Request& req, Res res, const Caller& who, const std::string& id);

  void reject(Res& res, const Error& e);
  // 503 storage_busy while more Redis commands wait than intake_max_pending.
  std::optional<Error> storage_busy() const;

  alerts::AlertStore& store_;
  directory::Directory& directory_;
  dispatch::Dispatcher& dispatcher_;  // read models: progress, deliveries
  dispatch::Lifecycle& lifecycle_;    // every change of an alert's state
  const Clock& clock_;
  metrics::Metrics& metrics_;
  AlertsApiOptions options_;
};

}  // namespace sirena::api
