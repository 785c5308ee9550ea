// The APNs and FCM profiles on a real libuv loop against the real `sirena-sim apns|fcm` on
// 127.0.0.1: what each device receives when a fan-out interleaves several alerts (the
// payload is rendered once per alert and language and must never reach another alert's
// device), and FCM without an OAuth2 access token.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "daemon/core/clock.h"
#include "gateways/apns/apns.h"
#include "gateways/fcm/fcm.h"
#include "gateways/sim/ledger.h"
#include "tests/support/gateway_loop.h"
#include "tests/support/harness.h"

namespace sirena::push {
namespace {

using dispatch::Channel;
using dispatch::Content;
using dispatch::Message;
using dispatch::Outcome;
using sirena::testing::Loop;
using sirena::testing::Outcomes;
using sirena::testing::Simulator;
using sirena::testing::TempDir;
using std::chrono::milliseconds;

std::string demo_key(const char* file) {
  return std::string(SIRENA_SOURCE_DIR) + "/config/demo-keys/" + file;
}

std::shared_ptr<const Content> content(const std::string& alert, const std::string& language,
                                       const std::string& title, const std::string& body) {
  auto c = std::make_shared<Content>();
  c->alert_id = alert;
  c->alert_tenant = "soliera";
  c->language = language;
  c->severity = "Severe";
  c->title = title;
  c->body = body;
  c->collapse_id = alert;
  return c;
}

Message message(std::shared_ptr<const Content> c, Channel channel, std::string address) {
  Message m;
  m.content = std::move(c);
  m.tenant = "soliera";
  m.channel = channel;
  m.address = std::move(address);
  m.app = "it.comune.soliera.allerta";
  return m;
}

std::string apns_token(int i) {
  std::ostringstream s;
  s << std::hex;
  s.width(64);
  s.fill('0');
  s << i;
  return s.str();
}

std::string fcm_token(int i) {
  return "fcm:" + std::string(140, static_cast<char>('A' + i % 26)) + "_" + std::to_string(i);
}

// The --record file: recipient -> (alert id, text hash).
std::map<std::string, std::pair<std::string, std::string>> recorded(const std::string& path) {
  std::map<std::string, std::pair<std::string, std::string>> out;
  std::istringstream in(sirena::testing::read_file(path));
  std::string recipient, alert, hash;
  while (std::getline(in, recipient, '\t') && std::getline(in, alert, '\t') && std::getline(in, hash))
    out[recipient] = {alert, hash};
  return out;
}

std::string text_hash(const Content& c) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx",
                static_cast<unsigned long long>(sim::fnv1a64(c.title + "\n" + c.body)));
  return hex;
}

template <class G>
void close(Loop& loop, std::unique_ptr<G>& g) {
  bool closed = false;
  g->close([&] { closed = true; });
  ASSERT_TRUE(loop.run_until([&] { return closed; }, milliseconds(5000)));
  g.reset();
}

apns::ApnsConfig apns_config(const Simulator& sim) {
  apns::ApnsConfig cfg;
  cfg.url = sim.url();
  cfg.team_id = "DEMOTEAM01";
  cfg.key_id = "DEMOKEY001";
  cfg.key_file = demo_key("apns-demo.p8");
  return cfg;
}

fcm::FcmConfig fcm_config(const Simulator& sim, const std::string& token_path) {
  fcm::FcmConfig cfg;
  cfg.url = sim.url();
  cfg.project_id = "sirena-demo";
  cfg.service_account_file = demo_key("fcm-demo-service-account.json");
  cfg.token_url = sim.url() + token_path;
  return cfg;
}

