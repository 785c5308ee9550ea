// The process's Prometheus registry (prometheus-cpp core) and Sirena's metric families.
//
// One Metrics object lives in the app and is passed by reference; it outlives every
// subsystem that records into it. Hot paths keep the Counter*/Histogram* they got
// from the accessors: prometheus-cpp keeps those pointers stable.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace sirena::metrics {

// Label values known from the configuration and the code, before any event.
struct KnownLabels {
  struct Gateway {
    std::string name;
    std::string channel;  // apns, fcm, sms
    bool http2 = false;   // a push gateway on the HTTP/2 pool
  };
  std::vector<std::string> tenants;
  std::vector<Gateway> gateways;
  std::vector<std::string> alert_statuses;   // CAP status values
  std::vector<std::string> alert_msg_types;  // CAP msgType values
  std::vector<std::string> message_results;  // the final states dispatch counts
};

class Metrics {
 public:
  Metrics();

  // Prometheus text exposition format (version 0.0.4).
  std::string serialize() const;

  prometheus::Registry& registry() { return *registry_; }

  // Makes the labelled counters for every combination of known values, at 0: a fresh
  // daemon exports them and a dashboard shows 0, not "No data", until the first event.
  // Call again after a reload (new tenants); existing counters keep their values.
  void start_at_zero(const KnownLabels& known);

  // HTTP server.
  prometheus::Counter& http_request(const std::string& route, int code);
  prometheus::Histogram& http_duration(const std::string& route);
  // Intake.
  prometheus::Counter& alert_received(const std::string& tenant, const std::string& status,
                                      const std::string& msg_type);
  prometheus::Counter& alert_rejected(const std::string& reason);
  // Redis.
  prometheus::Gauge& redis_connected() { return *redis_connected_; }
  prometheus::Histogram& redis_command_duration() { return *redis_duration_; }
  prometheus::Counter& redis_reconnects() { return *redis_reconnects_; }
  // Event loop.
  prometheus::Histogram& loop_lag() { return *loop_lag_; }
  prometheus::Gauge& loop_lag_last() { return *loop_lag_last_; }
  // Dispatch.
  prometheus::Counter& message(const std::string& tenant, const std::string& channel, const std::string& gateway,
                               const std::string& result);
  prometheus::Histogram& delivery_latency(const std::string& channel);
  prometheus::Histogram& gateway_duration(const std::string& gateway);
  prometheus::Gauge& gateway_in_flight(const std::string& gateway);
  prometheus::Gauge& circuit_state(const std::string& gateway);
  prometheus::Counter& tokens_pruned(const std::string& channel);
  prometheus::Gauge& gateway_queue_depth(const std::string& gateway);
  prometheus::Gauge& gateway_bucket_tokens(const std::string& gateway);
  // SMS providers: HTTP requests by reply code (0 = transport error), segments handed
  // over, delivery reports by type and by what they did.
  prometheus::Counter& sms_request(const std::string& gateway, int code);
  prometheus::Counter& sms_segments(const std::string& gateway);
  prometheus::Counter& sms_dlr(const std::string& gateway, const std::string& type, const std::string& result);
  // HTTP/2 push gateways (APNs, FCM): GOAWAYs received and connections opened again.
  prometheus::Counter& http2_goaways(const std::string& gateway);
  prometheus::Counter& http2_reconnects(const std::string& gateway);
  prometheus::Gauge& retry_queue_depth() { return *retry_depth_; }
  prometheus::Gauge& batches_in_work() { return *batches_in_work_; }
  prometheus::Histogram& time_to_first_message() { return *first_message_; }

  // Survivable but unexpected events, by kind (STYLE.md habit 5).
  prometheus::Counter& unexpected(const std::string& kind);

 private:
  void init_dispatch();
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* http_requests_;
  prometheus::Family<prometheus::Histogram>* http_duration_;
  prometheus::Family<prometheus::Counter>* alerts_received_;
  prometheus::Family<prometheus::Counter>* alerts_rejected_;
  prometheus::Family<prometheus::Counter>* unexpected_;
  prometheus::Gauge* redis_connected_;
  prometheus::Histogram* redis_duration_;
  prometheus::Counter* redis_reconnects_;
  prometheus::Histogram* loop_lag_;
  prometheus::Gauge* loop_lag_last_;
  prometheus::Family<prometheus::Counter>* messages_;
  prometheus::Family<prometheus::Histogram>* delivery_latency_;
  prometheus::Family<prometheus::Histogram>* gateway_duration_;
  prometheus::Family<prometheus::Gauge>* gateway_in_flight_;
  prometheus::Family<prometheus::Gauge>* circuit_state_;
  prometheus::Family<prometheus::Counter>* tokens_pruned_;
  prometheus::Family<prometheus::Gauge>* queue_depth_;
  prometheus::Family<prometheus::Gauge>* bucket_tokens_;
  prometheus::Family<prometheus::Counter>* sms_requests_;
  prometheus::Family<prometheus::Counter>* sms_segments_;
  prometheus::Family<prometheus::Counter>* sms_dlrs_;
  prometheus::Family<prometheus::Counter>* http2_goaways_;
  prometheus::Family<prometheus::Counter>* http2_reconnects_;
  prometheus::Gauge* retry_depth_;
  prometheus::Gauge* batches_in_work_;
  prometheus::Histogram* first_message_;
  std::unordered_map<std::string, prometheus::Gauge*> gauge_cache_;
  // Label-set caches: building a prometheus::Labels map per request costs more than a lookup.
  std::unordered_map<std::string, prometheus::Counter*> counter_cache_;
  std::unordered_map<std::string, prometheus::Histogram*> histogram_cache_;
};

}  // namespace sirena::metrics
