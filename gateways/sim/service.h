// A protocol handler (APNs, FCM, SMS) as the transports and the Simulator see it.
// Handlers are socket-free: unit tests call them with a Request and read the Response.
#pragma once

#include <string>
#include <string_view>
#include <unordered_set>

#include "daemon/core/result.h"
#include "gateways/sim/message.h"

namespace sirena::sim {

class Service {
 public:
  virtual ~Service() = default;
  // True for the endpoints that carry messages: only they count as requests in /stats
  // and only they get the injected faults (FCM's /token and /stats never fail).
  virtual bool is_message(const Request& req) const = 0;
  // Answers one request. Accepted messages go into resp.deliveries.
  virtual void handle(const Request& req, Response& resp) = 0;
  // Answers an injected failure `status` (from --fail) in the protocol's own format.
  virtual void fail(int status, const Request& req, Response& resp) = 0;
};

// The --unregistered list: tokens or numbers, one a line (blank lines and # comments skipped).
class RecipientSet {
 public:
  Status load(const std::string& path);
  void add(std::string_view r) { items_.emplace(r); }
  bool contains(std::string_view r) const { return !items_.empty() && items_.find(r) != items_.end(); }
  size_t size() const { return items_.size(); }

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_set<std::string, Hash, std::equal_to<>> items_;
};

}  // namespace sirena::sim
