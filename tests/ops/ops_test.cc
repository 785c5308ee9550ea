// The operator's kit in dashboards/ checked against the real thing: promtool checks the alert
// rules and unit-tests what they fire on; a real Prometheus scrapes a real sirenad (with
// redis-server and the gateway simulators behind it, after a small fan-out) and answers every
// query of the Grafana dashboard and every rule expression. Each metric and label name they
// use must be one sirenad really exports.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "tests/ops/promql_names.h"
#include "tests/support/cap_fixture.h"
#include "tests/support/harness.h"
#include "tests/support/recipients.h"

namespace sirena::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
constexpr const char* kOp = "demo-soliera-operator";
constexpr const char* kDlrSecret = "ops-dlr-secret";

std::string dashboards() {
  return source_dir() + "/dashboards";
}

struct CommandResult {
  int status = -1;
  std::string output;  // stdout and stderr
};

CommandResult run(const std::string& cmd) {
  CommandResult r;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

bool have(const std::string& tool) {
  return run("command -v " + tool).status == 0;
}

std::string quote(const std::string& s) {
  return "'" + s + "'";
}

std::string url_encode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// ------------------------------------------------------------------ the files themselves

struct DashboardQuery {
  std::string where;  // "panel \"title\" A" or "variable tenant"
  std::string expr;   // as written in the dashboard
};

json load_dashboard() {
  return json::parse(read_file(dashboards() + "/sirena.json"));
}

// Every PromQL text in the dashboard: panel targets (rows included) and variable queries.
std::vector<DashboardQuery> dashboard_queries(const json& d) {
  std::vector<DashboardQuery> out;
  std::function<void(const json&)> walk = [&](const json& panels) {
    for (const auto& p : panels) {
      for (const auto& t : p.value("targets", json::array()))
        if (t.contains("expr"))
          out.push_back({"panel \"" + p.value("title", "") + "\" " + t.value("refId", ""), t["expr"]});
      if (p.contains("panels")) walk(p["panels"]);
    }
  };
  walk(d["panels"]);
  for (const auto& v : d["templating"]["list"])
    if (v["type"] == "query") {
      const json& q = v["query"];
      out.push_back({"variable " + v["name"].get<std::string>(),
                     q.is_string() ? q.get<std::string>() : q["query"].get<std::string>()});
    }
  return out;
}

// Grafana's variables as a test would pick them: every user variable "All" (the
// dashboard's allValue is .*), $__rate_interval and $__interval 1m, $__range 5m.
// Throws on a variable the dashboard does not define.
std::string substitute(const std::string& expr, const std::set<std::string>& variables) {
  // A plain scan (libstdc++'s std::regex recurses per character and can overflow the stack
  // on long expressions, notably under AddressSanitizer).
  auto is_name = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  auto value_of = [&](const std::string& name) -> std::string {
    if (name == "__rate_interval" || name == "__interval") return "1m";
    if (name == "__range") return "5m";
    if (variables.count(name)) return ".*";
    throw std::runtime_error("unknown variable $" + name + " in " + expr);
  };
  std::string out;
  for (size_t i = 0; i < expr.size();) {
    size_t end = std::string::npos, from = 0, to = 0;
    if (expr.compare(i, 2, "${") == 0) {  // ${name} or ${name:format}
      end = expr.find('}', i);
      from = i + 2;
      to = end == std::string::npos ? end : std::min(end, expr.find(':', i));
      if (end != std::string::npos) ++end;
    } else if (expr.compare(i, 2, "[[") == 0) {  // [[name]]
      end = expr.find("]]", i);
      from = i + 2;
      to = end;
      if (end != std::string::npos) end += 2;
    } else if (expr[i] == '$' && i + 1 < expr.size() && is_name(expr[i + 1])) {  // $name
      from = i + 1;
      to = from;
      while (to < expr.size() && is_name(expr[to])) ++to;
      end = to;
    }
    std::string name = end == std::string::npos ? "" : expr.substr(from, to - from);
    if (name.empty() || !std::all_of(name.begin(), name.end(), is_name)) {
      out += expr[i++];
      continue;
    }
    out += value_of(name);
    i = end;
  }
  return out;
}

struct Rule {
  std::string name;
  std::string expr;
};

std::vector<Rule> alert_rules() {
  std::vector<Rule> out;
  YAML::Node root = YAML::LoadFile(dashboards() + "/alerts.yml");
  for (const auto& g : root["groups"])
    for (const auto& r : g["rules"])
      out.push_back({r["alert"].as<std::string>(), r["expr"].as<std::string>()});
  return out;
}

TEST(PromqlNames, FindsMetricsAndLabelsNotFunctionsOrKeywords) {
  auto n = promql_names(
      R"(sum by (job, instance) (rate(sirena_messages_total{result="failed", gateway=~"a|b"}[5m] offset 1m)) / )"
      R"(on (job) group_left (x) max(sirena_dispatch_batches_in_work) > 0.2 and )"
      R"(histogram_quantile(0.99, sum by (le) (rate(sirena_event_loop_lag_seconds_bucket[1m]))) or )"
      R"({__name__="up", job="sirenad"} unless absent(foo:bar) or vector(1e-3) # sum_total)");
  std::set<std::string> metrics;
  for (auto& [m, _] : n.metrics) metrics.insert(m);
  EXPECT_EQ(metrics, (std::set<std::string>{"sirena_messages_total", "sirena_dispatch_batches_in_work",
                                            "sirena_event_loop_lag_seconds_bucket", "up", "foo:bar"}));
  EXPECT_EQ(n.metrics["sirena_messages_total"], (std::set<std::string>{"result", "gateway"}));
  EXPECT_EQ(n.metrics["up"], (std::set<std::string>{"job"}));
  EXPECT_EQ(n.grouping_labels, (std::set<std::string>{"job", "instance", "x", "le"}));
  EXPECT_EQ(n.selectors,
            (std::set<std::string>{R"(sirena_messages_total{result="failed", gateway=~"a|b"})"}));
  auto lv = promql_names(R"(label_values(sirena_messages_total{job=~"$job"}, tenant))");
  EXPECT_EQ(lv.metrics["sirena_messages_total"], (std::set<std::string>{"job"}));
  EXPECT_EQ(lv.grouping_labels, (std::set<std::string>{"tenant"}));
}

TEST(Dashboard, IsAGrafanaDashboardWithTheRowsAndVariablesOpsNeed) {
  json d = load_dashboard();
  EXPECT_GE(d["schemaVersion"].get<int>(), 36);
  EXPECT_EQ(d["uid"], "sirena");
  std::set<std::string> vars;
  for (const auto& v : d["templating"]["list"]) {
    vars.insert(v["name"]);
    if (v["name"] == "DS_PROMETHEUS") {
      EXPECT_EQ(v["type"], "datasource");
      EXPECT_EQ(v["query"], "prometheus");
    } else if (v["type"] == "query") {
      EXPECT_EQ(v["datasource"]["uid"], "${DS_PROMETHEUS}");
      EXPECT_NE(v["query"].get<std::string>().find("label_values("), std::string::npos) << v.dump();
      EXPECT_EQ(v["allValue"], ".*") << "the queries use =~\"$var\"";
    }
  }
  for (const char* v : {"DS_PROMETHEUS", "tenant", "gateway"}) EXPECT_TRUE(vars.count(v)) << v;
  std::set<std::string> rows;
  std::set<int> ids;
  for (const auto& p : d["panels"]) {
    EXPECT_TRUE(ids.insert(p["id"].get<int>()).second) << "duplicate panel id " << p["id"];
    ASSERT_TRUE(p.contains("gridPos")) << p["title"];
    EXPECT_LE(p["gridPos"]["x"].get<int>() + p["gridPos"]["w"].get<int>(), 24) << p["title"];
    if (p["type"] == "row") {
      rows.insert(p["title"]);
      continue;
    }
    EXPECT_EQ(p["datasource"]["uid"], "${DS_PROMETHEUS}") << p["title"];
    ASSERT_FALSE(p["targets"].empty()) << p["title"];
    std::set<std::string> refs;
    for (const auto& t : p["targets"]) {
      EXPECT_EQ(t["datasource"]["uid"], "${DS_PROMETHEUS}") << p["title"];
      EXPECT_TRUE(refs.insert(t["refId"]).second) << p["title"];
    }
  }
  for (const char* r : {"Alerts", "Fan-out", "Gateways", "Infrastructure"}) EXPECT_TRUE(rows.count(r)) << r;
}

TEST(AlertRules, PromtoolChecksThem) {
  ASSERT_TRUE(have("promtool")) << "promtool is missing: run scripts/deps.sh (Debian package prometheus)";
  auto r = run("promtool check rules " + quote(dashboards() + "/alerts.yml"));
  EXPECT_EQ(r.status, 0) << r.output;
  auto c = run("promtool check config " + quote(dashboards() + "/prometheus.yml"));
  EXPECT_EQ(c.status, 0) << c.output;
}

TEST(AlertRules, EachHasForSeverityAndARunbook) {
  YAML::Node root = YAML::LoadFile(dashboards() + "/alerts.yml");
  ASSERT_EQ(root["groups"].size(), 1u);
  EXPECT_EQ(root["groups"][0]["name"].as<std::string>(), "sirena");
  std::string readme = read_file(dashboards() + "/README.md");
  std::set<std::string> names;
  for (const auto& r : root["groups"][0]["rules"]) {
    std::string name = r["alert"].as<std::string>();
    EXPECT_TRUE(names.insert(name).second) << name;
    EXPECT_TRUE(r["for"].IsDefined()) << name;
    std::string sev = r["labels"]["severity"].as<std::string>("");
    EXPECT_TRUE(sev == "page" || sev == "ticket") << name << ": " << sev;
    for (const char* a : {"summary", "description", "runbook"})
      EXPECT_FALSE(r["annotations"][a].as<std::string>("").empty()) << name << " has no " << a;
    // The runbook links to its section of dashboards/README.md, which must exist.
    std::string lower = name;
    for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    EXPECT_NE(r["annotations"]["runbook"].as<std::string>("").find("dashboards/README.md#" + lower),
              std::string::npos)
        << name;
    EXPECT_NE(readme.find("### " + name + "\n"), std::string::npos) << "no runbook section for " << name;
  }
  for (const char* must :
       {"SirenadDown", "SirenaRedisDisconnected", "SirenaGatewayCircuitOpen", "SirenaFanoutStalled",
        "SirenaGatewayFailureRatioHigh", "SirenaTimeToFirstMessageSlow", "SirenaEventLoopLagHigh",
        "SirenaSmsDlrUnknown", "SirenaSmsDlrUnauthorized", "SirenaUnexpectedEvents"})
    EXPECT_TRUE(names.count(must)) << must;
}

// tests/ops/alerts_test.yml: promtool's rule unit tests, run on a copy of the rules without
// annotations (promtool compares annotations verbatim; the runbook texts may change freely).
TEST(AlertRules, FireOnTheSituationsTheyAreFor) {
  ASSERT_TRUE(have("promtool")) << "promtool is missing: run scripts/deps.sh (Debian package prometheus)";
  TempDir dir;
  YAML::Node root = YAML::LoadFile(dashboards() + "/alerts.yml");
  for (auto g : root["groups"])
    for (auto r : g["rules"]) r.remove("annotations");
  YAML::Emitter out;
  out << root;
  write_file(dir.path() + "/alerts.yml", out.c_str());
  write_file(dir.path() + "/alerts_test.yml", read_file(source_dir() + "/tests/ops/alerts_test.yml"));
  auto r = run("promtool test rules " + quote(dir.path() + "/alerts_test.yml"));
  EXPECT_EQ(r.status, 0) << r.output;
}

// ------------------------------------------------------------------ a real Prometheus

class Prometheus {
 public:
  // A reserved port (harness.h): Prometheus does not report the port it got for port 0.
  Prometheus(std::string dir, int target_port) : dir_(std::move(dir)), port_(reserve_port()) {
    std::string cfg =
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
        "rule_files:\n  - " +
        dashboards() +
        "/alerts.yml\n"
        "scrape_configs:\n  - job_name: sirenad\n    metrics_path: /metrics\n"
        "    static_configs:\n      - targets: ['127.0.0.1:" +
        std::to_string(target_port) + "']\n";
    write_file(dir_ + "/prometheus.yml", cfg);
    std::filesystem::create_directories(dir_ + "/prometheus-data");
  }
  ~Prometheus() { stop(); }
  void start() {
    proc_ = std::make_unique<Process>(
        std::vector<std::string>{"prometheus", "--config.file=" + dir_ + "/prometheus.yml",
                                 "--storage.tsdb.path=" + dir_ + "/prometheus-data",
                                 "--web.listen-address=127.0.0.1:" + std::to_string(port_),
                                 "--log.level=warn"},
        std::map<std::string, std::string>{}, dir_ + "/prometheus.log");
    bool up =
        wait_until([&] { return !proc_->running() || http_get(base() + "/-/ready").status == 200; }, 30s);
    if (!up || !proc_->running()) throw std::runtime_error("prometheus did not start: " + log());
  }
  void stop() {
    if (!proc_) return;
    proc_->signal(SIGTERM);
    proc_->wait_exit(20s);
    proc_.reset();
  }
  std::string base() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string log() const { return read_file(dir_ + "/prometheus.log"); }
  json api(const std::string& path_and_query) const {
    auto r = http_get(base() + path_and_query);
    return json::parse(r.body, nullptr, false);
  }
  json query(const std::string& expr) const { return api("/api/v1/query?query=" + url_encode(expr)); }
  std::set<std::string> names() const {
    std::set<std::string> out;
    auto j = api("/api/v1/label/__name__/values");
    if (j.is_object() && j["status"] == "success")
      for (const auto& n : j["data"]) out.insert(n.get<std::string>());
    return out;
  }
  std::set<std::string> label_names(const std::string& metric) const {
    std::set<std::string> out;
    auto j = api("/api/v1/series?match[]=" + url_encode(metric));
    if (j.is_object() && j["status"] == "success")
      for (const auto& s : j["data"])
        for (auto it = s.begin(); it != s.end(); ++it) out.insert(it.key());
    return out;
  }
  // Alerts of that name in the given state (pending or firing).
  json alerts(const std::string& name) const {
    json out = json::array();
    auto j = api("/api/v1/alerts");
    if (j.is_object() && j["status"] == "success")
      for (const auto& a : j["data"]["alerts"])
        if (a["labels"]["alertname"] == name) out.push_back(a);
    return out;
  }

 private:
  std::string dir_;
  int port_;
  std::unique_ptr<Process> proc_;
};

// n citizens of Soliera, all with a phone; even ones with an APNs token, every third with FCM.
std::string town(int n) {
  std::string nd;
  for (int i = 0; i < n; ++i) {
    json push = json::array();
    if (i % 2 == 0)
      push.push_back({{"platform", "apns"}, {"app", "it.comune.soliera.app"}, {"token", apns_token(i)}});
    if (i % 3 == 0)
      push.push_back({{"platform", "fcm"},
                      {"app", "soliera-app"},
                      {"token", "fcm-" + std::to_string(i) + std::string(140, 'f')}});
    json r = {{"id", "ops-" + std::to_string(i)},
              {"phone", phone(i)},
              {"language", "it"},
              {"topics", {"Met"}},
              {"push", push},
              {"locations", {{{"lat", 44.735 + (i % 50) * 1e-4}, {"lon", 10.92 + (i / 50) * 1e-4}}}}};
    nd += r.dump() + "\n";
  }
  return nd;
}

// A copy of the demo configuration in `dir`, with its key files (relative to the file's
// folder): tests may break it and send SIGHUP.
std::string demo_config_in(const std::string& dir) {
  std::string config = dir + "/sirena.yaml";
  write_file(config, read_file(source_dir() + "/config/demo.yaml"));
  std::filesystem::create_directory_symlink(source_dir() + "/config/demo-keys", dir + "/demo-keys");
  return config;
}

// What points the demo configuration at these servers; no approval needed for the test's alerts.
std::map<std::string, std::string> demo_env(const RedisServer& redis, const Simulator& apns,
                                            const Simulator& fcm, const Simulator& sms) {
  return {{"SIRENA_REDIS_URL", redis.url()},
          {"SIRENA_GATEWAYS_APNS_URL", apns.url()},
          {"SIRENA_GATEWAYS_FCM_URL", fcm.url()},
          {"SIRENA_GATEWAYS_FCM_TOKEN_URL", fcm.url() + "/token"},
          {"SIRENA_GATEWAYS_SMS_URL", sms.url() + "/cgi-bin/sendsms"},
          {"SIRENA_TENANTS_SOLIERA_APPROVAL_MIN_RECIPIENTS", "100000000"}};
}

class LivePrometheus : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(have("prometheus"))
        << "prometheus is missing: run scripts/deps.sh (Debian package prometheus)";
    redis_ = std::make_unique<RedisServer>(dir_.path());
    redis_->start();
    std::string gone = dir_.path() + "/gone-tokens.txt";
    write_file(gone, apns_token(0) + "\n" + apns_token(2) + "\n" + apns_token(4) + "\n");
    apns_ = std::make_unique<Simulator>(
        "apns", dir_.path(), std::vector<std::string>{"--fail", "503:0.1", "--unregistered", gone});
    apns_->start();
    fcm_ = std::make_unique<Simulator>("fcm", dir_.path());
    fcm_->start();
    sms_ = std::make_unique<Simulator>(
        "sms", dir_.path(), std::vector<std::string>{"--dlr", "--username", "sirena", "--password", "demo"});
    sms_->start();
    config_ = demo_config_in(dir_.path());
    auto env = demo_env(*redis_, *apns_, *fcm_, *sms_);
    env.insert({
        {"SIRENA_GATEWAYS_SMS_RATE", "0"},
        {"SIRENA_GATEWAYS_SMS_DLR_SECRET", kDlrSecret},
        {"SIRENA_DISPATCH_CONSUMER", "ops-daemon"},
    });
    daemon_ = std::make_unique<Sirenad>(config_, dir_.path(), env);
    daemon_->set_env("SIRENA_GATEWAYS_SMS_DLR_URL", daemon_->base());
    daemon_->start();
    ASSERT_TRUE(wait_until([&] { return daemon_->ready(); }, 60s)) << daemon_->log();
    prom_ = std::make_unique<Prometheus>(dir_.path(), daemon_->port());
    prom_->start();
  }
  void TearDown() override {
    if (prom_) prom_->stop();
    if (daemon_) daemon_->stop();
    if (sms_) sms_->stop();
    if (fcm_) fcm_->stop();
    if (apns_) apns_->stop();
    if (redis_) redis_->stop();
  }

  // Traffic that makes every labelled family appear: a fan-out on all three channels with
  // retried and gone tokens, SMS delivery reports, a refused alert and a refused report.
  void traffic() {
    auto imp = daemon_->post("/v1/recipients/import", kOp, town(120), "application/x-ndjson");
    ASSERT_EQ(imp.status, 200) << imp.body;
    TestCap c;
    c.identifier = "ops-flood-1";
    c.severity = "Extreme";  // Extreme + Immediate: everyone in the area, push and SMS at once
    c.polygon = "44.72,10.90 44.72,10.95 44.76,10.95 44.76,10.90 44.72,10.90";
    auto sub = daemon_->post("/v1/alerts", kOp, c.xml(), "application/cap+xml");
    ASSERT_EQ(sub.status, 202) << sub.body;
    std::string id = json::parse(sub.body)["id"];
    auto state = [&] {
      auto a = json::parse(daemon_->get("/v1/alerts/" + id, kOp).body, nullptr, false);
      return a.is_object() ? a : json::object();
    };
    ASSERT_TRUE(wait_until([&] { return state().value("state", "") == "completed"; }, 60s)) << state().dump();
    ASSERT_TRUE(wait_until([&] { return state()["progress"]["sms"].value("delivered", 0) > 0; }, 30s))
        << state().dump();
    auto bad = daemon_->post("/v1/alerts", kOp, "<alert>not CAP</alert>", "application/cap+xml");
    EXPECT_GE(bad.status, 400);
    EXPECT_EQ(
        http_get(daemon_->base() + "/v1/dlr/sms?secret=wrong&alert=x&t=soliera&r=soliera&to=1&type=1").status,
        401);
    auto unknown = http_get(daemon_->base() + "/v1/dlr/sms?secret=" + kDlrSecret + "&alert=" + id +
                            "&t=soliera&r=soliera&to=%2B39333999999&type=1");
    EXPECT_EQ(unknown.status, 200);
    EXPECT_NE(unknown.body.find("unknown"), std::string::npos) << unknown.body;
    failed_reload();
  }

  // A SIGHUP with a broken configuration file: refused, counted as an unexpected event
  // (kind config_reload_failed), the running configuration stays.
  void failed_reload() {
    write_file(config_, "tenants: [this is not\n");
    ::kill(daemon_->pid(), SIGHUP);
    ASSERT_TRUE(wait_until(
        [&] { return daemon_->get("/metrics", "").body.find("config_reload_failed") != std::string::npos; },
        20s))
        << daemon_->log();
  }

  TempDir dir_;
  std::string config_;
  std::unique_ptr<RedisServer> redis_;
  std::unique_ptr<Simulator> apns_, fcm_, sms_;
  std::unique_ptr<Sirenad> daemon_;
  std::unique_ptr<Prometheus> prom_;
};

