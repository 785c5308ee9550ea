#include "tests/support/harness.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace sirena::testing {

std::string bin_dir() {
  return SIRENA_BIN_DIR;
}
std::string data_dir() {
  return SIRENA_TEST_DATA;
}
std::string source_dir() {
  return SIRENA_SOURCE_DIR;
}

TempDir::TempDir() {
  std::string tmpl = "/tmp/sirena-test-XXXXXX";
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

namespace {

// Whether nothing is bound to 127.0.0.1:port now.
bool can_bind(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

// The lowest port the kernel hands out on its own (bind to port 0, connect).
int ephemeral_low() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 32768, high = 60999;
  in >> low >> high;
  return low;
}

}  // namespace

int reserve_port() {
  const int high = ephemeral_low();  // exclusive
  const int low = std::max(1024, high - 20000);
  if (high - low < 100) throw std::runtime_error("no room below the ephemeral port range");
  const std::string lock_dir = "/tmp/sirena-test-ports";
  std::filesystem::create_directories(lock_dir);
  std::mt19937 pick(std::random_device{}());
  std::uniform_int_distribution<int> in_range(low, high - 1);
  for (int attempt = 0; attempt < 200; ++attempt) {
    int port = in_range(pick);
    int fd = open((lock_dir + "/" + std::to_string(port)).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) continue;
    // The lock stays held (the descriptor stays open) until this process exits.
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      close(fd);
      continue;
    }
    if (can_bind(port)) return port;
    close(fd);
  }
  throw std::runtime_error("no port to reserve below " + std::to_string(high));
}

int port_in_log(const std::string& path, size_t offset, const std::string& pattern) {
  std::string text = read_file(path);
  if (text.size() <= offset) return 0;
  std::smatch m;
  std::string tail = text.substr(offset);
  if (!std::regex_search(tail, m, std::regex(pattern))) return 0;
  return std::stoi(m[1]);
}

bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    // A polling interval, not a timing fix: the condition decides.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

Process::Process(std::vector<std::string> argv, std::map<std::string, std::string> env,
                 std::string stderr_path) {
  std::vector<std::string> envs;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    if (!env.count(kv.substr(0, kv.find('=')))) envs.push_back(kv);
  }
  for (auto& [k, v] : env) envs.push_back(k + "=" + v);
  std::vector<char*> cargv, cenv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  for (auto& e : envs) cenv.push_back(e.data());
  cenv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  if (!stderr_path.empty())
    posix_spawn_file_actions_addopen(&fa, 2, stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  int rc = posix_spawnp(&pid_, cargv[0], &fa, nullptr, cargv.data(), cenv.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("cannot start " + argv[0]);
}

Process::~Process() {
  if (running()) {
    ::kill(pid_, SIGKILL);
    wait_exit(std::chrono::seconds(10));
  }
}

bool Process::running() {
  if (status_) return false;
  int st = 0;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return false;
  }
  return true;
}

void Process::signal(int signum) {
  if (running()) ::kill(pid_, signum);
}

std::optional<int> Process::wait_exit(std::chrono::milliseconds timeout) {
  wait_until([&] { return !running(); }, timeout);
  return status_;
}

RedisServer::RedisServer(std::string dir, int port)
    : dir_(std::move(dir)), port_(port ? port : reserve_port()) {}

RedisServer::~RedisServer() = default;

void RedisServer::start() {
  proc_ = std::make_unique<Process>(
      std::vector<std::string>{"redis-server", "--port", std::to_string(port_), "--bind", "127.0.0.1",
                               "--dir", dir_, "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                               "--daemonize", "no"},
      std::map<std::string, std::string>{}, dir_ + "/redis.log");
  bool up =
      wait_until([&] { return cli({"PING"}).find("PONG") != std::string::npos; }, std::chrono::seconds(10));
  if (!up) throw std::runtime_error("redis-server did not start on port " + std::to_string(port_));
}

void RedisServer::signal(int signum) {
  if (proc_) proc_->signal(signum);
}

void RedisServer::stop() {
  if (!proc_) return;
  proc_->signal(SIGKILL);
  proc_->wait_exit(std::chrono::seconds(10));
  proc_.reset();
}

std::string RedisServer::cli(const std::vector<std::string>& args) const {
  std::string cmd = "redis-cli -h 127.0.0.1 -p " + std::to_string(port_);
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " 2>&1";
  std::unique_ptr<FILE, int (*)(FILE*)> p(popen(cmd.c_str(), "r"), pclose);
  std::string out;
  char buf[4096];
  size_t n;
  while (p && (n = fread(buf, 1, sizeof buf, p.get())) > 0) out.append(buf, n);
  return out;
}

namespace {

size_t on_body(char* ptr, size_t size, size_t nmemb, void* userdata) {
  static_cast<std::string*>(userdata)->append(ptr, size * nmemb);
  return size * nmemb;
}

size_t on_header(char* ptr, size_t size, size_t nmemb, void* userdata) {
  std::string line(ptr, size * nmemb);
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    for (auto& c : name) c = static_cast<char>(std::tolower(c));
    std::string value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ')) value.erase(0, 1);
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n')) value.pop_back();
    (*static_cast<std::map<std::string, std::string>*>(userdata))[name] = value;
  }
  return size * nmemb;
}

}  // namespace

