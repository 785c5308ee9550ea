// SMS that wait for their delivery report. A gateway that reports (Kannel asked for
// delivery reports) has accepted an SMS, but a bearerbox that crashes loses what it had
// queued: the acceptance is final only once a report proves the SMSC has the message. Any
// report will do (its own state is applied in Redis). Without one in time, the message is
// sent again.
//
// A report can also arrive before the HTTP answer that accepted the message: it is kept as
// an early report, briefly and in bounded number (most are a second report for an SMS that
// is already final: Kannel sends 8, then 1).
//
// Keys are report_key(alert, recipient tenant, number). Clock-injected, free of I/O.
#pragma once

#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>

#include "daemon/core/clock.h"

namespace sirena::dispatch {

inline std::string report_key(const std::string& alert_id, const std::string& rtenant,
                              const std::string& number) {
  return alert_id + "|" + rtenant + "|" + number;
}

template <typename T>
class ReportWaits {
 public:
  // An early report is kept this long, at most this many of them (the acceptance it
  // waits for is normally milliseconds away).
  static constexpr int64_t kEarlyMs = 60'000;
  static constexpr size_t kMaxEarly = 262144;

  explicit ReportWaits(const Clock& clock, int64_t early_ms = kEarlyMs, size_t max_early = kMaxEarly)
      : clock_(clock), early_ms_(early_ms), max_early_(max_early) {}

  // `item` was accepted: it waits for its report until `due_ms`. False when it need not
  // wait (it is final now): its report came early, or the same key already waits (a number
  // twice in one alert cannot be told apart, so the second is final at once).
  bool await(const std::string& key, T item, int64_t due_ms) {
    if (early_.erase(key) || waiting_.count(key)) return false;
    waiting_.emplace(key, Waiting{item, due_.emplace(due_ms, key)});
    return true;
  }

  // A report for `key`: the item it makes final, if one waits; else kept as early.
  std::optional<T> reported(const std::string& key) {
    auto it = waiting_.find(key);
    if (it == waiting_.end()) {
      int64_t now = clock_.now_ms();
      if (early_.emplace(key, now).second) early_order_.emplace_back(now, key);
      if (early_order_.size() > max_early_) forget_early(now, early_order_.size() - max_early_);
      return std::nullopt;
    }
    T item = it->second.item;
    due_.erase(it->second.due);
    waiting_.erase(it);
    return item;
  }

  // Hands each item whose report is overdue at `now_ms` to fn (it no longer waits), and
  // forgets early reports older than the early window.
  template <typename F>
  void take_overdue(int64_t now_ms, F fn) {
    while (!due_.empty() && due_.begin()->first <= now_ms) {
      auto it = waiting_.find(due_.begin()->second);
      due_.erase(due_.begin());
      T item = it->second.item;
      waiting_.erase(it);
      fn(item);
    }
    forget_early(now_ms);
  }

  // When the earliest wait ends; INT64_MAX when nothing waits.
  int64_t next_due() const {
    return due_.empty() ? std::numeric_limits<int64_t>::max() : due_.begin()->first;
  }
  size_t waiting() const { return waiting_.size(); }
  size_t early() const { return early_.size(); }

 private:
  struct Waiting {
    T item;
    std::multimap<int64_t, std::string>::iterator due;
  };
  // Forgets early reports older than early_ms_, and at least `count` of the oldest.
  void forget_early(int64_t now, size_t count = 0) {
    while (!early_order_.empty() && (count > 0 || now - early_order_.front().first > early_ms_)) {
      auto it = early_.find(early_order_.front().second);
      if (it != early_.end() && it->second == early_order_.front().first) early_.erase(it);
      early_order_.pop_front();
      if (count > 0) --count;
    }
  }

  const Clock& clock_;
  int64_t early_ms_;
  size_t max_early_;
  std::unordered_map<std::string, Waiting> waiting_;
  std::multimap<int64_t, std::string> due_;
  std::unordered_map<std::string, int64_t> early_;  // key -> when it came
  std::deque<std::pair<int64_t, std::string>> early_order_;
};

}  // namespace sirena::dispatch
