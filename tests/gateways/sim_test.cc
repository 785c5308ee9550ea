// sirena-sim: the protocol handlers, fault plan and ledger without sockets, then the real
// binary on 127.0.0.1 (ephemeral ports) driven with libcurl: h2c with prior knowledge for
// apns/fcm, TLS with ALPN h2, and HTTP/1.1 for sms and the admin listener.
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <signal.h>

#include <chrono>
#include <ctime>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "daemon/core/clock.h"
#include "gateways/sim/apns.h"
#include "gateways/sim/faults.h"
#include "gateways/sim/fcm.h"
#include "gateways/sim/jwt.h"
#include "gateways/sim/ledger.h"
#include "gateways/sim/simulator.h"
#include "gateways/sim/sms.h"
#include "tests/support/harness.h"

namespace sirena::sim {
namespace {

using json = nlohmann::json;
using sirena::testing::Process;
using sirena::testing::TempDir;

// ---- JWT helpers (OpenSSL, keys made in-process) --------------------------------------

std::string b64url(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) c = c == '+' ? '-' : c == '/' ? '_' : c;
  return out;
}

using PKey = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

PKey make_key(const char* type, const char* param) {
  EVP_PKEY* key = nullptr;
  if (std::string(type) == "EC")
    key = EVP_EC_gen(param);
  else
    key = EVP_RSA_gen(2048);
  return PKey(key, EVP_PKEY_free);
}

std::string sign(EVP_PKEY* key, const std::string& input) {
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  EVP_DigestSignInit(md, nullptr, EVP_sha256(), nullptr, key);
  size_t len = 0;
  EVP_DigestSign(md, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()), input.size());
  std::string sig(len, '\0');
  EVP_DigestSign(md, reinterpret_cast<unsigned char*>(sig.data()), &len,
                 reinterpret_cast<const unsigned char*>(input.data()), input.size());
  sig.resize(len);
  EVP_MD_CTX_free(md);
  return sig;
}

// An APNs provider token: ES256, the signature in JOSE r||s form (RFC 7518 §3.4).
std::string es256_jwt(int64_t iat, const std::string& kid = "ABC123DEFG") {
  static PKey key = make_key("EC", "P-256");
  std::string input = b64url(json{{"alg", "ES256"}, {"kid", kid}}.dump()) + "." +
                      b64url(json{{"iss", "TEAM123456"}, {"iat", iat}}.dump());
  std::string der = sign(key.get(), input);
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size()));
  std::string raw(64, '\0');
  BN_bn2binpad(ECDSA_SIG_get0_r(sig), reinterpret_cast<unsigned char*>(raw.data()), 32);
  BN_bn2binpad(ECDSA_SIG_get0_s(sig), reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
  ECDSA_SIG_free(sig);
  return input + "." + b64url(raw);
}

// A service-account assertion for Google's token endpoint: RS256.
std::string rs256_assertion(int64_t now, const std::string& aud) {
  static PKey key = make_key("RSA", nullptr);
  std::string input = b64url(json{{"alg", "RS256"}, {"typ", "JWT"}}.dump()) + "." +
                      b64url(json{{"iss", "sirena@demo.iam.gserviceaccount.com"},
                                  {"scope", "https://www.googleapis.com/auth/firebase.messaging"},
                                  {"aud", aud},
                                  {"iat", now},
                                  {"exp", now + 3600}}
                                 .dump());
  return input + "." + b64url(sign(key.get(), input));
}

int64_t now_s() {
  return static_cast<int64_t>(std::time(nullptr));
}

const std::string kToken(64, 'a');
const std::string kGoneToken(64, 'b');

// ---- Unit tests: no sockets -------------------------------------------------------------

struct Exchange {
  Request req;
  Response resp;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  Exchange(std::string method, std::string path, std::string body_text) : body(std::move(body_text)) {
    method_ = std::move(method);
    path_ = std::move(path);
  }
  Exchange& header(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
    return *this;
  }
  const Request& request() {
    req.clear();
    req.method = method_;
    size_t q = path_.find('?');
    req.path = std::string_view(path_).substr(0, q);
    if (q != std::string::npos) req.query = std::string_view(path_).substr(q + 1);
    for (auto& [n, v] : headers) req.headers.push_back(HeaderView{n, v});
    req.body = body;
    return req;
  }

 private:
  std::string method_, path_;
};

std::string apns_reason(const Response& r) {
  return json::parse(r.body).value("reason", "");
}

class ApnsUnit : public ::testing::Test {
 protected:
  ManualClock clock{now_s() * 1000};
  RecipientSet gone;
  ApnsService apns{clock, gone, 1};

