// sirena: the operator CLI. It talks to sirenad over HTTP only.
//
//   sirena [--url URL] [--key KEY] send FILE        submit a CAP (.xml) or JSON (.json) alert
//   sirena ... preview FILE                         who it would reach, SMS text and segments
//   sirena ... status ID | list                     one alert | the newest alerts
//   sirena ... approve ID | cancel ID
//   sirena ... import FILE [--batch-bytes N]        NDJSON recipients, any size, in bounded requests
//   sirena ... tail ID                              follow an alert's state until it is final
//
// SIRENA_URL and SIRENA_KEY stand in for --url and --key. send, preview and import send a
// request again while sirenad restarts or answers 503, for up to --retry-for S (120).
#include <curl/curl.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

namespace {

struct Reply {
  long status = 0;
  std::string body;
  std::string error;
};

size_t collect(char* p, size_t s, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, s * n);
  return s * n;
}

class Client {
 public:
  Client(std::string url, std::string key) : url_(std::move(url)), key_(std::move(key)) {
    while (!url_.empty() && url_.back() == '/') url_.pop_back();
  }
  Reply call(const std::string& method, const std::string& path, const std::string& body = {},
             const std::string& content_type = {}) const {
    Reply r;
    CURL* c = curl_easy_init();
    curl_slist* h = nullptr;
    if (!key_.empty()) h = curl_slist_append(h, ("Authorization: Bearer " + key_).c_str());
    if (!content_type.empty()) h = curl_slist_append(h, ("Content-Type: " + content_type).c_str());
    h = curl_slist_append(h, "Expect:");
    std::string url = url_ + path;
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
    if (method == "POST" || method == "PUT") {
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) r.error = curl_easy_strerror(rc);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return r;
  }

 private:
  std::string url_, key_;
};

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::cerr << "sirena: cannot read " << path << "\n";
    std::exit(2);
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Prints the answer; returns the process exit code (0 for 2xx).
int show(const Reply& r) {
  if (!r.error.empty()) {
    std::cerr << "sirena: " << r.error << "\n";
    return 1;
  }
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (r.status >= 400) {
    if (j.is_object() && j.contains("error")) {
      std::cerr << "sirena: " << r.status << " " << j["error"].value("code", "") << ": "
                << j["error"].value("message", "");
      if (j["error"].contains("where")) std::cerr << " (at " << j["error"]["where"].get<std::string>() << ")";
      std::cerr << "\n";
    } else {
      std::cerr << "sirena: HTTP " << r.status << "\n" << r.body << "\n";
    }
    return 1;
  }
  std::cout << (j.is_discarded() ? r.body : j.dump(2)) << "\n";
  return 0;
}

std::string alert_type(const std::string& file) {
  return file.size() > 5 && file.substr(file.size() - 5) == ".json" ? "application/json"
                                                                    : "application/cap+xml";
}

// Sends a request, and sends it again with backoff for up to `retry_for` while sirenad is
// unreachable (restarting) or answers 503 (its directory still loading, or Redis
// unavailable), saying so on stderr. Only for requests that are safe to repeat: an import
// is idempotent per recipient id, an alert per CAP identifier (a repeat is answered
// "duplicate": true), and a preview has no side effects.
Reply call_retrying(const Client& client, const std::string& method, const std::string& path,
                    const std::string& body, const std::string& content_type, std::chrono::seconds retry_for,
                    const std::string& what) {
  Reply r = client.call(method, path, body, content_type);
  const auto give_up = std::chrono::steady_clock::now() + retry_for;
  std::chrono::milliseconds pause(250);
  while ((r.status == 503 || (r.status == 0 && !r.error.empty())) &&
         std::chrono::steady_clock::now() + pause <= give_up) {
    std::cerr << "\nsirena: " << what << ": " << (r.error.empty() ? "HTTP 503 " + r.body : r.error)
              << "; retrying in " << pause.count() << " ms" << std::endl;
    std::this_thread::sleep_for(pause);  // backoff between attempts, not a wait for a condition
    r = client.call(method, path, body, content_type);
    pause = std::min(pause * 2, std::chrono::milliseconds(5000));
  }
  return r;
}