// ------------------------------------------------------------------ sirenad's own /metrics

// The value of one series in a text exposition (labels as prometheus-cpp writes them:
// sorted by name), or nullopt when the series is absent.
std::optional<double> sample(const std::string& exposition, const std::string& series) {
  size_t at = 0;
  while ((at = exposition.find(series + " ", at)) != std::string::npos) {
    if (at == 0 || exposition[at - 1] == '\n') return std::stod(exposition.substr(at + series.size() + 1));
    at += series.size();
  }
  return std::nullopt;
}

// The demo configuration against the simulators, without Prometheus: what a fresh daemon
// exports, and the push gateways' connection counters moving.
class DaemonMetrics : public ::testing::Test {
 protected:
  void SetUp() override {
    redis_ = std::make_unique<RedisServer>(dir_.path());
    redis_->start();
    // GOAWAY after every 5th stream of a connection: the pool replaces it.
    apns_ = std::make_unique<Simulator>("apns", dir_.path(), std::vector<std::string>{"--goaway-every", "5"});
    apns_->start();
    fcm_ = std::make_unique<Simulator>("fcm", dir_.path());
    fcm_->start();
    sms_ = std::make_unique<Simulator>(
        "sms", dir_.path(), std::vector<std::string>{"--username", "sirena", "--password", "demo"});
    sms_->start();
    auto env = demo_env(*redis_, *apns_, *fcm_, *sms_);
    env["SIRENA_GATEWAYS_SMS_DLR_URL"] = "";
    daemon_ = std::make_unique<Sirenad>(demo_config_in(dir_.path()), dir_.path(), env);
    daemon_->start();
    ASSERT_TRUE(wait_until([&] { return daemon_->ready(); }, 60s)) << daemon_->log();
  }
  void TearDown() override {
    if (daemon_) daemon_->stop();
    if (sms_) sms_->stop();
    if (fcm_) fcm_->stop();
    if (apns_) apns_->stop();
    if (redis_) redis_->stop();
  }
  std::string metrics() const { return daemon_->get("/metrics", "").body; }

