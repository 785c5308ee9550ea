#include "daemon/config/config.h"

#include <openssl/evp.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <set>
#include <sstream>

#include "daemon/core/number.h"

namespace sirena::config {
namespace {

// Keys that exist even when the file leaves them out, so that SIRENA_* can set them.
constexpr const char* kDefaults = R"(
log: {level: info}
http: {listen: "127.0.0.1:8080", max_body_bytes: 1048576, tls: {cert: "", key: ""},
       limits: {key_rate: 1000, key_burst: 2000, address_rate: 2000, address_burst: 4000, max_concurrent_streams: 100,
                max_resets_per_connection: 1000}}
redis: {url: managed, command_timeout_ms: 10000, max_pending: 100000, intake_max_pending: 10000, managed: {binary: redis-server, dir: var/redis, appendfsync: always}}
directory: {zones_dir: zones, import_max_bytes: 67108864, max_zone_points: 10000, max_zones_per_tenant: 1000}
dispatch: {consumer: "", batch_size: 1000, max_batches: 64, max_attempts: 8, max_unconfirmed: 10000}
)";

struct Ctx {
  std::string file;
  const EnvLookup& env;
  // Environment variables that replaced a value, by key path, for error messages.
  std::map<std::string, std::string> overridden;
};

std::string env_name(const std::string& path) {
  std::string n = "SIRENA_";
  for (char c : path) n.push_back(c == '.' || c == '-' ? '_' : static_cast<char>(std::toupper(c)));
  return n;
}

// Where the value at `path` came from: "file:line", or "environment VAR" for an override.
std::string place(const Ctx& ctx, const YAML::Node& node, const std::string& path) {
  if (auto it = ctx.overridden.find(path); it != ctx.overridden.end()) return "environment " + it->second;
  if (node.IsDefined() && node.Mark().line >= 0) return ctx.file + ":" + std::to_string(node.Mark().line + 1);
  return ctx.file;
}

Error config_error(const Ctx& ctx, const YAML::Node& node, const std::string& path, const std::string& msg) {
  std::string where = place(ctx, node, path);
  return make_error(ErrorKind::Config, "invalid_config", where + ": " + path + ": " + msg,
                    where + ": " + path);
}

void add_defaults(YAML::Node file, const YAML::Node& defaults) {
  for (auto it = defaults.begin(); it != defaults.end(); ++it) {
    auto key = it->first.as<std::string>();
    if (!file[key]) {
      file[key] = YAML::Clone(it->second);
    } else if (it->second.IsMap() && file[key].IsMap()) {
      add_defaults(file[key], it->second);
    }
  }
}

void apply_env(Ctx& ctx, YAML::Node node, const std::string& path) {
  if (!node.IsMap()) return;
  for (auto it = node.begin(); it != node.end(); ++it) {
    std::string key = it->first.as<std::string>();
    std::string child = path.empty() ? key : path + "." + key;
    if (it->second.IsMap()) {
      apply_env(ctx, it->second, child);
    } else if (it->second.IsScalar() || it->second.IsNull()) {
      std::string var = env_name(child);
      if (auto v = ctx.env(var)) {
        it->second = *v;
        ctx.overridden[child] = var;
      }
    }
  }
}

// Every key a gateway profile knows (apns.h, fcm.h, sms_gateway.h say what they mean).
constexpr const char* kGatewayKeys[] = {"profile",        "url",
                                        "rate",           "connections",
                                        "max_in_flight",  "tls_verify",
                                        "timeout_ms",     "connect_timeout_ms",
                                        "team_id",        "key_id",
                                        "key_file",       "critical_alerts",
                                        "project_id",     "service_account_file",
                                        "token_url",      "username",
                                        "password",       "from",
                                        "dlr_url",        "dlr_secret",
                                        "dlr_mask",       "method",
                                        "auth_header",    "body_template",
                                        "accept_status",  "retry_status",
                                        "rejected_field", "batch_size",
                                        "dlr_timeout_ms"};

// A gateway's keys depend on its profile, so the file names only some of them: any key a
// profile knows can also come from the environment (SIRENA_GATEWAYS_SMS_AUTH_HEADER).
void add_gateway_env(Ctx& ctx, YAML::Node gateways) {
  const auto& kKeys = kGatewayKeys;
  if (!gateways.IsMap()) return;
  for (auto it = gateways.begin(); it != gateways.end(); ++it) {
    if (!it->second.IsMap()) continue;
    std::string name = it->first.as<std::string>();
    for (const char* key : kKeys) {
      if (it->second[key]) continue;
      std::string path = "gateways." + name + "." + key, var = env_name(path);
      if (auto v = ctx.env(var)) {
        it->second[key] = *v;
        ctx.overridden[path] = var;
      }
    }
  }
}

Status check_keys(const Ctx& ctx, const YAML::Node& node, const std::string& path,
                  std::initializer_list<const char*> allowed) {
  if (!node.IsMap()) return config_error(ctx, node, path, "expected a mapping");
  for (auto it = node.begin(); it != node.end(); ++it) {
    auto key = it->first.as<std::string>();
    if (std::none_of(allowed.begin(), allowed.end(), [&](const char* a) { return key == a; })) {
      std::string known;
      for (const char* a : allowed) known += std::string(known.empty() ? "" : ", ") + a;
      return config_error(ctx, it->first, path.empty() ? key : path + "." + key,
                          "unknown key (known here: " + known + ")");
    }
  }
  return Ok{};
}

Result<std::string> get_string(const Ctx& ctx, const YAML::Node& node, const std::string& path) {
  if (!node.IsScalar()) return config_error(ctx, node, path, "expected a string");
  return node.Scalar();
}

Result<int64_t> get_int(const Ctx& ctx, const YAML::Node& node, const std::string& path, int64_t min,
                        int64_t max) {
  if (!node.IsScalar()) return config_error(ctx, node, path, "expected a whole number");
  const std::string& s = node.Scalar();
  auto v = parse_number<int64_t>(s);
  if (!v) return config_error(ctx, node, path, "expected a whole number, got \"" + s + "\"");
  if (*v < min || *v > max)
    return config_error(ctx, node, path,
                        "must be between " + std::to_string(min) + " and " + std::to_string(max));
  return *v;
}

Result<double> get_double(const Ctx& ctx, const YAML::Node& node, const std::string& path, double min,
                          double max) {
  if (!node.IsScalar()) return config_error(ctx, node, path, "expected a number");
  const std::string& s = node.Scalar();
  auto v = parse_number<double>(s);
  if (!v) return config_error(ctx, node, path, "expected a number, got \"" + s + "\"");
  if (*v < min || *v > max) {
    std::ostringstream range;
    range << "must be between " << min << " and " << max;
    return config_error(ctx, node, path, range.str());
  }
  return *v;
}

// `value` as one of `choices`, else an error that names them all:
// unknown <what> "<value>" (a, b, c).
template <typename E>
Result<E> get_choice(const Ctx& ctx, const YAML::Node& node, const std::string& path, const std::string& what,
                     const std::string& value, std::initializer_list<std::pair<const char*, E>> choices) {
  std::string names;
  for (const auto& [name, e] : choices) {
    if (value == name) return e;
    names += (names.empty() ? "" : ", ") + std::string(name);
  }
  return config_error(ctx, node, path, "unknown " + what + " \"" + value + "\" (" + names + ")");
}

Result<std::vector<std::string>> get_string_list(const Ctx& ctx, const YAML::Node& node,
                                                 const std::string& path) {
  std::vector<std::string> out;
  if (!node.IsDefined() || node.IsNull()) return out;
  if (!node.IsSequence()) return config_error(ctx, node, path, "expected a list of strings");
  for (size_t i = 0; i < node.size(); ++i) {
    if (!node[i].IsScalar()) return config_error(ctx, node[i], path, "expected a list of strings");
    out.push_back(node[i].Scalar());
  }
  return out;
}

#define TRY_ASSIGN(lhs, expr)                   \
  do {                                          \
    auto _r = (expr);                           \
    if (!_r) return std::move(_r).take_error(); \
    lhs = std::move(_r).value();                \
  } while (0)
#define TRY(expr)                               \
  do {                                          \
    auto _r = (expr);                           \
    if (!_r) return std::move(_r).take_error(); \
  } while (0)

bool is_lower_hex(const std::string& s, size_t len) {
  return s.size() == len &&
         std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(c) || (c >= 'a' && c <= 'f'); });
}

