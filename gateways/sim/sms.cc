#include "gateways/sim/sms.h"

#include <curl/curl.h>
#include <iconv.h>

#include <ctime>
#include <nlohmann/json.hpp>

#include "daemon/core/number.h"
#include "gateways/sim/form.h"
#include "gateways/sim/ledger.h"

namespace sirena::sim {

namespace {

constexpr std::string_view kKannelPath = "/cgi-bin/sendsms";
constexpr std::string_view kJsonPath = "/sms";

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

// Converts `in` from `charset` to UTF-8 with iconv; false when it is not valid there.
bool to_utf8(const std::string& charset, const std::string& in, std::string& out) {
  if (charset.empty() || iequals(charset, "UTF-8") || iequals(charset, "utf8")) {
    out = in;
    return true;
  }
  std::string from = iequals(charset, "UCS-2") ? "UCS-2BE" : charset;  // Kannel's UCS-2 is big-endian
  iconv_t cd = iconv_open("UTF-8", from.c_str());
  if (cd == reinterpret_cast<iconv_t>(-1)) return false;
  out.assign(in.size() * 4 + 4, '\0');
  char* src = const_cast<char*>(in.data());
  size_t src_left = in.size();
  char* dst = out.data();
  size_t dst_left = out.size();
  size_t rc = iconv(cd, &src, &src_left, &dst, &dst_left);
  iconv_close(cd);
  if (rc == static_cast<size_t>(-1) || src_left != 0) return false;
  out.resize(out.size() - dst_left);
  return true;
}

// RFC 3986 percent-encoding of everything but unreserved characters (libcurl's).
std::string url_encode(std::string_view s) {
  char* escaped = curl_easy_escape(nullptr, s.data(), static_cast<int>(s.size()));
  std::string out = escaped ? escaped : "";
  curl_free(escaped);
  return out;
}

class Params {
 public:
  explicit Params(const Request& req) : req_(req) {
    auto ct = req.header("content-type");
    form_body_ = req.method == "POST" && ct && ct->starts_with("application/x-www-form-urlencoded");
  }
  std::optional<std::string> get(std::string_view name) const {
    if (auto v = form_value(req_.query, name)) return v;
    if (form_body_) return form_value(req_.body, name);
    return std::nullopt;
  }

 private:
  const Request& req_;
  bool form_body_ = false;
};

void kannel_answer(Response& resp, int status, std::string_view text) {
  resp.status = status;
  resp.add_header("content-type", "text/html");
  resp.body.assign(text);
}

void json_answer(Response& resp, int status, const nlohmann::json& body) {
  resp.status = status;
  resp.add_header("content-type", "application/json");
  resp.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

// ---- DlrSender --------------------------------------------------------------------

DlrSender::DlrSender() : worker_([this] { run(); }) {}

DlrSender::~DlrSender() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  worker_.join();
}

void DlrSender::enqueue(std::string url) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(url));
  }
  cv_.notify_one();
}

void DlrSender::run() {
  CURL* curl = curl_easy_init();
  while (true) {
    std::string url;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) break;  // stopping and drained
      url = std::move(queue_.front());
      queue_.pop_front();
    }
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(
        curl, CURLOPT_WRITEFUNCTION, +[](char*, size_t size, size_t n, void*) { return size * n; });
    curl_easy_perform(curl);  // best effort, as Kannel's own DLR calls
  }
  curl_easy_cleanup(curl);
}

// ---- SmsService -------------------------------------------------------------------

SmsService::SmsService(Config config, const RecipientSet& unregistered, DlrSender* dlr)
    : config_(std::move(config)), unregistered_(unregistered), dlr_(dlr) {}

bool SmsService::is_message(const Request& req) const {
  return req.path == kKannelPath || req.path == kJsonPath;
}

void SmsService::handle(const Request& req, Response& resp) {
  if (req.path == kKannelPath) return kannel(req, resp);
  if (req.path == kJsonPath) return generic_json(req, resp);
  resp.status = 404;
  resp.add_header("content-type", "text/plain");
  resp.body = "not found: POST /sms, GET|POST /cgi-bin/sendsms, GET /stats, POST /reset\n";
}

void SmsService::kannel(const Request& req, Response& resp) {
  Params p(req);
  auto user = p.get("username");
  auto pass = p.get("password");
  if (!user) user = p.get("user");  // Kannel accepts both spellings
  if (!pass) pass = p.get("pass");
  if (!user || !pass || (!config_.username.empty() && *user != config_.username) ||
      (!config_.password.empty() && *pass != config_.password))
    return kannel_answer(resp, 403, "Authorization failed for sendsms");
  auto to = p.get("to");
  if (!to) return kannel_answer(resp, 400, "Missing receiver number, rejected");
  auto text = p.get("text");
  if (!text) return kannel_answer(resp, 400, "Missing text, rejected");
  std::string utf8;
  if (!to_utf8(p.get("charset").value_or(""), *text, utf8))
    return kannel_answer(resp, 400, "Charset or body misformed, rejected");

  std::string alert_id;
  std::string dlr_url = p.get("dlr-url").value_or("");
  if (auto a = p.get("sirena-alert")) {
    alert_id = *a;
  } else if (auto q = dlr_url.find('?'); q != std::string::npos) {
    std::string_view query = std::string_view(dlr_url).substr(q + 1);
    if (auto v = form_value(query, "alert"))
      alert_id = *v;
    else if (auto b = form_value(query, "alert_id"))
      alert_id = *b;
  }
  int mask = parse_number<int>(p.get("dlr-mask").value_or("0")).value_or(0);
  std::string from = p.get("from").value_or("");
  uint64_t hash = fnv1a64(utf8);

  // Kannel splits `to` into words (octstr_split_words): spaces, tabs, newlines.
  uint64_t numbers = 0, refused = 0;
  std::string_view rest = *to;
  while (true) {
    size_t start = rest.find_first_not_of(" \t\r\n");
    if (start == std::string_view::npos) break;
    rest.remove_prefix(start);
    size_t end = rest.find_first_of(" \t\r\n");
    std::string_view number = rest.substr(0, end);
    rest.remove_prefix(number.size());
    ++numbers;
    if (unregistered_.contains(number)) {
      ++refused;
      continue;
    }
    resp.add_delivery(number, alert_id, hash);
    if (dlr_ && !dlr_url.empty() && (mask & (1 | 8))) send_dlrs(dlr_url, mask, number, from);
  }
  if (numbers == 0) return kannel_answer(resp, 400, "Empty receiver number not allowed, rejected");
  if (refused == numbers) {
    resp.rejected_messages = refused;
    return kannel_answer(resp, 400, "Number(s) has/have been denied by white- and/or black-lists.");
  }
  resp.partly_rejected = refused;
  resp.partly_rejected_status = 400;
  kannel_answer(resp, 202, "0: Accepted for delivery");
}

