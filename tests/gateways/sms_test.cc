// The SMS channel: the libcurl engine on a real libuv loop, and the kannel and
// generic_json profiles against the real `sirena-sim sms` on 127.0.0.1 (ephemeral ports).
// Every wait runs the loop until a condition holds, with a deadline; every test ends with
// the gateway or engine closed and a clean uv_loop_close().
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "gateways/sms/curl_engine.h"
#include "gateways/sms/sms_gateway.h"
#include "tests/support/gateway_loop.h"
#include "tests/support/harness.h"

namespace sirena::sms {
namespace {

using dispatch::Message;
using dispatch::Outcome;
using dispatch::SendResult;
using nlohmann::json;
using sirena::testing::Loop;
using sirena::testing::Outcomes;
using sirena::testing::Simulator;
using sirena::testing::TempDir;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

// "È ... città": È is outside GSM 03.38, so the text is UCS-2. (à, è, é, ì, ò, ù are in
// the GSM 7-bit alphabet: "Allerta: evacuate il piano terra, città" alone is GSM-7.)
const std::string kUcs2Text = "\xC3\x88 in arrivo la piena. Allerta: evacuate il piano terra, citt\xC3\xA0";
const std::string kGsmAccents = "Allerta: evacuate il piano terra, citt\xC3\xA0";
const std::string kGsmText = "Allerta meteo: evacuate il piano terra";

// ---- helpers ---------------------------------------------------------------------------

// A TCP server on the test's loop that accepts connections and reads: it never answers,
// or answers whatever it reads with `answer` (one small write, keeping the connection).
class StubServer {
 public:
  explicit StubServer(uv_loop_t* loop, std::string answer = "")
      : listener_(new uv_tcp_t), answer_(std::move(answer)) {
    uv_tcp_init(loop, listener_);
    listener_->data = this;
    sockaddr_in addr{};
    uv_ip4_addr("127.0.0.1", 0, &addr);
    uv_tcp_bind(listener_, reinterpret_cast<const sockaddr*>(&addr), 0);
    uv_listen(reinterpret_cast<uv_stream_t*>(listener_), 64, [](uv_stream_t* l, int status) {
      if (status < 0) return;
      auto* self = static_cast<StubServer*>(l->data);
      auto* c = new uv_tcp_t;
      uv_tcp_init(l->loop, c);
      if (uv_accept(l, reinterpret_cast<uv_stream_t*>(c)) != 0) {
        uv_close(reinterpret_cast<uv_handle_t*>(c),
                 [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
        return;
      }
      self->clients_.push_back(c);
      c->data = self;
      uv_read_start(
          reinterpret_cast<uv_stream_t*>(c),
          [](uv_handle_t*, size_t, uv_buf_t* buf) {
            static char scratch[4096];
            *buf = uv_buf_init(scratch, sizeof scratch);
          },
          [](uv_stream_t* s, ssize_t n, const uv_buf_t*) {
            auto* server = static_cast<StubServer*>(s->data);
            if (n <= 0 || server->answer_.empty()) return;
            uv_buf_t out = uv_buf_init(server->answer_.data(), static_cast<unsigned>(server->answer_.size()));
            EXPECT_EQ(uv_try_write(s, &out, 1), static_cast<int>(server->answer_.size()));
          });
    });
    sockaddr_storage bound{};
    int len = sizeof bound;
    uv_tcp_getsockname(listener_, reinterpret_cast<sockaddr*>(&bound), &len);
    port_ = ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  }
  // The handles outlive the server object: they are freed in their close callbacks.
  ~StubServer() {
    uv_close(reinterpret_cast<uv_handle_t*>(listener_), free_tcp);
    hang_up();
  }
  // Closes every accepted connection (the clients see the end of the stream).
  void hang_up() {
    for (uv_tcp_t* c : clients_) uv_close(reinterpret_cast<uv_handle_t*>(c), free_tcp);
    closed_ += clients_.size();
    clients_.clear();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  size_t connections() const { return clients_.size() + closed_; }  // accepted so far

 private:
  static void free_tcp(uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); }

  uv_tcp_t* listener_;
  std::string answer_;
  std::vector<uv_tcp_t*> clients_;
  size_t closed_ = 0;
  int port_ = 0;
};

uint64_t fnv1a64(std::string_view data) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

std::string number(int i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "+39333%07d", i);
  return buf;
}

Message sms(const std::string& to, const std::string& alert = "a-1", const std::string& text = kGsmText) {
  auto c = std::make_shared<dispatch::Content>();
  c->alert_id = alert;
  c->alert_tenant = "soliera";
  c->body = text;
  Message m;
  m.content = std::move(c);
  m.channel = dispatch::Channel::Sms;
  m.tenant = "soliera";
  m.address = to;
  return m;
}

// The value of query parameter `name` in `url`, percent-decoded.
std::string query_param(const std::string& url, const std::string& name) {
  size_t q = url.find('?');
  std::string_view rest = q == std::string::npos ? std::string_view() : std::string_view(url).substr(q + 1);
  while (!rest.empty()) {
    size_t amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    size_t eq = pair.find('=');
    if (pair.substr(0, eq) == name) {
      std::string_view v = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
      int len = 0;
      char* d = curl_easy_unescape(nullptr, v.data(), static_cast<int>(v.size()), &len);
      std::string out(d, static_cast<size_t>(len));
      curl_free(d);
      return out;
    }
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
  }
  return "<absent>";
}

SmsConfig kannel_config(const std::string& base) {
  SmsConfig c;
  c.profile = Profile::Kannel;
  c.url = base + "/cgi-bin/sendsms";
  c.username = "sirena";
  c.password = "s3cret";
  c.from = "Soliera";
  return c;
}

SmsConfig json_config(const std::string& base, size_t batch_size) {
  SmsConfig c;
  c.profile = Profile::GenericJson;
  c.url = base + "/sms";
  c.auth_header = "Authorization: Bearer test-token";
  c.batch_size = batch_size;
  return c;
}

std::unique_ptr<SmsGateway> make_gateway(Loop& loop, SmsConfig cfg, const std::string& name = "sms") {
  auto g = SmsGateway::create(loop.get(), name, std::move(cfg));
  if (!g) ADD_FAILURE() << g.error().message;
  return g ? std::move(g).value() : nullptr;
}

void close_gateway(Loop& loop, SmsGateway& g) {
  bool closed = false;
  g.close([&] { closed = true; });
  EXPECT_TRUE(loop.run_until([&] { return closed; }, milliseconds(5000)));
}

void close_engine(Loop& loop, CurlEngine& e) {
  bool closed = false;
  e.close([&] { closed = true; });
  EXPECT_TRUE(loop.run_until([&] { return closed; }, milliseconds(5000)));
}

std::unique_ptr<CurlEngine> make_engine(Loop& loop, EngineOptions o = {}) {
  auto e = CurlEngine::create(loop.get(), o);
  if (!e) ADD_FAILURE() << e.error().message;
  return e ? std::move(e).value() : nullptr;
}

HttpRequest json_post(const std::string& base, const std::string& to) {
  HttpRequest r;
  r.method = "POST";
  r.url = base + "/sms";
  r.headers = {"Content-Type: application/json", "Authorization: Bearer t"};
  r.body = json{{"to", to}, {"text", "ciao"}, {"reference", "engine"}}.dump();
  return r;
}

// A `sirena-sim sms` (started by start()) and a loop.
class WithSim : public ::testing::Test {
 protected:
  TempDir dir;
  std::unique_ptr<Simulator> sim;
  Loop loop;