Result<DirectoryPolicy> decode_directory(const Ctx& ctx, const YAML::Node& n, const std::string& p) {
  DirectoryPolicy d;
  TRY(check_keys(ctx, n, p, {"default_region", "topics", "event_topics", "everyone_when", "geocodes"}));
  if (n["default_region"])
    TRY_ASSIGN(d.default_region, get_string(ctx, n["default_region"], p + ".default_region"));
  if (d.default_region.size() != 2 || !std::isupper(static_cast<unsigned char>(d.default_region[0])) ||
      !std::isupper(static_cast<unsigned char>(d.default_region[1])))
    return config_error(ctx, n["default_region"], p + ".default_region",
                        "expected an ISO 3166 region such as IT");
  TRY_ASSIGN(d.topics, get_string_list(ctx, n["topics"], p + ".topics"));
  if (const auto& et = n["event_topics"]; et) {
    if (!et.IsMap())
      return config_error(ctx, et, p + ".event_topics", "expected a mapping of event text to topics");
    for (auto it = et.begin(); it != et.end(); ++it) {
      std::vector<std::string> topics;
      TRY_ASSIGN(topics,
                 get_string_list(ctx, it->second, p + ".event_topics." + it->first.as<std::string>()));
      d.event_topics.emplace_back(it->first.as<std::string>(), std::move(topics));
    }
  }
  if (const auto& ew = n["everyone_when"]; ew) {
    if (!ew.IsSequence())
      return config_error(ctx, ew, p + ".everyone_when", "expected a list of {severity, urgency}");
    d.everyone_when.clear();
    for (size_t i = 0; i < ew.size(); ++i) {
      std::string ip = p + ".everyone_when[" + std::to_string(i) + "]";
      TRY(check_keys(ctx, ew[i], ip, {"severity", "urgency"}));
      std::string sev, urg;
      TRY_ASSIGN(sev, get_string(ctx, ew[i]["severity"], ip + ".severity"));
      TRY_ASSIGN(urg, get_string(ctx, ew[i]["urgency"], ip + ".urgency"));
      d.everyone_when.emplace_back(sev, urg);
    }
  }
  if (const auto& gc = n["geocodes"]; gc) {
    if (!gc.IsMap()) return config_error(ctx, gc, p + ".geocodes", "expected valueName: {value: [zones]}");
    for (auto it = gc.begin(); it != gc.end(); ++it) {
      std::string vn = it->first.as<std::string>();
      if (!it->second.IsMap())
        return config_error(ctx, it->second, p + ".geocodes." + vn, "expected value: [zones]");
      for (auto v = it->second.begin(); v != it->second.end(); ++v) {
        std::vector<std::string> zones;
        TRY_ASSIGN(zones,
                   get_string_list(ctx, v->second, p + ".geocodes." + vn + "." + v->first.as<std::string>()));
        d.geocodes[vn][v->first.as<std::string>()] = std::move(zones);
      }
    }
  }
  return d;
}

