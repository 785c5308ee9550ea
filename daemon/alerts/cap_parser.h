// CAP intake: turns the bytes of a posted CAP document into an Alert.
//
// libxml2 does the parsing (hardened: no network, no DTD, no entity expansion; any
// DOCTYPE is rejected). The tree is then checked against the CAP 1.2 XSD (or 1.1 for
// CAP 1.1 input), read field by field, and passed through validate_semantics(), the
// same checks the JSON form gets. Real-world quirks that are safe to accept (EDXL-DE
// envelope, single-alert <alerts> wrapper, out-of-order elements, empty <polygon/>,
// misplaced ds:Signature) are accepted and listed in Alert::normalisations; see
// docs/cap-intake.md for every decision and error code.
//
// The caller keeps the raw bytes: we never re-serialise, so XML signatures stay
// verifiable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "daemon/alerts/alert.h"
#include "daemon/core/result.h"

namespace sirena::alerts {

// Bounds on untrusted input. Exceeding max_bytes is 413 `body_too_large`; the others
// are 422 with a code naming the bound (`too_deep`, `too_many_infos`, ...).
// The markup bounds (attributes, elements, depth, text) are checked by a linear scan
// of the bytes before libxml2 sees them: libxml2 2.9 compares each attribute of an
// element with every earlier one, so 128k attributes cost minutes of CPU.
struct ParseLimits {
  size_t max_bytes = 1 << 20;
  int max_depth = 64;
  size_t max_attributes = 32;         // per element, namespace declarations included
  size_t max_elements = 50000;        // in the whole document
  size_t max_text_bytes = 256 << 10;  // one text node (CDATA included), in code units
  size_t max_infos = 32;
  size_t max_areas = 256;              // per info
  size_t max_polygon_points = 100000;  // summed over the whole alert
  size_t max_references = 100;         // an Update or Cancel names at most this many alerts
  size_t max_token_bytes = 1024;       // identifier and sender
};

struct Parsed {
  Alert alert;
};

// Parses a CAP document (bytes as received). Returns the alert, or an Error whose
// code is one of those listed in docs/cap-intake.md. Never throws.
// Thread-safe: any number of threads may parse at once (libxml2 keeps its error
// handler per thread; each thread compiles its own copy of the XSDs on first use).
// Call harden_libxml2() on the main thread before the first parse on another thread.
Result<Alert> parse_cap_xml(std::string_view bytes, const ParseLimits& limits = {});

// Installs the process-wide libxml2 hardening: libxml2 initialised, and an external
// entity loader that refuses every URL and file (defence in depth: the parser
// options and the DOCTYPE ban already keep libxml2 from loading anything).
// parse_cap_xml calls it; the app may call it at startup. Idempotent, thread-safe.
void harden_libxml2();

// How many external loads (DTD, entity, schema, XInclude) libxml2 has asked for and
// been refused since start. Should stay 0; worth a metric and a test hook.
uint64_t refused_external_loads();

}  // namespace sirena::alerts