  TempDir dir_;
  std::unique_ptr<RedisServer> redis_;
  std::unique_ptr<Simulator> apns_, fcm_, sms_;
  std::unique_ptr<Sirenad> daemon_;
};

TEST_F(DaemonMetrics, AFreshDaemonExportsItsKnownLabelsAtZero) {
  std::string m = metrics();
  for (const char* series : {
           R"(sirena_alerts_received_total{msg_type="Alert",status="Actual",tenant="soliera"})",
           R"(sirena_alerts_received_total{msg_type="Cancel",status="Exercise",tenant="bastiglia"})",
           R"(sirena_messages_total{channel="apns",gateway="apns",result="accepted",tenant="soliera"})",
           R"(sirena_messages_total{channel="fcm",gateway="fcm",result="failed",tenant="bastiglia"})",
           R"(sirena_messages_total{channel="sms",gateway="sms",result="expired",tenant="soliera"})",
           R"(sirena_tokens_pruned_total{channel="apns"})",
           R"(sirena_sms_segments_total{gateway="sms"})",
           R"(sirena_http2_goaways_total{gateway="apns"})",
           R"(sirena_http2_reconnects_total{gateway="fcm"})",
       }) {
    EXPECT_EQ(sample(m, series), 0.0) << series;
  }
  // Only known values: no series for a gateway that does not exist, none for SMS on HTTP/2.
  EXPECT_EQ(m.find(R"(gateway="nope")"), std::string::npos);
  EXPECT_FALSE(sample(m, R"(sirena_http2_goaways_total{gateway="sms"})"));
}

