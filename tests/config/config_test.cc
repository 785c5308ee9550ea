#include "daemon/config/config.h"

#include <gtest/gtest.h>

namespace sirena::config {
namespace {

const char* kMinimal = R"(tenants:
  soliera:
    senders: [a@b.it]
    keys:
      op: {role: operator, sha256: 577318d5512cc66246abbf916e72fceb18dd8e982fed5d309c8fc8a0340237f3}
)";

EnvLookup env_of(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(Config, DefaultsFillWhatTheFileLeavesOut) {
  auto c = load_from_string(kMinimal, "t.yaml", env_of({}));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->http.listen, "127.0.0.1:8080");
  EXPECT_EQ(c->http.max_body_bytes, 1 << 20);
  EXPECT_EQ(c->redis.url, "managed");
  EXPECT_EQ(c->redis.managed_appendfsync, "always");
  EXPECT_EQ(c->tenants.at("soliera").keys.at(0).role, Role::Operator);
}

TEST(Config, EnvironmentOverridesAnyScalarKey) {
  auto c = load_from_string(kMinimal, "t.yaml",
                            env_of({{"SIRENA_HTTP_LISTEN", "127.0.0.1:18080"},
                                    {"SIRENA_REDIS_URL", "redis://127.0.0.1:16379/0"},
                                    {"SIRENA_HTTP_MAX_BODY_BYTES", "2048"}}));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->http.listen, "127.0.0.1:18080");
  EXPECT_EQ(c->redis.url, "redis://127.0.0.1:16379/0");
  EXPECT_EQ(c->http.max_body_bytes, 2048);
}

TEST(Config, HttpLimitsHaveDefaultsOverridesAndBounds) {
  auto c = load_from_string(kMinimal, "t.yaml", env_of({}));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->http.key_rate, 1000);
  EXPECT_EQ(c->http.address_burst, 4000);
  EXPECT_EQ(c->http.max_concurrent_streams, 100);
  EXPECT_EQ(c->http.max_resets_per_connection, 1000);
  c = load_from_string(std::string(kMinimal) + "http: {limits: {key_rate: 0, max_concurrent_streams: 16}}\n",
                       "t.yaml", env_of({{"SIRENA_HTTP_LIMITS_ADDRESS_RATE", "50"}}));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->http.key_rate, 0) << "0: no limit";
  EXPECT_EQ(c->http.key_burst, 2000) << "the default stays";
  EXPECT_EQ(c->http.address_rate, 50);
  EXPECT_EQ(c->http.max_concurrent_streams, 16);
  for (const char* bad :
       {"http: {limits: {key_rate: -1}}\n", "http: {limits: {max_concurrent_streams: 300}}\n",
        "http: {limits: {max_resets_per_connection: 0}}\n", "http: {limits: {per_key: 5}}\n"}) {
    auto e = load_from_string(std::string(kMinimal) + bad, "t.yaml", env_of({}));
    ASSERT_FALSE(e) << bad;
    EXPECT_NE(e.error().message.find("http.limits"), std::string::npos) << e.error().message;
  }
}

TEST(Config, ErrorsNameFileLineAndKey) {
  std::string text = std::string(kMinimal) + "http:\n  max_body_bytes: lots\n";
  auto c = load_from_string(text, "conf/x.yaml", env_of({}));
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message.rfind("conf/x.yaml:7: http.max_body_bytes:", 0), 0u) << c.error().message;
}

// Issue 14 finding 12: a cap on zones per tenant, decoded like every other key.
TEST(Config, MaxZonesPerTenant) {
  auto c = load_from_string(kMinimal, "t.yaml", env_of({}));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->directory.max_zones_per_tenant, 1000);
  c = load_from_string(kMinimal, "t.yaml", env_of({{"SIRENA_DIRECTORY_MAX_ZONES_PER_TENANT", "25"}}));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->directory.max_zones_per_tenant, 25);
  for (const char* bad : {"0", "70000", "many"}) {
    c = load_from_string(std::string(kMinimal) + "directory:\n  max_zones_per_tenant: " + bad + "\n",
                         "conf/x.yaml", env_of({}));
    ASSERT_FALSE(c) << bad;
    EXPECT_EQ(c.error().message.rfind("conf/x.yaml:7: directory.max_zones_per_tenant:", 0), 0u)
        << c.error().message;
  }
}

