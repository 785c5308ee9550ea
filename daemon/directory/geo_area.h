// Areas on the sphere (S2): the union of an alert's polygons and circles, and named
// zones read from GeoJSON. S2 types stay behind this header.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/alerts/alert.h"
#include "daemon/core/result.h"
#include "daemon/directory/geo_index.h"

namespace sirena::directory {

// A union of polygons and circles. Cheap to copy (shared, immutable).
class Area {
 public:
  Area();
  ~Area();
  Area(const Area&);
  Area& operator=(const Area&);

  // The union of the polygons and circles of CAP areas (CAP 1.2 §3.2.4: polygon "lat,lon"
  // pairs, circle "lat,lon radius_km"). Geocodes are not geometry: the caller maps them
  // to zones and adds those with add().
  static Area from_cap(const std::vector<alerts::Area>& areas);
  // from_cap() of all of the alert's infos: what it draws. Pure, so it may be built on
  // another thread (the API does, on the pool with the parse) and then used here.
  static Area from_alert(const alerts::Alert& alert);
  void add(const Area& other);

  bool empty() const;
  bool contains(LatLon p) const;
  bool intersects(const Area& other) const;
  // Fraction-free estimate for previews and logs.
  double area_km2() const;

  // For GeoIndex, which walks S2 cells: ids are S2CellId::id() values, so that S2 stays
  // out of this header. A point is represented by the centre of its S2 leaf cell (about
  // 1 cm across, see leaf_cell_id()); contains(p) == contains_leaf(leaf_cell_id(p)).
  enum class CellRelation : uint8_t { kDisjoint, kPartial, kInside, kEdge };
  // The plane of one polygon edge (v0 x v1, S2 coordinates): within a kEdge cell, a
  // point p is inside exactly when it lies left of the edge, dot(plane, p) > 0.
  struct EdgePlane {
    double x = 0, y = 0, z = 0;
  };
  // Conservative: kInside and kDisjoint are certain, kPartial may be anything. kEdge
  // (only when `edge` is given): a single edge of the area's boundary crosses the cell,
  // no vertex lies in it, and no other part of the area meets it; *edge is its plane.
  CellRelation relate(uint64_t cell_id, EdgePlane* edge = nullptr) const;
  bool contains_leaf(uint64_t leaf_cell_id) const;
  // contains_leaf() for n leaves that all lie in cell `cell_id`, sharing one lookup per
  // polygon: sets inside[i] for leaves[i].
  void contains_leaves(uint64_t cell_id, const uint64_t* leaves, size_t n, bool* inside) const;
  // Normalised S2 covering (sorted, disjoint cell ids) with at most about `max_cells`
  // cells per polygon or circle.
  std::vector<uint64_t> covering(int max_cells) const;

  struct Impl;  // defined in geo_area.cc
  explicit Area(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  const Impl* impl() const { return impl_.get(); }

 private:
  std::shared_ptr<Impl> impl_;
};

// The S2 leaf cell holding `p` (S2CellId::id()): how the index stores a location.
uint64_t leaf_cell_id(LatLon p);

struct ZoneLimits {
  size_t max_points = 10000;  // over all rings
};

// Parses a GeoJSON Polygon or MultiPolygon (RFC 7946: [lon, lat] positions, closed
// rings; a Feature wrapping one is accepted). Errors are 422 with a precise code:
// `invalid_geojson` (where = JSON pointer), `unclosed_ring`, `self_intersecting`,
// `too_many_points` (names the limit), `coordinate_out_of_range`, `zero_area_ring`
// (3 or more distinct positions, all on one line), `duplicate_key`, `number_out_of_range`.
Result<Area> parse_geojson_area(std::string_view geojson, const ZoneLimits& limits = {});

}  // namespace sirena::directory
