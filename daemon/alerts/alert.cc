#include "daemon/alerts/alert.h"

#include <algorithm>
#include <array>
#include <string_view>

namespace sirena::alerts {
namespace {

constexpr std::array<const char*, 5> kStatus = {"Actual", "Exercise", "System", "Test", "Draft"};
constexpr std::array<const char*, 5> kMsgType = {"Alert", "Update", "Cancel", "Ack", "Error"};
constexpr std::array<const char*, 3> kScope = {"Public", "Restricted", "Private"};

// The enums are declared in the same order as the name tables above.
template <typename E, size_t N>
std::optional<E> lookup(const std::array<const char*, N>& names, std::string_view s) {
  for (size_t i = 0; i < N; ++i) {
    if (s == names[i]) return static_cast<E>(i);
  }
  return std::nullopt;
}

}  // namespace

const char* to_string(Status s) {
  return kStatus[static_cast<size_t>(s)];
}
const char* to_string(MsgType m) {
  return kMsgType[static_cast<size_t>(m)];
}
const char* to_string(Scope s) {
  return kScope[static_cast<size_t>(s)];
}

std::optional<Status> parse_status(std::string_view s) {
  return lookup<Status>(kStatus, s);
}
std::optional<MsgType> parse_msg_type(std::string_view s) {
  return lookup<MsgType>(kMsgType, s);
}
std::optional<Scope> parse_scope(std::string_view s) {
  return lookup<Scope>(kScope, s);
}

std::optional<int64_t> latest_expiry_ms(const Alert& a) {
  std::optional<int64_t> latest;
  for (const Info& info : a.infos) {
    if (info.expires) latest = std::max(latest.value_or(info.expires->unix_ms), info.expires->unix_ms);
  }
  return latest;
}

}  // namespace sirena::alerts
