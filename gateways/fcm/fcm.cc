#include "gateways/fcm/fcm.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "daemon/core/log.h"

namespace sirena::fcm {
namespace {

constexpr const char* kScope = "https://www.googleapis.com/auth/firebase.messaging";

std::string form_escape(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

// Splits "https://host:port/path" into origin and path.
std::pair<std::string, std::string> split_url(const std::string& url) {
  auto scheme = url.find("://");
  auto slash = url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  if (slash == std::string::npos) return {url, "/"};
  return {url.substr(0, slash), url.substr(slash)};
}

}  // namespace

Result<AccessToken> parse_token_reply(int status, std::string_view body) {
  auto bad = [](std::string what) {
    return make_error(ErrorKind::BadGateway, "bad_token_reply", std::move(what));
  };
  if (status != 200) return bad("HTTP " + std::to_string(status));
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_object()) return bad("the reply is not a JSON object");
  AccessToken out;
  auto token = j.find("access_token");
  if (token == j.end() || !token->is_string() || token->get_ref<const std::string&>().empty())
    return bad("access_token is missing or not a non-empty string");
  out.token = token->get<std::string>();
  if (auto exp = j.find("expires_in"); exp != j.end()) {
    // A year at most: enough for any real token, and no overflow when made milliseconds.
    double seconds = exp->is_number() ? exp->get<double>() : -1;
    if (!(seconds > 0 && seconds <= 366 * 86400)) return bad("expires_in is not a number of seconds");
    out.expires_in_s = static_cast<int64_t>(seconds);
  }
  return out;
}

int64_t fcm_ttl_s(const dispatch::Content& c, int64_t now_ms) {
  return c.expires_ms ? std::max<int64_t>(0, (c.expires_ms - now_ms) / 1000) : 86400;
}

std::string fcm_message_head(const dispatch::Content& c, int64_t ttl_s) {
  // Object keys come out sorted, so "token" is the last member of "message": rendered
  // empty, the text ends with "token":""}} and everything before its value is the head.
  nlohmann::json msg = {
      {"message",
       {{"token", ""},
        {"notification", {{"title", c.title}, {"body", c.body}}},
        {"data", {{"alert_id", c.alert_id}, {"test", c.test ? "true" : "false"}, {"severity", c.severity}}},
        {"android",
         {{"priority", "HIGH"}, {"ttl", std::to_string(ttl_s) + "s"}, {"collapse_key", c.collapse_id}}}}}};
  std::string out = msg.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  out.resize(out.size() - 3);  // "}}
  return out;
}

void fcm_message_finish(std::string* out, const std::string& token) {
  bool plain = std::all_of(token.begin(), token.end(), [](unsigned char ch) {
    return ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\';
  });
  if (plain) {
    out->append(token);
  } else {
    std::string quoted = nlohmann::json(token).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    out->append(quoted, 1, quoted.size() - 2);
  }
  out->append("\"}}");
}

std::string fcm_message(const dispatch::Content& c, const std::string& token, int64_t now_ms) {
  std::string out = fcm_message_head(c, fcm_ttl_s(c, now_ms));
  fcm_message_finish(&out, token);
  return out;
}

Result<std::unique_ptr<FcmGateway>> FcmGateway::create(uv_loop_t* loop, const Clock& clock, std::string name,
                                                       FcmConfig cfg) {
  std::ifstream in(cfg.service_account_file);
  if (!in)
    return make_error(ErrorKind::Config, "invalid_config",
                      "gateways." + name + ".service_account_file: cannot read " + cfg.service_account_file);
  std::stringstream ss;
  ss << in.rdbuf();
  auto sa = nlohmann::json::parse(ss.str(), nullptr, false);
  auto is_text = [&sa](const char* key) { return sa.contains(key) && sa[key].is_string(); };
  if (!sa.is_object() || !is_text("client_email") || !is_text("private_key") || !is_text("token_uri"))
    return make_error(ErrorKind::Config, "invalid_config",
                      "gateways." + name +
                          ".service_account_file: needs client_email, private_key and token_uri (strings)");
  if (cfg.project_id.empty())
    return make_error(ErrorKind::Config, "invalid_config", "gateways." + name + ".project_id is required");
  auto key = push::SigningKey::from_pem(sa["private_key"].get<std::string>());
  if (!key || key->is_ec())
    return make_error(ErrorKind::Config, "invalid_config",
                      "gateways." + name + ".service_account_file: private_key must be RSA");
  http2::PoolOptions pool;
  pool.url = cfg.url;
  pool.connections = cfg.connections;
  pool.verify_peer = cfg.verify_peer;
  std::unique_ptr<FcmGateway> g(new FcmGateway(loop, clock, std::move(name), cfg, std::move(pool)));
  g->key_ = std::move(key).value();
  g->client_email_ = sa["client_email"].get<std::string>();
  g->path_ = "/v1/projects/" + cfg.project_id + "/messages:send";
  g->token_uri_ = cfg.token_url.empty() ? sa["token_uri"].get<std::string>() : cfg.token_url;
  auto [origin, path] = split_url(g->token_uri_);
  g->token_path_ = path;
  http2::PoolOptions tp;
  tp.url = origin;
  tp.connections = 1;
  tp.verify_peer = cfg.verify_peer;
  g->token_pool_ = std::make_unique<http2::Pool>(loop, tp, clock);
  if (auto s = g->token_pool_->start(); !s) return std::move(s).take_error();
  if (auto s = g->start(); !s) return std::move(s).take_error();
  return g;
}

FcmGateway::FcmGateway(uv_loop_t* loop, const Clock& clock, std::string name, FcmConfig cfg,
                       http2::PoolOptions pool)
    : PushGateway(loop, clock, std::move(name), dispatch::Channel::Fcm, std::move(pool), cfg.max_in_flight),
      cfg_(std::move(cfg)) {}

void FcmGateway::fetch_token() {
  if (fetching_) return;
  fetching_ = true;
  int64_t now = clock_.now_ms() / 1000;
  auto assertion = key_.sign(
      {{"alg", "RS256"}, {"typ", "JWT"}},
      {{"iss", client_email_}, {"scope", kScope}, {"aud", token_uri_}, {"iat", now}, {"exp", now + 3600}});
  http2::Request req;
  req.path = token_path_;
  req.headers = {{"content-type", "application/x-www-form-urlencoded"}};
  req.body = "grant_type=" + form_escape("urn:ietf:params:oauth:grant-type:jwt-bearer") +
             "&assertion=" + form_escape(assertion ? *assertion : "");
  token_pool_->submit(
      std::move(req), [this](const http2::Response* r, http2::Failure f, const std::string& detail) {
        fetching_ = false;
        auto reply = r ? parse_token_reply(r->status, r->body)
                       : Result<AccessToken>(make_error(ErrorKind::BadGateway, "no_reply", detail));
        if (reply) {
          access_token_ = std::move(reply->token);
          rendered_.clear();  // their authorization header carries the old token
          token_expires_ms_ = clock_.now_ms() + std::max<int64_t>(60, reply->expires_in_s - 300) * 1000;
        } else {
          log::warn("fcm_token_failed", {{"gateway", name()},
                                         {"status", r ? r->status : 0},
                                         {"failure", http2::to_string(f)},
                                         {"detail", r ? reply.error().message : detail}});
        }
        // Waiting messages go now, or go back to dispatch to be retried later.
        auto waiting = std::move(waiting_);
        waiting_.clear();
        for (auto& [m, done] : waiting) {
          if (!access_token_.empty()) {
            send(m, std::move(done));
          } else {
            dispatch::SendResult result;
            result.outcome = dispatch::Outcome::Retry;
            result.reason = "no OAuth2 access token from " + token_uri_;
            done(result);
          }
        }
      });
}

bool FcmGateway::ready(const dispatch::Message& m, Done& done) {
  if (!access_token_.empty() && clock_.now_ms() < token_expires_ms_) return true;
  access_token_.clear();
  waiting_.emplace_back(m, std::move(done));
  fetch_token();
  return false;
}

std::vector<push::PushGateway::Done> FcmGateway::drop_held(const std::string& alert_id) {
  std::vector<Done> out;
  std::deque<std::pair<dispatch::Message, Done>> keep;
  for (auto& [m, done] : waiting_) {
    if (m.content->alert_id == alert_id)
      out.push_back(std::move(done));
    else
      keep.emplace_back(std::move(m), std::move(done));
  }
  waiting_.swap(keep);
  return out;
}

http2::Request FcmGateway::build(const dispatch::Message& m) {
  const dispatch::Content& c = *m.content;
  int64_t ttl = fcm_ttl_s(c, clock_.now_ms());
  // The headers and the message up to the token are the same for every device of this
  // Content (and second: the TTL counts down); the cached part's body is that head.
  auto part = rendered_.find(&c, "", ttl);
  if (!part) {
    auto p = std::make_shared<http2::SharedPart>();
    p->headers = {{"authorization", "Bearer " + access_token_}, {"content-type", "application/json"}};
    p->body = fcm_message_head(c, ttl);
    rendered_.put(m.content, "", ttl, p);
    part = std::move(p);
  }
  http2::Request req;
  req.path = path_;
  req.body.reserve(part->body.size() + m.address.size() + 3);
  req.body.append(part->body);
  fcm_message_finish(&req.body, m.address);
  req.shared = std::move(part);  // for its headers: the request's own body goes
  return req;
}

dispatch::SendResult FcmGateway::classify(const http2::Response& r) {
  bool refresh = false;
  auto out = classify_fcm(r, &refresh);
  if (refresh) {
    access_token_.clear();  // fetch a new token; the message is resent
    rendered_.clear();
  }
  return out;
}

dispatch::SendResult classify_fcm(const http2::Response& r, bool* refresh_token) {
  dispatch::SendResult out;
  if (r.status == 200) {
    out.outcome = dispatch::Outcome::Accepted;
    return out;
  }
  // {"error": {"code", "status", "details": [{"@type": ...FcmError, "errorCode": "UNREGISTERED"}]}}
  auto body = nlohmann::json::parse(r.body, nullptr, false);
  std::string status, code;
  if (body.is_object() && body.contains("error") && body["error"].is_object()) {
    status = body["error"].value("status", "");
    if (body["error"].contains("details") && body["error"]["details"].is_array())
      for (const auto& d : body["error"]["details"])
        if (d.is_object() && d.contains("errorCode")) code = d.value("errorCode", "");
  }
  out.reason = !code.empty() ? code : !status.empty() ? status : "HTTP " + std::to_string(r.status);
  if (code == "UNREGISTERED" || r.status == 404) {
    out.outcome = dispatch::Outcome::Unregistered;
  } else if (r.status == 401) {
    *refresh_token = true;
    out.outcome = dispatch::Outcome::Retry;
  } else if (push::PushGateway::transient(r.status)) {
    // QUOTA_EXCEEDED (429), UNAVAILABLE (503), INTERNAL (500): back off, honour retry-after.
    out.outcome = dispatch::Outcome::Retry;
    out.retry_after_ms = push::PushGateway::retry_after_ms(r);
  } else {
    out.outcome = dispatch::Outcome::Permanent;  // INVALID_ARGUMENT, SENDER_ID_MISMATCH, ...
  }
  return out;
}

void FcmGateway::close(std::function<void()> done) {
  auto remaining = std::make_shared<int>(2);
  auto both = [remaining, done = std::move(done)] {
    if (--*remaining == 0) done();
  };
  token_pool_->close(both);
  PushGateway::close(both);
}

}  // namespace sirena::fcm
