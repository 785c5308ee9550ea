// The request pipeline every transport runs, whatever the protocol:
//   GET /stats and POST /reset  -> answered from the Ledger;
//   message requests            -> counted, then maybe reset (--reset-every), maybe failed
//                                  (--fail), else served by the protocol's Service;
//   every answer                -> delayed by a --latency-ms draw.
// The transport sends the answer after the delay and then calls commit(), so /stats and
// --record only see answers that really left (a reset connection drops its pending ones).
#pragma once

#include <cstdint>

#include "gateways/sim/faults.h"
#include "gateways/sim/ledger.h"
#include "gateways/sim/message.h"
#include "gateways/sim/service.h"

namespace sirena::sim {

class Simulator {
 public:
  Simulator(Service& service, Faults& faults, Ledger& ledger)
      : service_(service), faults_(faults), ledger_(ledger) {}

  enum class Verdict {
    Answer,  // send resp after `delay_ms`
    Reset,   // close the connection carrying this request without answering it
  };
  Verdict serve(const Request& req, Response& resp, uint64_t& delay_ms);

  // Answers GET /stats and POST /reset; false for any other request.
  bool serve_admin(const Request& req, Response& resp);

  // The answer was handed to the connection: count it.
  void commit(const Response& resp);

  Ledger& ledger() { return ledger_; }
  Faults& faults() { return faults_; }

 private:
  Service& service_;
  Faults& faults_;
  Ledger& ledger_;
};

}  // namespace sirena::sim
