// libFuzzer target: parse_cap_xml on arbitrary bytes. Whatever comes in, it must
// return (no crash, leak, UB or exception), never ask libxml2 for an external
// resource, and an accepted alert must survive the JSON round trip.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "daemon/alerts/cap_parser.h"
#include "tests/fuzz/fuzz_checks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sirena::alerts;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  fuzz::check_intake_result(parse_cap_xml(bytes));
  if (refused_external_loads() != 0) __builtin_trap();
  return 0;
}