Result<Tenant> decode_tenant(const Ctx& ctx, const std::string& id, const YAML::Node& n) {
  const std::string p = "tenants." + id;
  Tenant t;
  t.id = id;
  TRY(check_keys(ctx, n, p, {"name", "senders", "keys", "approval", "grants", "directory", "sms"}));
  if (id.empty() || !std::all_of(id.begin(), id.end(), [](char c) {
        return std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) ||
               c == '-';
      }))
    return config_error(ctx, n, p, "tenant ids use a-z, 0-9 and '-'");
  if (n["name"]) TRY_ASSIGN(t.name, get_string(ctx, n["name"], p + ".name"));
  TRY_ASSIGN(t.senders, get_string_list(ctx, n["senders"], p + ".senders"));
  if (t.senders.empty()) return config_error(ctx, n, p + ".senders", "list at least one allowed CAP sender");
  if (n["keys"]) {
    const auto& keys = n["keys"];
    if (!keys.IsMap())
      return config_error(ctx, keys, p + ".keys", "expected a mapping of key id to {role, sha256}");
    for (auto it = keys.begin(); it != keys.end(); ++it) {
      std::string kp = p + ".keys." + it->first.as<std::string>();
      TRY(check_keys(ctx, it->second, kp, {"role", "sha256"}));
      ApiKey k;
      k.id = it->first.as<std::string>();
      std::string role;
      TRY_ASSIGN(role, get_string(ctx, it->second["role"], kp + ".role"));
      TRY_ASSIGN(k.role, get_choice<Role>(ctx, it->second["role"], kp + ".role", "role", role,
                                          {{"operator", Role::Operator},
                                           {"approver", Role::Approver},
                                           {"admin", Role::Admin},
                                           {"citizen-app", Role::CitizenApp}}));
      TRY_ASSIGN(k.sha256, get_string(ctx, it->second["sha256"], kp + ".sha256"));
      if (!is_lower_hex(k.sha256, 64))
        return config_error(ctx, it->second["sha256"], kp + ".sha256",
                            "expected 64 lower-case hex digits (sirenad --hash-key KEY prints them)");
      t.keys.push_back(std::move(k));
    }
  }
  if (n["approval"]) {
    const auto& a = n["approval"];
    TRY(check_keys(ctx, a, p + ".approval", {"statuses", "min_recipients"}));
    if (a["statuses"]) {
      TRY_ASSIGN(t.approval.statuses, get_string_list(ctx, a["statuses"], p + ".approval.statuses"));
      for (const auto& s : t.approval.statuses) {
        // System and Draft messages never reach citizens, so they have nothing to approve.
        static const std::set<std::string> kStatuses{"Actual", "Exercise", "Test"};
        if (!kStatuses.count(s))
          return config_error(ctx, a["statuses"], p + ".approval.statuses",
                              "\"" + s + "\" is not a status sent to citizens (Actual, Exercise, Test)");
      }
      if (std::find(t.approval.statuses.begin(), t.approval.statuses.end(), "Actual") ==
          t.approval.statuses.end())
        return config_error(ctx, a["statuses"], p + ".approval.statuses",
                            "Actual alerts always fall under the approval policy: list Actual (raise "
                            "min_recipients to let smaller alerts go without a second person)");
    }
    if (a["min_recipients"])
      TRY_ASSIGN(t.approval.min_recipients,
                 get_int(ctx, a["min_recipients"], p + ".approval.min_recipients", 0, INT64_MAX));
  }
  if (n["grants"]) {
    const auto& g = n["grants"];
    if (!g.IsSequence()) return config_error(ctx, g, p + ".grants", "expected a list of {to, zones}");
    for (size_t i = 0; i < g.size(); ++i) {
      std::string gp = p + ".grants[" + std::to_string(i) + "]";
      TRY(check_keys(ctx, g[i], gp, {"to", "zones"}));
      Grant grant;
      TRY_ASSIGN(grant.to_tenant, get_string(ctx, g[i]["to"], gp + ".to"));
      TRY_ASSIGN(grant.zones, get_string_list(ctx, g[i]["zones"], gp + ".zones"));
      t.grants.push_back(std::move(grant));
    }
  }
  if (n["directory"]) TRY_ASSIGN(t.directory, decode_directory(ctx, n["directory"], p + ".directory"));
  if (n["sms"]) {
    const auto& s = n["sms"];
    TRY(check_keys(ctx, s, p + ".sms", {"max_segments", "text_parameter", "channels", "fallback_after_s"}));
    if (s["max_segments"])
      TRY_ASSIGN(t.sms.max_segments, get_int(ctx, s["max_segments"], p + ".sms.max_segments", 1, 10));
    if (s["text_parameter"])
      TRY_ASSIGN(t.sms.text_parameter, get_string(ctx, s["text_parameter"], p + ".sms.text_parameter"));
    if (s["fallback_after_s"])
      TRY_ASSIGN(t.sms.fallback_after_s,
                 get_int(ctx, s["fallback_after_s"], p + ".sms.fallback_after_s", 0, 86400));
    if (const auto& ch = s["channels"]; ch) {
      if (!ch.IsMap())
        return config_error(ctx, ch, p + ".sms.channels",
                            "expected CAP severity (or default): all | push_first");
      static const std::set<std::string> kSeverities{"Extreme", "Severe",  "Moderate",
                                                     "Minor",   "Unknown", "default"};
      for (auto it = ch.begin(); it != ch.end(); ++it) {
        std::string sev = it->first.as<std::string>(), cp = p + ".sms.channels." + sev;
        if (!kSeverities.count(sev))
          return config_error(ctx, it->first, cp,
                              "unknown CAP severity (Extreme, Severe, Moderate, Minor, Unknown, default)");
        std::string v;
        TRY_ASSIGN(v, get_string(ctx, it->second, cp));
        if (v != "all" && v != "push_first")
          return config_error(ctx, it->second, cp, "expected all or push_first");
        t.sms.channels[sev] = v;
      }
    }
  }
  return t;
}

