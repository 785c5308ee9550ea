// JSON-lines logging on stderr.
//
// Every line is one JSON object: {"ts":..., "level":..., "event":..., <fields>}.
// Fields are built with nlohmann::json so nothing is escaped by hand. Citizen
// data (phone numbers, push tokens) must go through redact() before it is logged.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace sirena::log {

enum class Level { Debug = 0, Info = 1, Warn = 2, Error = 3 };

void set_level(Level level);
// For the daemon: info and debug lines are written out at most `every` later (warnings
// and errors at once), in one write for many lines; else each line is one write(2),
// which at thousands of alerts a second cost the event loop 7% of its time. A process
// killed with SIGKILL loses the info lines of its last `every`. Call before logging.
void buffer_output(std::chrono::seconds every);
// Writes out what is buffered.
void flush();
bool parse_level(std::string_view text, Level* out);

// Writes one line if `level` is enabled. `fields` must be a JSON object (or null).
// Each field is bounded: strings longer than 256 bytes and arrays or objects of more
// than 32 items are cut, with a marker ("…[truncated N bytes]", "…[N more]").
void write(Level level, std::string_view event, const nlohmann::json& fields);

void debug(std::string_view event, const nlohmann::json& fields);
void info(std::string_view event, const nlohmann::json& fields);
void warn(std::string_view event, const nlohmann::json& fields);
void error(std::string_view event, const nlohmann::json& fields);

// Keeps the last two characters of a phone number or token: "+39…67".
std::string redact(std::string_view secret);

}  // namespace sirena::log
