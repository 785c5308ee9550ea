// Who may call what, and what the HTTP layer refuses before any handler runs (issue 14
// findings 4, 9, 10 and 11), against a real redis-server and sirenad on 127.0.0.1.
//
// - RouteRoleTenantMatrix: every route the daemon registered (read from its start-up
//   "http_routes" log line, so a new route without an entry here fails) with every role
//   of tenant soliera, no key, a wrong key and another tenant's key on soliera's resources.
// - Ambiguous HTTP/1.1 framing and duplicate credentials: 400, over a raw socket.
// - HTTP/2 rapid reset (CVE-2023-44487): a small nghttp2 client sends HEADERS+RST_STREAM
//   pairs; the handlers (and Redis) must not see them, and the connection is closed past
//   http.limits.max_resets_per_connection.
// - Rate limits per key and per address: 429 with Retry-After, counted.
// - The deliveries cursor and limit: 400, never 500.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string_view>

#include "tests/support/cap_fixture.h"
#include "tests/support/harness.h"

namespace sirena::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kAdmin = "ac-soliera-admin";
constexpr const char* kOperator = "ac-soliera-operator";
constexpr const char* kApprover = "ac-soliera-approver";
constexpr const char* kApp = "ac-soliera-app";
constexpr const char* kBastigliaAdmin = "ac-bastiglia-admin";
constexpr const char* kSender = "protezionecivile@comune.soliera.mo.it";

std::string key_line(const std::string& id, const std::string& role, const std::string& key) {
  return "      " + id + ": {role: " + role + ", sha256: " + hash_key(key) + "}\n";
}

// soliera: every role; every Actual alert needs approval (so approve can be called).
// bastiglia: an admin, whose key must see nothing of soliera's.
std::string write_config(const std::string& dir) {
  std::string y = "log: {level: debug}\nredis: {url: managed}\ntenants:\n";
  y += "  soliera:\n    senders: [\"" + std::string(kSender) + "\"]\n";
  y += "    approval: {statuses: [Actual], min_recipients: 0}\n    keys:\n";
  y += key_line("soliera-admin", "admin", kAdmin) + key_line("soliera-operator", "operator", kOperator) +
       key_line("soliera-approver", "approver", kApprover) + key_line("soliera-app", "citizen-app", kApp);
  y += "  bastiglia:\n    senders: [protezionecivile@comune.bastiglia.mo.it]\n    keys:\n";
  y += key_line("bastiglia-admin", "admin", kBastigliaAdmin);
  std::string path = dir + "/sirena.yaml";
  write_file(path, y);
  return path;
}

class AccessTest : public ::testing::Test {
 protected:
  void start(std::map<std::string, std::string> env = {}) {
    redis_ = std::make_unique<RedisServer>(dir_.path());
    redis_->start();
    env["SIRENA_REDIS_URL"] = redis_->url();
    daemon_ = std::make_unique<Sirenad>(write_config(dir_.path()), dir_.path(), env);
    daemon_->start();
    ASSERT_TRUE(wait_until([&] { return daemon_->ready(); }, 10s)) << daemon_->log();
  }
  void TearDown() override {
    if (daemon_) {
      EXPECT_EQ(daemon_->stop(), 0) << daemon_->log();
    }
  }

  HttpResponse call(const std::string& method, const std::string& path, const std::string& key,
                    const std::string& body = "", const std::string& content_type = "") {
    HttpRequest r{method, daemon_->base() + path, body, {}, false};
    if (!key.empty()) r.headers.push_back("Authorization: Bearer " + key);
    if (!content_type.empty()) r.headers.push_back("Content-Type: " + content_type);
    return http(r);
  }