// Two alerts in two languages, their messages interleaved: every device gets the text of
// its own alert and language, once.
TEST(PushProfiles, InterleavedAlertsReachEachDeviceWithTheirOwnText) {
  TempDir dir;
  Simulator apns_sim("apns", dir.path(), {"--record", dir.path() + "/apns.tsv"});
  Simulator fcm_sim("fcm", dir.path(), {"--record", dir.path() + "/fcm.tsv"});
  apns_sim.start();
  fcm_sim.start();
  Loop loop;
  SystemClock clock;
  auto a = apns::ApnsGateway::create(loop.get(), clock, "apns", apns_config(apns_sim));
  ASSERT_TRUE(a) << a.error().message;
  auto f = fcm::FcmGateway::create(loop.get(), clock, "fcm", fcm_config(fcm_sim, "/token"));
  ASSERT_TRUE(f) << f.error().message;
  auto apns_gw = std::move(a).value();
  auto fcm_gw = std::move(f).value();

  std::shared_ptr<const Content> contents[] = {
      content("flood-1", "it", "Secchia in piena", "Salite ai piani alti"),
      content("flood-1", "en", "Secchia in flood", "Go to the upper floors"),
      content("fire-2", "it", "Incendio a Limidi", "Chiudete le finestre"),
  };
  constexpr int kDevices = 60;
  Outcomes out;
  std::map<std::string, const Content*> want;  // device -> its content
  for (int i = 0; i < kDevices; ++i) {
    const auto& c = contents[i % 3];
    Message am = message(c, Channel::Apns, apns_token(i));
    Message fm = message(c, Channel::Fcm, fcm_token(i));
    want[am.address] = c.get();
    want[fm.address] = c.get();
    apns_gw->send(am, out.slot());
    fcm_gw->send(fm, out.slot());
  }
  ASSERT_TRUE(loop.run_until([&] { return out.all(); }, milliseconds(10000)));
  EXPECT_EQ(out.count(Outcome::Accepted), 2u * kDevices);
  EXPECT_TRUE(out.each_once());

  std::map<std::string, std::pair<std::string, std::string>> got;
  ASSERT_TRUE(sirena::testing::wait_until(
      [&] {
        got = recorded(dir.path() + "/apns.tsv");
        auto fcm = recorded(dir.path() + "/fcm.tsv");
        got.insert(fcm.begin(), fcm.end());
        return got.size() >= want.size();
      },
      std::chrono::seconds(5)));
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [device, c] : want) {
    auto it = got.find(device);
    ASSERT_NE(it, got.end()) << device;
    EXPECT_EQ(it->second.first, c->alert_id) << device;
    EXPECT_EQ(it->second.second, text_hash(*c)) << device << " got another alert's or language's text";
  }
  EXPECT_EQ(nlohmann::json::parse(apns_sim.stats())["duplicates"], 0);
  EXPECT_EQ(nlohmann::json::parse(fcm_sim.stats())["duplicates"], 0);
  close(loop, apns_gw);
  close(loop, fcm_gw);
}

// Without an access token (the token endpoint fails) FCM messages are retried later, not
// failed: a token outage must not cost anybody their alert.
TEST(PushProfiles, FcmWithoutAnAccessTokenRetries) {
  TempDir dir;
  Simulator sim("fcm", dir.path());
  sim.start();
  Loop loop;
  SystemClock clock;
  auto f = fcm::FcmGateway::create(loop.get(), clock, "fcm", fcm_config(sim, "/no-such-token-endpoint"));
  ASSERT_TRUE(f) << f.error().message;
  auto gw = std::move(f).value();
  Outcomes out;
  auto c = content("flood-1", "it", "Secchia in piena", "Salite ai piani alti");
  for (int i = 0; i < 3; ++i) gw->send(message(c, Channel::Fcm, fcm_token(i)), out.slot());
  ASSERT_TRUE(loop.run_until([&] { return out.all(); }, milliseconds(10000)));
  EXPECT_EQ(out.count(Outcome::Retry), 3u);
  EXPECT_TRUE(out.each_once());
  EXPECT_NE(out.results[0].reason.find("access token"), std::string::npos) << out.results[0].reason;
  EXPECT_EQ(nlohmann::json::parse(sim.stats())["accepted"], 0);
  close(loop, gw);
}

