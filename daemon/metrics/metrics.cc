#include "daemon/metrics/metrics.h"

#include <prometheus/text_serializer.h>

namespace sirena::metrics {
namespace {

const prometheus::Histogram::BucketBoundaries& latency_buckets() {
  static const prometheus::Histogram::BucketBoundaries b{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                        0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                                        1,      2.5,     5,      10};
  return b;
}

}  // namespace

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  using namespace prometheus;
  http_requests_ = &BuildCounter()
                        .Name("sirena_http_requests_total")
                        .Help("HTTP requests answered, by route and status code")
                        .Register(*registry_);
  http_duration_ = &BuildHistogram()
                        .Name("sirena_http_request_duration_seconds")
                        .Help("Time from request to response, by route")
                        .Register(*registry_);
  alerts_received_ = &BuildCounter()
                          .Name("sirena_alerts_received_total")
                          .Help("Alerts accepted and stored, by tenant, CAP status and msgType")
                          .Register(*registry_);
  alerts_rejected_ = &BuildCounter()
                          .Name("sirena_alerts_rejected_total")
                          .Help("Alerts refused at intake, by reason (the error code)")
                          .Register(*registry_);
  unexpected_ = &BuildCounter()
                     .Name("sirena_unexpected_events_total")
                     .Help("Survivable but unexpected events, by kind")
                     .Register(*registry_);
  redis_connected_ = &BuildGauge()
                          .Name("sirena_redis_connected")
                          .Help("1 while the Redis connection is up")
                          .Register(*registry_)
                          .Add({});
  redis_duration_ = &BuildHistogram()
                         .Name("sirena_redis_command_duration_seconds")
                         .Help("Redis command round-trip time")
                         .Register(*registry_)
                         .Add({}, latency_buckets());
  redis_reconnects_ = &BuildCounter()
                           .Name("sirena_redis_reconnects_total")
                           .Help("Redis connection attempts after a loss")
                           .Register(*registry_)
                           .Add({});
  loop_lag_ = &BuildHistogram()
                   .Name("sirena_event_loop_lag_seconds")
                   .Help("How late the loop's lag probe timer fired")
                   .Register(*registry_)
                   .Add({}, latency_buckets());
  loop_lag_last_ = &BuildGauge()
                        .Name("sirena_event_loop_lag_last_seconds")
                        .Help("The most recent event loop lag sample")
                        .Register(*registry_)
                        .Add({});
  init_dispatch();
}