namespace {

// An easy handle for `req` that writes into `out`; `*hs` holds its header list, freed by
// finish_easy().
CURL* make_easy(const HttpRequest& req, HttpResponse* out, curl_slist** hs) {
  CURL* c = curl_easy_init();
  *hs = nullptr;
  for (const auto& h : req.headers) *hs = curl_slist_append(*hs, h.c_str());
  *hs = curl_slist_append(*hs, "Expect:");
  curl_easy_setopt(c, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  if (req.method == "POST" || req.method == "PUT") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, req.body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hs);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &out->body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &out->headers);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  if (req.url.rfind("https://", 0) == 0)
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
  if (req.http2_prior_knowledge)
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE));
  return c;
}

void finish_easy(CURL* c, CURLcode rc, HttpResponse* out, curl_slist* hs) {
  if (rc != CURLE_OK) out->error = curl_easy_strerror(rc);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
  curl_easy_getinfo(c, CURLINFO_HTTP_VERSION, &out->http_version);
  curl_slist_free_all(hs);
  curl_easy_cleanup(c);
}

}  // namespace

HttpResponse http(const HttpRequest& req) {
  HttpResponse out;
  curl_slist* hs = nullptr;
  CURL* c = make_easy(req, &out, &hs);
  finish_easy(c, curl_easy_perform(c), &out, hs);
  return out;
}

std::vector<HttpResponse> http_all(const std::vector<HttpRequest>& reqs, size_t parallel) {
  std::vector<HttpResponse> out(reqs.size());
  std::vector<curl_slist*> hs(reqs.size(), nullptr);
  std::map<CURL*, size_t> index;
  CURLM* multi = curl_multi_init();
  curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, static_cast<long>(parallel));
  curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, static_cast<long>(parallel));
  for (size_t k = 0; k < reqs.size(); ++k) {
    CURL* c = make_easy(reqs[k], &out[k], &hs[k]);
    index[c] = k;
    curl_multi_add_handle(multi, c);
  }
  int running = 1;
  while (running > 0) {
    curl_multi_perform(multi, &running);
    int left = 0;
    while (CURLMsg* m = curl_multi_info_read(multi, &left)) {
      if (m->msg != CURLMSG_DONE) continue;
      CURL* c = m->easy_handle;
      CURLcode rc = m->data.result;
      size_t k = index.at(c);
      curl_multi_remove_handle(multi, c);
      finish_easy(c, rc, &out[k], hs[k]);
    }
    if (running > 0) curl_multi_poll(multi, nullptr, 0, 1000, nullptr);
  }
  curl_multi_cleanup(multi);
  return out;
}

HttpResponse http_get(const std::string& url) {
  HttpRequest req;
  req.url = url;
  return http(req);
}

Sirenad::Sirenad(std::string config_path, std::string dir, std::map<std::string, std::string> env)
    : config_(std::move(config_path)), dir_(std::move(dir)), env_(std::move(env)) {
  // sirenad names its dispatch consumer after its host and configured port, which is 0 here:
  // a name of its own, kept across restarts of this object, as a port of its own gave it.
  static int daemons = 0;
  env_.emplace("SIRENA_DISPATCH_CONSUMER",
               "sirenad-test-" + std::to_string(getpid()) + "-" + std::to_string(++daemons));
  // The demo zones, wherever the test runs from (ctest runs in the build tree).
  env_.emplace("SIRENA_DIRECTORY_ZONES_DIR", source_dir() + "/config/zones");
}

Sirenad::~Sirenad() = default;

int Sirenad::port() const {
  if (port_ == 0) port_ = reserve_port();
  return port_;
}