  void start(std::vector<std::string> args = {}) {
    sim = std::make_unique<Simulator>("sms", dir.path(), std::move(args));
    sim->start();
  }
  std::string url() const { return sim->url(); }
  json stats() const { return json::parse(sim->stats()); }
  // Runs the loop until every message of `out` is answered.
  bool settle(const Outcomes& out) {
    return loop.run_until([&] { return out.all(); }, milliseconds(10000));
  }
};

// ---- engine -----------------------------------------------------------------------------

class Engine : public WithSim {
 protected:
  void SetUp() override { start(); }
};

TEST_F(Engine, PostsAndReadsTheAnswer) {
  auto e = make_engine(loop);
  HttpReply got;
  int calls = 0;
  e->submit(json_post(url(), number(1)), [&](const HttpReply& r) {
    ++calls;
    got = r;
  });
  EXPECT_EQ(e->in_flight(), 1u);
  ASSERT_TRUE(loop.run_until([&] { return calls > 0; }, milliseconds(5000)));
  EXPECT_EQ(got.status, 200) << got.error;
  EXPECT_EQ(json::parse(got.body).value("accepted", 0), 1);
  ASSERT_NE(got.header("content-type"), nullptr);
  EXPECT_EQ(*got.header("content-type"), "application/json");
  EXPECT_GT(got.seconds, 0.0);
  EXPECT_EQ(e->in_flight(), 0u);
  EXPECT_EQ(stats()["accepted"], 1);
  close_engine(loop, *e);
  EXPECT_EQ(calls, 1);
}

TEST_F(Engine, SequentialRequestsReuseOneConnection) {
  auto e = make_engine(loop);
  const int n = 10;
  int done = 0;
  long connects = 0;
  std::function<void()> next = [&] {
    e->submit(json_post(url(), number(done)), [&](const HttpReply& r) {
      EXPECT_EQ(r.status, 200) << r.error;
      connects += r.connects;
      if (++done < n) next();
    });
  };
  next();
  ASSERT_TRUE(loop.run_until([&] { return done == n; }, milliseconds(10000)));
  EXPECT_EQ(connects, 1) << "every request after the first should reuse the connection";
  EXPECT_EQ(stats()["requests"], n);
  close_engine(loop, *e);
}

TEST_F(Engine, RespectsMaxInFlightWithAFifo) {
  TempDir slow_dir;
  Simulator slow("sms", slow_dir.path(), {"--latency-ms", "40,60"});
  slow.start();
  EngineOptions o;
  o.max_in_flight = 2;
  o.max_host_connections = 10;  // libcurl would allow more: the limit must be the engine's
  auto e = make_engine(loop, o);
  const int n = 10;
  int done = 0;
  long connects = 0;
  size_t most = 0;
  for (int i = 0; i < n; ++i)
    e->submit(json_post(slow.url(), number(i)), [&](const HttpReply& r) {
      EXPECT_EQ(r.status, 200) << r.error;
      connects += r.connects;
      most = std::max(most, e->in_flight());
      ++done;
    });
  EXPECT_EQ(e->in_flight(), 2u);
  EXPECT_EQ(e->queued(), 8u);
  ASSERT_TRUE(loop.run_until([&] { return done == n; }, milliseconds(10000)));
  EXPECT_LE(most, 2u);
  EXPECT_LE(connects, 2) << "at most two requests ran at once";
  EXPECT_EQ(e->queued(), 0u);
  close_engine(loop, *e);
}

// Every answer closes its connection, so libcurl keeps closing sockets and opening new
// ones, which get the numbers just freed while the old poll handles are still closing.
TEST_F(Engine, SocketsClosedAndReopenedAtRandom) {
  EngineOptions o;
  o.max_in_flight = 8;
  auto e = make_engine(loop, o);
  const int n = 300;
  int done = 0, ok = 0;
  long connects = 0;
  for (int i = 0; i < n; ++i) {
    HttpRequest r = json_post(url(), number(i));
    r.headers.push_back("Connection: close");
    e->submit(r, [&](const HttpReply& reply) {
      ok += reply.status == 200;
      connects += reply.connects;
      ++done;
    });
  }
  ASSERT_TRUE(loop.run_until([&] { return done == n; }, milliseconds(20000)));
  EXPECT_EQ(ok, n);
  EXPECT_EQ(connects, n);
  EXPECT_EQ(stats()["accepted"], n);
  close_engine(loop, *e);
}

TEST_F(Engine, TimesOutOnAServerThatNeverAnswers) {
  StubServer silent(loop.get());
  auto e = make_engine(loop);
  HttpRequest r;
  r.url = silent.url() + "/cgi-bin/sendsms?to=x";
  r.timeout_ms = 300;
  HttpReply got;
  int calls = 0;
  auto start = steady_clock::now();
  e->submit(r, [&](const HttpReply& reply) {
    ++calls;
    got = reply;
  });
  ASSERT_TRUE(loop.run_until([&] { return calls > 0; }, milliseconds(5000)));
  auto took = std::chrono::duration_cast<milliseconds>(steady_clock::now() - start).count();
  EXPECT_EQ(got.status, 0);
  EXPECT_FALSE(got.error.empty());
  EXPECT_GE(took, 250);
  EXPECT_LT(took, 2000);
  EXPECT_EQ(silent.connections(), 1u);
  close_engine(loop, *e);
  EXPECT_EQ(calls, 1);
}

TEST_F(Engine, CloseAnswersEveryOutstandingRequestOnce) {
  StubServer silent(loop.get());
  EngineOptions o;
  o.max_in_flight = 3;
  auto e = make_engine(loop, o);
  std::vector<int> calls(7, 0);
  std::vector<HttpReply> replies(7);
  for (size_t i = 0; i < calls.size(); ++i) {
    HttpRequest r;
    r.url = silent.url() + "/x";
    e->submit(r, [&, i](const HttpReply& reply) {
      ++calls[i];
      replies[i] = reply;
    });
  }
  EXPECT_EQ(e->in_flight(), 3u);
  EXPECT_EQ(e->queued(), 4u);
  ASSERT_TRUE(loop.run_until([&] { return silent.connections() == 3; }, milliseconds(5000)));
  bool closed = false;
  e->close([&] { closed = true; });
  EXPECT_FALSE(closed) << "done runs after the handles are closed, not inside close()";
  for (size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(calls[i], 1) << i;
    EXPECT_EQ(replies[i].status, 0);
    EXPECT_EQ(replies[i].error, "engine closed");
  }
  int late = 0;
  e->submit(HttpRequest{}, [&](const HttpReply& r) {
    ++late;
    EXPECT_EQ(r.error, "engine closed");
  });
  EXPECT_EQ(late, 1);
  ASSERT_TRUE(loop.run_until([&] { return closed; }, milliseconds(5000)));
  for (int c : calls) EXPECT_EQ(c, 1);
}

// A kept-alive connection that the server closes while it is idle: the engine keeps it
// polled for reading between requests, so the end of the stream reaches it; it must stop
// polling then (the socket stays readable: a loop that kept polling it would spin), and
// the next request goes on a new connection.
TEST(EngineNoServer, IdleConnectionClosedByTheServerNeitherSpinsNorIsReused) {
  Loop loop;
  StubServer server(loop.get(), "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  auto e = make_engine(loop);
  HttpRequest r;
  r.url = server.url() + "/cgi-bin/sendsms";
  std::vector<HttpReply> got;
  e->submit(r, [&](const HttpReply& reply) { got.push_back(reply); });
  ASSERT_TRUE(loop.run_until([&] { return got.size() == 1; }, milliseconds(5000)));
  EXPECT_EQ(got[0].status, 200) << got[0].error;
  EXPECT_EQ(got[0].body, "ok");
  server.hang_up();
  // 100 ms of loop turns: about 20 with the test's 5 ms tick, thousands if spinning.
  int turns = 0;
  auto until = steady_clock::now() + milliseconds(100);
  loop.run_until([&] { return ++turns, steady_clock::now() >= until; }, milliseconds(1000));
  EXPECT_LT(turns, 200);
  e->submit(r, [&](const HttpReply& reply) { got.push_back(reply); });
  ASSERT_TRUE(loop.run_until([&] { return got.size() == 2; }, milliseconds(5000)));
  EXPECT_EQ(got[1].status, 200) << got[1].error;
  EXPECT_EQ(got[1].connects, 1) << "the closed connection is not reused";
  EXPECT_EQ(server.connections(), 2u);
  close_engine(loop, *e);
}

TEST(EngineNoServer, ConnectionRefusedIsAnErrorReply) {
  Loop loop;
  auto e = make_engine(loop);
  HttpRequest r;
  r.url = "http://127.0.0.1:" + std::to_string(sirena::testing::reserve_port()) + "/";
  HttpReply got;
  int calls = 0;
  e->submit(r, [&](const HttpReply& reply) {
    ++calls;
    got = reply;
  });
  ASSERT_TRUE(loop.run_until([&] { return calls > 0; }, milliseconds(5000)));
  EXPECT_EQ(got.status, 0);
  EXPECT_FALSE(got.error.empty());
  close_engine(loop, *e);
}

size_t open_descriptors() {
  return static_cast<size_t>(std::distance(std::filesystem::directory_iterator("/proc/self/fd"), {}));
}

// Connects that time out: libcurl 7.88 to 8.1 close such a socket without the close
// callback, and its number comes back with the next socket. Every request is answered,
// no descriptor is leaked or closed twice (either would change the count), and the
// engine closes cleanly.
TEST_F(Engine, AbandonedConnectsLeakNothingAndTheirNumbersAreReused) {
  // A listener that never accepts, with no backlog: one connection completes into its
  // queue, the SYNs of the others go unanswered.
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(listener, 0), 0);
  socklen_t len = sizeof addr;
  getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  std::string stuck = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/";
  size_t before = open_descriptors();
  {
    EngineOptions o;
    o.max_in_flight = 4;
    o.connect_timeout_ms = 200;
    auto e = make_engine(loop, o);
    int answered = 0, ok = 0;
    for (int round = 0; round < 3; ++round) {
      for (int i = 0; i < 4; ++i) {
        HttpRequest r;
        r.url = stuck;
        r.timeout_ms = 400;
        e->submit(r, [&](const HttpReply& reply) {
          ++answered;
          EXPECT_EQ(reply.status, 0);
        });
      }
      for (int i = 0; i < 4; ++i)
        e->submit(json_post(url(), number(round * 4 + i)), [&](const HttpReply& reply) {
          ++answered;
          ok += reply.status == 200;
        });
    }
    ASSERT_TRUE(loop.run_until([&] { return answered == 24; }, milliseconds(10000)));
    EXPECT_EQ(ok, 12);
    close_engine(loop, *e);
  }
  EXPECT_EQ(open_descriptors(), before);
  close(listener);
}

TEST(EngineNoServer, DestroyedWithoutCloseCleansUp) {
  Loop loop;
  StubServer silent(loop.get());
  auto e = make_engine(loop);
  int calls = 0;
  HttpRequest r;
  r.url = silent.url() + "/";
  e->submit(r, [&](const HttpReply&) { ++calls; });
  ASSERT_TRUE(loop.run_until([&] { return silent.connections() == 1; }, milliseconds(5000)));
  e.reset();  // closes in the background; the callback is dropped, not called
  EXPECT_EQ(calls, 0);
}

// ---- config -----------------------------------------------------------------------------

TEST(SmsConfigTest, ErrorsNameTheKey) {
  auto bad = [](std::map<std::string, std::string> kv) {
    auto c = SmsConfig::from_keys("sms", kv);
    return c ? std::string("ok") : c.error().message;
  };
  EXPECT_NE(bad({{"profile", "smpp"}}).find("gateways.sms.profile"), std::string::npos);
  EXPECT_NE(bad({{"profile", "kannel"}, {"batch_size", "many"}}).find("gateways.sms.batch_size"),
            std::string::npos);
  EXPECT_NE(bad({{"profile", "kannel"}, {"batch_size", "0"}}).find("gateways.sms.batch_size"),
            std::string::npos);
  EXPECT_NE(bad({{"profile", "generic_json"}, {"retry_status", "429,abc"}}).find("gateways.sms.retry_status"),
            std::string::npos);
  EXPECT_NE(bad({{"profile", "kannel"}, {"tls_verify", "maybe"}}).find("gateways.sms.tls_verify"),
            std::string::npos);

  auto c = SmsConfig::from_keys("sms", {{"profile", "kannel"},
                                        {"url", "http://k/cgi-bin/sendsms"},
                                        {"batch_size", "50"},
                                        {"accept_status", "200, 202"},
                                        {"max_in_flight", "4"}});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->profile, Profile::Kannel);
  EXPECT_EQ(c->batch_size, 50u);
  EXPECT_EQ(c->max_in_flight, 4u);
  EXPECT_EQ(c->accept_status, (std::vector<int>{200, 202}));
  // The profile defaults to the gateway's name.
  auto named = SmsConfig::from_keys("generic_json", {});
  ASSERT_TRUE(named);
  EXPECT_EQ(named->profile, Profile::GenericJson);
}

TEST(SmsConfigTest, CreateRejectsBadTemplatesAndMissingKeys) {
  Loop loop;
  auto cfg = json_config("http://127.0.0.1:1", 1);
  cfg.body_template = R"({"to": "{{to}}", "text": )";
  auto g = SmsGateway::create(loop.get(), "sms-json", cfg);
  ASSERT_FALSE(g);
  EXPECT_NE(g.error().message.find("gateways.sms-json.body_template"), std::string::npos)
      << g.error().message;
  EXPECT_EQ(g.error().where, "gateways.sms-json.body_template");

  cfg.body_template = R"({"text": "{{text}}"})";  // no {{to}}
  g = SmsGateway::create(loop.get(), "sms-json", cfg);
  ASSERT_FALSE(g);
  EXPECT_NE(g.error().message.find("body_template"), std::string::npos);

  auto k = kannel_config("http://127.0.0.1:1");
  k.password.clear();
  g = SmsGateway::create(loop.get(), "sms", k);
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().where, "gateways.sms.password");

