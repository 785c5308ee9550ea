// SMS text: what one alert says by SMS in one language, its GSM 03.38 encoding and its
// segment count. Used by preview now and by the SMS channel later (one implementation).
//
// GSM-7 fits 160 characters in one SMS, 153 per part when concatenated; UCS-2 fits 70,
// or 67 per part. Characters of the GSM 7-bit extension table ( ^{}\[~]|€ and form feed)
// count two. Any character outside the GSM 7-bit default alphabet and its extension
// table makes the whole message UCS-2 (counted in UTF-16 code units).
#pragma once

#include <string>
#include <string_view>

#include "daemon/alerts/alert.h"

namespace sirena::dispatch {

enum class SmsEncoding { Gsm7, Ucs2 };
const char* to_string(SmsEncoding e);  // "GSM-7", "UCS-2"

struct SmsCount {
  SmsEncoding encoding = SmsEncoding::Gsm7;
  size_t units = 0;     // septets (GSM-7) or UTF-16 code units (UCS-2)
  size_t segments = 0;  // 0 for an empty text
};

// `text` is UTF-8 (invalid sequences count as UCS-2 replacement characters).
SmsCount count_sms(std::string_view text);

// Cuts `text` to at most `max_segments` segments, at a word boundary, ending with "…"
// (which is itself UCS-2 only; a GSM-7 text ends with "..." instead so that cutting never
// changes the encoding). Returns the text unchanged when it already fits.
std::string fit_sms(std::string_view text, size_t max_segments);

// "[TEST] ", "[ESERCITAZIONE] " / "[EXERCISE] " for Test and Exercise alerts, else "":
// Italian when the info's language is Italian. Every channel's text starts with it, so a
// drill never looks real. `info` may be null (a Cancel without info).
std::string drill_marker(const alerts::Alert& alert, const alerts::Info* info);

struct SmsPolicy {
  size_t max_segments = 3;
  std::string text_parameter;  // CAP <parameter> valueName carrying a prepared SMS text
};

// The SMS for one CAP info block: the prepared text parameter when the policy names one
// and the info has it, else "<headline>. <instruction>". A Test or Exercise alert starts
// with a marker in the info's language ("TEST", "ESERCITAZIONE" for Italian, "EXERCISE").
// The result is fitted to policy.max_segments.
std::string render_sms(const alerts::Alert& alert, const alerts::Info& info, const SmsPolicy& policy);

}  // namespace sirena::dispatch
