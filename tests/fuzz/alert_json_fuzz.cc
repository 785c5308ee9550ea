// libFuzzer target: parse_alert_json on arbitrary bytes. It must return (no crash,
// UB or exception), and an accepted alert must round-trip through alert_to_json.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "daemon/alerts/alert_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sirena;
  using namespace sirena::alerts;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  Result<Alert> r = parse_alert_json(bytes);
  if (!r.ok()) {
    if (r.error().code.empty() || r.error().status < 400) __builtin_trap();
    return 0;
  }
  const nlohmann::json j = alert_to_json(*r);
  Result<Alert> back = parse_alert_json(j.dump());
  if (!back.ok() || alert_to_json(*back) != j) __builtin_trap();
  Result<Alert> loaded = alert_from_json(j);
  if (!loaded.ok()) __builtin_trap();
  return 0;
}