  k = kannel_config("ftp://nowhere");
  g = SmsGateway::create(loop.get(), "sms", k);
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().where, "gateways.sms.url");
}

// ---- protocol, no sockets ------------------------------------------------------------

TEST(SmsProtocol, KannelRequestEncodesNumbersTextCodingAndDlrUrl) {
  Loop loop;
  auto cfg = kannel_config("http://127.0.0.1:13013");
  cfg.dlr_url = "http://127.0.0.1:18080/";
  cfg.dlr_secret = "s&cret?";
  cfg.dlr_mask = 9;
  auto g = make_gateway(loop, cfg);
  ASSERT_TRUE(g);
  SmsBatch b{"alert 1/2", "soliera", "bastiglia", kUcs2Text, {number(1), number(2)}};
  HttpRequest r = g->request_for(b);
  EXPECT_EQ(r.method, "GET");
  EXPECT_TRUE(r.url.starts_with("http://127.0.0.1:13013/cgi-bin/sendsms?username=sirena&password=s3cret&"));
  EXPECT_NE(r.url.find("&to=%2B393330000001%20%2B393330000002&"), std::string::npos) << r.url;
  EXPECT_EQ(query_param(r.url, "text"), kUcs2Text);
  EXPECT_EQ(query_param(r.url, "charset"), "UTF-8");
  EXPECT_EQ(query_param(r.url, "coding"), "2");
  EXPECT_EQ(query_param(r.url, "from"), "Soliera");
  EXPECT_EQ(query_param(r.url, "dlr-mask"), "9");
  EXPECT_EQ(query_param(r.url, "dlr-url"),
            "http://127.0.0.1:18080/v1/dlr/sms?secret=s%26cret%3F&alert=alert%201%2F2&t=soliera&r=bastiglia"
            "&to=%p&type=%d");

  b.text = kGsmAccents;
  EXPECT_EQ(query_param(g->request_for(b).url, "coding"), "0");
  EXPECT_EQ(query_param(g->request_for(b).url, "text"), kGsmAccents);
  close_gateway(loop, *g);
}

