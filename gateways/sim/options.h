// Command line of `sirena-sim apns|fcm|sms --listen HOST:PORT [options]`.
//
// parse_options() never exits or throws: it returns the options or an Error whose
// message is ready for stderr (status 0 means "--help was asked", print and exit 0).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "daemon/core/result.h"

namespace sirena::sim {

enum class Protocol { Apns, Fcm, Sms };

struct Endpoint {
  std::string host;
  int port = 0;  // 0: the kernel picks one; the real port is printed
};

struct FaultOptions {
  double latency_p50_ms = 0;  // both 0: answer at once
  double latency_p99_ms = 0;
  std::vector<std::pair<int, double>> fail;  // (HTTP status, probability), drawn in order
  uint64_t seed = 1;
  uint64_t reset_every = 0;   // 0: never
  uint64_t goaway_every = 0;  // 0: never (HTTP/2 only)
};

struct Options {
  Protocol protocol = Protocol::Apns;
  Endpoint listen;
  bool has_admin = false;
  Endpoint admin;  // HTTP/1.1 GET /stats, POST /reset
  std::string tls_cert, tls_key;
  FaultOptions faults;
  uint32_t max_streams = 1000;  // SETTINGS_MAX_CONCURRENT_STREAMS we advertise
  std::string unregistered_file;
  std::string record_file;
  // sms: the Kannel sendsms-user; empty accepts any.
  std::string username, password;
  bool dlr = false;  // sms: call dlr-url back
};

Result<Options> parse_options(int argc, char** argv);

// "HOST:PORT" or "[v6]:PORT".
Result<Endpoint> parse_endpoint(const std::string& text);

// "CODE:RATE", e.g. "503:0.05".
Result<std::pair<int, double>> parse_fail(const std::string& text);

}  // namespace sirena::sim
