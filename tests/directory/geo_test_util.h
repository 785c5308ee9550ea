// Shapes and directory entries for the geo tests, in degrees.
#pragma once

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "daemon/alerts/alert.h"
#include "daemon/directory/geo_area.h"
#include "daemon/directory/geo_index.h"

namespace sirena::directory::testing {

// A CAP polygon from "lat,lon" corners; the ring is closed here (CAP 1.2 §3.2.4).
inline alerts::Polygon cap_ring(const std::vector<LatLon>& corners) {
  alerts::Polygon p;
  for (const LatLon& c : corners) p.points.push_back({c.lat, c.lon});
  p.points.push_back(p.points.front());
  return p;
}

inline Area polygon(const std::vector<LatLon>& corners) {
  alerts::Area a;
  a.polygons.push_back(cap_ring(corners));
  return Area::from_cap({a});
}

// An axis-aligned box (meridians and geodesics between the corners), counter-clockwise.
inline std::vector<LatLon> box(double lat0, double lon0, double lat1, double lon1) {
  return {{lat0, lon0}, {lat0, lon1}, {lat1, lon1}, {lat1, lon0}};
}

inline Area circle(LatLon centre, double radius_km) {
  alerts::Area a;
  a.circles.push_back({{centre.lat, centre.lon}, radius_km});
  return Area::from_cap({a});
}

// A point `km` north of `p` (on its meridian), with the same Earth radius as CAP circles.
inline LatLon north_of(LatLon p, double km) {
  return {p.lat + km / 6371.01 * 180.0 / M_PI, p.lon};
}

inline IndexEntry entry(Slot slot, uint64_t topics, std::vector<LatLon> locations,
                        std::vector<uint16_t> zones = {}) {
  IndexEntry e;
  e.slot = slot;
  e.topics = topics;
  e.channels = kChannelSms;
  e.locations = std::move(locations);
  e.zones = std::move(zones);
  return e;
}

inline std::vector<Slot> sorted(Matches m) {
  std::sort(m.slots.begin(), m.slots.end());
  return std::move(m.slots);
}

inline std::vector<Slot> resolve(const GeoIndex& index, const Area& area, uint64_t topics = ~uint64_t{0},
                                 std::vector<uint16_t> zones = {}, const Area* within = nullptr) {
  Query q;
  q.area = &area;
  q.within = within;
  q.topics = topics;
  q.zones = std::move(zones);
  return sorted(index.resolve(q));
}

}  // namespace sirena::directory::testing
