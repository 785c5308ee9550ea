// Resolution benchmark (issue 3): Sirena's geo index against PostGIS and Redis on the
// same synthetic province directory and the same alert polygons.
//
// It builds the index from N generated recipients (bulk load, as at start-up), then
// calibrates three alert polygons to hold about 1%, 10% and 50% of the recipients and
// times resolve() on each, for everyone (the Extreme + Immediate policy) and for a
// topic query. With --pg-port and --redis-port it first loads the same points into
// PostGIS and Redis, then times each polygon on the index and right after on the peers,
// so that a ratio compares times of the same minute. It prints markdown tables.
//
// Usage: resolve_bench [--n N] [--seed S] [--runs R] [--pg-port P] [--redis-port P]
// (bench/resolve/run.sh starts the peers and runs this.)
#include <malloc.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bench/resolve/peers.h"
#include "bench/resolve/province.h"
#include "daemon/directory/geo_area.h"
#include "daemon/directory/geo_index.h"

namespace sirena::bench {
namespace {

using directory::Area;
using directory::GeoIndex;
using directory::IndexEntry;
using directory::LatLon;
using directory::Query;
using directory::Slot;

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// This thread's CPU time: on a shared machine, what the resolve itself cost.
double cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

size_t rss_bytes() {
  long pages = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return static_cast<size_t>(resident) * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

struct Options {
  size_t n = 1000000;
  uint64_t seed = 42;
  int runs = 51;
  int pg_port = 0;
  int redis_port = 0;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const char* v = argv[i + 1];
    if (k == "--n")
      o.n = std::strtoull(v, nullptr, 10);
    else if (k == "--seed")
      o.seed = std::strtoull(v, nullptr, 10);
    else if (k == "--runs")
      o.runs = std::atoi(v);
    else if (k == "--pg-port")
      o.pg_port = std::atoi(v);
    else if (k == "--redis-port")
      o.redis_port = std::atoi(v);
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      std::exit(2);
    }
  }
  return o;
}

// The generated directory, replayable: the same seed gives the same recipients, so the
// peers load exactly what the index holds without keeping it all in memory.
void generate(const Options& o, size_t batch, const std::function<void(std::vector<IndexEntry>&)>& sink) {
  Province province(o.seed);
  std::vector<IndexEntry> entries(batch);
  for (size_t first = 0; first < o.n; first += batch) {
    entries.resize(std::min(batch, o.n - first));
    for (size_t i = 0; i < entries.size(); ++i) province.recipient(static_cast<Slot>(first + i), entries[i]);
    sink(entries);
  }
}

PointSource points_of(const Options& o) {
  return [&o](const std::function<void(const std::vector<PointRow>&)>& sink) {
    std::vector<PointRow> rows;
    generate(o, 2000, [&](std::vector<IndexEntry>& entries) {
      rows.clear();
      for (const IndexEntry& e : entries)
        for (const LatLon& p : e.locations) rows.push_back({e.slot, e.topics, p});
      sink(rows);
    });
  };
}

struct Build {
  double add_s = 0, finish_s = 0;
  size_t rss_delta = 0;
};

Build build(const Options& o, GeoIndex& index) {
  Build b;
  malloc_trim(0);
  const size_t rss0 = rss_bytes();
  generate(o, 65536, [&](std::vector<IndexEntry>& entries) {
    const double t0 = now_s();
    for (const IndexEntry& e : entries) index.bulk_add(e);
    b.add_s += now_s() - t0;
  });
  const double t0 = now_s();
  index.finish_bulk();
  b.finish_s = now_s() - t0;
  malloc_trim(0);  // return the load's scratch (the generator's batch, the sort buffer)
  b.rss_delta = rss_bytes() - rss0;
  return b;
}

struct Alert {
  const char* name;
  Ring ring;
  Area area;
  size_t in_area = 0;  // recipients with a location inside (everyone)
};

Area area_of(const Ring& r) {
  alerts::Area a;
  alerts::Polygon p;
  for (const LatLon& q : r.points) p.points.push_back({q.lat, q.lon});
  a.polygons.push_back(std::move(p));
  return Area::from_cap({a});
}

size_t count_everyone(const GeoIndex& index, const Area& area) {
  Query q;
  q.area = &area;
  q.everyone = true;
  return index.resolve(q).slots.size();
}

// Scales a blob until it holds `fraction` of the directory (bisection on its size).
Alert calibrate(const char* name, const GeoIndex& index, double fraction, LatLon centre, double stretch,
                double tilt, int vertices, uint64_t seed) {
  const double target = fraction * static_cast<double>(index.size());
  double lo = 0.2, hi = 200;
  Alert a{name, {}, {}, 0};
  for (int i = 0; i < 40; ++i) {
    const double mid = std::sqrt(lo * hi);
    a.ring = blob(centre, mid, stretch, tilt, vertices, seed);
    a.area = area_of(a.ring);
    a.in_area = count_everyone(index, a.area);
    if (std::abs(static_cast<double>(a.in_area) - target) < target * 0.005) break;
    (static_cast<double>(a.in_area) < target ? lo : hi) = mid;
  }
  return a;
}

struct Timing {
  double p50 = 0, p99 = 0;
  double cpu_p50 = 0;
  size_t hits = 0;
  size_t cells = 0, tested = 0;  // S2 cells classified, locations tested exactly
};

Timing time_resolve(const GeoIndex& index, const Area& area, uint64_t topics, int runs) {
  Query q;
  q.area = &area;
  q.topics = topics;
  q.everyone = topics == 0;
  std::vector<double> t, cpu;
  Timing r;
  for (int i = 0; i < runs + 3; ++i) {
    const double t0 = now_s(), c0 = cpu_s();
    directory::Matches m = index.resolve(q);
    const double dt = now_s() - t0;
    if (i >= 3) cpu.push_back(cpu_s() - c0);
    r.hits = m.slots.size();
    r.cells = m.cells_classified;
    r.tested = m.points_tested;
    if (i >= 3) t.push_back(dt);  // the first runs warm the caches
  }
  std::sort(t.begin(), t.end());
  const auto at = [&](double p) {
    return t[std::min(t.size() - 1, static_cast<size_t>(p * static_cast<double>(t.size() - 1) + 0.5))];
  };
  r.p50 = at(0.50);
  std::sort(cpu.begin(), cpu.end());
  r.cpu_p50 = cpu[cpu.size() / 2];
  r.p99 = at(0.99);
  return r;
}

std::string ms(double s) {
  char b[32];
  if (s < 0) return "–";
  std::snprintf(b, sizeof b, s < 0.01 ? "%.2f ms" : s < 1 ? "%.1f ms" : "%.0f ms", s * 1e3);
  return b;
}

std::string ratio(double peer, double ours) {
  if (peer < 0) return "–";
  char b[32];
  std::snprintf(b, sizeof b, "%.0f×", peer / ours);
  return b;
}

void print_row(const std::vector<std::string>& cells) {
  std::string line = "|";
  for (const std::string& c : cells) line += " " + c + " |";
  std::printf("%s\n", line.c_str());
}

std::string with_commas(size_t n) {
  std::string s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

// Connects to a peer on `port` (none when 0) and loads the directory's points into it;
// `notes` says how long that took, or why it failed (the peer is then left out).
template <typename Peer>
std::unique_ptr<Peer> load_peer(const Options& o, int port, const char* name, const std::string& what,
                                std::string& notes) {
  if (port == 0) return nullptr;
  auto peer = std::make_unique<Peer>(port);
  double load_s = 0;
  if (!peer->ok() || !peer->load(points_of(o), &load_s)) {
    notes += std::string(name) + " failed: " + peer->why() + "\n";
    return nullptr;
  }
  notes += std::string(name) + ": " + what + " took " + ms(load_s) + ".\n";
  return peer;
}

int run(const Options& o) {
  std::printf("## Resolution: %s recipients (synthetic province of Modena, seed %llu)\n\n",
              with_commas(o.n).c_str(), static_cast<unsigned long long>(o.seed));
  GeoIndex index;
  const Build b = build(o, index);
  // The index as loaded (the upserts below change it).
  const size_t n_locations = index.location_count(), n_recipients = index.size();
  const size_t location_bytes = index.location_bytes(), recipient_bytes = index.recipient_bytes();
  const double locs = static_cast<double>(n_locations);
  const double n = static_cast<double>(n_recipients);

  const uint64_t kMet = 1u << 1, kGeo = 1u << 0, kFlood = 1u << kCapTopics;  // a flood warning's topics
  const uint64_t topics = kMet | kGeo | kFlood;
  std::vector<Alert> alerts;
  alerts.push_back(calibrate("~1%: Secchia flood band", index, 0.01, {44.735, 10.96}, 3.0, -25, 16, 1));
  alerts.push_back(calibrate("~10%: storm cell on Modena", index, 0.10, {44.645, 10.93}, 1.3, 30, 24, 2));
  alerts.push_back(calibrate("~50%: the plain", index, 0.50, {44.68, 10.95}, 1.5, 10, 32, 3));

  // The peers are loaded first, so that each row times Sirena and then the peers on it in
  // the same minute: this machine's speed drifts by 30% and more over the minutes a 10M
  // load takes, and a ratio of two times taken apart would carry that drift.
  std::string notes;
  std::unique_ptr<PostGis> pg = load_peer<PostGis>(
      o, o.pg_port, "PostGIS",
      "COPY + GiST + CLUSTER + VACUUM ANALYZE of " + with_commas(n_locations) + " points", notes);
  std::unique_ptr<RedisGeo> redis =
      load_peer<RedisGeo>(o, o.redis_port, "Redis", "pipelined GEOADD of the same points", notes);

  struct Row {
    const Alert* alert;
    uint64_t topics;
    Timing ours;
    PeerResult pg_count, pg_ids, redis;
  };
  std::vector<Row> rows;
  for (const Alert& a : alerts)
    for (uint64_t t : {uint64_t{0}, topics}) {
      const bool big = a.in_area > 2000000;
      Row r{&a, t, time_resolve(index, a.area, t, big ? std::max(11, o.runs / 3) : o.runs), {}, {}, {}};
      if (pg) {
        r.pg_count = pg->count(a.ring, t, big ? 2 : 5);
        r.pg_ids = pg->fetch_ids(a.ring, t, big ? 2 : 3);
      }
      if (redis) r.redis = redis->search(a.ring, a.area, t, static_cast<uint32_t>(o.n), big ? 1 : 3);
      rows.push_back(r);
    }
  if (pg) {
    std::fprintf(stderr, "PostGIS plan for %s:\n%s\n", alerts[1].name,
                 pg->explain(alerts[1].ring, topics).c_str());
    if (!pg->why().empty()) notes += "PostGIS error: " + pg->why() + "\n";
  }

  // Live updates after the load: new recipients upserted one by one, as imports do; the
  // slowest upsert is the one that merged the delta into the main arrays.
  double upsert_s = 0, worst_upsert_s = 0;
  const size_t upserts = o.n / 8;
  {
    Province later(o.seed + 1);
    IndexEntry e;
    for (size_t i = 0; i < upserts; ++i) {
      later.recipient(static_cast<Slot>(o.n + i), e);
      const double t0 = now_s();
      index.upsert(e);
      const double dt = now_s() - t0;
      upsert_s += dt;
      worst_upsert_s = std::max(worst_upsert_s, dt);
    }
  }

  print_row({"area", "in area", "query", "Sirena hits", "Sirena p50", "Sirena p99", "p50 CPU",
             "cells / exact tests", "PostGIS count(*)", "PostGIS ids", "Redis GEOSEARCH+filter",
             "vs PostGIS count", "vs PostGIS ids", "vs Redis"});
  print_row({"---", "---:", "---",
             "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:"});
  for (const Row& r : rows) {
    print_row({r.alert->name, with_commas(r.alert->in_area), r.topics ? "Met, Geo, flood" : "everyone",
               with_commas(r.ours.hits), ms(r.ours.p50), ms(r.ours.p99), ms(r.ours.cpu_p50),
               with_commas(r.ours.cells) + " / " + with_commas(r.ours.tested),
               ms(r.pg_count.seconds) + " (" + with_commas(r.pg_count.hits) + ")", ms(r.pg_ids.seconds),
               ms(r.redis.seconds) + " (" + with_commas(r.redis.hits) + ")",
               ratio(r.pg_count.seconds, r.ours.p50), ratio(r.pg_ids.seconds, r.ours.p50),
               ratio(r.redis.seconds, r.ours.p50)});
  }
  std::printf(
      "\nSirena hits are distinct recipients (dedup'd); PostGIS counts location rows (no dedup, which "
      "favours "
      "it); Redis hits are distinct recipients after the client-side filter. Peer figures are the best of "
      "their runs; ratios are peer time / Sirena p50.\n");

  std::printf("\n| index | value |\n|---|---:|\n");
  std::printf("| recipients / locations | %s / %s |\n", with_commas(n_recipients).c_str(),
              with_commas(n_locations).c_str());
  std::printf("| bulk load (bulk_add + finish_bulk) | %.2f s + %.2f s = %.2f M recipients/s |\n", b.add_s,
              b.finish_s, n / (b.add_s + b.finish_s) / 1e6);
  std::printf("| live upserts after the load | %s at %.2f M/s; slowest (a merge) %s |\n",
              with_commas(upserts).c_str(), static_cast<double>(upserts) / upsert_s / 1e6,
              ms(worst_upsert_s).c_str());
  std::printf("| location arrays, bytes per location | %.1f |\n", static_cast<double>(location_bytes) / locs);
  std::printf("| recipient arrays, bytes per recipient | %.1f |\n", static_cast<double>(recipient_bytes) / n);
  std::printf("| index bytes per location (both) | %.1f |\n",
              static_cast<double>(location_bytes + recipient_bytes) / locs);
  std::printf("| RSS delta per recipient / per location | %.1f / %.1f bytes |\n",
              static_cast<double>(b.rss_delta) / n, static_cast<double>(b.rss_delta) / locs);
  if (!notes.empty()) std::printf("\n%s", notes.c_str());
  return 0;
}

}  // namespace
}  // namespace sirena::bench

int main(int argc, char** argv) {
  return sirena::bench::run(sirena::bench::parse(argc, argv));
}
