#include "tests/support/kannel.h"

#include <signal.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>

namespace sirena::testing {

namespace {

constexpr const char* kBearerbox = "/usr/sbin/bearerbox";
constexpr const char* kSmsbox = "/usr/sbin/smsbox";
constexpr const char* kFakesmsc = "/usr/lib/kannel/test/fakesmsc";

std::string tail(const std::string& text, size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  return "..." + text.substr(text.size() - max_bytes);
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t n;
    if (c < 0x80)
      n = 0;
    else if ((c >> 5) == 0x6)
      n = 1;
    else if ((c >> 4) == 0xE)
      n = 2;
    else if ((c >> 3) == 0x1E)
      n = 3;
    else
      return false;
    if (i + n >= s.size() && n > 0) return false;
    for (size_t k = 1; k <= n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n + 1;
  }
  return true;
}

// Splits off the next space-separated token of `s` starting at `pos`.
std::optional<std::string_view> next_token(std::string_view s, size_t& pos) {
  if (pos > s.size()) return std::nullopt;
  size_t sp = s.find(' ', pos);
  if (sp == std::string_view::npos) return std::nullopt;
  auto tok = s.substr(pos, sp - pos);
  pos = sp + 1;
  return tok;
}

// The concatenation information element of a UDH (IEI 0: 8-bit ref, IEI 8: 16-bit ref).
struct Concat {
  int ref, total, seq;
};
std::optional<Concat> find_concat(std::string_view udh) {
  if (udh.empty()) return std::nullopt;
  size_t len = static_cast<unsigned char>(udh[0]);
  size_t i = 1;
  while (i + 1 < udh.size() && i < len + 1) {
    auto iei = static_cast<unsigned char>(udh[i]);
    size_t iel = static_cast<unsigned char>(udh[i + 1]);
    auto ie = udh.substr(i + 2, iel);
    if (ie.size() < iel) break;
    auto b = [&](size_t k) { return static_cast<int>(static_cast<unsigned char>(ie[k])); };
    if (iei == 0x00 && iel == 3) return Concat{b(0), b(1), b(2)};
    if (iei == 0x08 && iel == 4) return Concat{(b(0) << 8) | b(1), b(2), b(3)};
    i += 2 + iel;
  }
  return std::nullopt;
}

ReceivedSms decoded(std::string sender, std::string receiver, std::string raw, int segments) {
  ReceivedSms m;
  m.sender = std::move(sender);
  m.receiver = std::move(receiver);
  m.segments = segments;
  if (looks_like_ucs2(raw)) {
    m.coding = SmsCoding::kUcs2;
    m.text = ucs2be_to_utf8(raw);
  } else {
    m.coding = SmsCoding::kText7;
    m.text = raw;
  }
  m.raw = std::move(raw);
  return m;
}

}  // namespace

const char* to_string(SmsCoding c) {
  switch (c) {
    case SmsCoding::kText7:
      return "7-bit";
    case SmsCoding::kData8:
      return "8-bit";
    case SmsCoding::kUcs2:
      return "UCS-2";
  }
  return "?";
}

std::string url_escape(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3);
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
        c == '_' || c == '~') {
      out += ch;
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 0xF];
    }
  }
  return out;
}

std::string kannel_url_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string ucs2be_to_utf8(std::string_view s) {
  std::string out;
  size_t n = s.size() / 2;
  auto unit = [&](size_t k) {
    return static_cast<uint32_t>((static_cast<unsigned char>(s[2 * k]) << 8) |
                                 static_cast<unsigned char>(s[2 * k + 1]));
  };
  for (size_t k = 0; k < n; ++k) {
    uint32_t u = unit(k);
    if (u >= 0xD800 && u <= 0xDBFF && k + 1 < n && unit(k + 1) >= 0xDC00 && unit(k + 1) <= 0xDFFF) {
      append_utf8(out, 0x10000 + ((u - 0xD800) << 10) + (unit(k + 1) - 0xDC00));
      ++k;
    } else if (u >= 0xD800 && u <= 0xDFFF) {
      append_utf8(out, 0xFFFD);
    } else {
      append_utf8(out, u);
    }
  }
  if (s.size() % 2) append_utf8(out, 0xFFFD);
  return out;
}

bool looks_like_ucs2(std::string_view raw) {
  if (raw.empty() || raw.size() % 2 != 0) return false;
  if (raw.find('\0') != std::string_view::npos) return true;
  if (!valid_utf8(raw)) return true;
  for (char ch : raw) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 && c != '\n' && c != '\r') return true;
  }
  return false;
}