  std::string alert(const std::string& status, const std::string& key = kOperator) {
    TestCap c;
    c.identifier = "ac-" + std::to_string(++serial_);
    c.status = status;
    auto r = call("POST", "/v1/alerts", key, c.xml(), "application/cap+xml");
    EXPECT_EQ(r.status, 202) << r.body;
    return json::parse(r.body, nullptr, false).value("id", "");
  }
  std::string recipient_body(const std::string& id) {
    return json({{"id", id},
                 {"language", "it"},
                 {"topics", {"Met"}},
                 {"phone", "3331234567"},
                 {"locations", {{{"lat", 44.7376}, {"lon", 10.9245}}}}})
        .dump();
  }
  std::string recipient(const std::string& key = kOperator) {
    std::string id = "r-ac-" + std::to_string(++serial_);
    auto r = call("PUT", "/v1/recipients/" + id, key, recipient_body(id), "application/json");
    EXPECT_EQ(r.status, 201) << r.body;
    return id;
  }
  std::string zone(const std::string& key = kOperator) {
    std::string name = "z-ac-" + std::to_string(++serial_);
    auto r = call("PUT", "/v1/zones/" + name, key, kSquare, "application/json");
    EXPECT_EQ(r.status, 201) << r.body;
    return name;
  }
  double metric(const std::string& series) {
    std::string text = daemon_->get("/metrics", "").body;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line))
      if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
    return 0;
  }

  static constexpr const char* kSquare =
      R"({"type":"Polygon","coordinates":[[[10.90,44.70],[10.95,44.70],[10.95,44.75],[10.90,44.75],[10.90,44.70]]]})";
  TempDir dir_;
  std::unique_ptr<RedisServer> redis_;
  std::unique_ptr<Sirenad> daemon_;
  int serial_ = 0;
};

json routes_from_log(const std::string& log) {
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    auto j = json::parse(line, nullptr, false);
    if (j.is_object() && j.value("event", "") == "http_routes") return j["routes"];
  }
  return json();
}

// The roles table, written out independently of tenants.cc: what each action allows.
const std::map<std::string, std::set<std::string>> kAllowed = {
    {"submit alerts", {"admin", "operator"}},
    {"approve alerts", {"admin", "approver"}},
    {"cancel alerts", {"admin", "operator", "approver"}},
    {"read alerts", {"admin", "operator", "approver"}},
    {"preview alerts", {"admin", "operator", "approver"}},
    {"write recipients", {"admin", "operator"}},
    {"read recipients", {"admin", "operator"}},
    {"write zones", {"admin", "operator"}},
    {"read zones", {"admin", "operator", "approver"}},
};