TEST(SmsProtocol, KannelRepliesMapToOutcomes) {
  Loop loop;
  auto g = make_gateway(loop, kannel_config("http://127.0.0.1:13013"));
  ASSERT_TRUE(g);
  SmsBatch b{"a", "t", "t", "x", {number(1), number(2)}};
  auto one = [&](long status, std::string body, std::string retry_after = "") {
    HttpReply r;
    r.status = status;
    r.body = std::move(body);
    if (!retry_after.empty()) r.headers.emplace_back("retry-after", retry_after);
    if (status == 0) r.error = "Couldn't connect to server";
    auto out = g->outcomes(b, r);
    EXPECT_EQ(out.size(), 2u);
    return out.back();
  };
  EXPECT_EQ(one(202, "0: Accepted for delivery").outcome, Outcome::Accepted);
  EXPECT_EQ(one(202, "3: Queued for later delivery").outcome, Outcome::Accepted);
  auto r503 = one(503, "Temporal failure, try again later.", "7");
  EXPECT_EQ(r503.outcome, Outcome::Retry);
  EXPECT_EQ(r503.retry_after_ms, 7000);
  EXPECT_EQ(one(429, "Temporal failure").outcome, Outcome::Retry);
  EXPECT_EQ(one(500, "Sending failed.").outcome, Outcome::Retry);
  auto r403 = one(403, "Not routable. Do not try again.\n");
  EXPECT_EQ(r403.outcome, Outcome::Permanent);
  EXPECT_EQ(r403.reason, "Not routable. Do not try again.");
  auto r0 = one(0, "");
  EXPECT_EQ(r0.outcome, Outcome::Retry);
  EXPECT_EQ(r0.reason, "Couldn't connect to server");
  close_gateway(loop, *g);
}