void Metrics::init_dispatch() {
  using namespace prometheus;
  messages_ = &BuildCounter()
                   .Name("sirena_messages_total")
                   .Help("Messages finished by dispatch, by tenant, channel, gateway and result")
                   .Register(*registry_);
  delivery_latency_ = &BuildHistogram()
                           .Name("sirena_delivery_latency_seconds")
                           .Help("From the alert's POST to gateway acceptance, by channel")
                           .Register(*registry_);
  gateway_duration_ = &BuildHistogram()
                           .Name("sirena_gateway_request_duration_seconds")
                           .Help("Gateway request round trip, by gateway")
                           .Register(*registry_);
  gateway_in_flight_ = &BuildGauge()
                            .Name("sirena_gateway_in_flight")
                            .Help("Requests (HTTP/2 streams) in flight, by gateway")
                            .Register(*registry_);
  circuit_state_ = &BuildGauge()
                        .Name("sirena_gateway_circuit_state")
                        .Help("Circuit breaker: 0 closed, 1 open, 2 half-open")
                        .Register(*registry_);
  tokens_pruned_ = &BuildCounter()
                        .Name("sirena_tokens_pruned_total")
                        .Help("Push tokens and numbers a gateway called gone, by channel")
                        .Register(*registry_);
  queue_depth_ = &BuildGauge()
                     .Name("sirena_gateway_queue_depth")
                     .Help("Messages queued for a gateway (all priorities)")
                     .Register(*registry_);
  bucket_tokens_ = &BuildGauge()
                       .Name("sirena_gateway_bucket_tokens")
                       .Help("Tokens in a gateway's rate-limit bucket (messages it may send at once)")
                       .Register(*registry_);
  sms_requests_ = &BuildCounter()
                      .Name("sirena_sms_requests_total")
                      .Help("HTTP requests to SMS providers, by reply code (0: no reply)")
                      .Register(*registry_);
  sms_segments_ = &BuildCounter()
                      .Name("sirena_sms_segments_total")
                      .Help("SMS segments handed to a provider and accepted")
                      .Register(*registry_);
  sms_dlrs_ = &BuildCounter()
                  .Name("sirena_sms_dlr_total")
                  .Help("SMS delivery reports, by DLR type and result (delivered, failed, noted, duplicate, early, unknown)")
                  .Register(*registry_);
  http2_goaways_ =
      &BuildCounter()
           .Name("sirena_http2_goaways_total")
           .Help("GOAWAY frames a push gateway's connections received (each connection is replaced)")
           .Register(*registry_);
  http2_reconnects_ = &BuildCounter()
                           .Name("sirena_http2_reconnects_total")
                           .Help("Connections a push gateway opened again after losing or draining one")
                           .Register(*registry_);
  retry_depth_ = &BuildGauge()
                      .Name("sirena_retry_queue_depth")
                      .Help("Messages waiting for a retry")
                      .Register(*registry_)
                      .Add({});
  batches_in_work_ = &BuildGauge()
                          .Name("sirena_dispatch_batches_in_work")
                          .Help("Plan batches this daemon is working on")
                          .Register(*registry_)
                          .Add({});
  static const Histogram::BucketBoundaries first{0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
  first_message_ = &BuildHistogram()
                        .Name("sirena_time_to_first_message_seconds")
                        .Help("From the alert's POST to its first gateway acceptance")
                        .Register(*registry_)
                        .Add({}, first);
}

void Metrics::start_at_zero(const KnownLabels& known) {
  for (const auto& tenant : known.tenants) {
    for (const auto& status : known.alert_statuses)
      for (const auto& msg_type : known.alert_msg_types) alert_received(tenant, status, msg_type);
    for (const auto& g : known.gateways)
      for (const auto& result : known.message_results) message(tenant, g.channel, g.name, result);
  }
  for (const auto& g : known.gateways) {
    tokens_pruned(g.channel);
    if (g.channel == "sms") sms_segments(g.name);
    if (g.http2) {
      http2_goaways(g.name);
      http2_reconnects(g.name);
    }
  }
}

prometheus::Counter& Metrics::message(const std::string& tenant, const std::string& channel,
                                      const std::string& gateway, const std::string& result) {
  std::string key = "m\x1f" + tenant + "\x1f" + channel + "\x1f" + gateway + "\x1f" + result;
  auto& slot = counter_cache_[key];
  if (!slot)
    slot = &messages_->Add({{"tenant", tenant}, {"channel", channel}, {"gateway", gateway}, {"result", result}});
  return *slot;
}

prometheus::Histogram& Metrics::delivery_latency(const std::string& channel) {
  static const prometheus::Histogram::BucketBoundaries b{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300};
  auto& slot = histogram_cache_["dl\x1f" + channel];
  if (!slot) slot = &delivery_latency_->Add({{"channel", channel}}, b);
  return *slot;
}

prometheus::Histogram& Metrics::gateway_duration(const std::string& gateway) {
  auto& slot = histogram_cache_["gd\x1f" + gateway];
  if (!slot) slot = &gateway_duration_->Add({{"gateway", gateway}}, latency_buckets());
  return *slot;
}

prometheus::Gauge& Metrics::gateway_in_flight(const std::string& gateway) {
  auto& slot = gauge_cache_["gi\x1f" + gateway];
  if (!slot) slot = &gateway_in_flight_->Add({{"gateway", gateway}});
  return *slot;
}

prometheus::Gauge& Metrics::circuit_state(const std::string& gateway) {
  auto& slot = gauge_cache_["cs\x1f" + gateway];
  if (!slot) slot = &circuit_state_->Add({{"gateway", gateway}});
  return *slot;
}

prometheus::Counter& Metrics::tokens_pruned(const std::string& channel) {
  auto& slot = counter_cache_["tp\x1f" + channel];
  if (!slot) slot = &tokens_pruned_->Add({{"channel", channel}});
  return *slot;
}

prometheus::Gauge& Metrics::gateway_queue_depth(const std::string& gateway) {
  auto& slot = gauge_cache_["qd\x1f" + gateway];
  if (!slot) slot = &queue_depth_->Add({{"gateway", gateway}});
  return *slot;
}

prometheus::Gauge& Metrics::gateway_bucket_tokens(const std::string& gateway) {
  auto& slot = gauge_cache_["bt\x1f" + gateway];
  if (!slot) slot = &bucket_tokens_->Add({{"gateway", gateway}});
  return *slot;
}

prometheus::Counter& Metrics::sms_request(const std::string& gateway, int code) {
  std::string c = std::to_string(code);
  auto& slot = counter_cache_["sr\x1f" + gateway + "\x1f" + c];
  if (!slot) slot = &sms_requests_->Add({{"gateway", gateway}, {"code", c}});
  return *slot;
}

prometheus::Counter& Metrics::sms_segments(const std::string& gateway) {
  auto& slot = counter_cache_["ss\x1f" + gateway];
  if (!slot) slot = &sms_segments_->Add({{"gateway", gateway}});
  return *slot;
}

prometheus::Counter& Metrics::sms_dlr(const std::string& gateway, const std::string& type, const std::string& result) {
  auto& slot = counter_cache_["sd\x1f" + gateway + "\x1f" + type + "\x1f" + result];
  if (!slot) slot = &sms_dlrs_->Add({{"gateway", gateway}, {"type", type}, {"result", result}});
  return *slot;
}

prometheus::Counter& Metrics::http2_goaways(const std::string& gateway) {
  auto& slot = counter_cache_["hg\x1f" + gateway];
  if (!slot) slot = &http2_goaways_->Add({{"gateway", gateway}});
  return *slot;
}

prometheus::Counter& Metrics::http2_reconnects(const std::string& gateway) {
  auto& slot = counter_cache_["hr\x1f" + gateway];
  if (!slot) slot = &http2_reconnects_->Add({{"gateway", gateway}});
  return *slot;
}

std::string Metrics::serialize() const {
  prometheus::TextSerializer s;
  return s.Serialize(registry_->Collect());
}

prometheus::Counter& Metrics::http_request(const std::string& route, int code) {
  std::string key = "h\x1f" + route + "\x1f" + std::to_string(code);
  auto& slot = counter_cache_[key];
  if (!slot) slot = &http_requests_->Add({{"route", route}, {"code", std::to_string(code)}});
  return *slot;
}

prometheus::Histogram& Metrics::http_duration(const std::string& route) {
  auto& slot = histogram_cache_[route];
  if (!slot) slot = &http_duration_->Add({{"route", route}}, latency_buckets());
  return *slot;
}

prometheus::Counter& Metrics::alert_received(const std::string& tenant, const std::string& status,
                                             const std::string& msg_type) {
  std::string key = "a\x1f" + tenant + "\x1f" + status + "\x1f" + msg_type;
  auto& slot = counter_cache_[key];
  if (!slot) slot = &alerts_received_->Add({{"tenant", tenant}, {"status", status}, {"msg_type", msg_type}});
  return *slot;
}

prometheus::Counter& Metrics::alert_rejected(const std::string& reason) {
  auto& slot = counter_cache_["r\x1f" + reason];
  if (!slot) slot = &alerts_rejected_->Add({{"reason", reason}});
  return *slot;
}

prometheus::Counter& Metrics::unexpected(const std::string& kind) {
  auto& slot = counter_cache_["u\x1f" + kind];
  if (!slot) slot = &unexpected_->Add({{"kind", kind}});
  return *slot;
}

}  // namespace sirena::metrics
