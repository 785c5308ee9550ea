// h2_bench: requests/s of the sirena_http2 Pool against h2load, the ceiling, on the same
// HTTP/2 server in the same run.
//
//   h2_bench [--url http://127.0.0.1:PORT] [--path /p] [--requests N] [--connections C]
//            [--body BYTES] [--window W] [--max-streams M] [--header "name: value"]... [--runs R]
//            [--insecure 1]
//
// Without --url it starts nghttpd (package nghttp2-server) with h2c on a free port,
// serving a small file, and POSTs a BYTES-long body to it (nghttpd answers a POST to a
// static file with the file). h2load gets the same requests: -n N -c C -m M (the server's
// SETTINGS_MAX_CONCURRENT_STREAMS; 100 for nghttpd) -d <body> -H <headers>. Any answer
// counts, whatever its status: this measures the transport. Each tool runs R times; the
// best run counts. Prints a Markdown table.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "daemon/core/clock.h"
#include "gateways/http2/client.h"

extern char** environ;

namespace {

using sirena::http2::Failure;
using sirena::http2::Pool;
using sirena::http2::PoolOptions;
using sirena::http2::Request;
using sirena::http2::Response;

struct Args {
  std::string url;
  std::string path = "/small.txt";
  size_t requests = 200000;
  size_t connections = 1;
  size_t body = 64;
  size_t window = 400;
  size_t max_streams = 100;  // the server's SETTINGS_MAX_CONCURRENT_STREAMS: h2load's -m
  int runs = 3;
  bool insecure = false;  // https without certificate checks (self-signed simulators), as h2load
  std::vector<std::pair<std::string, std::string>> headers = {{"content-type", "application/json"}};
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

bool port_open(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

pid_t spawn(std::vector<std::string> argv, const std::string& out_path) {
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = -1;
  if (posix_spawnp(&pid, cargv[0], &fa, nullptr, cargv.data(), environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

struct RunResult {
  double seconds = 0;
  size_t ok = 0;
  size_t failed = 0;
};

// One pool, `window` requests outstanding, until `requests` have completed.
RunResult run_pool(const Args& a, const std::string& body) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  sirena::SystemClock clock;
  PoolOptions o;
  o.url = a.url;
  o.connections = a.connections;
  o.verify_peer = !a.insecure;
  Pool pool(&loop, o, clock);
  if (!pool.start().ok()) {
    std::fprintf(stderr, "cannot start the pool for %s\n", a.url.c_str());
    std::exit(1);
  }
  RunResult r;
  size_t submitted = 0;
  double t0 = 0;
  // Let the connections come up first: the measurement is the request rate.
  uv_timer_t settle;
  uv_timer_init(&loop, &settle);
  struct Ctx {
    const Args* a;
    const std::string* body;
    Pool* pool;
    RunResult* r;
    size_t* submitted;
    double* t0;
    std::function<void()> send_one;
  } ctx{&a, &body, &pool, &r, &submitted, &t0, {}};
  ctx.send_one = [&] {
    Request req;
    req.method = "POST";
    req.path = a.path;
    req.body = body;
    for (auto& [name, value] : a.headers) req.headers.push_back({name, value});
    ++submitted;
    pool.submit(std::move(req), [&](const Response* resp, Failure f, const std::string&) {
      if (f == Failure::None && resp->status > 0) {  // any answer: we measure the transport
        ++r.ok;
      } else {
        ++r.failed;
      }
      if (r.ok + r.failed == a.requests) {
        r.seconds = now_s() - t0;
        pool.close(nullptr);
        return;
      }
      if (submitted < a.requests) ctx.send_one();
    });
  };
  settle.data = &ctx;
  uv_timer_start(
      &settle,
      [](uv_timer_t* t) {
        auto* c = static_cast<Ctx*>(t->data);
        *c->t0 = now_s();
        for (size_t i = 0; i < c->a->window && *c->submitted < c->a->requests; ++i) c->send_one();
        uv_close(reinterpret_cast<uv_handle_t*>(t), nullptr);
      },
      200, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  return r;
}

// h2load's own "finished in ..., X req/s" line.
RunResult run_h2load(const Args& a, const std::string& body_file, size_t max_streams) {
  std::string out = "/tmp/h2_bench_h2load.txt";
  std::vector<std::string> argv = {"h2load",
                                   "-n",
                                   std::to_string(a.requests),
                                   "-c",
                                   std::to_string(a.connections),
                                   "-m",
                                   std::to_string(max_streams),
                                   "-d",
                                   body_file,
                                   "-H",
                                   "content-type: application/json",
                                   a.url + a.path};
  pid_t pid = spawn(argv, out);
  RunResult r;
  if (pid < 0) return r;
  int st = 0;
  waitpid(pid, &st, 0);
  std::ifstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    double value = 0;
    char unit[3] = {};
    if (std::sscanf(line.c_str(), "finished in %lf%2[ms]", &value, unit) == 2) {
      r.seconds = std::string(unit) == "ms" ? value / 1000 : value;
    }
    size_t done = 0;
    if (std::sscanf(line.c_str(), "requests: %*u total, %*u started, %zu done", &done) == 1) {
      r.ok = done;  // any answer, as for the pool
      r.failed = a.requests - done;
    }
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--url") {
      a.url = v;
    } else if (k == "--path") {
      a.path = v;
    } else if (k == "--requests") {
      a.requests = std::stoul(v);
    } else if (k == "--connections") {
      a.connections = std::stoul(v);
    } else if (k == "--body") {
      a.body = std::stoul(v);
    } else if (k == "--window") {
      a.window = std::stoul(v);
    } else if (k == "--max-streams") {
      a.max_streams = std::stoul(v);
    } else if (k == "--insecure") {
      a.insecure = v == "1";
    } else if (k == "--runs") {
      a.runs = std::stoi(v);
    } else if (k == "--header" && v.find(':') != std::string::npos) {
      size_t colon = v.find(':');
      size_t value = v.find_first_not_of(' ', colon + 1);
      a.headers.push_back({v.substr(0, colon), value == std::string::npos ? "" : v.substr(value)});
    } else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  char dir_template[] = "/tmp/h2_bench.XXXXXX";
  std::string dir = mkdtemp(dir_template);
  std::ofstream(dir + "/small.txt") << "{\"apns-id\":\"ok\"}";
  std::string body(a.body, 'x');
  std::string body_file = dir + "/body";
  std::ofstream(body_file) << body;

  pid_t server = -1;
  if (a.url.empty()) {
    int port = free_port();
    for (const char* bin : {"/usr/sbin/nghttpd", "nghttpd"}) {
      server = spawn({bin, "--no-tls", "-d", dir, std::to_string(port)}, "/dev/null");
      if (server > 0) break;
    }
    for (int i = 0; i < 500 && !port_open(port); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    a.url = "http://127.0.0.1:" + std::to_string(port);
  }

  std::printf("| client | connections | requests | body bytes | best s | requests/s | vs h2load |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  RunResult best_h2load, best_pool;
  for (int i = 0; i < a.runs; ++i) {
    RunResult r = run_h2load(a, body_file, a.max_streams);
    if (r.seconds > 0 && (best_h2load.seconds == 0 || r.seconds < best_h2load.seconds)) best_h2load = r;
    RunResult p = run_pool(a, body);
    if (p.seconds > 0 && (best_pool.seconds == 0 || p.seconds < best_pool.seconds)) best_pool = p;
  }
  double h2load_rate = best_h2load.seconds > 0 ? static_cast<double>(a.requests) / best_h2load.seconds : 0;
  double pool_rate = best_pool.seconds > 0 ? static_cast<double>(a.requests) / best_pool.seconds : 0;
  std::printf("| h2load -m %zu | %zu | %zu | %zu | %.3f | %.0f | 1.00 |\n", a.max_streams, a.connections,
              a.requests, a.body, best_h2load.seconds, h2load_rate);
  std::printf("| sirena_http2 Pool (window %zu) | %zu | %zu | %zu | %.3f | %.0f | %.2f |\n", a.window,
              a.connections, a.requests, a.body, best_pool.seconds, pool_rate,
              h2load_rate > 0 ? pool_rate / h2load_rate : 0);
  if (best_pool.failed || best_h2load.failed) {
    std::printf("\nfailures: pool %zu, h2load %zu\n", best_pool.failed, best_h2load.failed);
  }
  if (server > 0) {
    kill(server, SIGTERM);
    waitpid(server, nullptr, 0);
  }
  std::string rm = "rm -rf " + dir;
  return std::system(rm.c_str()) == 0 && best_pool.failed == 0 ? 0 : 1;
}