TEST_F(AccessTest, RouteRoleTenantMatrix) {
  start();
  json routes = routes_from_log(daemon_->log());
  ASSERT_TRUE(routes.is_array() && routes.size() >= 20) << daemon_->log();

  // How to call each route: a fresh soliera resource for the {param} (made by `prepare`,
  // with an operator's key), a body, and the statuses an allowed role gets.
  struct Case {
    std::function<std::string()> prepare;  // the {param} value; empty for routes without one
    std::string body, content_type;
    std::set<long> ok;
  };
  TestCap draft;  // previewed / submitted bodies: Test alerts need no approval
  draft.status = "Test";
  draft.identifier = "ac-preview";
  auto submit_body = [&] {
    TestCap c;
    c.identifier = "ac-submit-" + std::to_string(++serial_);
    c.status = "Test";
    return c.xml();
  };
  std::map<std::string, Case> cases = {
      {"POST /v1/alerts", {nullptr, "", "application/cap+xml", {202}}},
      {"POST /v1/alerts/preview", {nullptr, draft.xml(), "application/cap+xml", {200}}},
      {"GET /v1/alerts", {nullptr, "", "", {200}}},
      {"GET /v1/alerts/{id}", {[&] { return alert("Draft"); }, "", "", {200}}},
      {"POST /v1/alerts/{id}/approve", {[&] { return alert("Actual"); }, "", "", {200}}},
      {"GET /v1/alerts/{id}/deliveries", {[&] { return alert("Draft"); }, "", "", {200}}},
      {"GET /v1/alerts/{id}/events", {[&] { return alert("Draft"); }, "", "", {200}}},
      {"POST /v1/alerts/{id}/cancel", {[&] { return alert("Test"); }, "", "", {200}}},
      {"POST /v1/recipients/import",
       {nullptr, recipient_body("r-import") + "\n", "application/x-ndjson", {200}}},
      {"PUT /v1/recipients/{id}", {[&] { return recipient(); }, "", "application/json", {200}}},
      {"GET /v1/recipients/{id}", {[&] { return recipient(); }, "", "", {200}}},
      {"DELETE /v1/recipients/{id}", {[&] { return recipient(); }, "", "", {204}}},
      {"GET /v1/zones", {nullptr, "", "", {200}}},
      {"PUT /v1/zones/{name}", {[&] { return zone(); }, kSquare, "application/json", {200}}},
      {"GET /v1/zones/{name}", {[&] { return zone(); }, "", "", {200}}},
      {"DELETE /v1/zones/{name}", {[&] { return zone(); }, "", "", {204}}},
  };
  // Open routes: the same answer whoever calls (the DLR route checks its gateway's secret,
  // and there is no gateway "nosuch").
  std::map<std::string, std::pair<std::string, long>> open = {
      {"GET /healthz", {"/healthz", 200}},
      {"GET /readyz", {"/readyz", 200}},
      {"GET /metrics", {"/metrics", 200}},
      {"GET /v1/dlr/{gateway}", {"/v1/dlr/nosuch", 404}},
      {"POST /v1/dlr/{gateway}", {"/v1/dlr/nosuch", 404}},
  };

  const std::vector<std::pair<std::string, std::string>> roles = {
      {"admin", kAdmin}, {"operator", kOperator}, {"approver", kApprover}, {"citizen-app", kApp}};
  std::set<std::string> seen;
  std::cout << routes.size() << " routes x (" << roles.size() << " roles, no key, wrong key, bastiglia)\n";
  for (const auto& route : routes) {
    std::string method = route["method"], pattern = route["path"];
    std::string name = method + " " + pattern;
    seen.insert(name);
    SCOPED_TRACE(name);
    if (route["access"] == "open") {
      auto it = open.find(name);
      ASSERT_NE(it, open.end()) << "a new open route: add it to this test, saying who may call it";
      for (const char* key : {"", "nope", kAdmin, kApp, kBastigliaAdmin})
        EXPECT_EQ(call(method, it->second.first, key).status, it->second.second) << "key " << key;
      continue;
    }
    ASSERT_EQ(route["access"], "key");
    auto allowed = kAllowed.find(route["action"].get<std::string>());
    ASSERT_NE(allowed, kAllowed.end()) << "a new action: add it to kAllowed";
    auto it = cases.find(name);
    ASSERT_NE(it, cases.end()) << "a new route: add how to call it to this test";
    const Case& c = it->second;
    auto path_for = [&](const std::string& param) {
      return std::regex_replace(pattern, std::regex("\\{[a-z]+\\}"), param);
    };
    auto body_for = [&](const std::string& param) {
      if (name == "POST /v1/alerts") return submit_body();
      if (name == "PUT /v1/recipients/{id}") return recipient_body(param);
      return c.body;
    };

    // No key, a wrong key: 401 before anything else.
    std::string param = c.prepare ? c.prepare() : "";
    auto none = call(method, path_for(param), "", body_for(param), c.content_type);
    EXPECT_EQ(none.status, 401) << none.body;
    EXPECT_EQ(json::parse(none.body, nullptr, false)["error"]["code"], "missing_api_key");
    auto wrong = call(method, path_for(param), "not-a-key", body_for(param), c.content_type);
    EXPECT_EQ(wrong.status, 401) << wrong.body;
    EXPECT_EQ(json::parse(wrong.body, nullptr, false)["error"]["code"], "invalid_api_key");

    // Every role of soliera: allowed exactly per the table.
    for (const auto& [role, key] : roles) {
      SCOPED_TRACE(role);
      param = c.prepare ? c.prepare() : "";
      auto r = call(method, path_for(param), key, body_for(param), c.content_type);
      if (allowed->second.count(role)) {
        EXPECT_TRUE(c.ok.count(r.status)) << r.status << " " << r.body;
      } else {
        EXPECT_EQ(r.status, 403) << r.body;
        EXPECT_EQ(json::parse(r.body, nullptr, false)["error"]["code"], "forbidden_role");
      }
    }

    // Another tenant's admin on soliera's resource: indistinguishable from a missing one,
    // and soliera's resource is untouched.
    if (c.prepare) {
      param = c.prepare();
      auto r = call(method, path_for(param), kBastigliaAdmin, body_for(param), c.content_type);
      if (method == "PUT") {
        EXPECT_EQ(r.status, 201) << "bastiglia writes its own " << param << ": " << r.body;
      } else {
        EXPECT_EQ(r.status, 404) << r.body;
        EXPECT_EQ(json::parse(r.body, nullptr, false)["error"]["code"], "not_found") << r.body;
      }
      std::string read = pattern.rfind("/v1/alerts", 0) == 0  ? "/v1/alerts/" + param
                         : pattern.rfind("/v1/zones", 0) == 0 ? "/v1/zones/" + param
                                                              : "/v1/recipients/" + param;
      EXPECT_EQ(call("GET", read, kAdmin).status, 200) << "soliera's " << read << " is still there";
    } else if (name == "GET /v1/alerts") {
      // The listing shows the caller's tenant only.
      auto mine = call(method, pattern, kAdmin), theirs = call(method, pattern, kBastigliaAdmin);
      ASSERT_EQ(theirs.status, 200) << theirs.body;
      auto items = json::parse(theirs.body)["items"];
      auto mine_items = json::parse(mine.body)["items"];  // a copy: a temporary's member dies with it
      ASSERT_GT(mine_items.size(), 0u);
      for (const auto& item : mine_items)
        for (const auto& other : items) EXPECT_NE(other["id"], item["id"]);
    }
  }
  for (const auto& [name, c] : cases) EXPECT_TRUE(seen.count(name)) << name << " is no longer registered";
  for (const auto& [name, c] : open) EXPECT_TRUE(seen.count(name)) << name << " is no longer registered";
}

