// The invariants both fuzz targets hold an intake result to.
#pragma once

#include "daemon/alerts/alert_json.h"

namespace sirena::alerts::fuzz {

// A rejection carries a code and a kind the API answers with (not one of the start-up
// kinds, which would turn into a 500); an accepted alert survives alert_to_json ->
// parse_alert_json and alert_from_json unchanged. Traps otherwise, so libFuzzer records
// the input.
inline void check_intake_result(const Result<Alert>& r) {
  if (!r.ok()) {
    const ErrorKind k = r.error().kind;
    if (r.error().code.empty() || k == ErrorKind::Config || k == ErrorKind::Usage || k == ErrorKind::Help)
      __builtin_trap();
    return;
  }
  const nlohmann::json j = alert_to_json(*r);
  const Result<Alert> back = parse_alert_json(j.dump());
  if (!back.ok() || alert_to_json(*back) != j) __builtin_trap();
  const Result<Alert> loaded = alert_from_json(j);
  if (!loaded.ok() || alert_to_json(*loaded) != j) __builtin_trap();
}

}  // namespace sirena::alerts::fuzz