TEST_F(DaemonMetrics, Http2GoawaysAndReconnectsAreExportedPerGateway) {
  std::string nd;
  for (int i = 0; i < 40; ++i) {
    json r = {{"id", "gw-" + std::to_string(i)},
              {"phone", phone(i)},
              {"language", "it"},
              {"topics", {"Met"}},
              {"push", {{{"platform", "apns"}, {"app", "it.comune.soliera.app"}, {"token", apns_token(i)}}}},
              {"locations", {{{"lat", 44.735 + i * 1e-4}, {"lon", 10.92}}}}};
    nd += r.dump() + "\n";
  }
  auto imp = daemon_->post("/v1/recipients/import", kOp, nd, "application/x-ndjson");
  ASSERT_EQ(imp.status, 200) << imp.body;
  TestCap c;
  c.identifier = "goaway-1";
  c.severity = "Severe";
  c.polygon = "44.72,10.90 44.72,10.95 44.76,10.95 44.76,10.90 44.72,10.90";
  auto sub = daemon_->post("/v1/alerts", kOp, c.xml(), "application/cap+xml");
  ASSERT_EQ(sub.status, 202) << sub.body;
  const std::string goaways = R"(sirena_http2_goaways_total{gateway="apns"})";
  const std::string reconnects = R"(sirena_http2_reconnects_total{gateway="apns"})";
  const std::string accepted =
      R"(sirena_messages_total{channel="apns",gateway="apns",result="accepted",tenant="soliera"})";
  ASSERT_TRUE(wait_until([&] { return sample(metrics(), accepted).value_or(0) >= 40; }, 60s)) << metrics();
  // The simulator sent a GOAWAY on each connection that took 5 streams; every one the
  // daemon received is counted and its connection opened again.
  std::string m = metrics();
  EXPECT_GE(sample(m, goaways).value_or(0), 1) << m;
  EXPECT_GE(sample(m, reconnects).value_or(0), sample(m, goaways).value_or(0)) << m;
  EXPECT_EQ(sample(m, R"(sirena_http2_goaways_total{gateway="fcm"})"), 0.0);
  EXPECT_LE(sample(m, goaways).value_or(0), json::parse(apns_->stats()).value("goaways", 0))
      << apns_->stats();
}