// ---- raw HTTP/1.1 ---------------------------------------------------------------------

int connect_to(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// Sends `bytes` and reads until the server closes the connection or 10 s pass.
std::string raw_exchange(int port, const std::string& bytes) {
  int fd = connect_to(port);
  if (fd < 0) return "";
  send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char buf[4096];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

int count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

TEST_F(AccessTest, AmbiguousFramingAndDuplicateCredentialsAre400) {
  start();
  int port = daemon_->port();
  TestCap c;
  c.identifier = "smuggle-1";
  c.status = "Test";
  std::string body = c.xml();
  auto head = [&](const std::string& extra) {
    return "POST /v1/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + std::string(kOperator) +
           "\r\nContent-Type: application/cap+xml\r\n" + extra + "\r\n";
  };
  // A second request hidden behind the first one's "real" length: it must never run.
  std::string hidden =
      "GET /v1/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + std::string(kOperator) + "\r\n\r\n";
  std::string two_lengths = head("Content-Length: " + std::to_string(body.size()) + "\r\nContent-Length: " +
                                 std::to_string(body.size() + hidden.size()) + "\r\n") +
                            body + hidden;
  std::string out = raw_exchange(port, two_lengths);
  EXPECT_EQ(out.rfind("HTTP/1.1 400", 0), 0u) << out;
  EXPECT_NE(out.find("ambiguous_framing"), std::string::npos) << out;
  EXPECT_EQ(count(out, "HTTP/1.1 "), 1) << "the connection is closed: nothing after the head is served\n"
                                        << out;

  std::string chunked = "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n";
  std::string te = head(chunked) + "5\r\nhello\r\n0\r\n\r\n";
  out = raw_exchange(port, te);
  EXPECT_EQ(out.rfind("HTTP/1.1 400", 0), 0u) << out;
  EXPECT_EQ(count(out, "HTTP/1.1 "), 1) << out;

  std::string two_keys = "GET /v1/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                         std::string(kOperator) + "\r\nAuthorization: Bearer " + std::string(kApp) +
                         "\r\nConnection: close\r\n\r\n";
  out = raw_exchange(port, two_keys);
  EXPECT_EQ(out.rfind("HTTP/1.1 400", 0), 0u) << out;
  EXPECT_NE(out.find("duplicate_header"), std::string::npos) << out;

  // Over HTTP/2 as well (curl sends both headers as given).
  auto h2 = http({"GET",
                  daemon_->base() + "/v1/alerts",
                  "",
                  {"Authorization: Bearer " + std::string(kOperator), "Authorization: Bearer nope"},
                  true});
  EXPECT_EQ(h2.status, 400) << h2.body;

  // Nothing was stored by any of them; a plain request still works.
  auto list = daemon_->get("/v1/alerts", kOperator);
  ASSERT_EQ(list.status, 200);
  EXPECT_EQ(json::parse(list.body)["items"].size(), 0u) << list.body;
  out = raw_exchange(
      port, head("Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n") + body);
  EXPECT_EQ(out.rfind("HTTP/1.1 202", 0), 0u) << out;
}

// ---- HTTP/2 rapid reset -----------------------------------------------------------------

// A blocking nghttp2 client session on a socket: submits HEADERS and RST_STREAM at once.
class H2Client {
 public:
  explicit H2Client(int port) : fd_(connect_to(port)) {
    nghttp2_session_callbacks* cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(
        cb, [](nghttp2_session*, const nghttp2_frame* f, void* u) {
          auto* self = static_cast<H2Client*>(u);
          if (f->hd.type == NGHTTP2_GOAWAY) self->goaway_ = true;
          if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_RESPONSE) ++self->responses_;
          return 0;
        });
    nghttp2_session_callbacks_set_on_stream_close_callback(cb,
                                                           [](nghttp2_session*, int32_t, uint32_t, void* u) {
                                                             ++static_cast<H2Client*>(u)->closed_;
                                                             return 0;
                                                           });
    nghttp2_session_client_new(&session_, cb, this);
    nghttp2_session_callbacks_del(cb);
    nghttp2_settings_entry s{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100};
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, &s, 1);
  }
  ~H2Client() {
    nghttp2_session_del(session_);
    if (fd_ >= 0) close(fd_);
  }
  bool connected() const { return fd_ >= 0 && !eof_; }
  bool goaway() const { return goaway_; }
  int responses() const { return responses_; }

  // Queues a GET with `key` and right behind it its RST_STREAM (CANCEL). Each is
  // serialised before the next is submitted: nghttp2 would drop a request whose HEADERS
  // are still queued when its reset is submitted, and send nothing.
  void request_and_reset(const std::string& path, const std::string& key) {
    std::string auth = "Bearer " + key;
    nghttp2_nv nv[] = {nv_of(":method", "GET"), nv_of(":scheme", "http"), nv_of(":authority", "127.0.0.1"),
                       nv_of(":path", path), nv_of("authorization", auth)};
    int32_t id = nghttp2_submit_request(session_, nullptr, nv, 5, nullptr, nullptr);
    serialise();
    if (id > 0) nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    serialise();
  }
  // Writes what is queued in one burst, reading whatever the server sent meanwhile.
  // False once the server has closed the connection.
  bool flush() {
    serialise();
    size_t off = 0;
    while (off < out_.size() && !eof_) {
      pollfd p{fd_, POLLOUT | POLLIN, 0};
      poll(&p, 1, 1000);
      if (p.revents & (POLLIN | POLLHUP | POLLERR)) read_some();
      if (eof_ || !(p.revents & POLLOUT)) continue;
      ssize_t w = send(fd_, out_.data() + off, out_.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w < 0 && errno != EAGAIN) eof_ = true;
      if (w > 0) off += static_cast<size_t>(w);
    }
    out_.clear();
    read_some();
    return !eof_;
  }
  // Reads until `cond` holds, the server closes, or `timeout` passes.
  bool read_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!cond() && !eof_ && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 50) > 0) read_some();
    }
    return cond();
  }

 private:
  // `value` must outlive the submit: a literal, or a string of the caller's.
  static nghttp2_nv nv_of(const char* name, std::string_view value) {
    return {reinterpret_cast<uint8_t*>(const_cast<char*>(name)),
            reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), strlen(name), value.size(),
            NGHTTP2_NV_FLAG_NONE};
  }
  void serialise() {
    const uint8_t* data;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(session_, &data)) > 0)
      out_.append(reinterpret_cast<const char*>(data), n);
  }
  void read_some() {
    char buf[65536];
    for (;;) {
      ssize_t n = recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        eof_ = true;
        return;
      }
      if (n < 0) return;
      if (nghttp2_session_mem_recv(session_, reinterpret_cast<uint8_t*>(buf), static_cast<size_t>(n)) < 0) {
        eof_ = true;
        return;
      }
    }
  }

  int fd_;
  std::string out_;
  nghttp2_session* session_ = nullptr;
  bool eof_ = false, goaway_ = false;
  int responses_ = 0, closed_ = 0;
};

