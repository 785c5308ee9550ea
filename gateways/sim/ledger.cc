#include "gateways/sim/ledger.h"

#include <functional>

#include <nlohmann/json.hpp>

namespace sirena::sim {

uint64_t fnv1a64(std::string_view data, uint64_t seed) {
  uint64_t h = seed;
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

Recorder::~Recorder() {
  flush();
  if (file_) std::fclose(file_);
}

bool Recorder::open(const std::string& path) {
  file_ = std::fopen(path.c_str(), "a");
  return file_ != nullptr;
}

void Recorder::add(std::string_view recipient, std::string_view alert_id, uint64_t text_hash) {
  if (!file_) return;
  static const char kHex[] = "0123456789abcdef";
  char hash[16];
  for (int i = 15; i >= 0; --i, text_hash >>= 4) hash[i] = kHex[text_hash & 0xf];
  buffer_.append(recipient).push_back('\t');
  buffer_.append(alert_id).push_back('\t');
  buffer_.append(hash, sizeof hash).push_back('\n');
}

void Recorder::flush() {
  if (!file_ || buffer_.empty()) return;
  std::fwrite(buffer_.data(), 1, buffer_.size(), file_);
  std::fflush(file_);
  buffer_.clear();
}

Ledger::AlertCounts& Ledger::counts(std::string_view alert_id) {
  if (last_counts_ && alert_id == last_alert_) return *last_counts_;
  auto it = by_alert_.find(alert_id);
  if (it == by_alert_.end()) {
    it = by_alert_.emplace(std::string(alert_id), AlertCounts{}).first;
    it->second.hash = std::hash<std::string_view>{}(alert_id) | 1;
  }
  last_alert_.assign(alert_id);
  last_counts_ = &it->second;  // unordered_map values stay put
  return it->second;
}

void Ledger::accept(std::string_view recipient, std::string_view alert_id, uint64_t text_hash) {
  if (alert_id.empty()) alert_id = "-";  // the same key the --record file uses
  ++accepted_;
  AlertCounts& c = counts(alert_id);
  // std::hash (MurmurHash 2 in libstdc++) takes 8 bytes a step: tokens are long.
  uint64_t r = std::hash<std::string_view>{}(recipient);
  auto [it, first] = recipients_.try_emplace(r, c.hash);
  bool duplicate = false;
  if (!first && it->second == c.hash) {
    duplicate = true;
  } else if (!first) {
    // An odd multiplier is a bijection: two recipients of one alert never share a pair.
    duplicate = !later_pairs_.insert((r ^ 0x9e3779b97f4a7c15ULL) * c.hash).second;
  }
  ++c.accepted;
  if (duplicate) {
    ++duplicates_;
    ++c.duplicates;
  }
  if (recorder_) recorder_->add(recipient, alert_id, text_hash);
}

std::string Ledger::stats_json() const {
  nlohmann::json rejected = nlohmann::json::object();
  for (const auto& [status, n] : rejected_) rejected[std::to_string(status)] = n;
  nlohmann::json by_alert = nlohmann::json::object();
  for (const auto& [id, c] : by_alert_)
    by_alert[id] = {
        {"accepted", c.accepted}, {"unique", c.accepted - c.duplicates}, {"duplicates", c.duplicates}};
  nlohmann::json j = {
      {"accepted", accepted_},     {"rejected", rejected},  {"unique_recipients", recipients_.size()},
      {"duplicates", duplicates_}, {"requests", requests_}, {"resets", resets_},
      {"goaways", goaways_},       {"by_alert", by_alert}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void Ledger::reset() {
  requests_ = accepted_ = duplicates_ = resets_ = goaways_ = 0;
  rejected_.clear();
  recipients_.clear();
  later_pairs_.clear();
  by_alert_.clear();
  last_alert_.clear();
  last_counts_ = nullptr;
}

}  // namespace sirena::sim
