#include "daemon/dispatch/render.h"

#include <strings.h>

#include <algorithm>

#include <openssl/sha.h>

namespace sirena::dispatch {
namespace {

std::string primary(std::string s) {
  s = s.substr(0, s.find('-'));
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

int severity_rank(const std::string& s) {
  if (s == "Extreme") return 0;
  if (s == "Severe") return 1;
  if (s == "Moderate") return 2;
  return 3;
}

int urgency_rank(const std::string& u) {
  if (u == "Immediate") return 0;
  if (u == "Expected") return 1;
  return 2;
}

}  // namespace

const alerts::Info* pick_info(const alerts::Alert& a, const std::string& language) {
  if (a.infos.empty()) return nullptr;
  for (const auto& i : a.infos)
    if (strcasecmp(i.language.c_str(), language.c_str()) == 0) return &i;
  for (const auto& i : a.infos)
    if (primary(i.language) == primary(language)) return &i;
  return &a.infos.front();
}

PushText render_push(const alerts::Alert& a, const alerts::Info* info) {
  PushText t;
  std::string marker = drill_marker(a, info);
  if (!info) {
    t.title = marker + (a.msg_type == alerts::MsgType::Cancel ? "Alert cancelled" : "Alert");
    t.body = a.note;
    return t;
  }
  t.title = marker + (info->headline.empty() ? info->event : info->headline);
  t.body = !info->instruction.empty() ? info->instruction : info->description;
  return t;
}

int priority_of(const alerts::Alert& a) {
  int best = kPriorities - 1;
  for (const auto& i : a.infos) {
    int s = severity_rank(i.severity), u = urgency_rank(i.urgency);
    int p = s <= 1 && u <= 1 ? s : (s <= 1 ? 2 : 3);
    best = std::min(best, p);
  }
  // A Cancel stops something people were told: it goes as fast as the alert did.
  if (a.msg_type == alerts::MsgType::Cancel) best = 0;
  return best;
}

std::string collapse_id(const alerts::Alert& a) {
  std::string root = a.identifier;
  if ((a.msg_type == alerts::MsgType::Update || a.msg_type == alerts::MsgType::Cancel) && !a.references.empty())
    root = a.references.front().identifier;
  if (root.size() <= 64) return root;
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(root.data()), root.size(), md);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 32; ++i) {
    out.push_back(hex[md[i] >> 4]);
    out.push_back(hex[md[i] & 15]);
  }
  return out;
}

}  // namespace sirena::dispatch
