// A real Kannel chain on loopback for tests: bearerbox + smsbox from Debian's `kannel`, and
// fakesmsc from `kannel-extras` as the SMSC end, with a generated kannel.conf in a TempDir.
//
//   sendsms (HTTP) -> smsbox -> bearerbox -> smsc "fake" (bearerbox listens) <- fakesmsc (connects)
//
// What reached the "SMSC" is read back from fakesmsc's log: one "Got message N: <line>" per
// message, where line is "sender receiver type payload" (see KannelChain::received()).
//
// Facts about Kannel 1.4.5 that tests built on this class rely on (checked against the sources of
// gw/smsc/smsc_fake.c, test/fakesmsc.c, gw/smsbox.c, gw/bb_store_file.c and by experiment):
//  - fakesmsc is the TCP client; bearerbox's `smsc = fake` group listens on `port`. With `-m 0` and
//    one dummy message argument fakesmsc never sends MO traffic and never reads stdin, so it needs
//    no stdin pipe (only its interactive mode, without message arguments, reads stdin and exits on
//    EOF). It logs what it receives on stderr at debug level.
//  - The fake SMSC does produce delivery reports: when a message is written to fakesmsc,
//    bearerbox emits an "SMSC accepted" DLR (type 8) if the dlr-mask has bit 8, then a final
//    "delivered" DLR (type 1) if the mask has bit 1 or 2. smsbox fetches the dlr-url with %d = the
//    type and %p = the receiver, one call per receiver, also for multi-recipient requests.
//  - smsbox gives every recipient of one multi-recipient sendsms request (and every part of a
//    split message) the SAME message id, and bearerbox's store file is keyed by that id. So after
//    a bearerbox SIGKILL only single-recipient requests are recovered completely from the store;
//    of a multi-recipient request at most ONE of its still-queued recipients is resent, the others
//    are lost (see restart_bearerbox()).
//  - When bearerbox dies, fakesmsc exits (EOF) and smsbox shuts down, sleeps 10 s and re-executes
//    itself; restart_bearerbox() restarts both instead of waiting for that.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tests/support/harness.h"

namespace sirena::testing {

// How a message travelled to the SMSC.
enum class SmsCoding {
  kText7,  // GSM 7-bit ("text" line; Kannel hands it over as UTF-8)
  kData8,  // 8-bit binary ("data" line)
  kUcs2,   // UCS-2 ("ucs-2" line, or concatenated parts whose payload is UCS-2, see below)
};
const char* to_string(SmsCoding c);

struct ReceivedSms {
  std::string sender;
  std::string receiver;  // as Kannel delivered it, e.g. "+393331234567"
  std::string text;      // UTF-8 (UCS-2 decoded); raw bytes for kData8
  SmsCoding coding = SmsCoding::kText7;
  int segments = 1;      // > 1: reassembled from concatenated parts (UDH IEI 0 or 8)
  std::string raw;       // payload bytes as sent to the SMSC (UCS-2BE for kUcs2), parts joined
};

struct KannelOptions {
  std::string username = "sirena";
  std::string password = "sirena-kannel-secret";
  // Messages/s the fake SMSC connection sends at (Kannel's smsc `throughput`); 0 = no limit.
  // Note: Kannel wakes the sender on every new message, so the limit only holds once the
  // submissions stop; it is meant to keep a backlog queued in bearerbox (kill tests).
  double throughput = 0;
  // store-type = file in the temp dir, so queued messages survive a bearerbox kill (subject to
  // the multi-recipient caveat above). false: no store, everything queued in bearerbox is lost.
  bool store = true;
  // Kannel log level for bearerbox.log/smsbox.log (0 debug .. 4 panic). Debug costs throughput.
  int log_level = 1;
  // sendsms-user max-messages: how many parts a long text may be split into.
  int max_messages = 10;
};

// One sendsms call. Every field is URL-encoded by send(); `to` is joined with spaces.
struct SendSms {
  std::string from = "Sirena";
  std::vector<std::string> to;
  std::string text;
  int coding = -1;               // -1: not sent (Kannel default, 7-bit); 2 = UCS-2
  std::string charset = "UTF-8"; // empty: not sent
  int dlr_mask = 0;              // 0: not sent
  std::string dlr_url;           // Kannel escapes: %d type, %p receiver, %A SMSC reply, ...
};

class KannelChain {
 public:
  explicit KannelChain(KannelOptions opts = {});
  ~KannelChain();  // SIGKILLs the processes it started (by pid) and removes the temp dir
  KannelChain(const KannelChain&) = delete;
  KannelChain& operator=(const KannelChain&) = delete;