TEST_F(AccessTest, RapidResetCostsNoHandlerAndClosesTheConnection) {
  // No reset limit and no rate limit here: what is measured is the cost of a reset stream.
  start({{"SIRENA_HTTP_LIMITS_MAX_RESETS_PER_CONNECTION", "1000000000"},
         {"SIRENA_HTTP_LIMITS_KEY_RATE", "0"},
         {"SIRENA_HTTP_LIMITS_ADDRESS_RATE", "0"}});
  std::string id = alert("Draft");
  std::string redis_before = redis_->cli({"INFO", "stats"});
  auto commands = [](const std::string& info) {
    std::smatch m;
    return std::regex_search(info, m, std::regex("total_commands_processed:(\\d+)")) ? std::stod(m[1]) : 0.0;
  };
  constexpr int kPairs = 20'000;
  {
    H2Client client(daemon_->port());
    for (int i = 0; i < kPairs; ++i) {
      client.request_and_reset("/v1/alerts/" + id, kOperator);
      if (i % 200 == 199) {
        ASSERT_TRUE(client.flush()) << "closed after " << i << " pairs\n" << daemon_->log();
      }
    }
    ASSERT_TRUE(client.flush());
    // The daemon answers others meanwhile, and at once.
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(daemon_->get("/v1/alerts/" + id, kOperator).status, 200);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  }
  // Every pair was seen by the server (queued or running), and almost none ran a handler.
  // (h2o itself may drop a few that it held back, past max_concurrent_streams: no cost either.)
  ASSERT_TRUE(wait_until(
      [&] { return metric("sirena_http_abandoned_total{stage=\"queued\"}") >= kPairs * 0.9; }, 20s))
      << daemon_->get("/metrics", "").body;
  double queued = metric("sirena_http_abandoned_total{stage=\"queued\"}");
  double running = metric("sirena_http_abandoned_total{stage=\"running\"}") +
                   metric("sirena_http_requests_total{code=\"200\",route=\"/v1/alerts/{id}\"}");
  EXPECT_LE(queued, kPairs);
  std::cout << "rapid reset: " << queued << " dropped before a handler, " << running << " ran\n";
  EXPECT_LE(running, kPairs * 0.1);
  // Each handler that runs reads the alert from Redis: those that did not, did not.
  double redis_work = commands(redis_->cli({"INFO", "stats"})) - commands(redis_before);
  EXPECT_LT(redis_work, kPairs * 0.5) << "Redis commands during the flood";
}