// What is wrong with one expression as Prometheus sees it: a parse error, a metric sirenad
// does not export, a label its series do not have. Empty when all is well.
std::vector<std::string> problems(const Prometheus& prom, const std::string& expr,
                                  const std::set<std::string>& names, bool check_names = true) {
  std::vector<std::string> out;
  json r = prom.query(expr);
  if (!r.is_object() || r["status"] != "success") {
    out.push_back("query failed: " + (r.is_object() ? r.value("error", r.dump()) : std::string("no JSON")));
    return out;
  }
  if (!check_names) return out;
  PromqlNames n = promql_names(expr);
  std::set<std::string> all_labels{"job", "instance"};
  for (const auto& [metric, matched] : n.metrics) {
    if (!names.count(metric)) {
      out.push_back("metric " + metric + " is not exported (not among Prometheus's __name__ values)");
      continue;
    }
    auto labels = prom.label_names(metric);
    all_labels.insert(labels.begin(), labels.end());
    for (const auto& l : matched)
      if (!labels.count(l)) out.push_back("metric " + metric + " has no label " + l);
  }
  for (const auto& l : n.grouping_labels)
    if (!all_labels.count(l))
      out.push_back("label " + l + " (by/on/label_values) is on none of the metrics used");
  for (const auto& sel : n.selectors) {
    json answer = prom.query(sel);
    if (!answer.is_object() || answer["status"] != "success" || answer["data"]["result"].empty())
      out.push_back("selector " + sel + " matches no series");
  }
  return out;
}

