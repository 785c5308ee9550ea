// Strict reading of JSON documents sent by clients (alerts, zones).
//
// RFC 8259 §4 leaves duplicate object keys to the implementation, and nlohmann
// keeps the last one: `{"status":"Test", ..., "status":"Actual"}` would be read as
// Actual while a reviewer or a proxy reads Test. Numbers too large for a double
// (1e999, 5,000 digits) become infinity. Both are refused here, before the document
// is built, with a JSON pointer to the offending value.
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>

#include "daemon/core/result.h"

namespace sirena {

// Parses `bytes` into *out. Errors (none thrown):
//   400 `malformed_json`       where = "byte N" (0-based offset of the error)
//   422 `too_deep`             values nested more than `max_depth` deep
//   422 `duplicate_key`        where = JSON pointer of the second occurrence
//   422 `number_out_of_range`  where = JSON pointer of the number
// One linear pass of nlohmann's SAX parser checks, a second builds the document.
Status parse_json_strict(std::string_view bytes, int max_depth, nlohmann::json* out);

}  // namespace sirena