TEST(SmsProtocol, JsonTemplateIsFilledWithJsonValues) {
  Loop loop;
  auto cfg = json_config("http://127.0.0.1:1", 3);
  cfg.body_template =
      R"({"messages": [{"destinations": "{{to}}", "content": {"text": "{{text}}"}}], "ref": "{{reference}}",
          "channel": "sms", "priority": 1, "note": "{{to}} stays"})";
  auto g = make_gateway(loop, cfg);
  ASSERT_TRUE(g);
  std::string tricky = "Evacuate \"now\"\n\\ città";
  HttpRequest r = g->request_for({"a-9", "soliera", "soliera", tricky, {number(1), number(2)}});
  EXPECT_EQ(r.method, "POST");
  json expected = {
      {"messages", {{{"destinations", {number(1), number(2)}}, {"content", {{"text", tricky}}}}}},
      {"ref", "a-9"},
      {"channel", "sms"},
      {"priority", 1},
      {"note", "{{to}} stays"}};
  EXPECT_EQ(json::parse(r.body), expected);
  EXPECT_NE(std::find(r.headers.begin(), r.headers.end(), "Authorization: Bearer test-token"),
            r.headers.end());
  close_gateway(loop, *g);

  auto single = make_gateway(loop, json_config("http://127.0.0.1:1", 1));
  ASSERT_TRUE(single);
  HttpRequest s = single->request_for({"a-9", "soliera", "soliera", "hi", {number(5)}});
  EXPECT_EQ(json::parse(s.body), (json{{"to", number(5)}, {"text", "hi"}, {"reference", "a-9"}}));
  close_gateway(loop, *single);
}