TEST_F(LivePrometheus, EveryDashboardQueryAndRuleWorksOnWhatSirenadExports) {
  ASSERT_TRUE(wait_until(
      [&] {
        json r = prom_->query(R"(up{job="sirenad"})");
        return r.is_object() && r["status"] == "success" && !r["data"]["result"].empty() &&
               r["data"]["result"][0]["value"][1] == "1";
      },
      30s))
      << "Prometheus never scraped sirenad: " << prom_->log();

  ASSERT_NO_FATAL_FAILURE(traffic());

  json d = load_dashboard();
  std::set<std::string> variables;
  for (const auto& v : d["templating"]["list"]) variables.insert(v["name"]);
  std::vector<DashboardQuery> queries = dashboard_queries(d);
  ASSERT_GT(queries.size(), 30u);
  std::vector<Rule> rules = alert_rules();
  ASSERT_GE(rules.size(), 10u);

  // Every metric name used anywhere, to wait for Prometheus's scrape of the traffic's series.
  std::set<std::string> wanted;
  for (const auto& q : queries)
    for (const auto& [m, _] : promql_names(substitute(q.expr, variables)).metrics) wanted.insert(m);
  for (const auto& r : rules)
    for (const auto& [m, _] : promql_names(r.expr).metrics) wanted.insert(m);
  std::set<std::string> names;
  wait_until(
      [&] {
        names = prom_->names();
        for (const auto& m : wanted)
          if (!names.count(m)) return false;
        return true;
      },
      20s);

  // The panels' queries as Grafana would send them with every variable at "All".
  std::vector<std::pair<std::string, std::string>> panel_exprs;  // where, expr
  for (const auto& q : queries) {
    std::string expr;
    try {
      expr = substitute(q.expr, variables);
    } catch (const std::exception& e) {
      ADD_FAILURE() << q.where << ": " << e.what();
      continue;
    }
    if (q.where.rfind("variable ", 0) == 0) {
      // label_values(metric{...}, label) is Grafana's, not PromQL: check the series selector.
      PromqlNames n = promql_names(expr);
      for (const auto& [metric, matched] : n.metrics) {
        EXPECT_TRUE(names.count(metric)) << q.where << ": metric " << metric << " is not exported";
        auto labels = prom_->label_names(metric);
        for (const auto& l : n.grouping_labels) EXPECT_TRUE(labels.count(l)) << q.where << ": no label " << l;
        for (const auto& l : matched) EXPECT_TRUE(labels.count(l)) << q.where << ": no label " << l;
      }
      continue;
    }
    panel_exprs.emplace_back(q.where, expr);
  }
  for (const auto& [where, expr] : panel_exprs)
    for (const auto& p : problems(*prom_, expr, names)) ADD_FAILURE() << where << ": " << p << "\n  " << expr;
  // After the traffic every panel has something to draw (rates need a second scrape).
  std::vector<std::string> empty;
  wait_until(
      [&] {
        empty.clear();
        for (const auto& [where, expr] : panel_exprs) {
          json r = prom_->query(expr);
          if (r.is_object() && r["status"] == "success" && r["data"]["result"].empty())
            empty.push_back(where + ": " + expr);
        }
        return empty.empty();
      },
      20s);
  for (const auto& e : empty) ADD_FAILURE() << "no series after the traffic: " << e;
  for (const auto& r : rules)
    for (const auto& p : problems(*prom_, r.expr, names))
      ADD_FAILURE() << "rule " << r.name << ": " << p << "\n  " << r.expr;

  // Prometheus loaded the same rule file and evaluates every rule without an error.
  json groups;
  ASSERT_TRUE(wait_until(
      [&] {
        groups = prom_->api("/api/v1/rules");
        if (!groups.is_object() || groups["status"] != "success" || groups["data"]["groups"].empty())
          return false;
        for (const auto& g : groups["data"]["groups"])
          for (const auto& r : g["rules"])
            if (r.value("health", "") != "ok") return false;
        return true;
      },
      20s))
      << groups.dump(1);
  size_t loaded = 0;
  for (const auto& g : groups["data"]["groups"]) loaded += g["rules"].size();
  EXPECT_EQ(loaded, rules.size());

  // The checks can fail: a misspelt metric or label is caught, not waved through.
  EXPECT_FALSE(problems(*prom_, "sum(rate(sirena_mesages_total[1m]))", names).empty());
  EXPECT_FALSE(problems(*prom_, R"(sum by (chanel) (rate(sirena_messages_total[1m])))", names).empty());
  EXPECT_FALSE(problems(*prom_, R"(sirena_gateway_in_flight{gatway=~".*"})", names).empty());
  EXPECT_FALSE(problems(*prom_, "sum(rate(sirena_messages_total[1m])", names).empty()) << "a parse error";
}

