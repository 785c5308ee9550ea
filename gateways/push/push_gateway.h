// The shared part of the APNs and FCM gateways: an http2::Pool, in-flight accounting,
// transport failures mapped to dispatch outcomes, Retry-After parsing. A profile only
// builds the request for a message and reads the gateway's answer.
#pragma once

#include <uv.h>

#include <memory>
#include <string>

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
  void send(const dispatch::Message& m, std::function<void(const dispatch::SendResult&)> done) override;
  void close(std::function<void()> done) override;

 public:
  // Retry-After (RFC 9110 §10.2.3), delay-seconds form, in ms; 0 when absent.
  static int64_t retry_after_ms(const http2::Response& r);
  // 429 and 5xx: try again later; everything else the profile decides.
  static bool transient(int status) { return status == 429 || status >= 500; }

 protected:
  // Builds the request; may complete later (FCM waits for its OAuth token). On error the
  // message fails with `error` as a permanent failure.
  virtual void build(const dispatch::Message& m, std::function<void(Result<http2::Request>)> ready) = 0;
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

// Cuts UTF-8 text to at most `max_bytes`, never inside a character, ending with "…"
// when it cut anything.
std::string cut_utf8(const std::string& text, size_t max_bytes);

}  // namespace sirena::push
