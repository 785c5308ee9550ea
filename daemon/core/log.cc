#include "daemon/core/log.h"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <nlohmann/json.hpp>

namespace sirena::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::Info)};

// stderr through stdio, flushed when spdlog says so (spdlog's own stderr sink flushes
// every line, which buffer_output() must avoid).
class StderrSink final : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    std::fwrite(line.data(), 1, line.size(), stderr);
  }
  void flush_() override { std::fflush(stderr); }
};

// spdlog owns the sink (locking, flushing); the line itself is already JSON.
spdlog::logger& sink() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    auto l = std::make_shared<spdlog::logger>("sirena", std::make_shared<StderrSink>());
    l->set_pattern("%v");
    l->set_level(spdlog::level::trace);
    l->flush_on(spdlog::level::trace);
    return l;
  }();
  return *logger;
}

const char* level_name(Level l) {
  switch (l) {
    case Level::Debug:
      return "debug";
    case Level::Info:
      return "info";
    case Level::Warn:
      return "warn";
    case Level::Error:
      return "error";
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

// Every logged value is bounded, whatever a client put in it (a 500 KB identifier
// must not become a 500 KB log line): strings keep their first kMaxFieldBytes bytes
// (cut at a UTF-8 character boundary) and arrays their first kMaxFieldItems items,
// each followed by a marker saying how much was left out.
constexpr size_t kMaxFieldBytes = 256;
constexpr size_t kMaxFieldItems = 32;

nlohmann::json bounded(const nlohmann::json& v) {
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    if (s.size() <= kMaxFieldBytes) return v;
    size_t cut = kMaxFieldBytes;
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
    return s.substr(0, cut) + "…[truncated " + std::to_string(s.size() - cut) + " bytes]";
  }
  if (v.is_array()) {
    nlohmann::json out = nlohmann::json::array();
    for (size_t i = 0; i < v.size() && i < kMaxFieldItems; ++i) out.push_back(bounded(v[i]));
    if (v.size() > kMaxFieldItems) out.push_back("…[" + std::to_string(v.size() - kMaxFieldItems) + " more]");
    return out;
  }
  if (v.is_object()) {
    nlohmann::json out = nlohmann::json::object();
    size_t n = 0;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (n++ == kMaxFieldItems) {
        out["…"] = std::to_string(v.size() - kMaxFieldItems) + " more keys";
        break;
      }
      out[bounded(it.key()).get<std::string>()] = bounded(it.value());
    }
    return out;
  }
  return v;
}

}  // namespace

void set_level(Level level) {
  g_level.store(static_cast<int>(level));
}

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
    for (auto it = fields.begin(); it != fields.end(); ++it) line[it.key()] = bounded(it.value());
  }
  // Replace invalid UTF-8 rather than throw: a log line must never take the daemon down.
  std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  sink().info("{}", text);
}

void buffer_output(std::chrono::seconds every) {
  static char buffer[1 << 16];
  std::setvbuf(stderr, buffer, _IOFBF, sizeof buffer);
  spdlog::logger& l = sink();
  l.flush_on(spdlog::level::warn);
  // spdlog's periodic flush thread flushes the loggers of its registry.
  static std::shared_ptr<spdlog::logger> registered(&l, [](spdlog::logger*) {});
  if (!spdlog::get(l.name())) spdlog::register_logger(registered);
  spdlog::flush_every(every);
}

void flush() {
  sink().flush();
}

void debug(std::string_view event, const nlohmann::json& fields) {
  write(Level::Debug, event, fields);
}
void info(std::string_view event, const nlohmann::json& fields) {
  write(Level::Info, event, fields);
}
void warn(std::string_view event, const nlohmann::json& fields) {
  write(Level::Warn, event, fields);
}
void error(std::string_view event, const nlohmann::json& fields) {
  write(Level::Error, event, fields);
}

std::string redact(std::string_view secret) {
  if (secret.size() <= 4) return "…";
  return std::string(secret.substr(0, 3)) + "…" + std::string(secret.substr(secret.size() - 2));
}

}  // namespace sirena::log