  Response& send(Exchange& x) {
    x.resp.clear();
    apns.handle(x.request(), x.resp);
    return x.resp;
  }
  Exchange ok_request(const std::string& token = kToken) {
    Exchange x("POST", "/3/device/" + token, R"({"aps":{"alert":{"title":"T","body":"B"}},"alert_id":"a1"})");
    x.header("authorization", "bearer " + es256_jwt(clock.now_ms() / 1000)).header("apns-topic", "it.demo");
    return x;
  }
};

TEST_F(ApnsUnit, AcceptsAndRecordsTokenAlertIdAndTextHash) {
  Exchange x = ok_request();
  Response& r = send(x);
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.body.empty());
  ASSERT_EQ(r.deliveries.size(), 1u);
  EXPECT_EQ(r.deliveries[0].recipient, kToken);
  EXPECT_EQ(r.deliveries[0].alert_id, "a1");
  EXPECT_EQ(r.deliveries[0].text_hash, fnv1a64("T\nB"));
}

TEST_F(ApnsUnit, ErrorsFollowApplesTable) {
  gone.add(kGoneToken);
  struct Case {
    std::string what;
    std::function<void(Exchange&)> change;
    int status;
    std::string reason;
  };
  std::string big = R"({"aps":{"alert":")" + std::string(4100, 'x') + "\"}}";
  std::vector<Case> cases = {
      {"no auth", [](Exchange& x) { x.headers.erase(x.headers.begin()); }, 403, "MissingProviderToken"},
      {"bad jwt", [](Exchange& x) { x.headers[0].second = "bearer abc.def"; }, 403, "InvalidProviderToken"},
      {"DER-sized signature", [](Exchange& x) { x.headers[0].second += "AAAA"; }, 403,
       "InvalidProviderToken"},
      {"old jwt", [&](Exchange& x) { x.headers[0].second = "bearer " + es256_jwt(now_s() - 3700); }, 403,
       "ExpiredProviderToken"},
      {"no topic", [](Exchange& x) { x.headers.pop_back(); }, 400, "MissingTopic"},
      {"priority", [](Exchange& x) { x.header("apns-priority", "7"); }, 400, "BadPriority"},
      {"expiration", [](Exchange& x) { x.header("apns-expiration", "soon"); }, 400, "BadExpirationDate"},
      {"collapse id", [](Exchange& x) { x.header("apns-collapse-id", std::string(65, 'c')); }, 400,
       "BadCollapseId"},
      {"push type", [](Exchange& x) { x.header("apns-push-type", "fax"); }, 400, "InvalidPushType"},
      {"apns-id", [](Exchange& x) { x.header("apns-id", "nope"); }, 400, "BadMessageId"},
      {"too large", [&](Exchange& x) { x.body = big; }, 413, "PayloadTooLarge"},
      {"empty", [](Exchange& x) { x.body.clear(); }, 400, "PayloadEmpty"},
      {"no aps", [](Exchange& x) { x.body = R"({"alert_id":"a1"})"; }, 400, "PayloadEmpty"},
  };
  for (auto& c : cases) {
    Exchange x = ok_request();
    c.change(x);
    Response& r = send(x);
    EXPECT_EQ(r.status, c.status) << c.what;
    if (!c.reason.empty()) {
      EXPECT_EQ(apns_reason(r), c.reason) << c.what;
    }
    EXPECT_TRUE(r.deliveries.empty() || c.status == 200) << c.what;
  }
  Exchange bad = ok_request("abc");
  EXPECT_EQ(send(bad).status, 400);
  EXPECT_EQ(apns_reason(bad.resp), "BadDeviceToken");
  Exchange unregistered = ok_request(kGoneToken);
  EXPECT_EQ(send(unregistered).status, 410);
  auto body = json::parse(unregistered.resp.body);
  EXPECT_EQ(body["reason"], "Unregistered");
  EXPECT_EQ(body["timestamp"], clock.now_ms());
}

TEST_F(ApnsUnit, TokenAgesWithTheClock) {
  Exchange x = ok_request();
  EXPECT_EQ(send(x).status, 200);
  clock.advance_ms(61 * 60 * 1000);  // Apple: a token is good for one hour
  EXPECT_EQ(send(x).status, 403);
  EXPECT_EQ(apns_reason(x.resp), "ExpiredProviderToken");
}