// Sends an NDJSON file as consecutive requests of at most `batch_bytes`, cut at line
// ends, so memory stays flat on both sides whatever the file's size.
int import_file(const Client& client, const std::string& path, size_t batch_bytes,
                std::chrono::seconds retry_for) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::cerr << "sirena: cannot read " << path << "\n";
    return 2;
  }
  size_t imported = 0, created = 0, unchanged = 0, line_no = 0;
  size_t first_line = 1, lines = 0;  // the batch's first line in the file, and its lines
  nlohmann::json rejected = nlohmann::json::array();
  std::string batch, line;
  auto t0 = std::chrono::steady_clock::now();
  auto flush = [&]() -> bool {
    if (batch.empty()) return true;
    Reply r =
        call_retrying(client, "POST", "/v1/recipients/import", batch, "application/x-ndjson", retry_for,
                      "lines " + std::to_string(first_line) + "-" + std::to_string(first_line + lines - 1));
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (r.status != 200 || !j.is_object()) {
      std::cerr << "sirena: import stopped at line " << first_line << ": ";
      show(r);
      return false;
    }
    imported += j.value("imported", 0);
    created += j.value("created", 0);
    unchanged += j.value("unchanged", 0);
    for (auto item : j["rejected"]) {
      item["line"] = item["line"].get<size_t>() + first_line - 1;  // the file's numbering
      rejected.push_back(item);
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cerr << "\rimported " << imported << " ("
              << static_cast<long>(static_cast<double>(imported) / std::max(secs, 1e-3)) << "/s), rejected "
              << rejected.size() << std::flush;
    batch.clear();
    lines = 0;
    return true;
  };
  while (std::getline(in, line)) {
    ++line_no;
    if (!batch.empty() && batch.size() + line.size() + 1 > batch_bytes && !flush()) return 1;
    if (batch.empty()) first_line = line_no;
    batch += line;
    batch += '\n';
    ++lines;
  }
  if (!flush()) return 1;
  std::cerr << "\n";
  std::cout << nlohmann::json({{"imported", imported},
                               {"created", created},
                               {"unchanged", unchanged},
                               {"rejected", rejected}})
                   .dump(2)
            << "\n";
  return 0;
}

int tail(const Client& client, const std::string& id) {
  std::string last;
  for (;;) {
    Reply r = client.call("GET", "/v1/alerts/" + id);
    if (r.status != 200) return show(r);
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    std::string line = j.value("state", "?") + " recipients=" + std::to_string(j.value("recipients", 0)) +
                       " progress=" + j["progress"].dump();
    if (line != last) std::cout << line << std::endl;
    last = line;
    std::string st = j.value("state", "");
    if (st == "completed" || st == "cancelled" || st == "expired" || st == "superseded" || st == "draft" ||
        st == "recorded")
      return 0;
    std::this_thread::sleep_for(std::chrono::seconds(1));  // a polling interval for a human watching
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sirena: operator CLI for sirenad"};
  const char* env_url = std::getenv("SIRENA_URL");
  const char* env_key = std::getenv("SIRENA_KEY");
  std::string url = env_url ? env_url : "http://127.0.0.1:8080";
  std::string key = env_key ? env_key : "";
  app.add_option("--url", url, "sirenad base URL (SIRENA_URL)");
  app.add_option("--key", key, "API key (SIRENA_KEY)");
  int retry_for = 120;
  app.add_option(
      "--retry-for", retry_for,
      "send, preview, import: seconds to keep sending a request again while sirenad is unreachable or "
      "answers 503 (default 120; 0: never)");
  app.require_subcommand(1);
  std::string file, id;
  size_t batch_bytes = 8 << 20;
  auto* send = app.add_subcommand("send", "submit a CAP (.xml) or JSON (.json) alert");
  send->add_option("file", file)->required();
  auto* preview = app.add_subcommand("preview", "who an alert would reach, without sending it");
  preview->add_option("file", file)->required();
  auto* status = app.add_subcommand("status", "one alert's state and progress");
  status->add_option("id", id)->required();
  app.add_subcommand("list", "the newest alerts");
  auto* approve = app.add_subcommand("approve", "approve a pending alert (two-person rule)");
  approve->add_option("id", id)->required();
  auto* cancel = app.add_subcommand("cancel", "cancel an alert (issues a CAP Cancel)");
  cancel->add_option("id", id)->required();
  auto* import = app.add_subcommand("import", "import recipients from an NDJSON file of any size");
  import->add_option("file", file)->required();
  import->add_option("--batch-bytes", batch_bytes, "largest request body (default 8 MiB)");
  auto* follow = app.add_subcommand("tail", "follow an alert until it is final");
  follow->add_option("id", id)->required();
  CLI11_PARSE(app, argc, argv);

  curl_global_init(CURL_GLOBAL_DEFAULT);
  Client client(url, key);
  const std::chrono::seconds patience(retry_for);
  if (*send)
    return show(
        call_retrying(client, "POST", "/v1/alerts", read_all(file), alert_type(file), patience, file));
  if (*preview)
    return show(call_retrying(client, "POST", "/v1/alerts/preview", read_all(file), alert_type(file),
                              patience, file));
  if (*status) return show(client.call("GET", "/v1/alerts/" + id));
  if (app.got_subcommand("list")) return show(client.call("GET", "/v1/alerts"));
  if (*approve) return show(client.call("POST", "/v1/alerts/" + id + "/approve"));
  if (*cancel) return show(client.call("POST", "/v1/alerts/" + id + "/cancel"));
  if (*import) return import_file(client, file, batch_bytes, patience);
  if (*follow) return tail(client, id);
  return 2;
}
