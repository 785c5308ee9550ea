// The shared part of the APNs and FCM gateways: an http2::Pool, in-flight accounting,
// transport failures mapped to dispatch outcomes, Retry-After parsing. A profile only
// builds the request for a message and reads the gateway's answer.
#pragma once

#include <uv.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/core/clock.h"
#include "daemon/dispatch/gateway.h"
#include "gateways/http2/client.h"

namespace sirena::push {

class PushGateway : public dispatch::Gateway {
 public:
  PushGateway(uv_loop_t* loop, const Clock& clock, std::string name, dispatch::Channel channel,
              http2::PoolOptions pool, size_t max_in_flight);
  ~PushGateway() override;

  Status start();
  const std::string& name() const override { return name_; }
  dispatch::Channel channel() const override { return channel_; }
  // Only what the connections can start now, plus a short queue: a longer one would sit
  // in the pool, out of reach of a cancel (dispatch's own queue honours cancels).
  size_t capacity() const override;
  // Drops the alert's messages not yet on a stream: those the profile holds (FCM waiting
  // for its access token) and those queued in the pool. Each answered Outcome::Cancelled.
  void cancel(const std::string& alert_id) override;
  void send(const dispatch::Message& m, std::function<void(const dispatch::SendResult&)> done) override;
  void close(std::function<void()> done) override;
  // Sees the GOAWAYs and reconnects of the gateway's connections (not those of FCM's token
  // server): the app counts them per gateway.
  void set_pool_observer(http2::PoolObserver observer) { pool_->set_observer(std::move(observer)); }

 public:
  // Retry-After (RFC 9110 §10.2.3), delay-seconds form, in ms; 0 when absent.
  static int64_t retry_after_ms(const http2::Response& r);
  // 429 and 5xx: try again later; everything else the profile decides.
  static bool transient(int status) { return status == 429 || status >= 500; }

 protected:
  using Done = std::function<void(const dispatch::SendResult&)>;
  // Whether requests can be built now. When not (FCM waiting for its OAuth token) the
  // profile keeps the message and its `done`, and later sends it again or answers it.
  virtual bool ready(const dispatch::Message& /*m*/, Done& /*done*/) { return true; }
  // Messages the profile holds (kept by ready()): they count as queued, so that capacity()
  // bounds them too.
  virtual size_t held() const { return 0; }
  // Removes the held messages of the alert and returns their `done`s (cancel() answers them).
  virtual std::vector<Done> drop_held(const std::string& /*alert_id*/) { return {}; }
  // The request for a message (called only when ready).
  virtual http2::Request build(const dispatch::Message& m) = 0;
  // Reads a response (any status) into an outcome.
  virtual dispatch::SendResult classify(const http2::Response& r) = 0;

  uv_loop_t* loop_;
  const Clock& clock_;

 private:
  std::string name_;
  dispatch::Channel channel_;
  std::unique_ptr<http2::Pool> pool_;
  size_t max_in_flight_;
  static constexpr size_t kPoolQueue = 64;
  size_t in_flight_ = 0;
};

// What a profile rendered for one Content (the same for every device of one alert and
// language), kept for the last few Contents: a fan-out renders its payload and shared
// headers once per Content and `variant` (the APNs topic, FCM's TTL, ...), not once per
// message. Entries hold their Content, so a pointer is never mistaken for a newer one.
class RenderCache {
 public:
  std::shared_ptr<const http2::SharedPart> find(const dispatch::Content* c, std::string_view variant,
                                                int64_t stamp) const;
  void put(std::shared_ptr<const dispatch::Content> c, std::string variant, int64_t stamp,
           std::shared_ptr<const http2::SharedPart> part);
  void clear();  // what was rendered is stale (a new JWT or access token)

 private:
  struct Entry {
    std::shared_ptr<const dispatch::Content> content;
    std::string variant;
    int64_t stamp = 0;
    std::shared_ptr<const http2::SharedPart> part;
  };
  static constexpr size_t kEntries = 16;  // languages x topics of the alerts in flight
  Entry entries_[kEntries];
  size_t next_ = 0;
};

// Cuts UTF-8 text to at most `max_bytes`, never inside a character, ending with "…"
// when it cut anything.
std::string cut_utf8(const std::string& text, size_t max_bytes);

}  // namespace sirena::push