// Kannel's boxes read their ports from kannel.conf and cannot bind port 0 and report it
// (smsbox and fakesmsc must be told bearerbox's ports before they start): reserved ports,
// see reserve_port() in harness.h.
KannelChain::KannelChain(KannelOptions opts)
    : opts_(std::move(opts)),
      admin_port_(reserve_port()),
      smsbox_port_(reserve_port()),
      fake_port_(reserve_port()),
      sendsms_port_(reserve_port()),
      config_path_(dir_.path() + "/kannel.conf"),
      fakesmsc_log_(dir_.path() + "/fakesmsc.log") {
  write_config();
}

KannelChain::~KannelChain() {
  stop();
}

void KannelChain::write_config() {
  const std::string& d = dir_.path();
  std::ostringstream c;
  c << "# Generated by sirena::testing::KannelChain (tests/support/kannel.cc)\n"
    << "group = core\n"
    << "admin-port = " << admin_port_ << "\n"
    << "admin-interface = 127.0.0.1\n"
    << "admin-password = sirena-admin\n"
    << "status-password = sirena-admin\n"
    << "admin-allow-ip = 127.0.0.1\n"
    << "smsbox-port = " << smsbox_port_ << "\n"
    << "smsbox-interface = 127.0.0.1\n"
    << "box-allow-ip = 127.0.0.1\n"
    << "log-file = \"" << d << "/bearerbox.log\"\n"
    << "log-level = " << opts_.log_level << "\n"
    << "access-log = \"" << d << "/bearerbox-access.log\"\n"
    << "dlr-storage = internal\n";
  if (opts_.store)
    c << "store-type = file\n"
      << "store-location = \"" << d << "/bearerbox.store\"\n";
  // Temporarily failed messages (e.g. no SMSC connected yet) are retried every second, not 60 s.
  c << "sms-resend-freq = 1\n"
    << "\n"
    << "group = smsc\n"
    << "smsc = fake\n"
    << "smsc-id = fake\n"
    << "port = " << fake_port_ << "\n"
    << "our-host = 127.0.0.1\n"
    << "connect-allow-ip = 127.0.0.1\n";
  if (opts_.throughput > 0) c << "throughput = " << opts_.throughput << "\n";
  c << "\n"
    << "group = smsbox\n"
    << "bearerbox-host = 127.0.0.1\n"
    << "bearerbox-port = " << smsbox_port_ << "\n"
    << "sendsms-port = " << sendsms_port_ << "\n"
    << "sendsms-interface = 127.0.0.1\n"
    << "log-file = \"" << d << "/smsbox.log\"\n"
    << "log-level = " << opts_.log_level << "\n"
    << "access-log = \"" << d
    << "/smsbox-access.log\"\n"
    // A dlr-url that fails is retried (3 times, 1 s apart) instead of being dropped.
    << "http-request-retry = 3\n"
    << "http-queue-delay = 1\n"
    << "\n"
    << "group = sendsms-user\n"
    << "username = " << opts_.username << "\n"
    << "password = " << opts_.password << "\n"
    << "user-allow-ip = 127.0.0.1\n"
    << "max-messages = " << opts_.max_messages << "\n"
    << "concatenation = true\n";
  write_file(config_path_, c.str());
}

void KannelChain::start_bearerbox() {
  // -v 3: only errors on stderr (the log file has the configured level).
  bearerbox_ =
      std::make_unique<Process>(std::vector<std::string>{kBearerbox, "-v", "3", config_path_},
                                std::map<std::string, std::string>{}, dir_.path() + "/bearerbox.stderr");
}

void KannelChain::start_fakesmsc() {
  // -m 0: send no MO message, only print what arrives (debug level, on stderr). The message
  // argument is required to stay out of the interactive mode, which reads stdin and polls the
  // socket only once a second.
  fakesmsc_ = std::make_unique<Process>(
      std::vector<std::string>{kFakesmsc, "-H", "127.0.0.1", "-r", std::to_string(fake_port_), "-m", "0",
                               "0 0 text unused"},
      std::map<std::string, std::string>{}, fakesmsc_log_);
}

void KannelChain::start_smsbox() {
  smsbox_ = std::make_unique<Process>(std::vector<std::string>{kSmsbox, "-v", "3", config_path_},
                                      std::map<std::string, std::string>{}, dir_.path() + "/smsbox.stderr");
}

std::string KannelChain::status() const {
  auto r = http_get("http://127.0.0.1:" + std::to_string(admin_port_) + "/status.txt?password=sirena-admin");
  return r.status == 200 ? r.body : std::string();
}

