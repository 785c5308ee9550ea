// The SMS channel: provider profiles over the one libcurl engine (curl_engine.h).
//
// Profiles (config `profile`):
//  - `kannel`: Kannel smsbox `GET .../cgi-bin/sendsms?username&password&from&to&text&
//    charset=UTF-8&coding&dlr-mask&dlr-url`. Messages handed to send() in one loop turn that
//    share alert, tenants and text go out together, `to` holding up to `batch_size` numbers
//    separated by spaces. coding=2 (UCS-2) when the text needs it, else 0; the text always
//    travels as UTF-8 and Kannel converts it. With `dlr_url` set, Kannel is asked for
//    delivery reports at `<dlr_url>/v1/dlr/<gateway>?secret&alert&t&r&to=%p&type=%d`.
//    Replies: 2xx ("0: Accepted", "3: Queued") accepted; 503, 429 and other 5xx retried
//    (Retry-After honoured); other 4xx permanent, with Kannel's text as the reason.
//  - `generic_json`: a JSON REST provider. `body_template` is a JSON document whose string
//    values "{{to}}", "{{text}}" and "{{reference}}" (the alert id) are replaced by JSON
//    values; `{{to}}` is a string when batch_size is 1, else an array of numbers. Status
//    lists say what is accepted and what is retried, the rest is permanent; the numbers
//    listed in the reply's `rejected_field` are permanent failures.
//
// A transport failure (no HTTP answer) is a retry with libcurl's error as the reason. Every
// message's `done` runs exactly once, on the loop. Phone numbers, passwords and tokens are
// never logged.
//
// Ownership: the owner keeps the gateway alive until close()'s callback has run.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "daemon/core/result.h"
#include "daemon/core/turn_hook.h"
#include "daemon/dispatch/gateway.h"
#include "gateways/sms/curl_engine.h"

namespace sirena::sms {

enum class Profile { Kannel, GenericJson };

struct SmsConfig {
  Profile profile = Profile::Kannel;
  std::string url;  // kannel: the full .../cgi-bin/sendsms URL
  // kannel
  std::string username, password, from;
  std::string dlr_url;     // base URL at which Kannel reaches sirenad; empty = no DLRs
  std::string dlr_secret;  // authenticates the DLR callback
  int dlr_mask = 31;       // 1 delivered, 2 undelivered, 4 buffered, 8 SMSC accepted, 16 rejected
  // With reports requested: an accepted message without any report by then is sent again
  // (bearerbox loses what it had queued when it crashes). Keep it above the time messages
  // wait in Kannel's queue (rate-limit sirenad to the SMSC's speed); 0 = never resend.
  int64_t dlr_timeout_ms = 120'000;
  // generic_json
  std::string method = "POST";
  std::string auth_header;  // a full header line, e.g. "Authorization: Bearer xyz"
  std::string body_template = R"({"to": "{{to}}", "text": "{{text}}", "reference": "{{reference}}"})";
  std::vector<int> accept_status{200, 201, 202};
  std::vector<int> retry_status{429, 500, 502, 503, 504};
  std::string rejected_field = "rejected";
  // common
  size_t batch_size = 0;      // numbers per request; 0 = the profile's default (kannel 100, generic_json 1)
  size_t max_in_flight = 16;  // concurrent HTTP requests
  size_t connections = 0;     // connections kept to the provider; 0 = max_in_flight
  int64_t timeout_ms = 10000;
  int64_t connect_timeout_ms = 3000;
  bool verify_peer = true;

