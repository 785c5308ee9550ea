#include "gateways/sim/options.h"

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdlib>

namespace sirena::sim {

Result<Endpoint> parse_endpoint(const std::string& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 == text.size())
    return make_error(ErrorKind::Usage, "usage", "\"" + text + "\" is not HOST:PORT");
  Endpoint e;
  e.host = text.substr(0, colon);
  if (e.host.size() >= 2 && e.host.front() == '[' && e.host.back() == ']')
    e.host = e.host.substr(1, e.host.size() - 2);
  char* end = nullptr;
  long port = std::strtol(text.c_str() + colon + 1, &end, 10);
  if (*end != '\0' || port < 0 || port > 65535)
    return make_error(ErrorKind::Usage, "usage", "\"" + text + "\": bad port");
  if (e.host.empty()) e.host = "0.0.0.0";
  e.port = static_cast<int>(port);
  return e;
}

Result<std::pair<int, double>> parse_fail(const std::string& text) {
  auto colon = text.find(':');
  char* end = nullptr;
  long code = std::strtol(text.c_str(), &end, 10);
  if (colon == std::string::npos || end != text.c_str() + colon || code < 200 || code > 599)
    return make_error(ErrorKind::Usage, "usage",
                      "--fail \"" + text + "\": expected CODE:RATE, e.g. 503:0.05");
  double rate = std::strtod(text.c_str() + colon + 1, &end);
  if (*end != '\0' || !(rate >= 0 && rate <= 1))
    return make_error(ErrorKind::Usage, "usage", "--fail \"" + text + "\": RATE must be between 0 and 1");
  return std::make_pair(static_cast<int>(code), rate);
}

Result<Options> parse_options(int argc, char** argv) {
  Options o;
  std::string protocol, listen, admin, latency;
  std::vector<std::string> tls, fails;
  CLI::App app{
      "Sirena's gateway simulators: APNs (HTTP/2), FCM HTTP v1 (HTTP/2) and SMS (Kannel sendsms and a "
      "generic JSON API, HTTP/1.1)",
      "sirena-sim"};
  app.add_option("protocol", protocol, "apns, fcm or sms")
      ->required()
      ->check(CLI::IsMember({"apns", "fcm", "sms"}));
  app.add_option("--listen", listen, "HOST:PORT to serve on (port 0: any free port)")->required();
  app.add_option("--admin", admin, "HOST:PORT of an HTTP/1.1 listener for GET /stats and POST /reset");
  app.add_option("--tls", tls, "CERT KEY: serve TLS (ALPN h2 for apns/fcm) instead of cleartext")
      ->expected(2);
  app.add_option("--latency-ms", latency, "P50,P99: log-normal answer delay in milliseconds");
  app.add_option("--fail", fails, "CODE:RATE: answer CODE to that fraction of requests (repeatable)");
  app.add_option("--unregistered", o.unregistered_file,
                 "file of tokens or numbers (one a line) that are gone");
  app.add_option("--goaway-every", o.faults.goaway_every, "send GOAWAY after N streams on a connection");
  app.add_option("--reset-every", o.faults.reset_every, "close the connection carrying every Nth request");
  app.add_option("--max-streams", o.max_streams, "SETTINGS_MAX_CONCURRENT_STREAMS (default 1000)");
  app.add_option("--seed", o.faults.seed, "seed of the fault and latency draws (default 1)");
  app.add_option("--record", o.record_file, "append one line per accepted message to FILE");
  app.add_option("--username", o.username, "sms: Kannel sendsms username (default: any)");
  app.add_option("--password", o.password, "sms: Kannel sendsms password (default: any)");
  app.add_flag("--dlr", o.dlr, "sms: call the Kannel dlr-url back (8 SMSC accepted, then 1 delivered)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    return make_error(ErrorKind::Help, "help", app.help());
  } catch (const CLI::ParseError& e) {
    return make_error(ErrorKind::Usage, "usage",
                      std::string(e.what()) + "\nRun with --help for more information.");
  }

  o.protocol = protocol == "apns" ? Protocol::Apns : protocol == "fcm" ? Protocol::Fcm : Protocol::Sms;
  auto l = parse_endpoint(listen);
  if (!l) return l.error();
  o.listen = *l;
  if (!admin.empty()) {
    auto a = parse_endpoint(admin);
    if (!a) return a.error();
    o.admin = *a;
    o.has_admin = true;
  }
  if (tls.size() == 2) {
    o.tls_cert = tls[0];
    o.tls_key = tls[1];
  }
  if (!latency.empty()) {
    char* end = nullptr;
    o.faults.latency_p50_ms = std::strtod(latency.c_str(), &end);
    if (*end != ',') return make_error(ErrorKind::Usage, "usage", "--latency-ms expects P50,P99, e.g. 5,200");
    o.faults.latency_p99_ms = std::strtod(end + 1, &end);
    if (*end != '\0' || !(o.faults.latency_p50_ms > 0) || o.faults.latency_p99_ms < o.faults.latency_p50_ms)
      return make_error(ErrorKind::Usage, "usage", "--latency-ms expects 0 < P50 <= P99");
  }
  double total = 0;
  for (const auto& f : fails) {
    auto p = parse_fail(f);
    if (!p) return p.error();
    total += p->second;
    o.faults.fail.push_back(*p);
  }
  if (total > 1) return make_error(ErrorKind::Usage, "usage", "--fail rates add up to more than 1");
  if (o.max_streams == 0) return make_error(ErrorKind::Usage, "usage", "--max-streams must be at least 1");
  return o;
}

}  // namespace sirena::sim