bool KannelChain::bearerbox_running() const {
  return bearerbox_ && bearerbox_->running();
}

void KannelChain::wait_ready(std::chrono::steady_clock::time_point deadline) {
  auto left = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  };
  // The fake SMSC's listening socket exists once the status page lists the connection.
  const std::string fake_name = "FAKE:" + std::to_string(fake_port_);
  bool listed = wait_until([&] { return !bearerbox_->running() || contains(status(), fake_name); }, left());
  if (!listed || !bearerbox_->running()) throw std::runtime_error("bearerbox did not start:\n" + logs());

  if (!fakesmsc_ || !fakesmsc_->running()) start_fakesmsc();
  if (!smsbox_ || !smsbox_->running()) start_smsbox();

  int restarts = 0;
  bool up = wait_until(
      [&] {
        if (!bearerbox_->running() || restarts > 20) return true;
        // fakesmsc or smsbox give up when they cannot connect: start them again (a few times).
        if (!fakesmsc_->running()) {
          start_fakesmsc();
          ++restarts;
        }
        if (!smsbox_->running()) {
          start_smsbox();
          ++restarts;
        }
        std::string st = status();
        if (!contains(st, fake_name + " (online") || !contains(st, "smsbox:")) return false;
        return http_get(sendsms_url()).status != 0;
      },
      left());
  if (!up || !bearerbox_->running() || restarts > 20)
    throw std::runtime_error("Kannel chain not ready:\n" + logs());
}

void KannelChain::start(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  start_bearerbox();
  wait_ready(deadline);
}

void KannelChain::stop() {
  smsbox_.reset();
  fakesmsc_.reset();
  bearerbox_.reset();
}

void KannelChain::kill_bearerbox() {
  if (!bearerbox_) return;
  bearerbox_->signal(SIGKILL);
  bearerbox_->wait_exit(std::chrono::seconds(10));
  bearerbox_.reset();
}

void KannelChain::restart_bearerbox(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  kill_bearerbox();
  // smsbox is in its own "bearerbox is gone" restart (a 10 s sleep, then exec): replace it.
  smsbox_.reset();
  // fakesmsc exits on EOF from bearerbox; the destructor kills it if it has not yet.
  if (fakesmsc_) fakesmsc_->wait_exit(std::chrono::seconds(5));
  fakesmsc_.reset();
  start_bearerbox();
  wait_ready(deadline);
}

bool KannelChain::smsc_online() const {
  return contains(status(), "FAKE:" + std::to_string(fake_port_) + " (online");
}

void KannelChain::disconnect_smsc() {
  fakesmsc_.reset();
  if (!wait_until([&] { return !smsc_online(); }, std::chrono::seconds(10)))
    throw std::runtime_error("the fake SMSC stays online after fakesmsc was killed:\n" + logs());
}

void KannelChain::reconnect_smsc(std::chrono::milliseconds timeout) {
  if (!bearerbox_running()) throw std::runtime_error("reconnect_smsc: bearerbox is not running");
  wait_ready(std::chrono::steady_clock::now() + timeout);
}

HttpResponse KannelChain::send(const SendSms& req) const {
  return http_get(sendsms_query(req));
}

std::string KannelChain::sendsms_query(const SendSms& req) const {
  std::string to;
  for (const auto& n : req.to) {
    if (!to.empty()) to += ' ';
    to += n;
  }
  std::string q = sendsms_url() + "?username=" + url_escape(opts_.username) +
                  "&password=" + url_escape(opts_.password) + "&from=" + url_escape(req.from) +
                  "&to=" + url_escape(to) + "&text=" + url_escape(req.text);
  if (req.coding >= 0) q += "&coding=" + std::to_string(req.coding);
  if (!req.charset.empty()) q += "&charset=" + url_escape(req.charset);
  if (req.dlr_mask > 0) q += "&dlr-mask=" + std::to_string(req.dlr_mask);
  if (!req.dlr_url.empty()) q += "&dlr-url=" + url_escape(req.dlr_url);
  return q;
}