  // Reads the flat `gateways.<name>.*` keys; an error names the key ("gateways.sms.batch_size").
  // Keys: profile (default: the gateway's name), url, username, password, from, dlr_url,
  // dlr_secret, dlr_mask, dlr_timeout_ms, method, auth_header, body_template, accept_status, retry_status
  // (comma-separated codes), rejected_field, batch_size, max_in_flight, connections,
  // timeout_ms, connect_timeout_ms, tls_verify.
  static Result<SmsConfig> from_keys(const std::string& name, const std::map<std::string, std::string>& keys);
};

// The messages of one request: one alert, one recipient tenant, one text.
struct SmsBatch {
  std::string alert_id;
  std::string alert_tenant;
  std::string tenant;
  std::string text;
  std::vector<std::string> numbers;  // E.164
};

// Counters for the owner to export (per gateway). Reply code 0 = no HTTP answer.
struct SmsStats {
  uint64_t requests = 0;
  uint64_t messages = 0;
  uint64_t segments = 0;  // SMS parts handed over (messages x segments of their text)
  uint64_t accepted = 0;
  uint64_t retried = 0;
  uint64_t failed = 0;
  std::map<int, uint64_t> replies;
};

class SmsProfile;  // the protocol of one provider kind (sms_gateway.cc)

class SmsGateway final : public dispatch::Gateway {
 public:
  static Result<std::unique_ptr<SmsGateway>> create(uv_loop_t* loop, std::string name, SmsConfig cfg);
  ~SmsGateway() override;
  SmsGateway(const SmsGateway&) = delete;
  SmsGateway& operator=(const SmsGateway&) = delete;

  const std::string& name() const override { return name_; }
  dispatch::Channel channel() const override { return dispatch::Channel::Sms; }
  void send(const dispatch::Message& m, std::function<void(const dispatch::SendResult&)> done) override;
  // Messages it can take without exceeding max_in_flight requests of batch_size numbers,
  // counting those waiting in unflushed batches and queued requests; 0 while the engine's
  // queue holds max_in_flight requests already (many different texts) or when closing.
  size_t capacity() const override;
  // Drops the alert's numbers in batches not yet flushed and its requests queued in the
  // engine (not yet handed to libcurl): each answered Outcome::Cancelled.
  void cancel(const std::string& alert_id) override;
  // Unflushed messages are answered Retry at once, requests in flight Retry by the engine;
  // `done` runs once every handle is closed. One close per gateway.
  void close(std::function<void()> done) override;

  int64_t report_timeout_ms() const override { return report_timeout_ms_; }
  const SmsStats& stats() const { return stats_; }
  // Called with each reply's HTTP status (0: no answer), for the owner's metrics.
  void set_reply_observer(std::function<void(int status)> observer) { observe_reply_ = std::move(observer); }
  size_t batch_size() const override { return batch_size_; }

  // The protocol without sockets (tests drive it directly): the request for a batch, and
  // the outcome of each of its messages, in order, for a reply.
  HttpRequest request_for(const SmsBatch& batch) const;
  std::vector<dispatch::SendResult> outcomes(const SmsBatch& batch, const HttpReply& reply) const;

 private:
  struct Pending;
  SmsGateway(uv_loop_t* loop, std::string name, size_t batch_size, size_t max_in_flight,
             std::unique_ptr<SmsProfile> profile, std::unique_ptr<CurlEngine> engine);
  void flush();
  void submit(std::shared_ptr<Pending> p);
  void on_reply(Pending& p, const HttpReply& reply);
  void closed_one();

  uv_loop_t* loop_;
  std::string name_;
  size_t batch_size_;
  size_t max_in_flight_;
  std::unique_ptr<SmsProfile> profile_;
  std::unique_ptr<CurlEngine> engine_;
  TurnHook flush_hook_;  // armed by the first unflushed message: the batches leave after this loop turn
  std::vector<std::shared_ptr<Pending>> open_;  // batches filling in this loop turn, oldest first
  std::unordered_map<std::string, Pending*> open_by_key_;
  size_t outstanding_ = 0;  // messages taken by send() and not answered yet
  bool closing_ = false;
  int closes_pending_ = 0;
  std::function<void()> close_done_;
  SmsStats stats_;
  std::function<void(int)> observe_reply_;
  int64_t report_timeout_ms_ = 0;
};

}  // namespace sirena::sms
