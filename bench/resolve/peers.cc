#include "bench/resolve/peers.h"

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace sirena::bench {

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Best of `runs` timings of `f`, which returns the hit count.
template <typename F>
PeerResult best_of(int runs, F f) {
  PeerResult r;
  for (int i = 0; i < runs; ++i) {
    const double t0 = now_s();
    const size_t hits = f();
    const double t = now_s() - t0;
    if (r.seconds < 0 || t < r.seconds) r.seconds = t;
    r.hits = hits;
  }
  return r;
}

// A point as hex EWKB (SRID 4326), the cheapest text form for COPY to parse.
void append_ewkb_hex(std::string& out, directory::LatLon p) {
  static const char kHex[] = "0123456789ABCDEF";
  out += "0101000020E6100000";  // little endian, Point with SRID, 4326
  for (double v : {p.lon, p.lat}) {
    unsigned char b[8];
    std::memcpy(b, &v, 8);  // x86-64 is little endian, as declared above
    for (unsigned char c : b) {
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
}

}  // namespace

// ---- PostGIS ----

struct PostGis::Conn {
  PGconn* pg = nullptr;
  std::string why;

  bool exec(const std::string& sql) {
    PGresult* r = PQexec(pg, sql.c_str());
    const ExecStatusType s = PQresultStatus(r);
    const bool ok = s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK || s == PGRES_COPY_IN;
    if (!ok) why = sql.substr(0, 60) + ": " + PQerrorMessage(pg);
    PQclear(r);
    return ok;
  }

  // Runs the query with $1 = the polygon's WKT and $2 = the interest mask.
  PGresult* query(const std::string& sql, const Ring& area, uint64_t topics, int format) {
    const std::string wkt = area.wkt();
    const std::string mask = std::to_string(topics);
    const char* values[2] = {wkt.c_str(), mask.c_str()};
    return PQexecParams(pg, sql.c_str(), topics ? 2 : 1, nullptr, values, nullptr, nullptr, format);
  }
};

namespace {

std::string where_clause(uint64_t topics) {
  // Same semantics as the index: inside the polygon, and any topic in common (or everyone).
  std::string w = " FROM locs WHERE ST_Contains(ST_GeomFromText($1, 4326), geom)";
  if (topics) w += " AND (topics & $2::int8) <> 0";
  return w;
}

}  // namespace

PostGis::PostGis(int port) : c_(std::make_unique<Conn>()) {
  const std::string dsn =
      "host=127.0.0.1 port=" + std::to_string(port) + " dbname=postgres user=postgres connect_timeout=10";
  c_->pg = PQconnectdb(dsn.c_str());
  if (PQstatus(c_->pg) != CONNECTION_OK) {
    c_->why = PQerrorMessage(c_->pg);
    return;
  }
  // The best fair setup for read queries: parallel bitmap scans on both cores, no JIT
  // (it costs more than it saves on these plans).
  c_->exec("SET max_parallel_workers_per_gather = 2") && c_->exec("SET jit = off") &&
      c_->exec("CREATE EXTENSION IF NOT EXISTS postgis");
}

PostGis::~PostGis() {
  if (c_->pg != nullptr) PQfinish(c_->pg);
}

bool PostGis::ok() const {
  return c_->pg != nullptr && PQstatus(c_->pg) == CONNECTION_OK && c_->why.empty();
}
const std::string& PostGis::why() const {
  return c_->why;
}

bool PostGis::load(const PointSource& points, double* seconds) {
  const double t0 = now_s();
  // UNLOGGED: loading speed only; queries read the same heap and index.
  if (!c_->exec("DROP TABLE IF EXISTS locs") ||
      !c_->exec("CREATE UNLOGGED TABLE locs (id int4 NOT NULL, topics int8 NOT NULL, "
                "geom geometry(Point, 4326) NOT NULL)") ||
      !c_->exec("COPY locs FROM STDIN"))
    return false;
  bool ok = true;
  points([&](const std::vector<PointRow>& rows) {
    std::string buf;
    buf.reserve(rows.size() * 72);
    char head[48];
    for (const PointRow& r : rows) {
      std::snprintf(head, sizeof head, "%u\t%" PRIu64 "\t", r.id, r.topics);
      buf += head;
      append_ewkb_hex(buf, r.at);
      buf += '\n';
    }
    ok = ok && PQputCopyData(c_->pg, buf.data(), static_cast<int>(buf.size())) == 1;
  });
  if (PQputCopyEnd(c_->pg, nullptr) != 1) ok = false;
  for (PGresult* r; (r = PQgetResult(c_->pg)) != nullptr; PQclear(r))
    if (PQresultStatus(r) != PGRES_COMMAND_OK) ok = false;
  if (!ok) {
    c_->why = std::string("COPY: ") + PQerrorMessage(c_->pg);
    return false;
  }
  ok = c_->exec("CREATE INDEX locs_geom ON locs USING gist (geom)") &&
       c_->exec("CLUSTER locs USING locs_geom") && c_->exec("VACUUM ANALYZE locs");
  *seconds = now_s() - t0;
  return ok;
}

PeerResult PostGis::count(const Ring& area, uint64_t topics, int runs) {
  const std::string sql = "SELECT count(*)" + where_clause(topics);
  return best_of(runs, [&]() -> size_t {
    PGresult* r = c_->query(sql, area, topics, 0);
    size_t n = PQresultStatus(r) == PGRES_TUPLES_OK ? std::strtoull(PQgetvalue(r, 0, 0), nullptr, 10) : 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) c_->why = PQerrorMessage(c_->pg);
    PQclear(r);
    return n;
  });
}

PeerResult PostGis::fetch_ids(const Ring& area, uint64_t topics, int runs) {
  // Binary results: the cheapest way for a client to receive a million int4s.
  const std::string sql = "SELECT id" + where_clause(topics);
  return best_of(runs, [&]() -> size_t {
    PGresult* r = c_->query(sql, area, topics, 1);
    size_t n = 0;
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
      const int rows = PQntuples(r);
      uint64_t sum = 0;  // touch every id, as a client would
      for (int i = 0; i < rows; ++i) {
        uint32_t be;
        std::memcpy(&be, PQgetvalue(r, i, 0), 4);
        sum += __builtin_bswap32(be);
      }
      n = rows + (sum == UINT64_MAX ? 1 : 0);
    } else {
      c_->why = PQerrorMessage(c_->pg);
    }
    PQclear(r);
    return n;
  });
}

