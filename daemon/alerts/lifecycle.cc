#include "daemon/alerts/lifecycle.h"

#include <algorithm>

namespace sirena::alerts {

std::optional<AlertState> parse_state(std::string_view s) {
  for (AlertState st : kAlertStates)
    if (s == to_string(st)) return st;
  return std::nullopt;
}

bool is_sending(AlertState s) {
  return s == AlertState::Accepted || s == AlertState::Dispatching;
}

bool is_final(AlertState s) {
  switch (s) {
    case AlertState::PendingApproval:
    case AlertState::Accepted:
    case AlertState::Dispatching:
      return false;
    default:
      return true;
  }
}

bool can_transition(AlertState from, AlertState to) {
  using S = AlertState;
  const bool stops = to == S::Cancelled || to == S::Superseded;
  switch (from) {
    case S::PendingApproval:
      return to == S::Accepted || stops;
    case S::Accepted:
      return to == S::Dispatching || to == S::Completed || to == S::Expired || stops;
    case S::Dispatching:
      return to == S::Completed || to == S::Expired || stops;
    default:
      return false;
  }
}

std::string state_names_lua() {
  std::string out = "local S = {";
  for (AlertState st : kAlertStates)
    out.append(to_string(st)).append(" = '").append(to_string(st)).append("', ");
  out += "}\n";
  return out;
}

bool reaches_citizens(Status status, MsgType msg_type) {
  bool status_sent = status == Status::Actual || status == Status::Exercise || status == Status::Test;
  bool type_sent = msg_type == MsgType::Alert || msg_type == MsgType::Update;
  return status_sent && type_sent;
}

const char* initial_state(const Alert& alert, const std::vector<std::string>& approval_statuses,
                          int64_t min_recipients, int64_t recipients) {
  if (alert.status == Status::Draft) return state::kDraft;
  // A Cancel stops sends at once: it never waits for a second person. Only a Cancel of
  // a citizen-reaching status is acted on; a System Cancel has nothing of its kind to stop.
  if (alert.msg_type == MsgType::Cancel)
    return alert.status == Status::System ? state::kRecorded : state::kAccepted;
  if (!reaches_citizens(alert.status, alert.msg_type)) return state::kRecorded;
  // Actual always falls under the policy (a config without Actual is refused at load);
  // a listed Test or Exercise status too.
  bool listed = alert.status == Status::Actual ||
                std::find(approval_statuses.begin(), approval_statuses.end(), to_string(alert.status)) !=
                    approval_statuses.end();
  if (listed && recipients >= min_recipients) return state::kPendingApproval;
  return state::kAccepted;
}

}  // namespace sirena::alerts