Result<bool> get_bool(const Ctx& ctx, const YAML::Node& node, const std::string& path) {
  std::string v;
  TRY_ASSIGN(v, get_string(ctx, node, path));
  if (v != "true" && v != "false")
    return config_error(ctx, node, path, "expected true or false, got \"" + v + "\"");
  return v == "true";
}

// `resolve` makes a relative *_file path relative to the config file's folder.
Result<GatewayConfig> decode_gateway(const Ctx& ctx, const std::string& name, const YAML::Node& n,
                                     const std::function<void(std::string&)>& resolve) {
  const std::string p = "gateways." + name;
  if (!n.IsMap()) return config_error(ctx, n, p, "expected a mapping of settings");
  GatewayConfig g;
  g.name = name;
  for (auto kv = n.begin(); kv != n.end(); ++kv) {
    std::string key = kv->first.as<std::string>(), kp = p + "." + key;
    if (std::none_of(std::begin(kGatewayKeys), std::end(kGatewayKeys),
                     [&](const char* k) { return key == k; })) {
      std::string known;
      for (const char* k : kGatewayKeys) known += std::string(known.empty() ? "" : ", ") + k;
      return config_error(ctx, kv->first, kp, "unknown key (known here: " + known + ")");
    }
    TRY_ASSIGN(g.keys[key], get_string(ctx, kv->second, kp));
    if (key.ends_with("_file")) resolve(g.keys[key]);
    g.where[key] = place(ctx, kv->second, kp);
  }
  std::string profile = name;
  if (n["profile"]) TRY_ASSIGN(profile, get_string(ctx, n["profile"], p + ".profile"));
  TRY_ASSIGN(g.profile, get_choice<GatewayProfile>(ctx, n["profile"] ? n["profile"] : n, p + ".profile",
                                                   "profile", profile,
                                                   {{"apns", GatewayProfile::Apns},
                                                    {"fcm", GatewayProfile::Fcm},
                                                    {"kannel", GatewayProfile::Kannel},
                                                    {"generic_json", GatewayProfile::GenericJson}}));
  if (!n["url"]) return config_error(ctx, n, p + ".url", "missing");
  g.url = g.keys["url"];
  if (g.profile == GatewayProfile::Fcm) g.rate = 9500;  // FCM's default quota: 600k messages/minute
  if (n["rate"]) TRY_ASSIGN(g.rate, get_double(ctx, n["rate"], p + ".rate", 0, 1e9));
  if (n["connections"])
    TRY_ASSIGN(g.connections, get_int(ctx, n["connections"], p + ".connections", 1, 10000));
  if (n["max_in_flight"])
    TRY_ASSIGN(g.max_in_flight, get_int(ctx, n["max_in_flight"], p + ".max_in_flight", 1, 1'000'000));
  if (n["tls_verify"]) TRY_ASSIGN(g.tls_verify, get_bool(ctx, n["tls_verify"], p + ".tls_verify"));
  if (n["critical_alerts"])
    TRY_ASSIGN(g.critical_alerts, get_bool(ctx, n["critical_alerts"], p + ".critical_alerts"));
  auto text = [&g](const char* key) {
    auto it = g.keys.find(key);
    return it == g.keys.end() ? std::string() : it->second;
  };
  g.team_id = text("team_id");
  g.key_id = text("key_id");
  g.key_file = text("key_file");
  g.project_id = text("project_id");
  g.service_account_file = text("service_account_file");
  g.token_url = text("token_url");
  return g;
}

