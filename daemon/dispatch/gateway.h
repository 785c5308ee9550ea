// What dispatch needs from a channel's gateway. Gateways (layer 5) implement it; the app
// wires them in. One message is one recipient on one channel for one alert.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace sirena::dispatch {

enum class Channel : uint8_t { Sms = 0, Apns = 1, Fcm = 2 };

// An alert's priority is 0 (most urgent) .. kPriorities - 1 (see priority_of()).
inline constexpr int kPriorities = 4;
const char* to_string(Channel c);

// What every message of one alert in one language says. Built once per alert, language and
// kind (push or SMS) and shared by those messages, so that a gateway can render its payload
// once per Content instead of once per message.
struct Content {
  std::string alert_id;
  std::string alert_tenant;  // the tenant that sent the alert
  std::string language;
  std::string severity;     // CAP severity: Extreme, Severe, ...
  std::string title;        // push title (headline, with TEST/EXERCISE marker)
  std::string body;         // push body or SMS text
  int segments = 0;         // SMS: the text's segment count
  int64_t expires_ms = 0;   // 0 = none (CAP expires)
  std::string collapse_id;  // replaces an earlier notification for the same alert (Update)
  bool test = false;
};

// One recipient on one channel, ready for the gateway.
struct Message {
  std::shared_ptr<const Content> content;  // never null
  std::string tenant;                      // the recipient's tenant (differs from the alert's under a grant)
  uint32_t slot = 0;                       // the recipient's slot
  Channel channel = Channel::Apns;
  std::string address;  // device token or E.164 number
  std::string app;      // APNs topic (bundle id) / FCM app
  int attempt = 0;
};

enum class Outcome {
  Accepted,      // the gateway took it
  Retry,         // transient: try again (after retry_after_ms if set)
  Permanent,     // will never succeed (bad token, bad number): do not retry
  Unregistered,  // the token/number is gone: prune it and do not retry
  Cancelled,     // dropped by cancel() before its request started: nothing was sent
};

struct SendResult {
  Outcome outcome = Outcome::Retry;
  int64_t retry_after_ms = 0;  // from Retry-After, 0 = use backoff
  std::string reason;          // gateway's reason (e.g. "BadDeviceToken", "UNAVAILABLE")
  int http_status = 0;
};

class Gateway {
 public:
  virtual ~Gateway() = default;
  virtual const std::string& name() const = 0;
  virtual Channel channel() const = 0;
  // Sends one message; `done` runs exactly once, on the loop.
  virtual void send(const Message& m, std::function<void(const SendResult&)> done) = 0;
  // Messages the gateway can take now without queueing (for flow control).
  virtual size_t capacity() const = 0;
  // The alert is cancelled: drops its messages whose request has not started yet (waiting
  // in the gateway or in its HTTP client's queue). Each one's `done` runs with
  // Outcome::Cancelled, possibly before cancel() returns; requests on the wire finish as
  // they would have.
  virtual void cancel(const std::string& /*alert_id*/) {}
  // Messages it sends in one request when they go together (SMS: numbers sharing a text in
  // one sendsms). A rate limit then releases this many at once, not a trickle that would
  // make a request of each.
  virtual size_t batch_size() const { return 1; }
  // > 0: an acceptance is only final once the provider reports the message (an SMS
  // delivery report, via Dispatcher::delivery_report); without a report within this many
  // milliseconds it is sent again. A Kannel bearerbox that crashes loses what it queued.
  virtual int64_t report_timeout_ms() const { return 0; }
  virtual void close(std::function<void()> done) = 0;
};

}  // namespace sirena::dispatch
