// Integration tests for gateways/http2: the Pool against real HTTP/2 servers on 127.0.0.1.
//
//  - nghttpd (Debian package nghttp2-server) for the ordinary paths: h2c, TLS with ALPN,
//    SETTINGS_MAX_CONCURRENT_STREAMS, a server that appears late;
//  - TestServer, a small nghttp2 server on a std::thread, for what nghttpd cannot be told to
//    do: GOAWAY after N streams, RST_STREAM, requests that never get an answer, unanswered
//    PINGs, a dropped connection, a limit that changes.
//
// Every test runs its loop under a watchdog and ends with uv_loop_close() == 0.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "daemon/core/clock.h"
#include "gateways/http2/client.h"
#include "tests/support/harness.h"

namespace sirena::http2 {
namespace {

using namespace std::chrono_literals;
using sirena::testing::Process;
using sirena::testing::TempDir;

// ---------------------------------------------------------------------------------------
// Helpers

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool port_open(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

std::string nghttpd_path() {
  for (const char* p : {"/usr/sbin/nghttpd", "/usr/bin/nghttpd"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return {};
}

// nghttpd serving `dir` on a fresh port; TLS when key and cert are given.
class Nghttpd {
 public:
  Nghttpd(const std::string& dir, std::vector<std::string> extra, const std::string& key = {},
          const std::string& cert = {}, int port = 0)
      : port_(port ? port : sirena::testing::reserve_port()) {
    std::vector<std::string> argv = {nghttpd_path()};
    if (key.empty()) argv.push_back("--no-tls");
    argv.push_back("-d");
    argv.push_back(dir);
    for (auto& e : extra) argv.push_back(e);
    argv.push_back(std::to_string(port_));
    if (!key.empty()) {
      argv.push_back(key);
      argv.push_back(cert);
    }
    proc_ = std::make_unique<Process>(argv);
  }
  bool wait_ready() {
    return sirena::testing::wait_until([&] { return port_open(port_); }, 5s);
  }
  int port() const { return port_; }

 private:
  int port_;
  std::unique_ptr<Process> proc_;
};

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

// ---------------------------------------------------------------------------------------
// TestServer: a deliberately small HTTP/2 server (nghttp2 server sessions over blocking
// sockets polled by one thread). Paths: /hang never answers, /rst resets with
// INTERNAL_ERROR, /refuse resets with REFUSED_STREAM, /close drops the connection;
// anything else gets 200 with the request body (or "ok <path>") as its body.

class TestServer {
 public:
  struct Options {
    uint32_t max_concurrent = 100;
    int goaway_after = 0;  // send GOAWAY(last_stream_id = that stream) at the Nth request
    bool ack_pings = true;
    int hold_ms = 0;  // answer in batches every hold_ms, so streams pile up to the limit
    int raise_limit_after = 0;
    uint32_t raised_limit = 0;
  };

  explicit TestServer(Options options) : options_(options) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    listen(listen_fd_, 64);
    socklen_t len = sizeof a;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~TestServer() {
    stop_ = true;
    thread_.join();
    for (auto& c : conns_) drop(*c);
    ::close(listen_fd_);
  }

  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  std::atomic<int> requests{0};  // complete requests seen (not counting those above a GOAWAY)
  std::atomic<int> cancels{0};   // RST_STREAM(CANCEL) received
  std::atomic<int> pings{0};
  std::atomic<int> accepted{0};
  std::atomic<int> max_open{0};
  std::atomic<int> max_open_before_raise{0};

 private:
  struct StreamState {
    std::string path;
    std::string body;
    std::string response;
    size_t offset = 0;
  };
  struct Conn {
    TestServer* server = nullptr;
    int fd = -1;
    nghttp2_session* session = nullptr;
    std::map<int32_t, StreamState> streams;
    std::vector<int32_t> held;
    int32_t goaway_last = -1;
    bool dead = false;
  };

  static Conn* conn(void* user) { return static_cast<Conn*>(user); }

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    Conn* c = conn(user);
    c->streams[frame->hd.stream_id];
    TestServer* s = c->server;
    int open = ++s->open_;
    if (open > s->max_open) s->max_open = open;
    if (!s->raised_ && open > s->max_open_before_raise) s->max_open_before_raise = open;
    return 0;
  }
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                       const uint8_t* value, size_t valuelen, uint8_t, void* user) {
    auto it = conn(user)->streams.find(frame->hd.stream_id);
    if (it != conn(user)->streams.end() &&
        std::string_view(reinterpret_cast<const char*>(name), namelen) == ":path") {
      it->second.path.assign(reinterpret_cast<const char*>(value), valuelen);
    }
    return 0;
  }
  static int on_data(nghttp2_session*, uint8_t, int32_t id, const uint8_t* data, size_t len, void* user) {
    auto it = conn(user)->streams.find(id);
    if (it != conn(user)->streams.end()) it->second.body.append(reinterpret_cast<const char*>(data), len);
    return 0;
  }
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    Conn* c = conn(user);
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS:
      case NGHTTP2_DATA:
        if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && c->streams.count(frame->hd.stream_id)) {
          c->server->on_request(*c, frame->hd.stream_id);
        }
        break;
      case NGHTTP2_PING:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK)) ++c->server->pings;
        break;
      case NGHTTP2_RST_STREAM:
        if (frame->rst_stream.error_code == NGHTTP2_CANCEL) ++c->server->cancels;
        break;
      default:
        break;
    }
    return 0;
  }
  static int on_stream_close(nghttp2_session*, int32_t id, uint32_t, void* user) {
    Conn* c = conn(user);
    if (c->streams.erase(id)) --c->server->open_;
    return 0;
  }
  static ssize_t read_response(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                               nghttp2_data_source* source, void*) {
    auto* st = static_cast<StreamState*>(source->ptr);
    size_t n = std::min(length, st->response.size() - st->offset);
    std::memcpy(buf, st->response.data() + st->offset, n);
    st->offset += n;
    if (st->offset == st->response.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }

  void on_request(Conn& c, int32_t id) {
    if (c.goaway_last >= 0 && id > c.goaway_last) return;  // RFC 9113 §6.8: not processed
    StreamState& st = c.streams[id];
    int n = ++requests;
    if (st.path == "/hang") {
    } else if (st.path == "/rst") {
      nghttp2_submit_rst_stream(c.session, NGHTTP2_FLAG_NONE, id, NGHTTP2_INTERNAL_ERROR);
    } else if (st.path == "/refuse") {
      nghttp2_submit_rst_stream(c.session, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
    } else if (st.path == "/close") {
      c.dead = true;
    } else {
      st.response = st.body.empty() ? "ok " + st.path : st.body;
      if (options_.hold_ms > 0) {
        c.held.push_back(id);
      } else {
        respond(c, id);
      }
    }
    if (options_.goaway_after > 0 && n == options_.goaway_after) {
      nghttp2_submit_goaway(c.session, NGHTTP2_FLAG_NONE, id, NGHTTP2_NO_ERROR, nullptr, 0);
      c.goaway_last = id;
    }
    if (options_.raise_limit_after > 0 && n == options_.raise_limit_after) {
      nghttp2_settings_entry e{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, options_.raised_limit};
      nghttp2_submit_settings(c.session, NGHTTP2_FLAG_NONE, &e, 1);
      raised_ = true;
    }
  }

  void respond(Conn& c, int32_t id) {
    auto it = c.streams.find(id);
    if (it == c.streams.end()) return;  // reset meanwhile
    StreamState& st = it->second;
    std::string len = std::to_string(st.response.size());
    nghttp2_nv nv[] = {
        {(uint8_t*)":status", (uint8_t*)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t*)"content-length", (uint8_t*)len.data(), 14, len.size(), NGHTTP2_NV_FLAG_NONE},
    };
    nghttp2_data_provider prd;
    prd.source.ptr = &st;
    prd.read_callback = read_response;
    nghttp2_submit_response(c.session, id, nv, 2, &prd);
  }

  void accept_one() {
    int fd = accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) return;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto c = std::make_unique<Conn>();
    c->server = this;
    c->fd = fd;
    nghttp2_session_callbacks* cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_option* opt;
    nghttp2_option_new(&opt);
    if (!options_.ack_pings) nghttp2_option_set_no_auto_ping_ack(opt, 1);
    nghttp2_session_server_new2(&c->session, cbs, c.get(), opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_settings_entry e{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, options_.max_concurrent};
    nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, &e, 1);
    conns_.push_back(std::move(c));
    ++accepted;
  }

  void flush(Conn& c) {
    for (;;) {
      const uint8_t* data;
      ssize_t n = nghttp2_session_mem_send(c.session, &data);
      if (n < 0) {
        c.dead = true;
        return;
      }
      if (n == 0) break;
      for (ssize_t off = 0; off < n;) {
        ssize_t w = send(c.fd, data + off, static_cast<size_t>(n - off), MSG_NOSIGNAL);
        if (w <= 0) {
          c.dead = true;
          return;
        }
        off += w;
      }
    }
    if (!nghttp2_session_want_read(c.session) && !nghttp2_session_want_write(c.session)) c.dead = true;
  }

  void drop(Conn& c) {
    open_ -= static_cast<int>(c.streams.size());
    c.streams.clear();
    nghttp2_session_del(c.session);
    c.session = nullptr;
    ::close(c.fd);
  }

  void run() {
    int64_t last_tick = now_ms();
    std::vector<char> buf(64 * 1024);
    while (!stop_) {
      std::vector<pollfd> fds{{listen_fd_, POLLIN, 0}};
      for (auto& c : conns_) fds.push_back({c->fd, POLLIN, 0});
      poll(fds.data(), fds.size(), options_.hold_ms > 0 ? options_.hold_ms : 20);
      if (fds[0].revents & POLLIN) accept_one();
      size_t i = 1;
      for (auto& c : conns_) {
        if (i < fds.size() && fds[i].fd == c->fd && (fds[i].revents & (POLLIN | POLLHUP | POLLERR))) {
          ssize_t n = recv(c->fd, buf.data(), buf.size(), 0);
          if (n <= 0 || nghttp2_session_mem_recv(c->session, reinterpret_cast<uint8_t*>(buf.data()),
                                                 static_cast<size_t>(n)) < 0) {
            c->dead = true;
          }
        }
        ++i;
      }
      if (options_.hold_ms > 0 && now_ms() - last_tick >= options_.hold_ms) {
        last_tick = now_ms();
        for (auto& c : conns_) {
          for (int32_t id : c->held) respond(*c, id);
          c->held.clear();
        }
      }
      for (auto it = conns_.begin(); it != conns_.end();) {
        Conn& c = **it;
        if (!c.dead) flush(c);
        if (c.dead) {
          drop(c);
          it = conns_.erase(it);
        } else {
          ++it;
        }
      }
    }
  }

  Options options_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> open_{0};
  std::atomic<bool> raised_{false};
  std::list<std::unique_ptr<Conn>> conns_;
};

