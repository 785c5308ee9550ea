// `sirena-sim sms`: two SMS provider interfaces on one HTTP/1.1 listener.
//
// Kannel's smsbox (GET or form POST /cgi-bin/sendsms; answers and texts as in Kannel's
// gw/smsbox.c, content-type text/html):
//   wrong username/password (when --username/--password are set)
//                                      403 "Authorization failed for sendsms"
//   no `to` / empty `to`               400 "Missing receiver number, rejected" /
//                                          "Empty receiver number not allowed, rejected"
//   no `text`                          400 "Missing text, rejected" (Kannel would send an
//                                          empty SMS; an alert never means to)
//   text not in `charset`              400 "Charset or body misformed, rejected"
//   every number in --unregistered     400 "Number(s) has/have been denied by white- and/or
//                                          black-lists." (Kannel's permanent refusal)
//   otherwise                          202 "0: Accepted for delivery", one message per
//                                          number of `to` (space separated, so '+' must be
//                                          sent as %2B); refused numbers are dropped
//   injected: 202 "3: Queued for later delivery" (accepted), 503 and 429 "Temporal
//   failure, try again later.", 403 "Not routable. Do not try again.", 500 "Sending failed."
//   coding=2 (UCS-2) text may come as UTF-8 or, with charset=UTF-16BE, as UCS-2 bytes;
//   any charset iconv knows is decoded to UTF-8 before hashing.
//   The alert id is the `sirena-alert` parameter, else the `alert` or `alert_id` query
//   parameter inside `dlr-url`, else "-".
//   With --dlr and a dlr-url, each accepted number's dlr-url is fetched (GET) from a
//   worker thread: type 8 (SMSC accepted) first when dlr-mask has bit 8, then type 1
//   (delivered) when it has bit 1. Kannel's escapes %d (type), %p (receiver), %P
//   (sender), %T (unix time) and %A (SMSC reply) are replaced, URL-encoded.
// Generic JSON (POST /sms, authorization: Bearer <anything non-empty>):
//   {"to": "+39..." | ["+39...", ...], "text": "...", "reference": "..."}
//   -> 200 {"accepted": N, "ids": [...], "rejected": [numbers in --unregistered]};
//   no auth 401 {"error": "unauthorized"}; bad JSON or fields 400 {"error":
//   "invalid_request", "message"}; every number refused 400 {"error": "invalid_receiver",
//   "rejected": [...]}; injected 503 {"error": "unavailable"}, 429 {"error":
//   "rate_limited"} (+ retry-after), 500 {"error": "internal"}, others {"error": "failed"}.
//   The alert id is `reference`.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "gateways/sim/json.h"
#include "gateways/sim/service.h"

namespace sirena::sim {

// Fetches DLR URLs with libcurl's easy API on its own thread, so the loop never blocks.
class DlrSender {
 public:
  DlrSender();
  ~DlrSender();  // finishes the queue, then joins
  void enqueue(std::string url);

 private:
  void run();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;
  bool stopping_ = false;
  std::thread worker_;
};

class SmsService final : public Service {
 public:
  struct Config {
    std::string username, password;  // empty: any
  };
  SmsService(Config config, const RecipientSet& unregistered, DlrSender* dlr);

  bool is_message(const Request& req) const override;
  void handle(const Request& req, Response& resp) override;
  void fail(int status, const Request& req, Response& resp) override;

 private:
  void kannel(const Request& req, Response& resp);
  void generic_json(const Request& req, Response& resp);
  void send_dlrs(const std::string& dlr_url, int mask, std::string_view receiver, std::string_view sender);

  Config config_;
  const RecipientSet& unregistered_;
  DlrSender* dlr_;
  JsonReader json_;
  uint64_t counter_ = 0;
};

}  // namespace sirena::sim