// ---- kannel against sirena-sim --------------------------------------------------------

using SmsKannel = WithSim;
using SmsGenericJson = WithSim;

TEST_F(SmsKannel, CoalescesSameTextIntoBatchesOfBatchSize) {
  start({"--username", "sirena", "--password", "s3cret"});
  auto cfg = kannel_config(url());
  cfg.dlr_url = "http://127.0.0.1:18080";  // carries the alert id the simulator counts by
  cfg.dlr_secret = "dlr-secret";
  auto g = make_gateway(loop, cfg);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->batch_size(), 100u);
  EXPECT_EQ(g->capacity(), 16u * 100u);
  Outcomes out;
  for (int i = 0; i < 250; ++i) g->send(sms(number(i), "a-250"), out.slot());
  EXPECT_EQ(g->capacity(), 16u * 100u - 250u);
  ASSERT_TRUE(settle(out));
  EXPECT_EQ(out.count(Outcome::Accepted), 250u);
  for (const auto& r : out.results) EXPECT_EQ(r.http_status, 202);
  EXPECT_EQ(g->stats().requests, 3u);
  EXPECT_EQ(g->stats().messages, 250u);
  EXPECT_EQ(g->stats().segments, 250u);
  EXPECT_EQ(g->stats().replies.at(202), 3u);
  EXPECT_EQ(g->capacity(), 16u * 100u);
  json s = stats();
  EXPECT_EQ(s["requests"], 3);
  EXPECT_EQ(s["accepted"], 250);
  EXPECT_EQ(s["unique_recipients"], 250);
  EXPECT_EQ(s["duplicates"], 0);
  EXPECT_EQ(s["by_alert"]["a-250"]["accepted"], 250);
  close_gateway(loop, *g);
  EXPECT_TRUE(out.each_once());
}

TEST_F(SmsKannel, DifferentTextsOrAlertsAreNotMixed) {
  start();
  auto g = make_gateway(loop, kannel_config(url()));
  ASSERT_TRUE(g);
  Outcomes out;
  for (int i = 0; i < 6; ++i) g->send(sms(number(i), i % 2 ? "a-odd" : "a-even"), out.slot());
  g->send(sms(number(7), "a-even", "another text"), out.slot());
  Outcomes malformed;
  g->send(sms("+39 333 1", "a-even"), malformed.slot());  // would split into three numbers
  EXPECT_EQ(malformed.count(Outcome::Permanent), 1u);
  ASSERT_TRUE(settle(out));
  EXPECT_EQ(out.count(Outcome::Accepted), 7u);
  EXPECT_EQ(g->stats().requests, 3u);
  EXPECT_EQ(stats()["requests"], 3);
  close_gateway(loop, *g);
}

TEST_F(SmsKannel, Ucs2TextArrivesIntact) {
  std::string record = dir.path() + "/record.tsv";
  start({"--record", record});
  auto g = make_gateway(loop, kannel_config(url()));
  ASSERT_TRUE(g);
  EXPECT_EQ(query_param(g->request_for({"a", "t", "t", kUcs2Text, {number(1)}}).url, "coding"), "2");
  Outcomes out;
  g->send(sms(number(1), "a-ucs2", kUcs2Text), out.slot());
  g->send(sms(number(2), "a-ucs2", kUcs2Text), out.slot());
  ASSERT_TRUE(settle(out));
  EXPECT_EQ(out.count(Outcome::Accepted), 2u);
  EXPECT_EQ(g->stats().requests, 1u);
  EXPECT_EQ(g->stats().segments, 2u);  // 61 UTF-16 units: one part per number
  char hash[17];
  std::snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(fnv1a64(kUcs2Text)));
  std::string text;
  ASSERT_TRUE(sirena::testing::wait_until(
      [&] {
        text = sirena::testing::read_file(record);
        return std::count(text.begin(), text.end(), '\n') == 2;
      },
      milliseconds(5000)))
      << text;
  EXPECT_NE(text.find(number(1) + "\t-\t" + hash), std::string::npos) << text;
  EXPECT_NE(text.find(number(2) + "\t-\t" + hash), std::string::npos) << text;
  close_gateway(loop, *g);
}

