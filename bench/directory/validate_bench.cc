// What validating an import costs sirenad, on one thread: parse_ndjson (simdjson, then
// libphonenumber, ICU language tags, topics, tokens, coordinates) over an NDJSON file, and
// over the same lines without their "phone" field, so that the difference is what
// libphonenumber costs. bench/directory/import.sh runs it on the file it imports, to set
// the import rate beside what validation alone allows on this machine.
//
// Usage: validate_bench FILE [ROUNDS]   (prints markdown; ROUNDS default 3, medians)
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "daemon/directory/recipient.h"

namespace sirena::bench {
namespace {

using directory::RecipientRules;

// This thread's CPU time: what the parsing itself cost, on a shared machine.
double cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Soliera's rules (config/demo.yaml): the CAP categories plus its own topics.
RecipientRules rules() {
  RecipientRules r;
  r.topics = directory::cap_categories();
  for (const char* t : {"viabilita", "scuole", "ambiente"}) r.topics.emplace_back(t);
  r.zones = {"soliera-centro", "sozzigalli", "limidi", "soliera-secchia"};
  return r;
}

// Each line without its "phone" member (and the comma before it).
std::string without_phones(const std::string& body, size_t* phones) {
  std::string out;
  out.reserve(body.size());
  size_t pos = 0;
  *phones = 0;
  for (;;) {
    const size_t at = body.find(",\"phone\":\"", pos);
    if (at == std::string::npos) break;
    const size_t close = body.find('"', at + 10);
    if (close == std::string::npos) break;
    out.append(body, pos, at - pos);
    pos = close + 1;
    ++*phones;
  }
  out.append(body, pos, std::string::npos);
  return out;
}

struct Pass {
  double cpu_s = 0;
  size_t ok = 0, bad = 0;
};

Pass parse_all(const std::string& body, const RecipientRules& r) {
  Pass p;
  const double c0 = cpu_s();
  directory::parse_ndjson(body, r, [&](size_t, Result<directory::Recipient>&& rec) { ++(rec ? p.ok : p.bad); });
  p.cpu_s = cpu_s() - c0;
  return p;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int run(const char* path, int rounds) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "validate_bench: cannot read %s\n", path);
    return 2;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string body = ss.str();
  size_t phones = 0;
  const std::string stripped = without_phones(body, &phones);
  const RecipientRules r = rules();
  std::vector<double> with, without;
  size_t lines = 0, bad = 0;
  for (int i = 0; i < rounds; ++i) {  // in turns, so both see the same machine
    const Pass a = parse_all(body, r);
    const Pass b = parse_all(stripped, r);
    with.push_back(a.cpu_s);
    without.push_back(b.cpu_s);
    lines = a.ok + a.bad;
    bad = a.bad + b.bad;
  }
  if (lines == 0) {
    std::fprintf(stderr, "validate_bench: %s has no lines\n", path);
    return 2;
  }
  const double n = static_cast<double>(lines);
  const double us_with = median(with) / n * 1e6, us_without = median(without) / n * 1e6;
  const double us_phone = phones ? (median(with) - median(without)) / static_cast<double>(phones) * 1e6 : 0;
  const long cores = sysconf(_SC_NPROCESSORS_ONLN);
  std::printf("Validation alone, one thread (`validate_bench`, %zu lines, %d rounds, median CPU):\n\n", lines,
              rounds);
  std::printf("| lines | us a line | recipients/s a core |\n|---|---:|---:|\n");
  std::printf("| as imported (%zu with a phone) | %.2f | %.0f |\n", phones, us_with, 1e6 / us_with);
  std::printf("| the same without their phone | %.2f | %.0f |\n\n", us_without, 1e6 / us_without);
  std::printf("libphonenumber: %.2f us a phone number (Parse, IsValidNumber, Format), %.0f%% of validation.\n",
              us_phone, 100 * (us_with - us_without) / us_with);
  std::printf("Validation alone on all %ld cores, with nothing else running: at most %.0f recipients/s.\n", cores,
              static_cast<double>(cores) * 1e6 / us_with);
  if (bad != 0) std::printf("(%zu lines were rejected: check the rules against the generator.)\n", bad);
  return 0;
}

}  // namespace
}  // namespace sirena::bench

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: validate_bench FILE [ROUNDS]\n");
    return 2;
  }
  return sirena::bench::run(argv[1], argc > 2 ? std::max(1, std::atoi(argv[2])) : 3);
}
