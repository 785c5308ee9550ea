// Daemon configuration: a YAML file (yaml-cpp) plus SIRENA_* environment overrides.
//
// Every scalar key can be overridden by SIRENA_ + its path in upper case with '.'
// and '-' as '_': http.listen -> SIRENA_HTTP_LISTEN. Errors name the file, the line
// and the key ("config/demo.yaml:12: http.listen: ..."); an override names its variable.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "daemon/core/result.h"

namespace sirena::config {

enum class Role { Operator, Approver, Admin, CitizenApp };
const char* to_string(Role r);

struct ApiKey {
  std::string id;      // shown in logs and audit; never the key itself
  Role role = Role::Operator;
  std::string sha256;  // lower-case hex SHA-256 of the key
};

struct ApprovalPolicy {
  // Alerts whose CAP status is listed need a second person (an approver key other
  // than the submitter's) when they reach at least `min_recipients` citizens. Fails
  // closed: without an `approval` block every Actual alert needs one, and a list
  // without Actual is refused.
  std::vector<std::string> statuses{"Actual"};
  int64_t min_recipients = 0;
};

struct Grant {  // this tenant lets `to_tenant` alert its recipients inside `zones`
  std::string to_tenant;
  std::vector<std::string> zones;
};

// How a tenant's citizens are matched to alerts (directory issue).
struct DirectoryPolicy {
  std::string default_region = "IT";  // for phone numbers written without +CC
  std::vector<std::string> topics;    // the tenant's own topics; CAP categories are implicit
  // CAP <event> text (case-insensitive substring) -> topics it concerns.
  std::vector<std::pair<std::string, std::vector<std::string>>> event_topics;
  // (severity, urgency) pairs that reach everyone in the area whatever their topics.
  std::vector<std::pair<std::string, std::string>> everyone_when{{"Extreme", "Immediate"}};
  // CAP geocode valueName -> value -> zone names, e.g. ISTAT 036044 -> [soliera-centro, ...].
  std::map<std::string, std::map<std::string, std::vector<std::string>>> geocodes;
};

struct SmsSettings {
  int64_t max_segments = 3;
  std::string text_parameter;  // CAP <parameter> valueName carrying a prepared SMS text
  // CAP severity (or "default") -> "all" (push and SMS at once) or "push_first" (SMS only
  // when no push is accepted within fallback_after_s, or the recipient has no token).
  std::map<std::string, std::string> channels{{"Extreme", "all"}, {"default", "push_first"}};
  int64_t fallback_after_s = 30;
};

struct Tenant {
  std::string id;
  std::string name;
  std::vector<std::string> senders;  // allowed CAP <sender> values or patterns ("*@example.org")
  std::vector<ApiKey> keys;
  ApprovalPolicy approval;
  std::vector<Grant> grants;
  DirectoryPolicy directory;
  SmsSettings sms;
};

struct DirectoryConfig {
  std::string zones_dir = "zones";  // <tenant>.geojson FeatureCollections; relative to the config file
  int64_t import_max_bytes = 64 << 20;     // one POST /v1/recipients/import body
  int64_t max_zone_points = 10000;
  // PUT /v1/zones refuses a new zone beyond it (file zones count). At most 60,000:
  // the directory numbers a tenant's zones with 16 bits.
  int64_t max_zones_per_tenant = 1000;
};

struct RedisConfig {
  std::string url = "managed";  // "managed", redis://host:port/db or unix:///path
  std::string managed_binary = "redis-server";
  std::string managed_dir = "var/redis";
  int64_t command_timeout_ms = 10000;  // a command unanswered this long drops the connection
  int64_t max_pending = 100000;  // commands waiting for replies, per connection (Redis::set_max_pending)
  int64_t intake_max_pending = 10000;  // alert intake answers 503 + Retry-After past this many
  std::string managed_appendfsync = "always";
};

struct HttpConfig {
  std::string listen = "127.0.0.1:8080";
  int64_t max_body_bytes = 1 << 20;  // alert bodies (CAP or JSON)
  std::string tls_cert;              // TLS (ALPN h2, http/1.1) when both are set
  std::string tls_key;
  // http.limits: requests a second (and burst) per API key and per client address on
  // keyed routes (0 = no limit); HTTP/2 requests run at once per connection; requests a
  // connection may abandon (RST_STREAM before the answer) per 10 s before it is closed.
  double key_rate = 1000, key_burst = 2000;
  double address_rate = 2000, address_burst = 4000;
  int64_t max_concurrent_streams = 100;
  int64_t max_resets_per_connection = 1000;
};

struct DispatchSettings {
  std::string consumer;       // stable name of this daemon in the work group; default: hostname + port
  int64_t batch_size = 1000;  // recipients per plan batch
  int64_t max_batches = 64;   // batches in work at once: the in-flight window
  int64_t max_attempts = 8;
  int64_t max_unconfirmed = 10000;  // accepted messages not yet durable: with gateways' max_in_flight, the crash window
};

enum class GatewayProfile { Apns, Fcm, Kannel, GenericJson };
const char* to_string(GatewayProfile p);

// One `gateways.<name>` block, decoded and checked like the rest of the file: a bad value
// is an error naming the file, the line and the key. Keys any profile knows are accepted in
// every block (the environment may switch an SMS gateway from kannel to generic_json and
// leave the other profile's keys in the file); others are refused.
struct GatewayConfig {
  std::string name;
  GatewayProfile profile = GatewayProfile::Apns;  // `profile`; default: the gateway's name
  std::string url;
  double rate = 0;               // messages/s, 0 = no limit; fcm's default 9500 is its project quota
  int64_t connections = 2;       // HTTP/2 connections (APNs, FCM)
  int64_t max_in_flight = 2000;  // requests on the wire (APNs, FCM)
  bool tls_verify = true;
  // apns
  std::string team_id, key_id, key_file;  // key_file relative to the config file's folder
  bool critical_alerts = false;
  // fcm
  std::string project_id, service_account_file, token_url;
  // Every key as written, with the environment applied and *_file paths resolved. The SMS
  // profiles read theirs from here (sms::SmsConfig::from_keys), which checks them.
  std::map<std::string, std::string> keys;
  // "file:line" (or "environment VAR") of each key, for errors found after decoding.
  std::map<std::string, std::string> where;

  bool is_sms() const { return profile == GatewayProfile::Kannel || profile == GatewayProfile::GenericJson; }
  // An error about one of this gateway's keys ("gateways.<name>.<key>: ...", from a profile's
  // own checks) with the place of the key put in front, as decode errors have it.
  Error locate(Error e) const;
};

struct Config {
  std::string path;  // the file it was read from
  std::string log_level = "info";
  HttpConfig http;
  RedisConfig redis;
  DirectoryConfig directory;
  DispatchSettings dispatch;
  std::map<std::string, Tenant> tenants;
  std::map<std::string, GatewayConfig> gateways;
};

// Reads and validates the file. `env` is consulted for overrides (pass environ-backed
// lookups in production, a map in tests). Returns a status-2-worthy Error with `where`
// set to "file:line: key" on any mistake.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
std::optional<std::string> process_env(const std::string& name);
Result<Config> load(const std::string& path, EnvLookup env = process_env);
Result<Config> load_from_string(const std::string& text, const std::string& name_for_errors,
                                EnvLookup env = process_env);

// Lower-case hex SHA-256 (OpenSSL), used for API keys.
std::string sha256_hex(std::string_view data);

}  // namespace sirena::config