void SmsService::send_dlrs(const std::string& dlr_url, int mask, std::string_view receiver,
                           std::string_view sender) {
  auto expand = [&](int type) {
    std::string url;
    for (size_t i = 0; i < dlr_url.size(); ++i) {
      if (dlr_url[i] != '%' || i + 1 == dlr_url.size()) {
        url.push_back(dlr_url[i]);
        continue;
      }
      switch (dlr_url[++i]) {
        case 'd':
          url.append(std::to_string(type));
          break;
        case 'p':
          url.append(url_encode(receiver));
          break;
        case 'P':
          url.append(url_encode(sender));
          break;
        case 'T':
          url.append(std::to_string(std::time(nullptr)));
          break;
        case 'A':
          url.append(type == 1 ? "Delivered" : "ACK%2F");
          break;
        default:
          url.push_back('%');
          url.push_back(dlr_url[i]);
      }
    }
    return url;
  };
  // An SMSC first acknowledges the submission (8), later the handset's delivery (1).
  if (mask & 8) dlr_->enqueue(expand(8));
  if (mask & 1) dlr_->enqueue(expand(1));
}

void SmsService::generic_json(const Request& req, Response& resp) {
  if (req.method != "POST") return json_answer(resp, 405, {{"error", "method_not_allowed"}});
  auto auth = req.header("authorization");
  if (!auth || auth->size() <= 7 || !iequals(auth->substr(0, 7), "bearer "))
    return json_answer(resp, 401, {{"error", "unauthorized"}});
  auto root = json_.parse(req.body);
  if (!root || !root->is_object())
    return json_answer(resp, 400,
                       {{"error", "invalid_request"}, {"message", "the body is not a JSON object"}});
  std::string_view text, reference, single;
  if ((*root)["text"].get(text) != simdjson::SUCCESS)
    return json_answer(resp, 400, {{"error", "invalid_request"}, {"message", "\"text\" must be a string"}});
  if ((*root)["reference"].get(reference) != simdjson::SUCCESS) reference = {};
  std::vector<std::string_view> to;
  simdjson::dom::array list;
  if ((*root)["to"].get(single) == simdjson::SUCCESS) {
    to.push_back(single);
  } else if ((*root)["to"].get(list) == simdjson::SUCCESS) {
    for (auto item : list) {
      std::string_view n;
      if (item.get(n) != simdjson::SUCCESS)
        to.clear(), to.push_back({});
      else
        to.push_back(n);
    }
  }
  bool valid = !to.empty();
  for (auto n : to) valid = valid && !n.empty();
  if (!valid)
    return json_answer(
        resp, 400,
        {{"error", "invalid_request"}, {"message", "\"to\" must be a number or a list of numbers"}});

  uint64_t hash = fnv1a64(text);
  nlohmann::json ids = nlohmann::json::array(), rejected = nlohmann::json::array();
  for (auto n : to) {
    if (unregistered_.contains(n)) {
      rejected.push_back(n);
      continue;
    }
    resp.add_delivery(n, reference, hash);
    ids.push_back("sim-" + std::to_string(++counter_));
  }
  if (ids.empty()) {
    resp.rejected_messages = rejected.size();
    return json_answer(resp, 400, {{"error", "invalid_receiver"}, {"rejected", rejected}});
  }
  resp.partly_rejected = rejected.size();
  resp.partly_rejected_status = 400;
  json_answer(resp, 200, {{"accepted", ids.size()}, {"ids", ids}, {"rejected", rejected}});
}

void SmsService::fail(int status, const Request& req, Response& resp) {
  if (req.path == kJsonPath) {
    const char* error = status == 503   ? "unavailable"
                        : status == 429 ? "rate_limited"
                        : status == 500 ? "internal"
                                        : "failed";
    return json_answer(resp, status, {{"error", error}});
  }
  switch (status) {
    case 202:
      // Kannel's ack_buffered: taken, delivered later, so still accepted. The request is
      // checked as usual; only a success changes its text.
      kannel(req, resp);
      if (resp.status == 202) resp.body = "3: Queued for later delivery";
      return;
    case 403:
      return kannel_answer(resp, 403, "Not routable. Do not try again.");
    case 500:
      return kannel_answer(resp, 500, "Sending failed.");
    default:
      return kannel_answer(resp, status, "Temporal failure, try again later.");
  }
}

}  // namespace sirena::sim