void KannelChain::handle_line(std::string_view payload) {
  size_t pos = 0;
  auto sender = next_token(payload, pos);
  auto receiver = sender ? next_token(payload, pos) : std::nullopt;
  auto type = receiver ? next_token(payload, pos) : std::nullopt;
  bool known = type && (*type == "text" || *type == "data" || *type == "ucs-2" || *type == "udh");
  if (!known) {
    // A 7-bit text with a newline reaches fakesmsc as two lines (the fake protocol is line based):
    // the second one continues the previous text.
    if (!received_.empty() && received_.back().coding == SmsCoding::kText7 &&
        received_.back().segments == 1) {
      received_.back().text += "\n" + std::string(payload);
      received_.back().raw += "\n" + std::string(payload);
    }
    return;
  }
  std::string_view rest = payload.substr(pos);
  ReceivedSms m;
  m.sender = std::string(*sender);
  m.receiver = std::string(*receiver);
  if (*type == "text") {
    m.coding = SmsCoding::kText7;
    m.raw = m.text = std::string(rest);
  } else if (*type == "data") {
    m.coding = SmsCoding::kData8;
    m.raw = m.text = kannel_url_decode(rest);
  } else if (*type == "ucs-2") {
    m.coding = SmsCoding::kUcs2;
    m.raw = kannel_url_decode(rest);
    m.text = ucs2be_to_utf8(m.raw);
  } else {  // "udh <udh> data <payload>", both URL-encoded
    size_t p = 0;
    auto udh_enc = next_token(rest, p);
    auto data_kw = udh_enc ? next_token(rest, p) : std::nullopt;
    if (!data_kw || *data_kw != "data") return;
    std::string udh = kannel_url_decode(*udh_enc);
    std::string data = kannel_url_decode(rest.substr(p));
    auto cc = find_concat(udh);
    if (!cc || cc->total <= 1 || cc->seq < 1 || cc->seq > cc->total) {
      received_.push_back(decoded(m.sender, m.receiver, data, 1));
      return;
    }
    std::string key =
        m.sender + "|" + m.receiver + "|" + std::to_string(cc->ref) + "|" + std::to_string(cc->total);
    auto& parts = pending_parts_[key];
    if (parts.data.empty()) parts.data.resize(static_cast<size_t>(cc->total));
    auto& slot = parts.data[static_cast<size_t>(cc->seq - 1)];
    if (!slot) ++parts.have;
    slot = std::move(data);
    if (parts.have == cc->total) {
      std::string joined;
      for (auto& d : parts.data) joined += *d;
      received_.push_back(decoded(m.sender, m.receiver, std::move(joined), cc->total));
      pending_parts_.erase(key);
    }
    return;
  }
  received_.push_back(std::move(m));
}

void KannelChain::parse_new_output() {
  std::ifstream in(fakesmsc_log_, std::ios::binary);
  if (!in) return;
  in.seekg(static_cast<std::streamoff>(parsed_offset_));
  std::string chunk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  parsed_offset_ += chunk.size();
  partial_line_ += chunk;
  size_t start = 0;
  while (true) {
    size_t nl = partial_line_.find('\n', start);
    if (nl == std::string::npos) break;
    std::string_view line(partial_line_.data() + start, nl - start);
    start = nl + 1;
    // "2026-11-27 09:17:50 [10363] [0] DEBUG: Got message 1: <Sirena +393331234567 text Hello>"
    size_t g = line.find("] Got message ");
    if (g == std::string_view::npos) g = line.find(": Got message ");
    if (g == std::string_view::npos) continue;
    size_t lt = line.find(": <", g + 2);
    if (lt == std::string_view::npos) continue;
    std::string_view payload = line.substr(lt + 3);
    if (!payload.empty() && payload.back() == '>') payload.remove_suffix(1);
    handle_line(payload);
  }
  partial_line_.erase(0, start);
}

std::vector<ReceivedSms> KannelChain::received() {
  std::lock_guard lock(mu_);
  parse_new_output();
  return received_;
}

size_t KannelChain::count_received() {
  std::lock_guard lock(mu_);
  parse_new_output();
  return received_.size();
}

std::vector<std::string> KannelChain::sent_by_bearerbox() const {
  std::vector<std::string> out;
  std::istringstream in(read_file(dir_.path() + "/bearerbox-access.log"));
  std::string line;
  while (std::getline(in, line)) {
    if (!contains(line, " Sent SMS ")) continue;
    size_t p = line.find("[to:");
    if (p == std::string::npos) continue;
    size_t e = line.find(']', p);
    if (e == std::string::npos) continue;
    out.push_back(line.substr(p + 4, e - p - 4));
  }
  return out;
}

std::string KannelChain::logs(size_t max_bytes) const {
  std::string out;
  for (const char* name :
       {"bearerbox.stderr", "bearerbox.log", "smsbox.stderr", "smsbox.log", "fakesmsc.log"}) {
    out +=
        "==> " + std::string(name) + " <==\n" + tail(read_file(dir_.path() + "/" + name), max_bytes) + "\n";
  }
  return out;
}

}  // namespace sirena::testing