// Three rules seen going off in a real Prometheus on sirenad's own series: a failed SIGHUP
// reload (an unexpected event whose counter is born at 1, which increase() alone misses),
// Redis killed, sirenad stopped.
TEST_F(LivePrometheus, RulesGoOffOnRealFailures) {
  auto active = [&](const std::string& name, const std::string& label, const std::string& value) {
    for (const auto& a : prom_->alerts(name))
      if (a["labels"].value(label, "") == value) return true;
    return false;
  };
  ASSERT_TRUE(
      wait_until([&] { return !prom_->query(R"(up{job="sirenad"} == 1)")["data"]["result"].empty(); }, 30s))
      << prom_->log();
  ASSERT_TRUE(wait_until([&] { return prom_->names().count("sirena_redis_connected") > 0; }, 20s));
  EXPECT_TRUE(prom_->alerts("SirenaRedisDisconnected").empty());
  EXPECT_TRUE(prom_->alerts("SirenadDown").empty());

  ASSERT_NO_FATAL_FAILURE(failed_reload());
  EXPECT_TRUE(
      wait_until([&] { return active("SirenaUnexpectedEvents", "kind", "config_reload_failed"); }, 30s))
      << prom_->api("/api/v1/alerts").dump(1);

  redis_->stop();
  EXPECT_TRUE(wait_until([&] { return !prom_->alerts("SirenaRedisDisconnected").empty(); }, 30s))
      << prom_->api("/api/v1/alerts").dump(1);

  EXPECT_EQ(daemon_->stop(), 0) << daemon_->log();
  daemon_.reset();
  EXPECT_TRUE(wait_until([&] { return active("SirenadDown", "job", "sirenad"); }, 30s))
      << prom_->api("/api/v1/alerts").dump(1);
}

}  // namespace
}  // namespace sirena::testing