std::string PostGis::explain(const Ring& area, uint64_t topics) {
  PGresult* r =
      c_->query("EXPLAIN (ANALYZE, COSTS OFF) SELECT count(*)" + where_clause(topics), area, topics, 0);
  std::string plan;
  for (int i = 0; i < PQntuples(r); ++i) plan += std::string(PQgetvalue(r, i, 0)) + "\n";
  PQclear(r);
  return plan;
}

// ---- Redis ----

struct RedisGeo::Conn {
  redisContext* r = nullptr;
  std::string why;
};

RedisGeo::RedisGeo(int port) : c_(std::make_unique<Conn>()) {
  c_->r = redisConnect("127.0.0.1", port);
  if (c_->r == nullptr || c_->r->err) c_->why = c_->r ? c_->r->errstr : "cannot allocate a redis context";
}

RedisGeo::~RedisGeo() {
  if (c_->r != nullptr) redisFree(c_->r);
}

bool RedisGeo::ok() const {
  return c_->why.empty();
}
const std::string& RedisGeo::why() const {
  return c_->why;
}

bool RedisGeo::load(const PointSource& points, double* seconds) {
  const double t0 = now_s();
  redisReply* flush = static_cast<redisReply*>(redisCommand(c_->r, "DEL locs"));
  if (flush == nullptr) return c_->why = "DEL failed", false;
  freeReplyObject(flush);
  // One GEOADD per batch, a window of commands in flight.
  constexpr int kWindow = 16;
  int pending = 0;
  bool ok = true;
  auto drain = [&](int keep) {
    while (pending > keep) {
      void* reply = nullptr;
      if (redisGetReply(c_->r, &reply) != REDIS_OK || reply == nullptr) {
        ok = false;
        c_->why = c_->r->errstr;
        pending = 0;
        return;
      }
      if (static_cast<redisReply*>(reply)->type == REDIS_REPLY_ERROR) {
        ok = false;
        c_->why = static_cast<redisReply*>(reply)->str;
      }
      freeReplyObject(reply);
      --pending;
    }
  };
  std::vector<std::string> args;
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  std::vector<uint8_t> seen_count;  // location number k of each id
  points([&](const std::vector<PointRow>& rows) {
    args.assign({"GEOADD", "locs"});
    char buf[64];
    for (const PointRow& p : rows) {
      if (p.id >= seen_count.size()) seen_count.resize(p.id + 1 + p.id / 4, 0);
      std::snprintf(buf, sizeof buf, "%.9f", p.at.lon);
      args.emplace_back(buf);
      std::snprintf(buf, sizeof buf, "%.9f", p.at.lat);
      args.emplace_back(buf);
      std::snprintf(buf, sizeof buf, "%u:%u:%" PRIx64, p.id, seen_count[p.id]++, p.topics);
      args.emplace_back(buf);
    }
    argv.clear();
    lens.clear();
    for (const std::string& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    redisAppendCommandArgv(c_->r, static_cast<int>(argv.size()), argv.data(), lens.data());
    ++pending;
    drain(kWindow);
  });
  drain(0);
  *seconds = now_s() - t0;
  return ok;
}

PeerResult RedisGeo::search(const Ring& ring, const directory::Area& area, uint64_t topics, uint32_t n_ids,
                            int runs) {
  // BYBOX is centred; a degree of longitude is widest at the box's southern edge, so
  // size the box there, with a margin: it must cover the polygon whole.
  constexpr double kKmPerDegree = 111.226;  // Redis's Earth radius, 6372.797 km
  const double lat_c = (ring.lat_min + ring.lat_max) / 2, lon_c = (ring.lon_min + ring.lon_max) / 2;
  const double height = (ring.lat_max - ring.lat_min) * kKmPerDegree * 1.02 + 0.1;
  const double width =
      (ring.lon_max - ring.lon_min) * kKmPerDegree * std::cos(ring.lat_min * M_PI / 180) * 1.02 + 0.1;
  std::vector<uint32_t> stamp(n_ids, 0);
  uint32_t epoch = 0;
  return best_of(runs, [&]() -> size_t {
    ++epoch;
    redisReply* r = static_cast<redisReply*>(redisCommand(
        c_->r, "GEOSEARCH locs FROMLONLAT %f %f BYBOX %f %f km WITHCOORD", lon_c, lat_c, width, height));
    if (r == nullptr || r->type != REDIS_REPLY_ARRAY) {
      c_->why = r ? (r->str ? r->str : "unexpected reply") : c_->r->errstr;
      if (r) freeReplyObject(r);
      return 0;
    }
    size_t hits = 0;
    for (size_t i = 0; i < r->elements; ++i) {
      const redisReply* e = r->element[i];
      const char* member = e->element[0]->str;
      char* end = nullptr;
      const auto id = static_cast<uint32_t>(std::strtoul(member, &end, 10));
      const char* t = std::strchr(end + 1, ':');
      const uint64_t mine = std::strtoull(t + 1, nullptr, 16);
      if (topics && !(mine & topics)) continue;
      if (id >= n_ids || stamp[id] == epoch) continue;
      const redisReply* coord = e->element[1];
      const directory::LatLon p{std::strtod(coord->element[1]->str, nullptr),
                                std::strtod(coord->element[0]->str, nullptr)};
      if (!area.contains(p)) continue;
      stamp[id] = epoch;
      ++hits;
    }
    freeReplyObject(r);
    return hits;
  });
}

}  // namespace sirena::bench
