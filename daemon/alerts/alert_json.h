// The JSON alert form (docs/alert-json.md): the CAP fields with snake_case keys.
//
// parse_alert_json() is the intake path for `application/json` posts; it applies the
// same semantic checks as the CAP parser (validate_semantics). alert_to_json() writes
// exactly the shape parse_alert_json() accepts, plus the read-only keys
// "cap_version" and "normalisations", which the parser accepts and carries over.
// None of these functions throws.
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>

#include "daemon/alerts/alert.h"
#include "daemon/alerts/cap_parser.h"
#include "daemon/core/result.h"

namespace sirena::alerts {

// Parses and validates a posted JSON alert. Errors: 413 `body_too_large`,
// 400 `invalid_utf8` / `malformed_json` (where = byte offset), 422 `duplicate_key` /
// `number_out_of_range` / `too_deep` (see parse_json_strict), 422 `missing_field` /
// `invalid_field` / `unknown_field` (where = JSON pointer), and the semantic codes.
Result<Alert> parse_alert_json(std::string_view bytes, const ParseLimits& limits = {});

// The JSON form of an alert; parse_alert_json(alert_to_json(a).dump()) == a.
nlohmann::json alert_to_json(const Alert& alert);

// Reads an already-parsed JSON document (e.g. a stored alert) with the same checks
// as parse_alert_json, except the byte-level ones.
Result<Alert> alert_from_json(const nlohmann::json& json);

}  // namespace sirena::alerts