TEST(FcmUnit, TokenThenSendThenUnregistered) {
  ManualClock clock(now_s() * 1000);
  RecipientSet gone;
  gone.add("gone-token");
  FcmService fcm(clock, gone, 1);
  Exchange t("POST", "/token",
             "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=" +
                 rs256_assertion(clock.now_ms() / 1000, "https://oauth2.googleapis.com/token"));
  fcm.handle(t.request(), t.resp);
  ASSERT_EQ(t.resp.status, 200) << t.resp.body;
  auto token = json::parse(t.resp.body);
  EXPECT_EQ(token["expires_in"], 3600);
  EXPECT_EQ(token["token_type"], "Bearer");

  auto send = [&](const std::string& body, const std::string& bearer) {
    auto* x = new Exchange("POST", "/v1/projects/demo/messages:send", body);
    x->header("authorization", "Bearer " + bearer);
    fcm.handle(x->request(), x->resp);
    return std::unique_ptr<Exchange>(x);
  };
  auto ok =
      send(R"({"message":{"token":"tok-1","notification":{"title":"T","body":"B"},"data":{"alert_id":"a9"},
                     "android":{"priority":"HIGH","ttl":"3600s"}}})",
           token["access_token"]);
  EXPECT_EQ(ok->resp.status, 200);
  EXPECT_TRUE(json::parse(ok->resp.body)["name"].get<std::string>().starts_with("projects/demo/messages/"));
  ASSERT_EQ(ok->resp.deliveries.size(), 1u);
  EXPECT_EQ(ok->resp.deliveries[0].alert_id, "a9");
  EXPECT_EQ(ok->resp.deliveries[0].text_hash, fnv1a64("T\nB"));

  auto unreg = send(R"({"message":{"token":"gone-token","data":{"alert_id":"a9"}}})", token["access_token"]);
  EXPECT_EQ(unreg->resp.status, 404);
  auto err = json::parse(unreg->resp.body)["error"];
  EXPECT_EQ(err["status"], "NOT_FOUND");
  EXPECT_EQ(err["details"][0]["errorCode"], "UNREGISTERED");

  EXPECT_EQ(send(R"({"message":{"token":"t"}})", "ya29.forged")->resp.status, 401);
  EXPECT_EQ(send(R"({"message":{"token":"t","data":{"n":1}}})", token["access_token"])->resp.status, 400);
  EXPECT_EQ(send(R"({"message":{"token":"t","topic":"x"}})", token["access_token"])->resp.status, 400);
  // Registration tokens: URL-safe ASCII and colons only.
  EXPECT_EQ(send(R"({"message":{"token":"dA9_Z-x:APA91b.Q"}})", token["access_token"])->resp.status, 200);
  for (std::string bad : {"a b", "a+b", "a/b", "a@b", "a[b", "caf\u00e9"})
    EXPECT_EQ(send(R"({"message":{"token":")" + bad + R"("}})", token["access_token"])->resp.status, 400)
        << bad;
  clock.advance_ms(3601 * 1000);
  EXPECT_EQ(send(R"({"message":{"token":"t"}})", token["access_token"])->resp.status, 401);
}

TEST(FaultsUnit, SameSeedSameFaultsAndRatesHold) {
  FaultOptions o;
  o.fail = {{503, 0.05}, {429, 0.01}};
  o.seed = 7;
  Faults a(o), b(o);
  std::map<int, int> counts;
  for (int i = 0; i < 100000; ++i) {
    int fa = a.draw_failure();
    ASSERT_EQ(fa, b.draw_failure());
    ++counts[fa];
  }
  EXPECT_NEAR(counts[503], 5000, 300);
  EXPECT_NEAR(counts[429], 1000, 150);
}

TEST(FaultsUnit, LatencyMatchesItsPercentiles) {
  FaultOptions o;
  o.latency_p50_ms = 10;
  o.latency_p99_ms = 200;
  Faults f(o);
  std::vector<uint64_t> v;
  for (int i = 0; i < 20000; ++i) v.push_back(f.draw_latency_ms());
  std::sort(v.begin(), v.end());
  EXPECT_NEAR(static_cast<double>(v[10000]), 10, 1.5);
  EXPECT_NEAR(static_cast<double>(v[19800]), 200, 40);
}

TEST(LedgerUnit, CountsDuplicatesPerRecipientAndAlert) {
  Ledger l;
  l.accept("r1", "a1", 1);
  l.accept("r1", "a1", 1);
  l.accept("r1", "a2", 1);
  l.accept("r2", "a1", 1);
  l.reject(503);
  auto s = json::parse(l.stats_json());
  EXPECT_EQ(s["accepted"], 4);
  EXPECT_EQ(s["duplicates"], 1);
  EXPECT_EQ(s["unique_recipients"], 2);
  EXPECT_EQ(s["rejected"]["503"], 1);
  EXPECT_EQ(s["by_alert"]["a1"]["accepted"], 3);
  EXPECT_EQ(s["by_alert"]["a1"]["unique"], 2);
  EXPECT_EQ(s["by_alert"]["a1"]["duplicates"], 1);
  // A recipient's third alert, and a repeat of its second: pairs beyond the first alert.
  l.accept("r1", "a3", 1);
  l.accept("r1", "a2", 1);
  l.accept("r2", "a1", 1);
  s = json::parse(l.stats_json());
  EXPECT_EQ(s["accepted"], 7);
  EXPECT_EQ(s["duplicates"], 3);
  EXPECT_EQ(s["unique_recipients"], 2);
  EXPECT_EQ(s["by_alert"]["a2"]["duplicates"], 1);
  EXPECT_EQ(s["by_alert"]["a3"]["unique"], 1);
  EXPECT_EQ(s["by_alert"]["a1"]["duplicates"], 2);
  l.reset();
  EXPECT_EQ(json::parse(l.stats_json())["accepted"], 0);
  l.accept("r1", "a1", 1);  // nothing of before the reset is remembered
  EXPECT_EQ(json::parse(l.stats_json())["duplicates"], 0);
}