TEST_F(SmsKannel, RefusedNumbersArePermanentAndOthersStillGo) {
  std::string unregistered = dir.path() + "/unregistered.txt";
  sirena::testing::write_file(unregistered, number(900) + "\n" + number(901) + "\n");
  start({"--unregistered", unregistered});
  auto g = make_gateway(loop, kannel_config(url()));
  ASSERT_TRUE(g);
  Outcomes refused, fine;
  g->send(sms(number(900), "a-refused"), refused.slot());
  g->send(sms(number(901), "a-refused"), refused.slot());
  g->send(sms(number(1), "a-fine"), fine.slot());
  ASSERT_TRUE(loop.run_until([&] { return refused.all() && fine.all(); }, milliseconds(10000)));
  for (const auto& r : refused.results) {
    EXPECT_EQ(r.outcome, Outcome::Permanent);
    EXPECT_EQ(r.http_status, 400);
    EXPECT_NE(r.reason.find("denied"), std::string::npos) << r.reason;
  }
  EXPECT_EQ(fine.count(Outcome::Accepted), 1u);
  EXPECT_EQ(stats()["accepted"], 1);
  close_gateway(loop, *g);
}

TEST_F(SmsKannel, Unavailable503IsRetried) {
  start({"--fail", "503:1.0"});
  auto g = make_gateway(loop, kannel_config(url()));
  ASSERT_TRUE(g);
  Outcomes out;
  for (int i = 0; i < 3; ++i) g->send(sms(number(i)), out.slot());
  ASSERT_TRUE(settle(out));
  for (const auto& r : out.results) {
    EXPECT_EQ(r.outcome, Outcome::Retry);
    EXPECT_EQ(r.http_status, 503);
  }
  EXPECT_EQ(g->stats().replies.at(503), 1u);
  EXPECT_EQ(stats()["accepted"], 0);
  close_gateway(loop, *g);
}

TEST_F(SmsKannel, UnreachableProviderIsRetriedWithTheCurlError) {
  auto g = make_gateway(loop,
                        kannel_config("http://127.0.0.1:" + std::to_string(sirena::testing::reserve_port())));
  ASSERT_TRUE(g);
  Outcomes out;
  g->send(sms(number(1)), out.slot());
  ASSERT_TRUE(settle(out));
  EXPECT_EQ(out.results[0].outcome, Outcome::Retry);
  EXPECT_EQ(out.results[0].http_status, 0);
  EXPECT_FALSE(out.results[0].reason.empty());
  EXPECT_EQ(out.results[0].reason.find(number(1)), std::string::npos);
  EXPECT_EQ(g->stats().replies.at(0), 1u);
  close_gateway(loop, *g);
}

TEST_F(SmsKannel, CloseAnswersUnflushedAndInFlightMessagesOnce) {
  StubServer silent(loop.get());
  auto g = make_gateway(loop, kannel_config(silent.url()));
  ASSERT_TRUE(g);
  Outcomes out;
  g->send(sms(number(1), "a-1", "one"), out.slot());
  g->send(sms(number(2), "a-1", "two"), out.slot());
  ASSERT_TRUE(loop.run_until([&] { return silent.connections() == 2; }, milliseconds(5000)));
  g->send(sms(number(3), "a-1", "three"), out.slot());  // still in this turn's batch
  g->send(sms(number(4), "a-1", "three"), out.slot());
  EXPECT_EQ(out.answered, 0u);
  bool closed = false;
  g->close([&] { closed = true; });
  EXPECT_EQ(g->capacity(), 0u);
  EXPECT_TRUE(out.all());
  EXPECT_EQ(out.count(Outcome::Retry), 4u);
  Outcomes late;
  g->send(sms(number(5)), late.slot());
  EXPECT_EQ(late.count(Outcome::Retry), 1u);
  ASSERT_TRUE(loop.run_until([&] { return closed; }, milliseconds(5000)));
  EXPECT_TRUE(out.each_once());
}