// ---------------------------------------------------------------------------------------
// Fixture: a loop, a watchdog, and the clean-close check.

class Http2Test : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(uv_loop_init(&loop_), 0); }

  void TearDown() override {
    // Whatever a failed test left behind gets a chance to close.
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_walk(
        &loop_,
        [](uv_handle_t* h, void*) { ADD_FAILURE() << "handle left open: " << uv_handle_type_name(h->type); },
        nullptr);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }

  // Runs the loop until it has nothing left to do. The watchdog fails the test at
  // `limit`, closes `pool` (so every callback still runs while the test's locals live)
  // and stops the loop for good a few seconds later.
  void run(Pool* pool, std::chrono::milliseconds limit) {
    struct Watchdog {
      uv_timer_t timer;
      Pool* pool;
      bool fired = false;
    } dog{{}, pool};
    uv_timer_init(&loop_, &dog.timer);
    dog.timer.data = &dog;
    uv_timer_start(
        &dog.timer,
        [](uv_timer_t* t) {
          auto* d = static_cast<Watchdog*>(t->data);
          if (!d->fired) {
            d->fired = true;
            ADD_FAILURE() << "watchdog: the test did not finish in time";
            if (d->pool) d->pool->close(nullptr);
            uv_timer_start(t, t->timer_cb, 5000, 0);
          } else {
            uv_stop(t->loop);
          }
        },
        static_cast<uint64_t>(limit.count()), 0);
    uv_unref(reinterpret_cast<uv_handle_t*>(&dog.timer));  // the watchdog alone keeps nothing alive
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_close(reinterpret_cast<uv_handle_t*>(&dog.timer), nullptr);
    uv_run(&loop_, UV_RUN_NOWAIT);
  }

  // One request through a fresh pool; the pool is closed by the request's callback.
  struct Single {
    Failure failure = Failure::Closed;
    std::string detail;
    int64_t took_ms = 0;
  };
  Single single(const PoolOptions& o, Request r) {
    Single out;
    Pool pool(&loop_, o, clock_);
    Status started = pool.start();
    EXPECT_TRUE(started.ok());
    if (!started.ok()) return out;
    int64_t t0 = now_ms();
    pool.submit(std::move(r), [&](const Response*, Failure f, const std::string& d) {
      out = Single{f, d, now_ms() - t0};
      pool.close(nullptr);
    });
    run(&pool, 10s);
    return out;
  }

  // A one-shot timer that runs `fn` after `delay` (for actions in the middle of a test).
  void after(std::chrono::milliseconds delay, std::function<void()> fn) {
    auto* t = new uv_timer_t;
    auto* f = new std::function<void()>(std::move(fn));
    uv_timer_init(&loop_, t);
    t->data = f;
    uv_timer_start(
        t,
        [](uv_timer_t* timer) {
          auto* fired = static_cast<std::function<void()>*>(timer->data);
          (*fired)();
          delete fired;
          uv_close(reinterpret_cast<uv_handle_t*>(timer),
                   [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
        },
        static_cast<uint64_t>(delay.count()), 0);
  }

  // Self-signed certificate for localhost and 127.0.0.1.
  void make_certificate() {
    cert_ = tmp_.path() + "/cert.pem";
    key_ = tmp_.path() + "/key.pem";
    std::string cmd =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "
        "/CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout " +
        key_ + " -out " + cert_ + " >/dev/null 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }

  std::string docroot() {
    std::string dir = tmp_.path() + "/htdocs";
    std::system(("mkdir -p " + dir).c_str());
    write_file(dir + "/alpha.txt", "alpha");
    write_file(dir + "/bravo.txt", std::string(3000, 'b'));
    return dir;
  }

  static Request get(const std::string& path, std::chrono::milliseconds timeout = 10s) {
    Request r;
    r.method = "GET";
    r.path = path;
    r.timeout = timeout;
    return r;
  }

  uv_loop_t loop_{};
  SystemClock clock_;
  TempDir tmp_;
  std::string cert_, key_;
};

// Per-request bookkeeping shared by the tests: every callback must run exactly once.
struct Tally {
  std::vector<int> calls;
  std::map<Failure, int> by_failure;
  int done = 0;
  explicit Tally(size_t n) : calls(n, 0) {}
  void record(size_t i, Failure f) {
    ++calls[i];
    ++by_failure[f];
    ++done;
  }
  bool each_once() const {
    return std::all_of(calls.begin(), calls.end(), [](int c) { return c == 1; });
  }
};

// ---------------------------------------------------------------------------------------
// Tests

TEST_F(Http2Test, StartRejectsBadOrigins) {
  for (std::string url : {"ftp://example.org", "http://", "http://:80", "http://host:0", "http://host:99999",
                          "http://host:12ab", "https://host/path", "http://[::1", "http://[::1]x"}) {
    PoolOptions o;
    o.url = url;
    Pool pool(&loop_, o, clock_);
    Status s = pool.start();
    EXPECT_FALSE(s.ok()) << url;
    if (!s.ok()) {
      EXPECT_EQ(s.error().code, "invalid_url") << url;
    }
  }
  PoolOptions o;
  o.url = "https://127.0.0.1:1";
  o.ca_file = tmp_.path() + "/missing.pem";
  Pool pool(&loop_, o, clock_);
  Status s = pool.start();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, "tls_ca_file");
}

TEST_F(Http2Test, ManyConcurrentRequestsOverH2cAgainstNghttpd) {
  ASSERT_FALSE(nghttpd_path().empty()) << "nghttpd missing: apt-get install nghttp2-server";
  Nghttpd server(docroot(), {"--echo-upload"});
  ASSERT_TRUE(server.wait_ready());

  PoolOptions o;
  o.url = "http://127.0.0.1:" + std::to_string(server.port());
  o.connections = 2;
  Pool pool(&loop_, o, clock_);
  ASSERT_TRUE(pool.start().ok());

  constexpr size_t kGets = 20000, kPosts = 1000;
  Tally tally(kGets + kPosts);
  int bad = 0;
  size_t max_open = 0;
  auto finish = [&] {
    max_open = std::max(max_open, pool.stats().connections_open);
    if (tally.done == static_cast<int>(tally.calls.size())) pool.close(nullptr);
  };
  for (size_t i = 0; i < kGets; ++i) {
    bool a = i % 2 == 0;
    pool.submit(
        get(a ? "/alpha.txt" : "/bravo.txt"), [&, i, a](const Response* r, Failure f, const std::string& d) {
          tally.record(i, f);
          if (f != Failure::None || r->status != 200 || r->body != (a ? "alpha" : std::string(3000, 'b'))) {
            if (bad++ < 5) ADD_FAILURE() << "GET " << i << ": " << to_string(f) << " " << d;
          }
          finish();
        });
  }
  for (size_t i = 0; i < kPosts; ++i) {
    Request r;
    r.path = "/echo";
    r.body = "message " + std::to_string(i);
    r.headers.push_back({"content-type", "text/plain"});
    pool.submit(std::move(r), [&, i](const Response* resp, Failure f, const std::string& d) {
      tally.record(kGets + i, f);
      if (f != Failure::None || resp->status != 200 || resp->body != "message " + std::to_string(i)) {
        if (bad++ < 5) ADD_FAILURE() << "POST " << i << ": " << to_string(f) << " " << d;
      }
      finish();
    });
  }
  EXPECT_GT(pool.stats().queued, 0u);  // more than two connections' worth: the rest waits in the pool
  run(&pool, 30s);
  EXPECT_TRUE(tally.each_once());
  EXPECT_EQ(tally.by_failure[Failure::None], static_cast<int>(kGets + kPosts));
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(max_open, 2u);
}

TEST_F(Http2Test, HonoursServerMaxConcurrentStreams) {
  ASSERT_FALSE(nghttpd_path().empty()) << "nghttpd missing: apt-get install nghttp2-server";
  Nghttpd server(docroot(), {"-m", "10"});
  ASSERT_TRUE(server.wait_ready());

  PoolOptions o;
  o.url = "http://127.0.0.1:" + std::to_string(server.port());
  Pool pool(&loop_, o, clock_);
  ASSERT_TRUE(pool.start().ok());
  constexpr size_t kN = 3000;
  Tally tally(kN);
  size_t max_in_flight = 0;
  for (size_t i = 0; i < kN; ++i) {
    pool.submit(get("/alpha.txt"), [&, i](const Response*, Failure f, const std::string&) {
      tally.record(i, f);
      // The stream completing here no longer counts as in flight: add it back.
      max_in_flight = std::max(max_in_flight, pool.stats().streams_in_flight + 1);
      if (tally.done == static_cast<int>(kN)) pool.close(nullptr);
    });
  }
  run(&pool, 20s);
  EXPECT_TRUE(tally.each_once());
  EXPECT_EQ(tally.by_failure[Failure::None], static_cast<int>(kN));  // no REFUSED_STREAM from nghttpd
  EXPECT_LE(max_in_flight, 10u);
  EXPECT_EQ(max_in_flight, 10u);  // and the window was used
}

TEST_F(Http2Test, FollowsARaisedMaxConcurrentStreams) {
  TestServer server({.max_concurrent = 3, .hold_ms = 5, .raise_limit_after = 30, .raised_limit = 8});
  PoolOptions o;
  o.url = server.url();
  Pool pool(&loop_, o, clock_);
  ASSERT_TRUE(pool.start().ok());
  constexpr size_t kN = 300;
  Tally tally(kN);
  for (size_t i = 0; i < kN; ++i) {
    pool.submit(get("/n" + std::to_string(i)), [&, i](const Response* r, Failure f, const std::string&) {
      tally.record(i, f);
      if (f == Failure::None) {
        EXPECT_EQ(r->body, "ok /n" + std::to_string(i));
      }
      if (tally.done == static_cast<int>(kN)) pool.close(nullptr);
    });
  }
  run(&pool, 20s);
  EXPECT_TRUE(tally.each_once());
  EXPECT_EQ(tally.by_failure[Failure::None], static_cast<int>(kN));
  EXPECT_EQ(server.max_open_before_raise.load(), 3);
  EXPECT_LE(server.max_open.load(), 8);
  EXPECT_GT(server.max_open.load(), 3);
}

TEST_F(Http2Test, TlsWithAlpnH2AndAVerifiedSelfSignedCertificate) {
  ASSERT_FALSE(nghttpd_path().empty()) << "nghttpd missing: apt-get install nghttp2-server";
  make_certificate();
  Nghttpd server(docroot(), {}, key_, cert_);
  ASSERT_TRUE(server.wait_ready());

  // By address (IP SAN) and by name (resolver, SNI, DNS SAN).
  for (std::string host : {"127.0.0.1", "localhost"}) {
    PoolOptions o;
    o.url = "https://" + host + ":" + std::to_string(server.port());
    o.ca_file = cert_;
    Pool pool(&loop_, o, clock_);
    ASSERT_TRUE(pool.start().ok());
    constexpr size_t kN = 2000;
    Tally tally(kN);
    for (size_t i = 0; i < kN; ++i) {
      pool.submit(get("/bravo.txt"), [&, i](const Response* r, Failure f, const std::string& d) {
        tally.record(i, f);
        if (f == Failure::None) {
          EXPECT_EQ(r->body.size(), 3000u);
        } else {
          ADD_FAILURE() << host << ": " << to_string(f) << " " << d;
        }
        if (tally.done == static_cast<int>(kN)) pool.close(nullptr);
      });
    }
    run(&pool, 20s);
    EXPECT_TRUE(tally.each_once()) << host;
    EXPECT_EQ(tally.by_failure[Failure::None], static_cast<int>(kN)) << host;
  }
}

TEST_F(Http2Test, TlsRejectsAnUntrustedCertificate) {
  ASSERT_FALSE(nghttpd_path().empty()) << "nghttpd missing: apt-get install nghttp2-server";
  make_certificate();
  Nghttpd server(docroot(), {}, key_, cert_);
  ASSERT_TRUE(server.wait_ready());
  PoolOptions o;
  o.url = "https://127.0.0.1:" + std::to_string(server.port());  // no ca_file: the system store
  o.connect_timeout = 200ms;
  o.backoff_max = 50ms;
  Single got = single(o, get("/alpha.txt"));
  EXPECT_EQ(got.failure, Failure::Connect);
  EXPECT_NE(got.detail.find("certificate"), std::string::npos) << got.detail;
}

TEST_F(Http2Test, TlsRequiresAlpnH2) {
  make_certificate();
  int port = sirena::testing::reserve_port();
  // An HTTP/1.1-only TLS server: ALPN cannot agree on h2.
  Process server({"openssl", "s_server", "-quiet", "-accept", "127.0.0.1:" + std::to_string(port), "-cert",
                  cert_, "-key", key_, "-alpn", "http/1.1"},
                 {}, tmp_.path() + "/s_server.log");
  ASSERT_TRUE(sirena::testing::wait_until([&] { return port_open(port); }, 5s));
  PoolOptions o;
  o.url = "https://127.0.0.1:" + std::to_string(port);
  o.ca_file = cert_;
  o.connect_timeout = 200ms;
  o.backoff_max = 50ms;
  Single got = single(o, get("/"));
  EXPECT_EQ(got.failure, Failure::Connect);
  bool says_alpn = got.detail.find("ALPN") != std::string::npos ||
                   got.detail.find("application protocol") != std::string::npos;
  EXPECT_TRUE(says_alpn) << got.detail;
}

TEST_F(Http2Test, ConnectionRefusedFailsQueuedRequestsAfterTwiceTheConnectTimeout) {
  int port = sirena::testing::reserve_port();  // nobody listens
  PoolOptions o;
  o.url = "http://127.0.0.1:" + std::to_string(port);
  o.connect_timeout = 100ms;
  o.backoff_max = 40ms;
  Pool pool(&loop_, o, clock_);
  ASSERT_TRUE(pool.start().ok());
  constexpr size_t kN = 5;
  Tally tally(kN);
  int64_t t0 = now_ms();
  int64_t last = 0;
  std::string detail;
  for (size_t i = 0; i < kN; ++i) {
    pool.submit(get("/alpha.txt"), [&, i](const Response*, Failure f, const std::string& d) {
      tally.record(i, f);
      last = now_ms() - t0;
      detail = d;
      if (tally.done == static_cast<int>(kN)) pool.close(nullptr);
    });
  }
  run(&pool, 10s);
  EXPECT_TRUE(tally.each_once());
  EXPECT_EQ(tally.by_failure[Failure::Connect], static_cast<int>(kN));
  EXPECT_GE(last, 190);
  EXPECT_LT(last, 2000);
  EXPECT_NE(detail.find("connection refused"), std::string::npos) << detail;
  EXPECT_GE(pool.stats().reconnects, 1u);  // it kept trying meanwhile
}

TEST_F(Http2Test, QueuedRequestsSucceedWhenTheServerAppears) {
  ASSERT_FALSE(nghttpd_path().empty()) << "nghttpd missing: apt-get install nghttp2-server";
  std::string dir = docroot();
  int port = sirena::testing::reserve_port();
  PoolOptions o;
  o.url = "http://127.0.0.1:" + std::to_string(port);
  o.connect_timeout = 2000ms;
  o.backoff_max = 100ms;
  Pool pool(&loop_, o, clock_);
  ASSERT_TRUE(pool.start().ok());
  std::unique_ptr<Nghttpd> server;
  after(300ms, [&] { server = std::make_unique<Nghttpd>(dir, std::vector<std::string>{}, "", "", port); });
  constexpr size_t kN = 10;
  Tally tally(kN);
  for (size_t i = 0; i < kN; ++i) {
    pool.submit(get("/alpha.txt"), [&, i](const Response* r, Failure f, const std::string& d) {
      tally.record(i, f);
      if (f == Failure::None) {
        EXPECT_EQ(r->body, "alpha");
      } else {
        ADD_FAILURE() << to_string(f) << " " << d;
      }
      if (tally.done == static_cast<int>(kN)) pool.close(nullptr);
    });
  }
  run(&pool, 10s);
  EXPECT_TRUE(tally.each_once());
  EXPECT_EQ(tally.by_failure[Failure::None], static_cast<int>(kN));
  EXPECT_GE(pool.stats().reconnects, 1u);
}

TEST_F(Http2Test, StreamTimeoutResetsOnlyThatStream) {
  TestServer server({});
  PoolOptions o;
  o.url = server.url();
  Pool pool(&loop_, o, clock_);
  ASSERT_TRUE(pool.start().ok());
  Failure hang = Failure::None;
  int64_t t0 = now_ms(), took = 0;
  int ok = 0;
  pool.submit(get("/hang", 200ms), [&](const Response* r, Failure f, const std::string&) {
    hang = f;
    took = now_ms() - t0;
    EXPECT_EQ(r, nullptr);
    // The connection is still good: another request on it succeeds.
    pool.submit(get("/after"), [&](const Response* after, Failure after_f, const std::string&) {
      if (after_f == Failure::None && after->body == "ok /after") ++ok;
      pool.close(nullptr);
    });
  });
  pool.submit(get("/quick"),
              [&](const Response*, Failure f, const std::string&) { ok += f == Failure::None; });
  run(&pool, 10s);
  EXPECT_EQ(hang, Failure::Timeout);
  EXPECT_GE(took, 195);
  EXPECT_LT(took, 1500);
  EXPECT_EQ(ok, 2);
  EXPECT_EQ(pool.stats().reconnects, 0u);
  EXPECT_TRUE(sirena::testing::wait_until([&] { return server.cancels.load() == 1; }, 2s))
      << "the server saw RST_STREAM(CANCEL) " << server.cancels.load() << " times";
}

TEST_F(Http2Test, QueuedRequestTimesOutInThePool) {
  TestServer server({.max_concurrent = 1});
  PoolOptions o;
  o.url = server.url();
  Pool pool(&loop_, o, clock_);
  ASSERT_TRUE(pool.start().ok());
  std::map<std::string, std::pair<Failure, int64_t>> got;
  int64_t t0 = now_ms();
  // The only stream slot hangs; the second request never leaves the pool's queue.
  for (auto [path, timeout] : {std::pair{"/hang", 400ms}, std::pair{"/queued", 100ms}}) {
    pool.submit(get(path, timeout),
                [&, p = std::string(path)](const Response*, Failure f, const std::string&) {
                  got[p] = {f, now_ms() - t0};
                  if (got.size() == 2) pool.close(nullptr);
                });
  }
  run(&pool, 10s);
  EXPECT_EQ(got["/queued"].first, Failure::Timeout);
  EXPECT_GE(got["/queued"].second, 95);
  EXPECT_LT(got["/queued"].second, 390);
  EXPECT_EQ(got["/hang"].first, Failure::Timeout);
  EXPECT_GE(got["/hang"].second, 395);
  EXPECT_EQ(server.requests.load(), 1);  // the queued one was never sent
}

TEST_F(Http2Test, CloseWhileResolvingAndConnecting) {
  int port = sirena::testing::reserve_port();
  for (std::string host : {"localhost", "127.0.0.1"}) {
    PoolOptions o;
    o.url = "http://" + host + ":" + std::to_string(port);
    o.connections = 3;
    Pool pool(&loop_, o, clock_);
    ASSERT_TRUE(pool.start().ok());
    Failure failure = Failure::None;
    pool.submit(get("/"), [&](const Response*, Failure f, const std::string&) { failure = f; });
    bool closed = false;
    pool.close([&] { closed = true; });
    run(&pool, 5s);
    EXPECT_TRUE(closed) << host;
    EXPECT_EQ(failure, Failure::Closed) << host;
  }
}

TEST_F(Http2Test, GoawayRefusesStreamsAboveLastStreamIdAndThePoolReconnects) {
  TestServer server({.goaway_after = 50});
  PoolOptions o;
  o.url = server.url();
  Pool pool(&loop_, o, clock_);
  // The observer sees what stats() counts (the app exports it as sirena_http2_*_total).
  std::map<PoolEvent, uint64_t> events;
  pool.set_observer([&](PoolEvent e) {
    ++events[e];
    EXPECT_EQ(e == PoolEvent::Goaway ? pool.stats().goaways : pool.stats().reconnects, events[e]);
  });
  ASSERT_TRUE(pool.start().ok());
  constexpr size_t kN = 200;
  Tally tally(kN);
  int refused = 0, answered = 0;
  std::function<void(size_t)> send = [&](size_t i) {
    pool.submit(get("/g" + std::to_string(i)), [&, i](const Response* r, Failure f, const std::string& d) {
      if (f == Failure::Refused) {  // never processed: safe to send again
        ++refused;
        send(i);
        return;
      }
      tally.record(i, f);
      if (f == Failure::None && r->body == "ok /g" + std::to_string(i)) {
        ++answered;
      } else {
        ADD_FAILURE() << i << ": " << to_string(f) << " " << d;
      }
      if (tally.done == static_cast<int>(kN)) pool.close(nullptr);
    });
  };
  for (size_t i = 0; i < kN; ++i) send(i);
  run(&pool, 20s);
  EXPECT_TRUE(tally.each_once());
  EXPECT_EQ(answered, static_cast<int>(kN));
  EXPECT_GT(refused, 0);
  EXPECT_EQ(server.requests.load(), static_cast<int>(kN));  // refused streams were not processed
  EXPECT_EQ(pool.stats().goaways, 1u);
  EXPECT_GE(pool.stats().reconnects, 1u);
  EXPECT_EQ(events[PoolEvent::Goaway], 1u);
  EXPECT_EQ(events[PoolEvent::Reconnect], pool.stats().reconnects);
  EXPECT_STREQ(to_string(PoolEvent::Goaway), "goaway");
}

TEST_F(Http2Test, RstStreamIsResetOrRefusedByErrorCode) {
  TestServer server({});
  PoolOptions o;
  o.url = server.url();
  Pool pool(&loop_, o, clock_);
  ASSERT_TRUE(pool.start().ok());
  std::map<std::string, std::pair<Failure, std::string>> got;
  int pending = 3;
  for (std::string path : {"/rst", "/refuse", "/fine"}) {
    pool.submit(get(path), [&, path](const Response*, Failure f, const std::string& d) {
      got[path] = {f, d};
      if (--pending == 0) pool.close(nullptr);
    });
  }
  run(&pool, 10s);
  EXPECT_EQ(got["/rst"].first, Failure::Reset);
  EXPECT_NE(got["/rst"].second.find("INTERNAL_ERROR"), std::string::npos) << got["/rst"].second;
  EXPECT_EQ(got["/refuse"].first, Failure::Refused);
  EXPECT_EQ(got["/fine"].first, Failure::None);
}

TEST_F(Http2Test, LostConnectionResetsInFlightStreamsAndReconnects) {
  TestServer server({});
  PoolOptions o;
  o.url = server.url();
  Pool pool(&loop_, o, clock_);
  ASSERT_TRUE(pool.start().ok());
  std::vector<Failure> lost;
  Failure later = Failure::Closed;
  for (std::string path : {"/hang", "/hang", "/hang", "/close"}) {
    pool.submit(get(path), [&](const Response*, Failure f, const std::string&) {
      lost.push_back(f);
      if (lost.size() == 4) {
        pool.submit(get("/later"), [&](const Response* r, Failure later_f, const std::string&) {
          later = later_f;
          if (later_f == Failure::None) {
            EXPECT_EQ(r->body, "ok /later");
          }
          pool.close(nullptr);
        });
      }
    });
  }
  run(&pool, 10s);
  ASSERT_EQ(lost.size(), 4u);
  for (Failure f : lost) EXPECT_EQ(f, Failure::Reset);  // sent: may have been processed
  EXPECT_EQ(later, Failure::None);
  EXPECT_GE(pool.stats().reconnects, 1u);
}

TEST_F(Http2Test, IdlePingKeepsAHealthyConnection) {
  TestServer server({});
  PoolOptions o;
  o.url = server.url();
  o.ping_interval = 50ms;
  o.ping_timeout = 100ms;
  Pool pool(&loop_, o, clock_);
  ASSERT_TRUE(pool.start().ok());
  Failure f1 = Failure::Closed;
  pool.submit(get("/first"), [&](const Response*, Failure f, const std::string&) { f1 = f; });
  Failure f2 = Failure::Closed;
  after(400ms, [&] {
    pool.submit(get("/second"), [&](const Response*, Failure f, const std::string&) {
      f2 = f;
      pool.close(nullptr);
    });
  });
  run(&pool, 10s);
  EXPECT_EQ(f1, Failure::None);
  EXPECT_EQ(f2, Failure::None);
  EXPECT_GE(server.pings.load(), 3);
  EXPECT_EQ(pool.stats().reconnects, 0u);
  EXPECT_EQ(server.accepted.load(), 1);
}

TEST_F(Http2Test, UnansweredPingClosesTheConnection) {
  TestServer server({.ack_pings = false});
  PoolOptions o;
  o.url = server.url();
  o.ping_interval = 100ms;
  o.ping_timeout = 100ms;
  Single got = single(o, get("/hang", 10s));
  EXPECT_EQ(got.failure, Failure::Reset);
  EXPECT_NE(got.detail.find("PING"), std::string::npos) << got.detail;
  EXPECT_GE(got.took_ms, 190);
  EXPECT_LT(got.took_ms, 2000);
}

TEST_F(Http2Test, CloseRunsEveryCallbackExactlyOnce) {
  TestServer server({.max_concurrent = 10});
  PoolOptions o;
  o.url = server.url();
  Pool pool(&loop_, o, clock_);
  ASSERT_TRUE(pool.start().ok());
  constexpr size_t kN = 100;  // 10 in flight on the server, 90 queued in the pool
  Tally tally(kN);
  for (size_t i = 0; i < kN; ++i) {
    pool.submit(get("/hang"), [&, i](const Response* r, Failure f, const std::string&) {
      EXPECT_EQ(r, nullptr);
      tally.record(i, f);
    });
  }
  bool closed = false;
  PoolStats before_close;
  after(200ms, [&] {
    before_close = pool.stats();
    pool.close([&] { closed = true; });
    // After close: refused at once.
    Failure late = Failure::None;
    pool.submit(get("/late"), [&](const Response*, Failure f, const std::string&) { late = f; });
    EXPECT_EQ(late, Failure::Closed);
  });
  run(&pool, 10s);
  EXPECT_TRUE(closed);
  EXPECT_EQ(before_close.streams_in_flight, 10u);
  EXPECT_EQ(before_close.queued, 90u);
  EXPECT_TRUE(tally.each_once());
  EXPECT_EQ(tally.by_failure[Failure::Closed], static_cast<int>(kN));
  EXPECT_TRUE(sirena::testing::wait_until([&] { return server.requests.load() == 10; }, 2s));
}

TEST_F(Http2Test, DestroyingARunningPoolStillClosesItsHandles) {
  TestServer server({});
  int called = 0;
  {
    PoolOptions o;
    o.url = server.url();
    Pool pool(&loop_, o, clock_);
    ASSERT_TRUE(pool.start().ok());
    pool.submit(get("/hang"), [&](const Response*, Failure f, const std::string&) {
      EXPECT_EQ(f, Failure::Closed);
      ++called;
    });
    uv_run(&loop_, UV_RUN_NOWAIT);
  }
  run(nullptr, 5s);  // the abandoned pool finishes closing and frees itself
  EXPECT_EQ(called, 1);
}

}  // namespace
}  // namespace sirena::http2