// The token server's reply is type-checked: a member of the wrong type is a failed fetch
// (retried like any other), never a nlohmann::json exception inside the HTTP/2 callback.
TEST(FcmTokenReply, WrongTypesAreAFailedFetchNotAnException) {
  auto good = fcm::parse_token_reply(
      200, R"({"access_token": "ya29.x", "expires_in": 3599, "token_type": "Bearer"})");
  ASSERT_TRUE(good) << good.error().message;
  EXPECT_EQ(good->token, "ya29.x");
  EXPECT_EQ(good->expires_in_s, 3599);
  auto no_expiry = fcm::parse_token_reply(200, R"({"access_token": "t"})");
  ASSERT_TRUE(no_expiry);
  EXPECT_EQ(no_expiry->expires_in_s, 3600);
  for (const char* body :
       {R"({"access_token": 5})", R"({"access_token": "t", "expires_in": "3600"})",
        R"({"access_token": null})", R"({"access_token": ""})", R"({"expires_in": 3600})",
        R"({"access_token": "t", "expires_in": -1})", R"({"access_token": "t", "expires_in": 1e300})",
        R"({"access_token": ["t"]})", R"(["access_token"])", "not json", ""}) {
    fcm::AccessToken t;
    Result<fcm::AccessToken> r = t;
    EXPECT_NO_THROW(r = fcm::parse_token_reply(200, body)) << body;
    EXPECT_FALSE(r) << body;
    if (!r) {
      EXPECT_FALSE(r.error().message.empty()) << body;
    }
  }
  auto refused = fcm::parse_token_reply(400, R"({"access_token": "t"})");
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("400"), std::string::npos);
}

// Issue 14 finding 7: a cancel drops the alert's messages that have not started: those
// waiting for FCM's access token, then those queued in the HTTP/2 pool behind its streams,
// as Cancelled; what is on a stream finishes, and other alerts go on.
TEST(PushProfiles, FcmCancelDropsWhatWaitsForTheTokenAndThePoolQueue) {
  TempDir dir;
  Simulator sim("fcm", dir.path(), {"--latency-ms", "50,80", "--max-streams", "5"});
  sim.start();
  Loop loop;
  SystemClock clock;
  auto cfg = fcm_config(sim, "/token");
  cfg.connections = 1;
  auto f = fcm::FcmGateway::create(loop.get(), clock, "fcm", cfg);
  ASSERT_TRUE(f) << f.error().message;
  auto gw = std::move(f).value();
  auto flood = content("flood-1", "it", "Secchia in piena", "Salite ai piani alti");
  auto fire = content("fire-2", "it", "Incendio a Limidi", "Chiudete le finestre");
  Outcomes waited, other;
  for (int i = 0; i < 20; ++i) gw->send(message(flood, Channel::Fcm, fcm_token(i)), waited.slot());
  gw->send(message(fire, Channel::Fcm, fcm_token(100)), other.slot());
  EXPECT_EQ(gw->capacity(), 64u - 21u) << "messages waiting for the token count as queued";
  gw->cancel("flood-1");
  EXPECT_EQ(waited.count(Outcome::Cancelled), 20u) << "answered at once";
  EXPECT_TRUE(waited.all());
  ASSERT_TRUE(loop.run_until([&] { return other.all(); }, milliseconds(10000)));
  EXPECT_EQ(other.count(Outcome::Accepted), 1u);

  // With the token: 5 streams, the rest queued in the pool.
  Outcomes queued;
  for (int i = 0; i < 30; ++i) gw->send(message(flood, Channel::Fcm, fcm_token(200 + i)), queued.slot());
  gw->cancel("flood-1");
  EXPECT_EQ(queued.count(Outcome::Cancelled), 25u);
  ASSERT_TRUE(loop.run_until([&] { return queued.all(); }, milliseconds(10000)));
  EXPECT_EQ(queued.count(Outcome::Accepted), 5u);
  EXPECT_TRUE(waited.each_once());
  EXPECT_TRUE(queued.each_once());
  auto s = nlohmann::json::parse(sim.stats());
  EXPECT_EQ(s["requests"], 6) << s.dump();
  EXPECT_EQ(s["accepted"], 6);
  close(loop, gw);
}

}  // namespace
}  // namespace sirena::push