TEST(Config, BadOverrideNamesTheVariable) {
  auto c = load_from_string(kMinimal, "t.yaml", env_of({{"SIRENA_HTTP_MAX_BODY_BYTES", "-1"}}));
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("SIRENA_HTTP_MAX_BODY_BYTES"), std::string::npos) << c.error().message;
}

TEST(Config, RejectsUnknownKeysWrongRolesAndPlainKeys) {
  auto typo = load_from_string(std::string(kMinimal) + "htpp: {}\n", "t.yaml", env_of({}));
  ASSERT_FALSE(typo);
  EXPECT_NE(typo.error().message.find("t.yaml:6: htpp: unknown key"), std::string::npos)
      << typo.error().message;

  auto role = load_from_string(R"(tenants:
  a:
    senders: [x]
    keys: {k: {role: boss, sha256: 577318d5512cc66246abbf916e72fceb18dd8e982fed5d309c8fc8a0340237f3}}
)",
                               "t.yaml", env_of({}));
  ASSERT_FALSE(role);
  EXPECT_NE(role.error().message.find("tenants.a.keys.k.role"), std::string::npos);

  auto plain = load_from_string("tenants: {a: {senders: [x], keys: {k: {role: admin, sha256: demo-key}}}}\n",
                                "t.yaml", env_of({}));
  ASSERT_FALSE(plain);
  EXPECT_NE(plain.error().message.find("64 lower-case hex"), std::string::npos);
}

TEST(Config, ApprovalFailsClosed) {
  // Without an approval block every Actual alert needs a second person.
  auto c = load_from_string(kMinimal, "t.yaml", env_of({}));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->tenants.at("soliera").approval.statuses, std::vector<std::string>{"Actual"});
  EXPECT_EQ(c->tenants.at("soliera").approval.min_recipients, 0);
  // A list without Actual, or with a status never sent to citizens, is refused with its line.
  auto no_actual =
      load_from_string(std::string(kMinimal) + "    approval: {statuses: [Test]}\n", "t.yaml", env_of({}));
  ASSERT_FALSE(no_actual);
  EXPECT_NE(
      no_actual.error().message.find("t.yaml:6: tenants.soliera.approval.statuses: Actual alerts always"),
      std::string::npos)
      << no_actual.error().message;
  auto system = load_from_string(std::string(kMinimal) + "    approval: {statuses: [Actual, System]}\n",
                                 "t.yaml", env_of({}));
  ASSERT_FALSE(system);
  EXPECT_NE(system.error().message.find("not a status sent to citizens"), std::string::npos)
      << system.error().message;
  // A threshold alone keeps Actual.
  auto threshold =
      load_from_string(std::string(kMinimal) + "    approval: {min_recipients: 50}\n", "t.yaml", env_of({}));
  ASSERT_TRUE(threshold) << threshold.error().message;
  EXPECT_EQ(threshold->tenants.at("soliera").approval.statuses, std::vector<std::string>{"Actual"});
  EXPECT_EQ(threshold->tenants.at("soliera").approval.min_recipients, 50);
}

TEST(Config, GrantsMustNameKnownTenants) {
  auto c = load_from_string(std::string(kMinimal) + "    grants: [{to: nowhere, zones: [z]}]\n", "t.yaml",
                            env_of({}));
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("unknown tenant \"nowhere\""), std::string::npos) << c.error().message;
}