TEST(SmsUnit, KannelMultiRecipientAndUcs2) {
  RecipientSet gone;
  gone.add("+39000");
  SmsService sms({"u", "p"}, gone, nullptr);
  // "Città" as UTF-16BE, percent-encoded; three numbers, one refused.
  Exchange x("GET",
             "/cgi-bin/sendsms?username=u&password=p&from=Sirena&to=%2B39111+%2B39222%20%2B39000"
             "&text=%00C%00i%00t%00t%00%E0&charset=UTF-16BE&coding=2&sirena-alert=al-7",
             "");
  sms.handle(x.request(), x.resp);
  EXPECT_EQ(x.resp.status, 202);
  EXPECT_EQ(x.resp.body, "0: Accepted for delivery");
  ASSERT_EQ(x.resp.deliveries.size(), 2u);
  EXPECT_EQ(x.resp.deliveries[0].recipient, "+39111");
  EXPECT_EQ(x.resp.deliveries[1].recipient, "+39222");
  EXPECT_EQ(x.resp.deliveries[0].alert_id, "al-7");
  EXPECT_EQ(x.resp.deliveries[0].text_hash, fnv1a64("Citt\xc3\xa0"));
  EXPECT_EQ(x.resp.partly_rejected, 1u);

  Exchange denied("GET", "/cgi-bin/sendsms?username=u&password=wrong&to=1&text=x", "");
  sms.handle(denied.request(), denied.resp);
  EXPECT_EQ(denied.resp.status, 403);
  EXPECT_EQ(denied.resp.body, "Authorization failed for sendsms");
  Exchange missing("GET", "/cgi-bin/sendsms?username=u&password=p&text=x", "");
  sms.handle(missing.request(), missing.resp);
  EXPECT_EQ(missing.resp.status, 400);
}

// ---- Integration: the real binary --------------------------------------------------------

struct Reply {
  long status = 0;
  std::string body;
  std::map<std::string, std::string> headers;
  long connects = 0;
  long http_version = 0;
  CURLcode code = CURLE_OK;
};

// One libcurl easy handle: over TLS, reusing it reuses the connection, so GOAWAY shows up
// as new connects (CURLINFO_NUM_CONNECTS).
class Client {
 public:
  explicit Client(bool h2c = true) : curl_(curl_easy_init()), h2c_(h2c) {}
  ~Client() { curl_easy_cleanup(curl_); }

  Reply request(const std::string& method, const std::string& url, const std::string& body = {},
                const std::vector<std::string>& headers = {}) {
    Reply r;
    curl_easy_reset(curl_);
    curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl_, CURLOPT_CUSTOMREQUEST, method.c_str());
    if (method == "POST") {
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, body.c_str());
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    }
    curl_easy_setopt(curl_, CURLOPT_HTTP_VERSION,
                     url.starts_with("https") ? CURL_HTTP_VERSION_2TLS
                     : h2c_                   ? CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE
                                              : CURL_HTTP_VERSION_1_1);
    if (h2c_ && !url.starts_with("https")) {
      // curl 7.88.1 (bookworm) never sends a second request on a reused prior-knowledge
      // h2c connection (seen against nghttpd too), so h2c requests each get their own.
      // Tests that need reuse (GOAWAY) go over TLS, where curl reuses fine.
      curl_easy_setopt(curl_, CURLOPT_FRESH_CONNECT, 1L);
      curl_easy_setopt(curl_, CURLOPT_FORBID_REUSE, 1L);
    }
    curl_easy_setopt(curl_, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(curl_, CURLOPT_SSL_VERIFYHOST, 0L);
    curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS, 10000L);
    curl_slist* list = nullptr;
    for (const auto& h : headers) list = curl_slist_append(list, h.c_str());
    list = curl_slist_append(list, "Expect:");
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &r.body);
    curl_easy_setopt(
        curl_, CURLOPT_WRITEFUNCTION, +[](char* p, size_t s, size_t n, void* u) {
          static_cast<std::string*>(u)->append(p, s * n);
          return s * n;
        });
    curl_easy_setopt(curl_, CURLOPT_HEADERDATA, &r.headers);
    curl_easy_setopt(
        curl_, CURLOPT_HEADERFUNCTION, +[](char* p, size_t s, size_t n, void* u) {
          std::string line(p, s * n);
          auto colon = line.find(':');
          if (colon != std::string::npos) {
            std::string name = line.substr(0, colon);
            for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            std::string value = line.substr(colon + 1);
            value.erase(0, value.find_first_not_of(' '));
            value.erase(value.find_last_not_of("\r\n") + 1);
            (*static_cast<std::map<std::string, std::string>*>(u))[name] = value;
          }
          return s * n;
        });
    r.code = curl_easy_perform(curl_);
    curl_slist_free_all(list);
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_getinfo(curl_, CURLINFO_NUM_CONNECTS, &r.connects);
    curl_easy_getinfo(curl_, CURLINFO_HTTP_VERSION, &r.http_version);
    return r;
  }

 private:
  CURL* curl_;
  bool h2c_;
};

