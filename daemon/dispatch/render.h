// What an alert says on a push notification, per recipient language, and the values
// derived from the CAP message that every channel needs (priority, collapse id).
#pragma once

#include <string>

#include "daemon/alerts/alert.h"
#include "daemon/dispatch/gateway.h"   // kPriorities
#include "daemon/dispatch/sms_text.h"  // drill_marker

namespace sirena::dispatch {

// The info block for recipients speaking `language` (BCP 47): the same tag, else the
// same primary language ("it" for "it-IT"), else the first info (CAP 1.2 §3.2.2).
// nullptr when the alert has no info (a Cancel may have none).
const alerts::Info* pick_info(const alerts::Alert& alert, const std::string& language);

struct PushText {
  std::string title;  // marker + headline (or event)
  std::string body;   // instruction, else description
};
PushText render_push(const alerts::Alert& alert, const alerts::Info* info);

// 0 (most urgent) .. kPriorities - 1: Extreme/Severe with Immediate/Expected urgency
// first, so that higher-priority alerts overtake lower ones in every queue (DESIGN.md
// invariant 6).
int priority_of(const alerts::Alert& alert);

// The same for an Alert and the Updates that replace it: the identifier of the first
// message of the chain, so a push for an Update replaces the earlier notification.
// At most 64 bytes (APNs apns-collapse-id limit).
std::string collapse_id(const alerts::Alert& alert);

}  // namespace sirena::dispatch
