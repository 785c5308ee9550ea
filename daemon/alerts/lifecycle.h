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
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/alerts/alert.h"

namespace sirena::alerts {

// An alert's state (DESIGN.md "Data model"), as stored in its hash's `state` field.
//
//   pending_approval --approve--> accepted --plan--> dispatching --last batch--> completed
//                                 accepted --plan, nobody reached--> completed
//   pending_approval, accepted, dispatching --Cancel / Update--> cancelled / superseded
//   accepted, dispatching: shown as expired once past its expiry (never stored)
//   draft and recorded are stored so and never change.
//
// The dispatcher's and the store's Lua scripts get these names from state_names_lua().
enum class AlertState : uint8_t {
  PendingApproval,
  Accepted,     // durable and ready to be sent; planned by the dispatcher
  Dispatching,  // its plan is written: batches are going out
  Completed,    // every batch was done
  Draft,
  Recorded,  // System, Ack, Error: stored, never sent
  Superseded,
  Cancelled,
  Expired,
};
inline constexpr AlertState kAlertStates[] = {
    AlertState::PendingApproval, AlertState::Accepted,  AlertState::Dispatching,
    AlertState::Completed,       AlertState::Draft,     AlertState::Recorded,
    AlertState::Superseded,      AlertState::Cancelled, AlertState::Expired};

constexpr const char* to_string(AlertState s) {
  switch (s) {
    case AlertState::PendingApproval:
      return "pending_approval";
    case AlertState::Accepted:
      return "accepted";
    case AlertState::Dispatching:
      return "dispatching";
    case AlertState::Completed:
      return "completed";
    case AlertState::Draft:
      return "draft";
    case AlertState::Recorded:
      return "recorded";
    case AlertState::Superseded:
      return "superseded";
    case AlertState::Cancelled:
      return "cancelled";
    case AlertState::Expired:
      return "expired";
  }
  return "?";
}
std::optional<AlertState> parse_state(std::string_view s);

// Messages may go out: accepted or dispatching. Any other state stops its sends.
bool is_sending(AlertState s);
// No transition leaves it: completed, cancelled, superseded, expired, draft, recorded.
bool is_final(AlertState s);
// The transitions of the diagram above.
bool can_transition(AlertState from, AlertState to);

// A Lua table of the state names, `local S = {pending_approval = 'pending_approval', ...}`,
// that the scripts which read or write `state` begin with (S.accepted, S.dispatching, ...).
std::string state_names_lua();

// The names, for code that compares strings read back from Redis.
namespace state {
inline constexpr const char* kPendingApproval = to_string(AlertState::PendingApproval);
inline constexpr const char* kAccepted = to_string(AlertState::Accepted);
inline constexpr const char* kDispatching = to_string(AlertState::Dispatching);
inline constexpr const char* kCompleted = to_string(AlertState::Completed);
inline constexpr const char* kDraft = to_string(AlertState::Draft);
inline constexpr const char* kRecorded = to_string(AlertState::Recorded);
inline constexpr const char* kSuperseded = to_string(AlertState::Superseded);
inline constexpr const char* kCancelled = to_string(AlertState::Cancelled);
inline constexpr const char* kExpired = to_string(AlertState::Expired);
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
