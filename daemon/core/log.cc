#include "daemon/core/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace sirena::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::Info)};

// spdlog owns the sink (locking, flushing); the line itself is already JSON.
spdlog::logger& sink() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    auto l = std::make_shared<spdlog::logger>("sirena", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    l->set_pattern("%v");
    l->set_level(spdlog::level::trace);
    l->flush_on(spdlog::level::trace);
    return l;
  }();
  return *logger;
}

const char* level_name(Level l) {
  switch (l) {
    case Level::Debug: return "debug";
    case Level::Info: return "info";
    case Level::Warn: return "warn";
    case Level::Error: return "error";
  }
  return "info";
}

std::string timestamp() {
  using namespace std::chrono;
  auto now = system_clock::now();
  auto secs = system_clock::to_time_t(now);
  auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03lldZ", static_cast<long long>(ms));
  return buf;
}

}  // namespace

void set_level(Level level) { g_level.store(static_cast<int>(level)); }

bool parse_level(std::string_view text, Level* out) {
  for (Level l : {Level::Debug, Level::Info, Level::Warn, Level::Error}) {
    if (text == level_name(l)) {
      *out = l;
      return true;
    }
  }
  return false;
}

void write(Level level, std::string_view event, const nlohmann::json& fields) {
  if (static_cast<int>(level) < g_level.load(std::memory_order_relaxed)) return;
  nlohmann::ordered_json line;
  line["ts"] = timestamp();
  line["level"] = level_name(level);
  line["event"] = std::string(event);
  if (fields.is_object()) {
    for (auto it = fields.begin(); it != fields.end(); ++it) line[it.key()] = it.value();
  }
  // Replace invalid UTF-8 rather than throw: a log line must never take the daemon down.
  std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  sink().info("{}", text);
}

void debug(std::string_view event, const nlohmann::json& fields) { write(Level::Debug, event, fields); }
void info(std::string_view event, const nlohmann::json& fields) { write(Level::Info, event, fields); }
void warn(std::string_view event, const nlohmann::json& fields) { write(Level::Warn, event, fields); }
void error(std::string_view event, const nlohmann::json& fields) { write(Level::Error, event, fields); }

std::string redact(std::string_view secret) {
  if (secret.size() <= 4) return "…";
  return std::string(secret.substr(0, 3)) + "…" + std::string(secret.substr(secret.size() - 2));
}

}  // namespace sirena::log