TEST(Config, SmsChannelPolicyPerSeverity) {
  auto ok = load_from_string(
      std::string(kMinimal) + "    sms:\n      channels: {Severe: all}\n      fallback_after_s: 5\n",
      "t.yaml", env_of({}));
  ASSERT_TRUE(ok) << ok.error().message;
  const auto& sms = ok->tenants.at("soliera").sms;
  EXPECT_EQ(sms.channels.at("Severe"), "all");
  EXPECT_EQ(sms.channels.at("Extreme"), "all") << "the default for Extreme stays";
  EXPECT_EQ(sms.channels.at("default"), "push_first");
  EXPECT_EQ(sms.fallback_after_s, 5);
  auto bad = load_from_string(std::string(kMinimal) + "    sms:\n      channels: {Severe: sms_only}\n",
                              "t.yaml", env_of({}));
  ASSERT_FALSE(bad);
  EXPECT_NE(
      bad.error().message.find("t.yaml:7: tenants.soliera.sms.channels.Severe: expected all or push_first"),
      std::string::npos)
      << bad.error().message;
  auto sev = load_from_string(std::string(kMinimal) + "    sms:\n      channels: {Huge: all}\n", "t.yaml",
                              env_of({}));
  ASSERT_FALSE(sev);
  EXPECT_NE(sev.error().message.find("unknown CAP severity"), std::string::npos) << sev.error().message;
}

TEST(Config, AnyGatewayKeyCanComeFromTheEnvironment) {
  std::string text =
      std::string(kMinimal) + "gateways:\n  sms: {profile: kannel, url: http://a/cgi-bin/sendsms}\n";
  auto c = load_from_string(text, "t.yaml",
                            env_of({{"SIRENA_GATEWAYS_SMS_PROFILE", "generic_json"},
                                    {"SIRENA_GATEWAYS_SMS_AUTH_HEADER", "Authorization: Bearer x"}}));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->gateways.at("sms").profile, GatewayProfile::GenericJson);
  EXPECT_EQ(c->gateways.at("sms").keys.at("auth_header"), "Authorization: Bearer x");
  EXPECT_FALSE(c->gateways.at("sms").keys.count("dlr_url")) << "keys without a variable stay unset";
  EXPECT_EQ(c->gateways.at("sms").where.at("auth_header"), "environment SIRENA_GATEWAYS_SMS_AUTH_HEADER");
}

const char* kGateways = R"(gateways:
  apns:
    url: http://127.0.0.1:18101
    team_id: T
    rate: "250.5"
    connections: 3
  fcm:
    url: http://127.0.0.1:18102
    tls_verify: "false"
  sms:
    profile: kannel
    url: http://a/cgi-bin/sendsms
    key_file: keys/x.pem
)";

TEST(Config, GatewaysAreTypedWithProfileDefaults) {
  auto c = load_from_string(std::string(kMinimal) + kGateways, "conf/t.yaml", env_of({}));
  ASSERT_TRUE(c) << c.error().message;
  const GatewayConfig& apns = c->gateways.at("apns");
  EXPECT_EQ(apns.profile, GatewayProfile::Apns) << "the profile defaults to the gateway's name";
  EXPECT_EQ(apns.url, "http://127.0.0.1:18101");
  EXPECT_EQ(apns.team_id, "T");
  EXPECT_EQ(apns.rate, 250.5);
  EXPECT_EQ(apns.connections, 3);
  EXPECT_EQ(apns.max_in_flight, 2000);
  EXPECT_TRUE(apns.tls_verify);
  EXPECT_EQ(apns.where.at("rate"), "conf/t.yaml:10");
  const GatewayConfig& fcm = c->gateways.at("fcm");
  EXPECT_EQ(fcm.rate, 9500) << "FCM's project quota";
  EXPECT_FALSE(fcm.tls_verify);
  const GatewayConfig& sms = c->gateways.at("sms");
  EXPECT_TRUE(sms.is_sms());
  EXPECT_EQ(sms.rate, 0);
  EXPECT_EQ(sms.keys.at("key_file"), "conf/keys/x.pem") << "relative to the file's folder";
}

