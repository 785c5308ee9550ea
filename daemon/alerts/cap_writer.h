// Writes the CAP 1.2 documents Sirena itself issues (POST /v1/alerts/{id}/cancel).
// libxml2's writer does the escaping; the result goes through the normal intake
// parser like any posted alert.
#pragma once

#include <cstdint>
#include <string>

namespace sirena::alerts {

// CAP dateTime for a Unix time, in UTC with an explicit "+00:00" (CAP 1.2 §3.3.2 forbids "Z").
std::string cap_datetime(int64_t unix_ms);

struct CancelSpec {
  std::string sender;
  std::string identifier;  // the new message's identifier
  std::string sent;        // cap_datetime()
  std::string status;      // the cancelled alert's status (a Test cancel stays a Test)
  std::string reference;   // "sender,identifier,sent" of the cancelled alert
  std::string note;
};

std::string write_cancel(const CancelSpec& spec);

}  // namespace sirena::alerts
