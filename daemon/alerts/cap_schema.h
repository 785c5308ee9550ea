// The CAP XSDs (compiled into the binary), XSD validation of a CAP <alert> element,
// and the small libxml2 tree helpers the CAP parser shares with it.
//
// Internal to sirena_alerts: cap_parser.cc is the only caller.
#pragma once

#include <libxml/tree.h>

#include <string>
#include <string_view>
#include <vector>

#include "daemon/core/result.h"

namespace sirena::alerts {

enum class CapVersion { k11, k12 };

// Rewrites the subtree of `alert` (in place; the caller's raw bytes are untouched)
// into what the CAP XSD accepts when the input is only loosely ordered: known CAP
// elements are put into schema order, empty <polygon>/<circle> are removed,
// ds:Signature is moved last (1.2) or removed (1.1, whose XSD has no place for it)
// and "Z" dates become "+00:00". Each change is described in *notes. Content that
// is genuinely invalid (unknown or missing elements, bad enums) is left for the XSD.
void canonicalise_for_schema(xmlNodePtr alert, CapVersion version, std::vector<std::string>* notes);

// Validates `alert` against the embedded XSD of `version`. Returns Ok or a 422
// `schema_violation` whose message is libxml2's first validity error (namespaces
// shortened, prefixed with its line) and whose `where` is the element's path, e.g.
// "/alert/info[1]/urgency".
// The compiled schemas are built once per thread, lazily; each call has its own
// validation context, so threads may validate at once.
sirena::Status validate_against_xsd(xmlNodePtr alert, CapVersion version);

// "/alert/info[2]/area[1]/polygon": local names, with a 1-based index where an
// element has same-named siblings. Used in `where` of XML errors.
std::string element_path(const xmlNode* node);

// An element's local name, and its namespace URI ("" when it has none).
std::string_view name_of(const xmlNode* n);
std::string_view ns_of(const xmlNode* n);

// An element's text content (CDATA included), UTF-8, trimmed of XML white space.
std::string text_of(xmlNodePtr n);

}  // namespace sirena::alerts