// Issue 14 finding 7: a cancel drops the alert's numbers that have not left (a batch not
// yet flushed, a request queued in the engine) as Cancelled; the request on the wire
// finishes, and other alerts are untouched.
TEST_F(SmsKannel, CancelDropsTheAlertsUnsentNumbersOnly) {
  start({"--latency-ms", "50,80"});
  auto cfg = kannel_config(url());
  cfg.max_in_flight = 1;
  auto g = make_gateway(loop, cfg);
  ASSERT_TRUE(g);
  Outcomes out, other;
  // Two full batches (the first starts, the second waits in the engine) and 50 unflushed.
  for (int i = 0; i < 250; ++i) g->send(sms(number(i), "a-1"), out.slot());
  for (int i = 0; i < 10; ++i) g->send(sms(number(1000 + i), "a-2"), other.slot());
  g->cancel("a-1");
  EXPECT_EQ(out.count(Outcome::Cancelled), 150u) << "the queued batch and the unflushed one, at once";
  ASSERT_TRUE(settle(out));
  ASSERT_TRUE(settle(other));
  EXPECT_EQ(out.count(Outcome::Accepted), 100u);
  EXPECT_EQ(other.count(Outcome::Accepted), 10u);
  EXPECT_EQ(g->stats().requests, 2u) << "the cancelled ones are not counted as sent";
  EXPECT_EQ(g->stats().messages, 110u);
  EXPECT_EQ(g->capacity(), 100u) << "nothing outstanding: max_in_flight x batch_size";
  json s = stats();
  EXPECT_EQ(s["requests"], 2);
  EXPECT_EQ(s["accepted"], 110);
  close_gateway(loop, *g);
  EXPECT_TRUE(out.each_once());
  EXPECT_TRUE(other.each_once());
}

// ---- generic_json against sirena-sim --------------------------------------------------

TEST_F(SmsGenericJson, OneNumberPerRequest) {
  start();
  auto g = make_gateway(loop, json_config(url(), 1));
  ASSERT_TRUE(g);
  EXPECT_EQ(g->capacity(), 16u);
  Outcomes out;
  // Two alerts with their own texts, interleaved: each request carries its own reference
  // (the body is rendered once per text and alert, and the number put in).
  for (int i = 0; i < 40; ++i)
    g->send(i % 2 ? sms(number(i), "a-other", kUcs2Text) : sms(number(i), "a-json"), out.slot());
  EXPECT_EQ(g->capacity(), 0u);
  ASSERT_TRUE(settle(out));
  EXPECT_EQ(out.count(Outcome::Accepted), 40u);
  EXPECT_EQ(out.results[0].http_status, 200);
  EXPECT_EQ(g->stats().requests, 40u);
  json s = stats();
  EXPECT_EQ(s["requests"], 40);
  EXPECT_EQ(s["accepted"], 40);
  EXPECT_EQ(s["unique_recipients"], 40);
  EXPECT_EQ(s["by_alert"]["a-json"]["accepted"], 20);
  EXPECT_EQ(s["by_alert"]["a-other"]["accepted"], 20);
  close_gateway(loop, *g);
  EXPECT_TRUE(out.each_once());
}

TEST_F(SmsGenericJson, BatchedNumbersWithRejectedOnes) {
  std::string unregistered = dir.path() + "/unregistered.txt";
  sirena::testing::write_file(unregistered, number(3) + "\n" + number(77) + "\n");
  start({"--unregistered", unregistered});
  auto g = make_gateway(loop, json_config(url(), 50));
  ASSERT_TRUE(g);
  Outcomes out;
  for (int i = 0; i < 120; ++i) g->send(sms(number(i), "a-batch"), out.slot());
  ASSERT_TRUE(settle(out));
  EXPECT_EQ(g->stats().requests, 3u);
  EXPECT_EQ(out.results[3].outcome, Outcome::Permanent);
  EXPECT_EQ(out.results[3].reason, "rejected");
  EXPECT_EQ(out.results[77].outcome, Outcome::Permanent);
  EXPECT_EQ(out.count(Outcome::Accepted), 118u);
  EXPECT_EQ(out.count(Outcome::Permanent), 2u);
  json s = stats();
  EXPECT_EQ(s["requests"], 3);
  EXPECT_EQ(s["accepted"], 118);
  close_gateway(loop, *g);
}

TEST_F(SmsGenericJson, RateLimitedIsRetriedAfterRetryAfter) {
  start({"--fail", "429:1.0"});
  auto g = make_gateway(loop, json_config(url(), 1));
  ASSERT_TRUE(g);
  Outcomes out;
  g->send(sms(number(1)), out.slot());
  ASSERT_TRUE(settle(out));
  EXPECT_EQ(out.results[0].outcome, Outcome::Retry);
  EXPECT_EQ(out.results[0].http_status, 429);
  EXPECT_GT(out.results[0].retry_after_ms, 0);
  EXPECT_EQ(out.results[0].reason, "HTTP 429 rate_limited");
  close_gateway(loop, *g);
}

TEST_F(SmsGenericJson, MissingAuthIsPermanent) {
  start();
  auto cfg = json_config(url(), 1);
  cfg.auth_header.clear();
  auto g = make_gateway(loop, cfg);
  ASSERT_TRUE(g);
  Outcomes out;
  g->send(sms(number(1)), out.slot());
  ASSERT_TRUE(settle(out));
  EXPECT_EQ(out.results[0].outcome, Outcome::Permanent);
  EXPECT_EQ(out.results[0].http_status, 401);
  EXPECT_EQ(out.results[0].reason, "HTTP 401 unauthorized");
  close_gateway(loop, *g);
}

}  // namespace
}  // namespace sirena::sms