TEST_F(AccessTest, AConnectionThatKeepsResettingIsClosed) {
  start({{"SIRENA_HTTP_LIMITS_MAX_RESETS_PER_CONNECTION", "500"},
         {"SIRENA_HTTP_LIMITS_KEY_RATE", "0"},
         {"SIRENA_HTTP_LIMITS_ADDRESS_RATE", "0"}});
  H2Client client(daemon_->port());
  int sent = 0;
  for (; sent < 20'000 && client.connected(); sent += 100) {
    for (int i = 0; i < 100; ++i) client.request_and_reset("/v1/alerts/x", kOperator);
    client.flush();
  }
  client.read_until([&] { return !client.connected(); }, 10s);
  EXPECT_FALSE(client.connected()) << "still open after " << sent << " pairs";
  EXPECT_EQ(metric("sirena_http_connections_closed_total{reason=\"resets\"}"), 1);
  EXPECT_LT(sent, 10'000) << "closed long before the end (the client notices a few writes late)";
  EXPECT_EQ(daemon_->get("/healthz", "").status, 200);
  EXPECT_EQ(daemon_->get("/v1/alerts", kOperator).status, 200) << "other connections are served";
}

// ---- rate limits ------------------------------------------------------------------------

TEST_F(AccessTest, RateLimitsPerKeyAndPerAddressAnswer429WithRetryAfter) {
  start({{"SIRENA_HTTP_LIMITS_KEY_RATE", "1"},
         {"SIRENA_HTTP_LIMITS_KEY_BURST", "5"},
         {"SIRENA_HTTP_LIMITS_ADDRESS_RATE", "1"},
         {"SIRENA_HTTP_LIMITS_ADDRESS_BURST", "12"}});
  int ok = 0;
  HttpResponse last;
  for (int i = 0; i < 8; ++i) {
    last = daemon_->get("/v1/alerts", kOperator);
    if (last.status == 200) ++ok;
  }
  EXPECT_EQ(ok, 5) << "the key's burst";
  EXPECT_EQ(last.status, 429) << last.body;
  EXPECT_EQ(json::parse(last.body)["error"]["code"], "rate_limited");
  EXPECT_GE(std::stoi(last.headers["retry-after"]), 1);
  EXPECT_EQ(daemon_->get("/v1/alerts", kApprover).status, 200) << "another key has its own bucket";
  // The address's bucket (12) is spent by now, whatever the key, wrong keys included.
  for (int i = 0; i < 5; ++i) last = daemon_->get("/v1/alerts", "wrong-key");
  EXPECT_EQ(last.status, 429) << last.body;
  EXPECT_GE(metric("sirena_http_rate_limited_total{scope=\"key\"}"), 3);
  EXPECT_GE(metric("sirena_http_rate_limited_total{scope=\"address\"}"), 1);
  EXPECT_EQ(daemon_->get("/healthz", "").status, 200) << "probes are not limited";
}

// ---- deliveries listing parameters ------------------------------------------------------

TEST_F(AccessTest, DeliveriesCursorAndLimitAreValidated) {
  start();
  std::string id = alert("Draft");
  std::string base = "/v1/alerts/" + id + "/deliveries";
  EXPECT_EQ(daemon_->get(base, kOperator).status, 200);
  for (const std::string& bad :
       {std::string(5000, '9'), std::string("18446744073709551616"), std::string("-1"), std::string("12abc"),
        std::string("%201"), std::string("a"), std::string("a1"), std::string("a1."), std::string("a-1.2"),
        std::string("a1.99999999999999999999"), std::string("%00")}) {
    auto r = daemon_->get(base + "?cursor=" + bad, kOperator);
    EXPECT_EQ(r.status, 400) << bad.substr(0, 40) << ": " << r.body;
    EXPECT_EQ(json::parse(r.body, nullptr, false)["error"]["where"], "cursor") << r.body;
  }
  for (const std::string good : {"0", "18446744073709551615", "a0.0", "a3.100"})
    EXPECT_EQ(daemon_->get(base + "?cursor=" + good, kOperator).status, 200) << good;
  for (const std::string bad : {"0", "-5", "1001", "abc", "", "10x", "99999999999999999999"}) {
    auto r = daemon_->get(base + "?limit=" + bad, kOperator);
    EXPECT_EQ(r.status, 400) << bad << ": " << r.body;
    EXPECT_EQ(json::parse(r.body, nullptr, false)["error"]["where"], "limit") << r.body;
  }
  EXPECT_EQ(daemon_->get(base + "?limit=1000", kOperator).status, 200);
}

}  // namespace
}  // namespace sirena::testing