// `sirena-sim` on 127.0.0.1 with ephemeral ports, read back from its "listening on" line.
class Sim {
 public:
  Sim(const TempDir& dir, std::vector<std::string> args) : log_(dir.path() + "/sim.log") {
    std::vector<std::string> argv = {testing::bin_dir() + "/sirena-sim"};
    argv.insert(argv.end(), args.begin(), args.end());
    proc_ = std::make_unique<Process>(argv, std::map<std::string, std::string>{}, log_);
    bool up = testing::wait_until(
        [&] {
          std::string text = testing::read_file(log_);
          std::smatch m;
          if (std::regex_search(text, m, std::regex("admin on [^\\n]*:(\\d+)\\n"))) admin_ = std::stoi(m[1]);
          if (!std::regex_search(text, m, std::regex("listening on [^\\n]*:(\\d+)\\n"))) return false;
          port_ = std::stoi(m[1]);
          return true;
        },
        std::chrono::seconds(10));
    if (!up) ADD_FAILURE() << "sirena-sim did not start: " << testing::read_file(log_);
  }
  std::string url(const std::string& path, const char* scheme = "http") const {
    return std::string(scheme) + "://127.0.0.1:" + std::to_string(port_) + path;
  }
  std::string admin_url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(admin_) + path;
  }
  json stats() {
    Client c(false);
    return json::parse(c.request("GET", admin_url("/stats")).body);
  }
  int stop() {
    proc_->signal(SIGTERM);
    return proc_->wait_exit(std::chrono::seconds(10)).value_or(-1);
  }

 private:
  std::string log_;
  std::unique_ptr<Process> proc_;
  int port_ = 0;
  int admin_ = 0;
};

void write_self_signed(const std::string& cert_path, const std::string& key_path);

std::vector<std::string> apns_headers(int64_t iat = now_s()) {
  return {"authorization: bearer " + es256_jwt(iat), "apns-topic: it.comune.soliera.app",
          "apns-push-type: alert", "apns-priority: 10"};
}

std::string apns_payload(const std::string& alert_id, const std::string& body = "Esondazione") {
  return json{{"aps", {{"alert", {{"title", "Allerta"}, {"body", body}}}}}, {"alert_id", alert_id}}.dump();
}

