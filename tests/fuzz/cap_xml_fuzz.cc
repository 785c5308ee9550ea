// libFuzzer target: parse_cap_xml on arbitrary bytes. Whatever comes in, it must
// return (no crash, leak, UB or exception) and an accepted alert must survive the
// JSON round trip.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "daemon/alerts/alert_json.h"
#include "daemon/alerts/cap_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sirena;
  using namespace sirena::alerts;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  Result<Alert> r = parse_cap_xml(bytes);
  if (!r.ok()) {
    if (r.error().code.empty() || r.error().status < 400) __builtin_trap();
    return 0;
  }
  const nlohmann::json j = alert_to_json(*r);
  Result<Alert> back = parse_alert_json(j.dump());
  if (!back.ok() || alert_to_json(*back) != j) __builtin_trap();
  if (refused_external_loads() != 0) __builtin_trap();  // nothing may even try to load
  return 0;
}
