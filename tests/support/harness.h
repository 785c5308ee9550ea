// Integration-test support: real child processes (redis-server, sirenad) on 127.0.0.1
// with ephemeral ports, a blocking HTTP client (libcurl) and deadline-bounded waits.
//
// Every wait polls a condition until a deadline; nothing sleeps to "fix" timing.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sirena::testing {

// Build and data locations, from CMake.
std::string bin_dir();
std::string data_dir();
std::string source_dir();

// A fresh directory under /tmp, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Servers Sirena's tests start bind port 0 and report the port they got: sirenad logs it
// (http_listening), sirena-sim prints it ("listening on", "admin on"), in-process servers
// read it with getsockname. A port picked first and bound later by someone else races
// with every other socket on the machine.
//
// reserve_port() is for the servers that cannot do that: redis-server (--port 0 turns TCP
// off), Kannel's boxes, nghttpd, openssl s_server and Prometheus do not report a port they
// were given as 0, and a sirenad whose own config must name its URL before it starts (the
// DLR URL it gives the SMS gateway). The port is below the kernel's ephemeral range
// (/proc/sys/net/ipv4/ip_local_port_range), so no bind(0) and no outgoing connection is given
// it; it is locked (flock on /tmp/sirena-test-ports/PORT) until this process exits, so no
// other test process using reserve_port() picks it; and a bind() probe skips ports something
// else listens on. The same reserved port also serves as one nobody listens on.
int reserve_port();

// The port `pattern` (one capture group: the port) finds in what the file at `path` gained
// after `offset` bytes, or 0 while it is not there.
int port_in_log(const std::string& path, size_t offset, const std::string& pattern);

// Polls `cond` every few milliseconds until it holds or `timeout` passes.
bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout);

// A child process, killed (SIGKILL) by the destructor if still running.
class Process {
 public:
  Process(std::vector<std::string> argv, std::map<std::string, std::string> env = {},
          std::string stderr_path = {});
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  void signal(int signum);
  // Waits for the exit; returns the exit status (128+signal if killed) or nullopt on timeout.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
};

class RedisServer {
 public:
  explicit RedisServer(std::string dir, int port = 0);
  ~RedisServer();
  void start();
  void stop();              // SIGKILL: a crash, not a clean shutdown
  void signal(int signum);  // e.g. SIGSTOP: a Redis that hangs without closing
  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_) + "/0"; }
  // Runs a command through redis-cli and returns its raw output.
  std::string cli(const std::vector<std::string>& args) const;

 private:
  std::string dir_;
  int port_;
  std::unique_ptr<Process> proc_;
};

struct HttpResponse {
  long status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string error;                           // transport error, if any
  long http_version = 0;                       // CURL_HTTP_VERSION_* actually used
};

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  std::string body;
  std::vector<std::string> headers;  // "Name: value"
  bool http2_prior_knowledge = false;
};

// Test clients talk to self-signed loopback servers: certificates are not verified.
// For https URLs the protocol is negotiated by ALPN (HTTP/2 preferred); the response
// says which one was used.

HttpResponse http(const HttpRequest& req);
HttpResponse http_get(const std::string& url);
// Sends all requests at once over up to `parallel` connections (HTTP/1.1: one request
// in flight on each); the responses in the order of `reqs`.
std::vector<HttpResponse> http_all(const std::vector<HttpRequest>& reqs, size_t parallel);

// sirenad started from a config file, with env overrides, logging to `dir`/sirenad.log.
class Sirenad {
 public:
  Sirenad(std::string config_path, std::string dir, std::map<std::string, std::string> env);
  ~Sirenad();
  void start();  // waits for /healthz
  // SIGTERM and wait; returns the exit status.
  int stop();
  void kill();
  pid_t pid() const { return proc_ ? proc_->pid() : -1; }
  // The port sirenad listens on. The first start() binds port 0 and reads the port from
  // the daemon's http_listening log line; later starts bind that port again, so URLs taken
  // before a restart stay valid. Asked before the first start (a config that names the
  // daemon's own URL), the port is reserved then (reserve_port()).
  int port() const;
  // https:// when the env configures http.tls.
  std::string base() const {
    return (env_.count("SIRENA_HTTP_TLS_CERT") ? "https" : "http") + std::string("://127.0.0.1:") +
           std::to_string(port());
  }
  std::string log() const;
  bool ready();  // GET /readyz == 200
  void set_env(const std::string& k, const std::string& v) { env_[k] = v; }

  HttpResponse get(const std::string& path, const std::string& key,
                   std::vector<std::string> headers = {}) const;
  HttpResponse post(const std::string& path, const std::string& key, const std::string& body,
                    const std::string& content_type) const;

 private:
  std::string config_;
  std::string dir_;
  std::map<std::string, std::string> env_;
  mutable int port_ = 0;  // 0 until the first start() or port()
  std::unique_ptr<Process> proc_;
};

// sirena-sim KIND on ephemeral ports, with an HTTP/1.1 admin listener for /stats. The first
// start() binds port 0 for both and reads the ports from the simulator's "listening on" and
// "admin on" lines; a restart binds the same ports again. port() and url() are valid after
// the first start().
class Simulator {
 public:
  Simulator(std::string kind, std::string dir, std::vector<std::string> extra_args = {});
  ~Simulator();
  void start();
  void stop();
  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string stats() const;  // GET /stats body (JSON)

 private:
  std::string kind_, dir_;
  std::vector<std::string> extra_;
  int port_ = 0, admin_port_ = 0;
  std::unique_ptr<Process> proc_;
};

// The SHA-256 a config stores for API key `key`, from `sirenad --hash-key` (so tests do
// not re-implement it).
std::string hash_key(const std::string& key);

std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& text);

}  // namespace sirena::testing