TEST(SimApns, AcceptsOverH2cWithApnsIdAndCountsDuplicates) {
  TempDir dir;
  Sim sim(dir, {"apns", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"});
  Client c;
  Reply r = c.request("POST", sim.url("/3/device/" + kToken), apns_payload("a1"), apns_headers());
  ASSERT_EQ(r.code, CURLE_OK);
  EXPECT_EQ(r.http_version, CURL_HTTP_VERSION_2_0);
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(
      std::regex_match(r.headers["apns-id"], std::regex("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
                                                        "[0-9a-f]{12}")));
  auto echo = apns_headers();
  echo.push_back("apns-id: 123e4567-e89b-12d3-a456-426614174000");
  r = c.request("POST", sim.url("/3/device/" + kToken), apns_payload("a1"), echo);
  EXPECT_EQ(r.headers["apns-id"], "123e4567-e89b-12d3-a456-426614174000");

  json s = json::parse(c.request("GET", sim.url("/stats")).body);  // over h2c too
  EXPECT_EQ(s["accepted"], 2);
  EXPECT_EQ(s["duplicates"], 1);
  EXPECT_EQ(s["by_alert"]["a1"]["unique"], 1);
  EXPECT_EQ(sim.stats()["duplicates"], 1);  // and over HTTP/1.1 on --admin
  Client admin(false);
  EXPECT_EQ(admin.request("POST", sim.admin_url("/reset")).status, 200);
  EXPECT_EQ(sim.stats()["accepted"], 0);
  EXPECT_EQ(sim.stop(), 0);
}

TEST(SimApns, AnswersApplesErrors) {
  TempDir dir;
  testing::write_file(dir.path() + "/gone.txt", "# uninstalled apps\n" + kGoneToken + "\n");
  Sim sim(dir, {"apns", "--listen", "127.0.0.1:0", "--unregistered", dir.path() + "/gone.txt"});
  Client c;
  auto reason = [](const Reply& r) { return json::parse(r.body).value("reason", ""); };
  Reply r = c.request("POST", sim.url("/3/device/xyz"), apns_payload("a"), apns_headers());
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(reason(r), "BadDeviceToken");
  auto no_topic = apns_headers();
  no_topic.erase(no_topic.begin() + 1);
  r = c.request("POST", sim.url("/3/device/" + kToken), apns_payload("a"), no_topic);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(reason(r), "MissingTopic");
  r = c.request("POST", sim.url("/3/device/" + kToken), apns_payload("a"), apns_headers(now_s() - 2 * 3600));
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(reason(r), "ExpiredProviderToken");
  int64_t before = now_s() * 1000;
  r = c.request("POST", sim.url("/3/device/" + kGoneToken), apns_payload("a"), apns_headers());
  EXPECT_EQ(r.status, 410);
  EXPECT_EQ(reason(r), "Unregistered");
  EXPECT_GE(json::parse(r.body)["timestamp"].get<int64_t>(), before);
  r = c.request("POST", sim.url("/3/device/" + kToken), apns_payload("a", std::string(5000, 'x')),
                apns_headers());
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(reason(r), "PayloadTooLarge");
}

TEST(SimApns, InjectedFailuresAreDeterministicGivenTheSeed) {
  TempDir dir;
  Sim sim(dir, {"apns", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--fail", "503:0.05", "--fail",
                "429:0.01", "--seed", "42"});
  FaultOptions o;
  o.fail = {{503, 0.05}, {429, 0.01}};
  o.seed = 42;
  Faults expected(o);
  std::map<int, int> want, got;
  Client c;
  auto headers = apns_headers();
  for (int i = 0; i < 2000; ++i) {
    int f = expected.draw_failure();
    ++want[f ? f : 200];
    Reply r = c.request("POST", sim.url("/3/device/" + kToken), apns_payload("a"), headers);
    ++got[static_cast<int>(r.status)];
    if (r.status == 429) {
      EXPECT_EQ(r.headers["retry-after"], "1");
    }
    if (r.status == 503) {
      EXPECT_EQ(json::parse(r.body)["reason"], "ServiceUnavailable");
    }
  }
  EXPECT_EQ(got, want);  // the same seed gives the same sequence
  EXPECT_NEAR(got[503], 100, 45);
  EXPECT_NEAR(got[429], 20, 16);
  json s = sim.stats();
  EXPECT_EQ(s["rejected"]["503"], got[503]);
  EXPECT_EQ(s["accepted"], got[200]);
  EXPECT_EQ(s["requests"], 2000);
}

TEST(SimApns, GoawayEveryNStreamsMakesClientsReconnect) {
  TempDir dir;
  write_self_signed(dir.path() + "/cert.pem", dir.path() + "/key.pem");
  Sim sim(dir, {"apns", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--goaway-every", "10", "--tls",
                dir.path() + "/cert.pem", dir.path() + "/key.pem"});
  Client c;
  long connects = 0;
  auto headers = apns_headers();
  for (int i = 0; i < 35; ++i) {
    Reply r = c.request("POST", sim.url("/3/device/" + kToken, "https"),
                        apns_payload("a" + std::to_string(i)), headers);
    ASSERT_EQ(r.status, 200) << i;
    connects += r.connects;
  }
  EXPECT_EQ(connects, 4);  // 10 + 10 + 10 + 5 streams
  json s = sim.stats();
  EXPECT_EQ(s["goaways"], 3);
  EXPECT_EQ(s["accepted"], 35);
  EXPECT_EQ(s["duplicates"], 0);
}

TEST(SimApns, ResetEveryNRequestsDropsThatRequest) {
  TempDir dir;
  Sim sim(dir, {"apns", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--reset-every", "5"});
  int ok = 0, failed = 0;
  for (int i = 0; i < 20; ++i) {
    Client fresh;  // a fresh connection each time, so curl has nothing to retry
    Reply r = fresh.request("POST", sim.url("/3/device/" + kToken), apns_payload("a"), apns_headers());
    (r.code == CURLE_OK && r.status == 200 ? ok : failed)++;
  }
  EXPECT_EQ(ok, 16);
  EXPECT_EQ(failed, 4);
  json s = sim.stats();
  EXPECT_EQ(s["resets"], 4);
  EXPECT_EQ(s["accepted"], 16);
}

TEST(SimApns, LatencyDelaysAnswersWithoutBlocking) {
  TempDir dir;
  Sim sim(dir, {"apns", "--listen", "127.0.0.1:0", "--latency-ms", "40,60"});
  Client c;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(c.request("POST", sim.url("/3/device/" + kToken), apns_payload("a"), apns_headers()).status,
              200);
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(ms, 5 * 25);
}

TEST(SimApns, RecordsOneLinePerAcceptedMessageAndFlushesOnSigterm) {
  TempDir dir;
  std::string record = dir.path() + "/record.tsv";
  Sim sim(dir, {"apns", "--listen", "127.0.0.1:0", "--record", record});
  Client c;
  for (const char* id : {"a1", "a1", "a2"})
    ASSERT_EQ(c.request("POST", sim.url("/3/device/" + kToken), apns_payload(id), apns_headers()).status,
              200);
  EXPECT_EQ(c.request("POST", sim.url("/3/device/zz"), apns_payload("a3"), apns_headers()).status, 400);
  EXPECT_EQ(sim.stop(), 0);
  std::istringstream in(testing::read_file(record));
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 3u);
  char hash[17];
  std::snprintf(hash, sizeof hash, "%016llx",
                static_cast<unsigned long long>(fnv1a64("Allerta\nEsondazione")));
  EXPECT_EQ(lines[0], kToken + "\ta1\t" + hash);
  EXPECT_EQ(lines[2], kToken + "\ta2\t" + hash);
}

// A self-signed certificate for 127.0.0.1, written as PEM files.
void write_self_signed(const std::string& cert_path, const std::string& key_path) {
  PKey key = make_key("EC", "P-256");
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, key.get());
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("127.0.0.1"),
                             -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509_sign(x, key.get(), EVP_sha256());
  FILE* f = std::fopen(cert_path.c_str(), "w");
  PEM_write_X509(f, x);
  std::fclose(f);
  f = std::fopen(key_path.c_str(), "w");
  PEM_write_PrivateKey(f, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
  X509_free(x);
}

TEST(SimApns, TlsWithAlpnH2) {
  TempDir dir;
  write_self_signed(dir.path() + "/cert.pem", dir.path() + "/key.pem");
  Sim sim(dir,
          {"apns", "--listen", "127.0.0.1:0", "--tls", dir.path() + "/cert.pem", dir.path() + "/key.pem"});
  Client c;
  for (int i = 0; i < 3; ++i) {
    Reply r = c.request("POST", sim.url("/3/device/" + kToken, "https"), apns_payload("a"), apns_headers());
    ASSERT_EQ(r.code, CURLE_OK) << curl_easy_strerror(r.code);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.http_version, CURL_HTTP_VERSION_2_0);
    EXPECT_EQ(r.connects, i == 0 ? 1 : 0);  // one TLS connection carries all three
  }
}

TEST(SimApns, MaxStreamsIsAdvertised) {
  // nghttp (nghttp2-client) prints the server's SETTINGS frame.
  ASSERT_EQ(std::system("command -v nghttp >/dev/null 2>&1"), 0)
      << "nghttp is not installed (scripts/deps.sh installs nghttp2-client)";
  TempDir dir;
  Sim sim(dir, {"apns", "--listen", "127.0.0.1:0", "--max-streams", "7"});
  std::string out;
  FILE* p = popen(("timeout 10 nghttp -nv " + sim.url("/stats") + " 2>&1").c_str(), "r");
  ASSERT_NE(p, nullptr);
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  pclose(p);
  EXPECT_NE(out.find("[SETTINGS_MAX_CONCURRENT_STREAMS(0x03):7]"), std::string::npos) << out;
}

TEST(SimFcm, OAuthTokenThenSendThenUnregistered) {
  TempDir dir;
  testing::write_file(dir.path() + "/gone.txt", "gone-token\n");
  Sim sim(dir, {"fcm", "--listen", "127.0.0.1:0", "--unregistered", dir.path() + "/gone.txt"});
  Client c;
  std::string form = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=" +
                     rs256_assertion(now_s(), sim.url("/token"));
  Reply t = c.request("POST", sim.url("/token"), form, {"content-type: application/x-www-form-urlencoded"});
  ASSERT_EQ(t.status, 200) << t.body;
  std::string access = json::parse(t.body)["access_token"];
  std::vector<std::string> auth = {"authorization: Bearer " + access, "content-type: application/json"};
  std::string msg = json{{"message",
                          {{"token", "fcm-token-1"},
                           {"notification", {{"title", "Allerta"}, {"body", "Esondazione"}}},
                           {"data", {{"alert_id", "a1"}}},
                           {"android", {{"priority", "HIGH"}, {"ttl", "3600s"}}}}}}
                        .dump();
  Reply r = c.request("POST", sim.url("/v1/projects/soliera-app/messages:send"), msg, auth);
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(json::parse(r.body)["name"].get<std::string>().starts_with("projects/soliera-app/messages/"));

  r = c.request("POST", sim.url("/v1/projects/soliera-app/messages:send"),
                R"({"message":{"token":"gone-token","data":{"alert_id":"a1"}}})", auth);
  EXPECT_EQ(r.status, 404);
  auto err = json::parse(r.body)["error"];
  EXPECT_EQ(err["code"], 404);
  EXPECT_EQ(err["status"], "NOT_FOUND");
  EXPECT_EQ(err["details"][0]["@type"], "type.googleapis.com/google.firebase.fcm.v1.FcmError");
  EXPECT_EQ(err["details"][0]["errorCode"], "UNREGISTERED");

  r = c.request("POST", sim.url("/v1/projects/soliera-app/messages:send"), msg,
                {"authorization: Bearer not-issued-here"});
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(json::parse(r.body)["error"]["status"], "UNAUTHENTICATED");
  json s = json::parse(c.request("GET", sim.url("/stats")).body);
  EXPECT_EQ(s["accepted"], 1);
  EXPECT_EQ(s["requests"], 3);  // /token and /stats are not message requests
}

TEST(SimFcm, QuotaExceededCarriesRetryAfter) {
  TempDir dir;
  Sim sim(dir, {"fcm", "--listen", "127.0.0.1:0", "--fail", "429:1"});
  Client c;
  Reply r = c.request("POST", sim.url("/v1/projects/p/messages:send"), R"({"message":{"token":"t"}})",
                      {"authorization: Bearer x"});
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(r.headers["retry-after"], "1");
  EXPECT_EQ(json::parse(r.body)["error"]["details"][0]["errorCode"], "QUOTA_EXCEEDED");
}

TEST(SimSms, KannelSendsmsAndGenericJson) {
  TempDir dir;
  testing::write_file(dir.path() + "/gone.txt", "+39000\n");
  std::string record = dir.path() + "/record.tsv";
  Sim sim(dir, {"sms", "--listen", "127.0.0.1:0", "--username", "sirena", "--password", "secret",
                "--unregistered", dir.path() + "/gone.txt", "--record", record});
  Client c(false);
  Reply r = c.request(
      "GET", sim.url("/cgi-bin/sendsms?username=sirena&password=secret&from=Soliera"
                     "&to=%2B39111+%2B39222&text=Allerta+Secchia&dlr-mask=9"
                     "&dlr-url=http%3A%2F%2F127.0.0.1%2Fv1%2Fdlr%2Fsms%3Falert%3Dal-1%26type%3D%25d"));
  EXPECT_EQ(r.status, 202);
  EXPECT_EQ(r.body, "0: Accepted for delivery");
  r = c.request("GET", sim.url("/cgi-bin/sendsms?username=sirena&password=nope&to=1&text=x"));
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.body, "Authorization failed for sendsms");
  r = c.request("POST", sim.url("/cgi-bin/sendsms"), "username=sirena&password=secret&to=%2B39000&text=x",
                {"content-type: application/x-www-form-urlencoded"});
  EXPECT_EQ(r.status, 400);

  r = c.request("POST", sim.url("/sms"), R"({"to":["+39333","+39000"],"text":"Allerta","reference":"al-2"})",
                {"authorization: Bearer k", "content-type: application/json"});
  EXPECT_EQ(r.status, 200);
  json b = json::parse(r.body);
  EXPECT_EQ(b["accepted"], 1);
  EXPECT_EQ(b["ids"].size(), 1u);
  EXPECT_EQ(b["rejected"][0], "+39000");
  EXPECT_EQ(c.request("POST", sim.url("/sms"), R"({"to":"+39333","text":"x"})").status, 401);

  json s = json::parse(c.request("GET", sim.url("/stats")).body);
  EXPECT_EQ(s["accepted"], 3);
  EXPECT_EQ(s["by_alert"]["al-1"]["accepted"], 2);
  EXPECT_EQ(s["rejected"]["400"], 2);
  EXPECT_EQ(sim.stop(), 0);
  std::string lines = testing::read_file(record);
  EXPECT_NE(lines.find("+39111\tal-1\t"), std::string::npos);
  EXPECT_NE(lines.find("+39333\tal-2\t"), std::string::npos);
}

}  // namespace
}  // namespace sirena::sim
