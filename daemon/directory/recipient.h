// A citizen in the directory, and the validation every write goes through (PUT, import).
//
// Phones are normalised to E.164 with libphonenumber and the tenant's default region;
// APNs tokens are 64 hex digits; FCM tokens are sanity-checked; topics must be in the
// tenant's list (CAP categories plus its own); coordinates in range; languages BCP 47.
// Errors are 422 `invalid_recipient` with `where` = JSON pointer of the bad field.
// Nothing here logs: citizen data must never reach the logs.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "daemon/core/result.h"

namespace sirena::directory {

enum class Platform : uint8_t { Apns, Fcm };

struct PushToken {
  Platform platform = Platform::Apns;
  std::string app;
  std::string token;
  bool operator==(const PushToken&) const = default;
};

struct Location {
  double lat = 0;
  double lon = 0;
  std::string label;
  bool operator==(const Location&) const = default;
};

struct Recipient {
  std::string id;  // 1..64 of [A-Za-z0-9._:-]
  std::string phone;  // E.164, or empty
  std::string language = "it";  // BCP 47, canonical case (it, en-GB, zh-Hant-TW)
  std::vector<PushToken> push;
  std::vector<std::string> topics;
  std::vector<Location> locations;
  std::vector<std::string> zones;

  bool operator==(const Recipient&) const = default;
};

// The CAP 1.2 categories (§3.2.2), which every tenant has as topics.
const std::vector<std::string>& cap_categories();

struct RecipientRules {
  std::string default_region = "IT";     // ISO 3166 region for numbers without +CC
  std::vector<std::string> topics;       // allowed topics, in bit order (CAP categories first)
  std::unordered_set<std::string> zones; // known zone names
  size_t max_locations = 8;
  size_t max_push = 8;
  size_t max_zones = 16;
  size_t max_topics = 64;
};

// Parses and validates one recipient document (a PUT body or one NDJSON line).
// `id_from_path`, when not empty, must equal the body's "id" (or the body may omit it).
Result<Recipient> parse_recipient(std::string_view json, const RecipientRules& rules,
                                  std::string_view id_from_path = {});

// Calls `fn` once per non-blank line with its 1-based number and the result. A bad line
// never stops the others. Lines are split on '\n' ('\r\n' tolerated).
void parse_ndjson(std::string_view body, const RecipientRules& rules,
                  const std::function<void(size_t line, Result<Recipient>&&)>& fn);

nlohmann::json recipient_to_json(const Recipient& r);

// Index bit for each topic of `r` in `rules.topics` order.
uint64_t topic_bits(const std::vector<std::string>& topics, const RecipientRules& rules);

}  // namespace sirena::directory