void Sirenad::start() {
  env_["SIRENA_HTTP_LISTEN"] = "127.0.0.1:" + std::to_string(port_);
  const std::string log_path = dir_ + "/sirenad.log";
  const size_t offset = read_file(log_path).size();  // the log may hold earlier runs
  proc_ = std::make_unique<Process>(std::vector<std::string>{bin_dir() + "/sirenad", "--config", config_},
                                    env_, log_path);
  // main.cc flushes the start-up lines, http_listening among them, once the app started.
  int bound = 0;
  bool listening = wait_until(
      [&] {
        bound = port_in_log(log_path, offset, R"re("event":"http_listening"[^\n]*"port":(\d+))re");
        return bound != 0 || !proc_->running();
      },
      std::chrono::seconds(20));
  if (!listening || bound == 0) throw std::runtime_error("sirenad did not start:\n" + log());
  port_ = bound;
  bool up = wait_until(
      [&] {
        if (!proc_->running()) return true;
        return http_get(base() + "/healthz").status == 200;
      },
      std::chrono::seconds(20));
  if (!up || !proc_->running()) throw std::runtime_error("sirenad did not start:\n" + log());
}

int Sirenad::stop() {
  if (!proc_) return -1;
  proc_->signal(SIGTERM);
  auto st = proc_->wait_exit(std::chrono::seconds(30));
  proc_.reset();
  return st.value_or(-1);
}

void Sirenad::kill() {
  if (!proc_) return;
  proc_->signal(SIGKILL);
  proc_->wait_exit(std::chrono::seconds(10));
  proc_.reset();
}

std::string Sirenad::log() const {
  return read_file(dir_ + "/sirenad.log");
}

bool Sirenad::ready() {
  return http_get(base() + "/readyz").status == 200;
}

HttpResponse Sirenad::get(const std::string& path, const std::string& key,
                          std::vector<std::string> headers) const {
  if (!key.empty()) headers.push_back("Authorization: Bearer " + key);
  HttpRequest req;
  req.url = base() + path;
  req.headers = std::move(headers);
  return http(req);
}

HttpResponse Sirenad::post(const std::string& path, const std::string& key, const std::string& body,
                           const std::string& content_type) const {
  std::vector<std::string> headers;
  if (!key.empty()) headers.push_back("Authorization: Bearer " + key);
  if (!content_type.empty()) headers.push_back("Content-Type: " + content_type);
  HttpRequest req{"POST", base() + path, body, headers, false};
  return http(req);
}

Simulator::Simulator(std::string kind, std::string dir, std::vector<std::string> extra_args)
    : kind_(std::move(kind)), dir_(std::move(dir)), extra_(std::move(extra_args)) {}

Simulator::~Simulator() {
  stop();
}

void Simulator::start() {
  std::vector<std::string> argv{bin_dir() + "/sirena-sim",
                                kind_,
                                "--listen",
                                "127.0.0.1:" + std::to_string(port_),
                                "--admin",
                                "127.0.0.1:" + std::to_string(admin_port_)};
  argv.insert(argv.end(), extra_.begin(), extra_.end());
  const std::string log_path = dir_ + "/sim-" + kind_ + ".log";
  const size_t offset = read_file(log_path).size();
  proc_ = std::make_unique<Process>(argv, std::map<std::string, std::string>{}, log_path);
  // main.cc prints "admin on HOST:PORT", then "listening on HOST:PORT" once it serves.
  int listening = 0;
  bool bound = wait_until(
      [&] {
        listening = port_in_log(log_path, offset, R"(listening on [^\n]*:(\d+)\n)");
        return listening != 0 || !proc_->running();
      },
      std::chrono::seconds(10));
  if (!bound || listening == 0)
    throw std::runtime_error("sirena-sim " + kind_ + " did not start: " + read_file(log_path));
  port_ = listening;
  admin_port_ = port_in_log(log_path, offset, R"(admin on [^\n]*:(\d+)\n)");
  bool up = wait_until(
      [&] {
        return !proc_->running() ||
               http_get("http://127.0.0.1:" + std::to_string(admin_port_) + "/stats").status == 200;
      },
      std::chrono::seconds(10));
  if (!up || !proc_->running())
    throw std::runtime_error("sirena-sim " + kind_ +
                             " did not start: " + read_file(dir_ + "/sim-" + kind_ + ".log"));
}

void Simulator::stop() {
  if (!proc_) return;
  proc_->signal(SIGTERM);
  proc_->wait_exit(std::chrono::seconds(10));
  proc_.reset();
}

std::string Simulator::stats() const {
  return http_get("http://127.0.0.1:" + std::to_string(admin_port_) + "/stats").body;
}

std::string hash_key(const std::string& key) {
  std::string cmd = bin_dir() + "/sirenad --hash-key '" + key + "'";
  std::unique_ptr<FILE, int (*)(FILE*)> p(popen(cmd.c_str(), "r"), pclose);
  char buf[128] = {0};
  size_t n = p ? fread(buf, 1, sizeof buf - 1, p.get()) : 0;
  std::string s(buf, n);
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

}  // namespace sirena::testing
