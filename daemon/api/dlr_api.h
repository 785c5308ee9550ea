// SMS delivery reports: GET or POST /v1/dlr/{gateway}, the `dlr-url` an SMS gateway
// (Kannel) calls back. Authenticated by the gateway's `dlr_secret`, given as the
// `secret` parameter (Kannel cannot add headers) or the `x-sirena-dlr-secret` header.
// Parameters (query, or a form body): alert, t (the alert's tenant), r (the recipient's
// tenant), to (the number), type (Kannel's DLR type bits).
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "daemon/api/router.h"

namespace sirena::dispatch {
class Dispatcher;
}
namespace sirena::metrics {
class Metrics;
}

namespace sirena::api {

// The DLR secret of an SMS gateway; nullopt when no SMS gateway has that name.
using DlrSecrets = std::function<std::optional<std::string>(const std::string& gateway)>;

class DlrApi {
 public:
  DlrApi(dispatch::Dispatcher& dispatcher, metrics::Metrics& metrics, DlrSecrets secrets)
      : dispatcher_(dispatcher), metrics_(metrics), secrets_(std::move(secrets)) {}
  void register_routes(Router& router);

 private:
  void report(const http::Request& req, std::shared_ptr<http::Responder> res, const std::string& gateway);

  dispatch::Dispatcher& dispatcher_;
  metrics::Metrics& metrics_;
  DlrSecrets secrets_;
};

}  // namespace sirena::api
