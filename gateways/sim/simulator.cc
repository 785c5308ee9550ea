#include "gateways/sim/simulator.h"

#include <fstream>

namespace sirena::sim {

Status RecipientSet::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return make_error(ErrorKind::Config, "unreadable", "--unregistered: cannot read " + path);
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
      line.pop_back();
    size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    items_.emplace(line.substr(start));
  }
  return Ok{};
}

bool Simulator::serve_admin(const Request& req, Response& resp) {
  if (req.path == "/stats" && (req.method == "GET" || req.method == "HEAD")) {
    resp.status = 200;
    resp.add_header("content-type", "application/json");
    resp.body = ledger_.stats_json();
    return true;
  }
  if (req.path == "/reset" && req.method == "POST") {
    ledger_.reset();
    resp.status = 200;
    resp.add_header("content-type", "application/json");
    resp.body = "{\"reset\":true}";
    return true;
  }
  return false;
}

Simulator::Verdict Simulator::serve(const Request& req, Response& resp, uint64_t& delay_ms) {
  resp.clear();
  delay_ms = 0;
  if (serve_admin(req, resp)) return Verdict::Answer;
  delay_ms = faults_.draw_latency_ms();
  if (!service_.is_message(req)) {
    service_.handle(req, resp);
    return Verdict::Answer;
  }
  resp.counted = true;
  ledger_.count_request();
  if (faults_.next_request_resets()) {
    ledger_.count_reset();
    return Verdict::Reset;
  }
  if (int status = faults_.draw_failure()) {
    service_.fail(status, req, resp);
    // Every protocol here asks the client to wait a second before retrying an overload
    // (RFC 9110 §10.2.3; FCM documents retry-after on QUOTA_EXCEEDED).
    if (status == 429) resp.add_header("retry-after", "1");
    return Verdict::Answer;
  }
  service_.handle(req, resp);
  return Verdict::Answer;
}

void Simulator::commit(const Response& resp) {
  if (!resp.counted) return;
  for (const Delivery& d : resp.deliveries) ledger_.accept(d.recipient, d.alert_id, d.text_hash);
  if (resp.status >= 300) ledger_.reject(resp.status, resp.rejected_messages);
  if (resp.partly_rejected) ledger_.reject(resp.partly_rejected_status, resp.partly_rejected);
}

}  // namespace sirena::sim
