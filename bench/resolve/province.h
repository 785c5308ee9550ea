// A synthetic but realistic directory for the province of Modena: the generator the
// resolution benchmark feeds to Sirena's index, PostGIS and Redis alike.
//
// Recipients live mostly in the 45 towns of the province, in proportion to their
// population and spread around each centre (a Gaussian whose width grows with the
// town), and the rest anywhere in the province. 40% also give a work place, mostly
// in the big towns. Topics follow a skewed mix of the 12 CAP 1.2 categories (§3.2.2)
// plus four tenant topics. Recipient i is slot i; generation order is random in space,
// as registration order is.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "daemon/directory/geo_index.h"

namespace sirena::bench {

inline constexpr int kCapTopics = 12;  // Geo, Met, Safety, ... Other: bits 0..11
inline constexpr int kTenantTopics = 4;
const char* topic_name(int bit);

class Province {
 public:
  explicit Province(uint64_t seed);
  // Fills `e` (slot, topics, channels, language, locations) for recipient `slot`.
  void recipient(directory::Slot slot, directory::IndexEntry& e);

 private:
  directory::LatLon home();
  directory::LatLon work();
  std::mt19937_64 rng_;
  std::discrete_distribution<int> town_;
  std::discrete_distribution<int> work_town_;
};

// A closed polygon as "lat,lon" vertices, the first repeated last (CAP 1.2 §3.2.4).
struct Ring {
  std::vector<directory::LatLon> points;
  std::string wkt() const;  // POLYGON((lon lat, ...)) for PostGIS (SRID 4326)
  // The bounding box, for Redis GEOSEARCH BYBOX.
  double lat_min = 0, lat_max = 0, lon_min = 0, lon_max = 0;
};

// An irregular blob (think of a flood band or a storm cell) around `centre`, `scale_km`
// across in its long direction; its shape is fixed by `seed`.
Ring blob(directory::LatLon centre, double scale_km, double stretch, double tilt_deg, int vertices,
          uint64_t seed);

}  // namespace sirena::bench
