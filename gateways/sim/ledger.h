// What the simulator accepted: the counters behind GET /stats and the --record file.
//
// A message is "accepted" when its success answer is handed to the transport, so a
// request whose connection was reset before the answer left is never counted. A
// duplicate is an accepted message for a (recipient, alert id) pair accepted before.
// Recipients and alerts are kept as 64-bit hashes (1M recipients: about 16 MB, and a
// collision chance near 1e-7): each recipient with the first alert it got, which makes
// the usual case (one alert, a recipient seen once) a single hash probe; the pairs of a
// recipient's later alerts go into a second set.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>

#include <absl/container/flat_hash_map.h>
#include <absl/container/flat_hash_set.h>

namespace sirena::sim {

// FNV-1a 64; `seed` chains several fields into one hash.
uint64_t fnv1a64(std::string_view data, uint64_t seed = 0xcbf29ce484222325ULL);

// Appends "recipient<TAB>alert id<TAB>text hash (16 hex digits)\n" lines to a file.
// Lines are buffered; flush() writes them (the owner calls it every 100 ms and at exit).
class Recorder {
 public:
  Recorder() = default;
  ~Recorder();
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  bool open(const std::string& path);  // false with errno set
  void add(std::string_view recipient, std::string_view alert_id, uint64_t text_hash);
  void flush();

 private:
  FILE* file_ = nullptr;
  std::string buffer_;
};

class Ledger {
 public:
  explicit Ledger(Recorder* recorder = nullptr) : recorder_(recorder) {}

  // A request to a message endpoint arrived (before faults and validation).
  void count_request() { ++requests_; }
  void count_reset() { ++resets_; }
  void count_goaway() { ++goaways_; }
  void accept(std::string_view recipient, std::string_view alert_id, uint64_t text_hash);
  void reject(int status, uint64_t messages = 1) { rejected_[status] += messages; }

  uint64_t accepted() const { return accepted_; }
  uint64_t duplicates() const { return duplicates_; }

  // {"accepted", "rejected": {"<status>": N}, "unique_recipients", "duplicates", "requests",
  //  "resets", "goaways", "by_alert": {"<id>": {"accepted", "unique", "duplicates"}}}
  std::string stats_json() const;
  // Clears every counter (POST /reset); the --record file is left alone.
  void reset();

 private:
  struct AlertCounts {
    uint64_t accepted = 0;
    uint64_t duplicates = 0;
    uint64_t hash = 1;  // of the alert id, odd
  };
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return fnv1a64(s); }
  };

  AlertCounts& counts(std::string_view alert_id);

  Recorder* recorder_;
  uint64_t requests_ = 0, accepted_ = 0, duplicates_ = 0, resets_ = 0, goaways_ = 0;
  std::map<int, uint64_t> rejected_;
  absl::flat_hash_map<uint64_t, uint64_t> recipients_;  // recipient -> its first alert's hash
  absl::flat_hash_set<uint64_t> later_pairs_;           // (recipient, alert) pairs after the first
  std::unordered_map<std::string, AlertCounts, StringHash, std::equal_to<>> by_alert_;
  // The alert of the last message: a fan-out sends one alert's messages back to back.
  std::string last_alert_;
  AlertCounts* last_counts_ = nullptr;
};

}  // namespace sirena::sim
