// What intake does with an alert it has parsed: whether it may ever reach citizens, and
// the state it is stored in (sent now, waiting for a second person, or kept for the record).
//
// The rules fail closed. CAP 1.2 §3.2.1: `System` messages are network-internal and
// `Draft` ones are not actionable; `Ack` and `Error` answer a sender. None of them is ever
// sent to a citizen, whatever a tenant's policy says. Every status that does reach
// citizens goes through the approval policy, and a tenant without one needs a second
// person for every Actual alert.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "daemon/alerts/alert.h"

namespace sirena::alerts {

// Alert states (DESIGN.md "Data model"). `accepted` means durable and ready to be sent.
namespace state {
inline constexpr const char* kPendingApproval = "pending_approval";
inline constexpr const char* kAccepted = "accepted";
inline constexpr const char* kDraft = "draft";
inline constexpr const char* kRecorded = "recorded";  // System, Ack, Error: stored, never sent
inline constexpr const char* kSuperseded = "superseded";
inline constexpr const char* kCancelled = "cancelled";
inline constexpr const char* kExpired = "expired";
}  // namespace state

// True for the messages that are sent to citizens: Alert and Update of status Actual,
// Exercise or Test. A Cancel stops sends and is not itself sent.
bool reaches_citizens(Status status, MsgType msg_type);

// The state a new alert is stored in: draft, recorded, pending_approval or accepted.
// The tenant's approval policy: alerts of a status in `approval_statuses` (Actual always)
// that reach at least `min_recipients` citizens need an approver key other than the
// submitter's. `recipients` is the resolution's count at intake.
const char* initial_state(const Alert& alert, const std::vector<std::string>& approval_statuses,
                          int64_t min_recipients, int64_t recipients);

}  // namespace sirena::alerts
