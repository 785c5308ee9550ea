// Checks on a parsed Alert shared by the CAP XML and JSON intake paths, so each rule
// is written once: the CAP 1.2 rules the XSD cannot express (§3.2), our intake
// policy (Update/Cancel need references) and the size bounds of ParseLimits.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/alerts/alert.h"
#include "daemon/alerts/cap_parser.h"
#include "daemon/core/result.h"

namespace sirena::alerts {

// The largest circle radius accepted (CAP 1.2 §3.2.4 circle), in km: a province is
// about 100 km across; a larger circle is a mistake or an attempt to reach everyone.
constexpr double kMaxCircleRadiusKm = 1000;

// How much area a closed ring of lat,lon points spans, in square degrees: the
// triangles from its first point to each edge, unsigned (so the planar area for a
// simple convex ring, more for others); 0 for fewer than 3 points. A ring under
// kMinRingAreaDeg2 (about 1 m x 1 m at the equator) has all its points on one line
// or repeated: it encloses nothing, and S2 would read some such rings as the whole
// sphere. Refused in alerts and in zones.
double ring_area_deg2(const std::vector<Point>& ring);
constexpr double kMinRingAreaDeg2 = 1e-10;

// Returns Ok, or the first violation as a 422 Error. `where` is a JSON pointer into
// the JSON form (e.g. "/infos/0/areas/1/polygons/0"), on both paths, so clients see
// one vocabulary. Codes: invalid_field, invalid_enum, invalid_polygon,
// invalid_circle, invalid_altitude, invalid_references, missing_references,
// missing_restriction, missing_addresses, expires_before_sent, and
// invalid_character (a text field holds a character XML 1.0 does not allow).
sirena::Status validate_semantics(const Alert& alert);

// The byte-level intake checks: 413 `body_too_large` over limits.max_bytes, then,
// when `utf8` is set, 400 `invalid_utf8` with `where` = "byte N" (0-based offset).
sirena::Status check_body(std::string_view bytes, const ParseLimits& limits, bool utf8);

// Returns Ok, or 422 too_long (identifier, sender) / too_many_references /
// too_many_infos / too_many_areas / too_many_points.
sirena::Status check_limits(const Alert& alert, const ParseLimits& limits);

// CAP dateTime (§3.3.2): "YYYY-MM-DDThh:mm:ss(+|-)hh:mm", with an optional fraction
// of seconds. A trailing "Z" is accepted as well (CAP forbids it, real feeds send
// it); *used_z is then set so the caller can record a normalisation.
// Returns nullopt when the text is not such a date or names no real instant.
std::optional<Timestamp> parse_cap_datetime(std::string_view text, bool* used_z = nullptr);

// parse_cap_datetime as an intake step: 422 `invalid_datetime` at `where`, and a
// note appended to *notes when "Z" was read as +00:00.
Result<Timestamp> read_cap_datetime(std::string_view text, const std::string& where,
                                    std::vector<std::string>* notes);

// Splits CAP `references` text (§3.2.1: space-separated "sender,identifier,sent"
// triples) into triples. 422 `invalid_references` when a token is not a triple;
// the triples' content is checked by validate_semantics.
Result<std::vector<Reference>> read_references(std::string_view text, const std::string& where);

}  // namespace sirena::alerts