  // Starts bearerbox, then fakesmsc (once the fake SMSC port listens), then smsbox, and waits
  // (deadline-bounded) until the admin status shows the SMSC online and the smsbox connected, and
  // the sendsms port answers. Throws std::runtime_error with the logs on failure.
  void start(std::chrono::milliseconds timeout = std::chrono::seconds(20));
  void stop();  // SIGKILL everything (a crash, not a clean shutdown)

  std::string sendsms_url() const { return "http://127.0.0.1:" + std::to_string(sendsms_port_) + "/cgi-bin/sendsms"; }
  const std::string& username() const { return opts_.username; }
  const std::string& password() const { return opts_.password; }
  int sendsms_port() const { return sendsms_port_; }
  int admin_port() const { return admin_port_; }
  int fake_smsc_port() const { return fake_port_; }
  const std::string& dir() const { return dir_.path(); }
  const std::string& config_path() const { return config_path_; }
  std::string config_text() const { return read_file(config_path_); }

  // Full sendsms URL (with query) for `req`, and a blocking GET of it. Kannel answers 202
  // "0: Accepted for delivery" (or "3: Queued for later delivery"), 4xx on bad input.
  std::string sendsms_query(const SendSms& req) const;
  HttpResponse send(const SendSms& req) const;

  // bearerbox's admin status page (status.txt), "" when bearerbox does not answer.
  std::string status() const;

  // Messages fakesmsc received, in arrival order, parsed incrementally from its log (which is
  // kept across restarts). Concatenated parts are joined into one message once all parts have
  // arrived. count_received() is cheap to poll: it parses only what was appended since the last
  // call. A 7-bit text containing a newline reaches fakesmsc as two lines; the second is joined
  // back onto the first (so wait for the text, not only for the count, when texts have newlines;
  // a continuation line that itself looks like "a b text c" would be misread as a message). The
  // sender must not contain spaces (the fake protocol separates fields by spaces).
  std::vector<ReceivedSms> received();
  size_t count_received();
  // Receivers bearerbox logged as "Sent SMS" in its access log: written to the fakesmsc socket.
  std::vector<std::string> sent_by_bearerbox() const;

  // SIGKILL bearerbox (a crash). fakesmsc then exits on EOF and smsbox starts its own
  // 10-second restart; messages queued in bearerbox survive only in the store (see top).
  void kill_bearerbox();
  // Starts bearerbox again (it reloads the store and resends what was not acknowledged),
  // replaces smsbox (SIGKILL, new process) and starts a new fakesmsc, then waits like start().
  void restart_bearerbox(std::chrono::milliseconds timeout = std::chrono::seconds(20));
  bool bearerbox_running() const;

  // Takes the SMSC link down (SIGKILL fakesmsc; bearerbox keeps the fake SMSC listening, marks it
  // re-connecting and queues what arrives: sendsms answers "3: Queued for later delivery") and
  // brings it back (a new fakesmsc; waits until the SMSC is online again).
  void disconnect_smsc();
  void reconnect_smsc(std::chrono::milliseconds timeout = std::chrono::seconds(20));
  bool smsc_online() const;

  // The last `max_bytes` of every log, for failure messages.
  std::string logs(size_t max_bytes = 4000) const;

 private:
  void write_config();
  void start_bearerbox();
  void start_fakesmsc();
  void start_smsbox();
  void wait_ready(std::chrono::steady_clock::time_point deadline);
  void parse_new_output();  // requires mu_
  void handle_line(std::string_view payload);

  KannelOptions opts_;
  TempDir dir_;
  int admin_port_, smsbox_port_, fake_port_, sendsms_port_;
  std::string config_path_, fakesmsc_log_;
  std::unique_ptr<Process> bearerbox_, smsbox_, fakesmsc_;

  std::mutex mu_;
  size_t parsed_offset_ = 0;
  std::string partial_line_;
  std::vector<ReceivedSms> received_;
  struct Parts {
    std::vector<std::optional<std::string>> data;
    int have = 0;
  };
  std::map<std::string, Parts> pending_parts_;  // sender|receiver|ref|total -> parts
};

// Helpers, exposed for tests of the parsing itself.
std::string url_escape(std::string_view s);
// Kannel's octstr_url_decode: %XX and '+' as space.
std::string kannel_url_decode(std::string_view s);
// UTF-16BE (UCS-2 with surrogate pairs) to UTF-8; bad units become U+FFFD.
std::string ucs2be_to_utf8(std::string_view s);
// Whether joined concatenated parts hold UCS-2 rather than Kannel's UTF-8 form of 7-bit text
// (fakesmsc's "udh ... data ..." lines do not say): even length and a NUL byte, invalid UTF-8
// or a C0 control other than CR/LF. Right for Latin and Cyrillic text; CJK-only UCS-2 could
// be read as 7-bit.
bool looks_like_ucs2(std::string_view raw);

}  // namespace sirena::testing
