// The peers the resolution benchmark compares Sirena's index with, on the same points
// and the same polygons: PostGIS (ST_Contains over a GiST index, table clustered on it,
// parallel bitmap scans allowed) and Redis (GEOSEARCH BYBOX, then the exact polygon
// and interest filter in the client). Each is given its best fair setup.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bench/resolve/province.h"
#include "daemon/directory/geo_area.h"

namespace sirena::bench {

// One location row: recipient id, its topics, and where.
struct PointRow {
  uint32_t id;
  uint64_t topics;
  directory::LatLon at;
};
// Calls `sink` for every location of the directory, in batches.
using PointSource = std::function<void(const std::function<void(const std::vector<PointRow>&)>& sink)>;

struct PeerResult {
  double seconds = -1;  // best of the runs; < 0 when not measured
  size_t hits = 0;
};

class PostGis {
 public:
  // Connects to 127.0.0.1:port as postgres; on failure ok() is false and why() says.
  explicit PostGis(int port);
  ~PostGis();
  bool ok() const;
  const std::string& why() const;
  // Loads the points with COPY, builds the GiST index, CLUSTERs and ANALYZEs.
  bool load(const PointSource& points, double* seconds);
  // `topics` == 0: everyone. Best of `runs`.
  PeerResult count(const Ring& area, uint64_t topics, int runs);
  PeerResult fetch_ids(const Ring& area, uint64_t topics, int runs);
  std::string explain(const Ring& area, uint64_t topics);

 private:
  struct Conn;
  std::unique_ptr<Conn> c_;
};

class RedisGeo {
 public:
  explicit RedisGeo(int port);
  ~RedisGeo();
  bool ok() const;
  const std::string& why() const;
  // Pipelined GEOADD; members are "id:k:topics" so the client can filter on interests
  // without a second round trip per hit.
  bool load(const PointSource& points, double* seconds);
  // GEOSEARCH BYBOX over the polygon's bounding box, then the exact test (S2, the same
  // Area the index uses), the interest filter and per-recipient dedup in the client.
  PeerResult search(const Ring& ring, const directory::Area& area, uint64_t topics, uint32_t n_ids, int runs);

 private:
  struct Conn;
  std::unique_ptr<Conn> c_;
};

}  // namespace sirena::bench