TEST(Config, BadGatewayValuesNameTheFileLineAndKey) {
  struct Case {
    const char* yaml;
    const char* expected;
  };
  for (const Case& k : {
           Case{"gateways:\n  apns:\n    url: http://a\n    rate: fast\n",
                "t.yaml:9: gateways.apns.rate: expected a number, got \"fast\""},
           Case{"gateways:\n  apns:\n    url: http://a\n    rate: \"-1\"\n",
                "t.yaml:9: gateways.apns.rate: must be"},
           Case{"gateways:\n  apns:\n    url: http://a\n    connections: two\n",
                "t.yaml:9: gateways.apns.connections: expected a whole number"},
           Case{"gateways:\n  fcm:\n    url: http://a\n    max_in_flight: 99999999999999999999\n",
                "t.yaml:9: gateways.fcm.max_in_flight: expected a whole number"},
           Case{"gateways:\n  apns:\n    url: http://a\n    tls_verify: yes please\n",
                "t.yaml:9: gateways.apns.tls_verify: expected true or false"},
           Case{"gateways:\n  push:\n    url: http://a\n",
                "t.yaml:8: gateways.push.profile: unknown profile"},
           Case{"gateways:\n  apns:\n    url: http://a\n    profile: gcm\n",
                "t.yaml:9: gateways.apns.profile: unknown profile \"gcm\""},
           Case{"gateways:\n  apns:\n    url: http://a\n    ratee: 5\n",
                "t.yaml:9: gateways.apns.ratee: unknown key"},
           Case{"gateways:\n  apns:\n    team_id: T\n", "t.yaml:8: gateways.apns.url: missing"},
           Case{"gateways:\n  apns:\n    url: [a, b]\n", "t.yaml:8: gateways.apns.url: expected a string"},
       }) {
    auto c = load_from_string(std::string(kMinimal) + k.yaml, "t.yaml", env_of({}));
    ASSERT_FALSE(c) << k.yaml;
    EXPECT_EQ(c.error().kind, ErrorKind::Config);
    EXPECT_EQ(c.error().message.rfind(k.expected, 0), 0u) << c.error().message;
  }
  auto env = load_from_string(std::string(kMinimal) + "gateways:\n  apns: {url: http://a}\n", "t.yaml",
                              env_of({{"SIRENA_GATEWAYS_APNS_RATE", "fast"}}));
  ASSERT_FALSE(env);
  EXPECT_EQ(env.error().message.rfind("environment SIRENA_GATEWAYS_APNS_RATE: gateways.apns.rate: ", 0), 0u)
      << env.error().message;
}

TEST(Config, AProfilesOwnErrorIsPutAtItsKeysLine) {
  auto c = load_from_string(std::string(kMinimal) + kGateways, "t.yaml", env_of({}));
  ASSERT_TRUE(c) << c.error().message;
  const GatewayConfig& sms = c->gateways.at("sms");
  Error e =
      sms.locate(make_error(ErrorKind::Config, "invalid_config",
                            "gateways.sms.url: must be an http:// or https:// URL", "gateways.sms.url"));
  EXPECT_EQ(e.message, "t.yaml:17: gateways.sms.url: must be an http:// or https:// URL");
  EXPECT_EQ(e.where, "t.yaml:17: gateways.sms.url");
  Error other = sms.locate(make_error(ErrorKind::Config, "invalid_config", "something else"));
  EXPECT_EQ(other.message, "something else");
}

TEST(Config, SyntaxErrorsHaveALine) {
  auto c = load_from_string("tenants: [oops\n", "t.yaml", env_of({}));
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().kind, ErrorKind::Config);
  EXPECT_EQ(c.error().message.rfind("t.yaml:", 0), 0u);
}

TEST(Config, DemoConfigIsValid) {
  auto c = load(std::string(SIRENA_SOURCE_DIR) + "/config/demo.yaml", env_of({}));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->tenants.count("soliera"), 1u);
  EXPECT_EQ(c->tenants.at("bastiglia").grants.at(0).to_tenant, "soliera");
  EXPECT_EQ(c->gateways.at("sms").profile, GatewayProfile::Kannel);
  EXPECT_EQ(c->gateways.at("fcm").rate, 9500);
  EXPECT_EQ(c->gateways.at("apns").connections, 2);
}

TEST(Config, Sha256) {
  EXPECT_EQ(sha256_hex("demo-soliera-operator"),
            "577318d5512cc66246abbf916e72fceb18dd8e982fed5d309c8fc8a0340237f3");
}

}  // namespace
}  // namespace sirena::config