Result<Config> decode(Ctx& ctx, YAML::Node root) {
  Config c;
  c.path = ctx.file;
  if (root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap()) return config_error(ctx, root, "(top level)", "expected a mapping");
  add_defaults(root, YAML::Load(kDefaults));
  add_gateway_env(ctx, root["gateways"]);
  apply_env(ctx, root, "");
  TRY(check_keys(ctx, root, "", {"log", "http", "redis", "directory", "dispatch", "tenants", "gateways"}));

  TRY(check_keys(ctx, root["log"], "log", {"level"}));
  TRY_ASSIGN(c.log_level, get_string(ctx, root["log"]["level"], "log.level"));
  if (c.log_level != "debug" && c.log_level != "info" && c.log_level != "warn" && c.log_level != "error")
    return config_error(ctx, root["log"]["level"], "log.level", "expected debug, info, warn or error");

  const auto http = root["http"];
  TRY(check_keys(ctx, http, "http", {"listen", "max_body_bytes", "tls", "limits"}));
  TRY_ASSIGN(c.http.listen, get_string(ctx, http["listen"], "http.listen"));
  if (c.http.listen.rfind(':') == std::string::npos)
    return config_error(ctx, http["listen"], "http.listen", "expected HOST:PORT, e.g. 127.0.0.1:8080");
  TRY_ASSIGN(c.http.max_body_bytes,
             get_int(ctx, http["max_body_bytes"], "http.max_body_bytes", 1024, int64_t{1} << 30));
  TRY(check_keys(ctx, http["tls"], "http.tls", {"cert", "key"}));
  TRY_ASSIGN(c.http.tls_cert, get_string(ctx, http["tls"]["cert"], "http.tls.cert"));
  TRY_ASSIGN(c.http.tls_key, get_string(ctx, http["tls"]["key"], "http.tls.key"));
  if (c.http.tls_cert.empty() != c.http.tls_key.empty())
    return config_error(ctx, http["tls"], "http.tls", "set both cert and key, or neither");
  const auto limits = http["limits"];
  TRY(check_keys(ctx, limits, "http.limits",
                 {"key_rate", "key_burst", "address_rate", "address_burst", "max_concurrent_streams",
                  "max_resets_per_connection"}));
  for (auto [name, slot] :
       {std::pair{"key_rate", &c.http.key_rate}, std::pair{"key_burst", &c.http.key_burst},
        std::pair{"address_rate", &c.http.address_rate}, std::pair{"address_burst", &c.http.address_burst}}) {
    int64_t v = 0;
    TRY_ASSIGN(v, get_int(ctx, limits[name], std::string("http.limits.") + name, 0, 1'000'000'000));
    *slot = static_cast<double>(v);
  }
  TRY_ASSIGN(c.http.max_concurrent_streams,
             get_int(ctx, limits["max_concurrent_streams"], "http.limits.max_concurrent_streams", 1, 256));
  TRY_ASSIGN(c.http.max_resets_per_connection,
             get_int(ctx, limits["max_resets_per_connection"], "http.limits.max_resets_per_connection", 1,
                     1'000'000'000));

  const auto redis = root["redis"];
  TRY(check_keys(ctx, redis, "redis",
                 {"url", "command_timeout_ms", "max_pending", "intake_max_pending", "managed"}));
  TRY_ASSIGN(c.redis.max_pending, get_int(ctx, redis["max_pending"], "redis.max_pending", 1000, 100'000'000));
  TRY_ASSIGN(c.redis.intake_max_pending,
             get_int(ctx, redis["intake_max_pending"], "redis.intake_max_pending", 100, c.redis.max_pending));
  TRY_ASSIGN(c.redis.command_timeout_ms,
             get_int(ctx, redis["command_timeout_ms"], "redis.command_timeout_ms", 100, 600000));
  TRY_ASSIGN(c.redis.url, get_string(ctx, redis["url"], "redis.url"));
  if (c.redis.url != "managed" && c.redis.url.rfind("redis://", 0) != 0 &&
      c.redis.url.rfind("unix://", 0) != 0)
    return config_error(ctx, redis["url"], "redis.url",
                        "expected \"managed\", redis://HOST:PORT[/DB] or unix:///PATH");
  TRY(check_keys(ctx, redis["managed"], "redis.managed", {"binary", "dir", "appendfsync"}));
  TRY_ASSIGN(c.redis.managed_binary, get_string(ctx, redis["managed"]["binary"], "redis.managed.binary"));
  TRY_ASSIGN(c.redis.managed_dir, get_string(ctx, redis["managed"]["dir"], "redis.managed.dir"));
  TRY_ASSIGN(c.redis.managed_appendfsync,
             get_string(ctx, redis["managed"]["appendfsync"], "redis.managed.appendfsync"));
  if (c.redis.managed_appendfsync != "always" && c.redis.managed_appendfsync != "everysec")
    return config_error(ctx, redis["managed"]["appendfsync"], "redis.managed.appendfsync",
                        "expected always or everysec");

  const auto dir = root["directory"];
  TRY(check_keys(ctx, dir, "directory",
                 {"zones_dir", "import_max_bytes", "max_zone_points", "max_zones_per_tenant"}));
  TRY_ASSIGN(c.directory.zones_dir, get_string(ctx, dir["zones_dir"], "directory.zones_dir"));
  TRY_ASSIGN(c.directory.import_max_bytes,
             get_int(ctx, dir["import_max_bytes"], "directory.import_max_bytes", 1024, int64_t{1} << 31));
  TRY_ASSIGN(c.directory.max_zone_points,
             get_int(ctx, dir["max_zone_points"], "directory.max_zone_points", 4, 10'000'000));
  TRY_ASSIGN(c.directory.max_zones_per_tenant,
             get_int(ctx, dir["max_zones_per_tenant"], "directory.max_zones_per_tenant", 1, 60'000));

  const auto disp = root["dispatch"];
  TRY(check_keys(ctx, disp, "dispatch",
                 {"consumer", "batch_size", "max_batches", "max_attempts", "max_unconfirmed"}));
  TRY_ASSIGN(c.dispatch.max_unconfirmed,
             get_int(ctx, disp["max_unconfirmed"], "dispatch.max_unconfirmed", 1, 1'000'000));
  TRY_ASSIGN(c.dispatch.consumer, get_string(ctx, disp["consumer"], "dispatch.consumer"));
  TRY_ASSIGN(c.dispatch.batch_size, get_int(ctx, disp["batch_size"], "dispatch.batch_size", 1, 100000));
  TRY_ASSIGN(c.dispatch.max_batches, get_int(ctx, disp["max_batches"], "dispatch.max_batches", 1, 10000));
  TRY_ASSIGN(c.dispatch.max_attempts, get_int(ctx, disp["max_attempts"], "dispatch.max_attempts", 1, 100));

  const auto tenants = root["tenants"];
  if (!tenants || !tenants.IsMap() || tenants.size() == 0)
    return config_error(ctx, tenants ? tenants : root, "tenants", "define at least one tenant");
  std::set<std::string> key_hashes;
  for (auto it = tenants.begin(); it != tenants.end(); ++it) {
    std::string id = it->first.as<std::string>();
    Tenant t;
    TRY_ASSIGN(t, decode_tenant(ctx, id, it->second));
    for (const auto& k : t.keys) {
      if (!key_hashes.insert(k.sha256).second)
        return config_error(ctx, it->second["keys"], "tenants." + id + ".keys." + k.id,
                            "the same key is configured twice; every key must be unique");
    }
    c.tenants.emplace(id, std::move(t));
  }
  for (const auto& [id, t] : c.tenants) {
    for (const auto& g : t.grants) {
      if (!c.tenants.count(g.to_tenant))
        return config_error(ctx, tenants[id]["grants"], "tenants." + id + ".grants",
                            "grant to unknown tenant \"" + g.to_tenant + "\"");
    }
  }

  // Relative paths in the file are relative to the file's folder, so that a config works
  // from any working directory.
  auto resolve = [&](std::string& path) {
    if (path.empty() || path[0] == '/' || ctx.file.find('/') == std::string::npos) return;
    path = ctx.file.substr(0, ctx.file.rfind('/') + 1) + path;
  };
  resolve(c.directory.zones_dir);

  if (const auto gw = root["gateways"]; gw && !gw.IsNull()) {
    if (!gw.IsMap())
      return config_error(ctx, gw, "gateways", "expected a mapping of gateway name to settings");
    for (auto it = gw.begin(); it != gw.end(); ++it) {
      std::string name = it->first.as<std::string>();
      TRY_ASSIGN(c.gateways[name], decode_gateway(ctx, name, it->second, resolve));
    }
  }
  return c;
}

#undef TRY
#undef TRY_ASSIGN

}  // namespace

const char* to_string(GatewayProfile p) {
  switch (p) {
    case GatewayProfile::Apns:
      return "apns";
    case GatewayProfile::Fcm:
      return "fcm";
    case GatewayProfile::Kannel:
      return "kannel";
    case GatewayProfile::GenericJson:
      return "generic_json";
  }
  return "apns";
}

Error GatewayConfig::locate(Error e) const {
  // The profiles name a key as "gateways.<name>.<key>" at the start of where or message.
  std::string prefix = "gateways." + name + ".";
  const std::string& text = e.where.rfind(prefix, 0) == 0 ? e.where : e.message;
  if (text.rfind(prefix, 0) != 0) return e;
  std::string key = text.substr(prefix.size());
  key = key.substr(0, key.find_first_of(": "));
  auto it = where.find(key);
  if (it == where.end()) return e;
  e.message = it->second + ": " + e.message;
  e.where = it->second + ": " + prefix + key;
  return e;
}

const char* to_string(Role r) {
  switch (r) {
    case Role::Operator:
      return "operator";
    case Role::Approver:
      return "approver";
    case Role::Admin:
      return "admin";
    case Role::CitizenApp:
      return "citizen-app";
  }
  return "operator";
}

std::optional<std::string> process_env(const std::string& name) {
  const char* v = std::getenv(name.c_str());
  if (!v) return std::nullopt;
  return std::string(v);
}

Result<Config> load_from_string(const std::string& text, const std::string& name, EnvLookup env) {
  Ctx ctx{name, env, {}};
  YAML::Node root;
  try {
    root = YAML::Load(text);
    return decode(ctx, root);
  } catch (const YAML::Exception& e) {
    std::string where = name + ":" + std::to_string(e.mark.line + 1);
    return make_error(ErrorKind::Config, "invalid_config", where + ": " + e.msg, where);
  }
}

Result<Config> load(const std::string& path, EnvLookup env) {
  std::ifstream in(path);
  if (!in) return make_error(ErrorKind::Config, "invalid_config", path + ": cannot open the file", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return load_from_string(ss.str(), path, std::move(env));
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static const char* hex = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned i = 0; i < len; ++i) {
    out.push_back(hex[md[i] >> 4]);
    out.push_back(hex[md[i] & 15]);
  }
  return out;
}

}  // namespace sirena::config
