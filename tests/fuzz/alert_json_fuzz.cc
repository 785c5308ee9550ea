// libFuzzer target: parse_alert_json on arbitrary bytes. It must return (no crash,
// UB or exception), and an accepted alert must round-trip through alert_to_json.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "tests/fuzz/fuzz_checks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sirena::alerts;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  fuzz::check_intake_result(parse_alert_json(bytes));
  return 0;
}
