// Areas as unions of S2Polygons and S2Caps, and the GeoJSON zone parser.
//
// Boundary rule. A location is represented by the centre of its S2 leaf cell (level 30,
// about 1 cm across), and it is in an area when S2 says so for that point: polygons use
// S2's SEMI_OPEN vertex model (s2contains_point_query.h, the default, and what
// S2Polygon::Contains does): of polygons that share an edge or tile the region around
// a vertex, exactly one contains a point on it, so zones that partition a town place
// every citizen in exactly one zone. Caps are closed (a point at exactly the radius is
// inside), and a circle's centre is snapped like a location. The index snaps locations
// the same way contains() does, so the resolver, previews and tests agree to the last
// centimetre.
//
// Edges are geodesics (S2), where RFC 7946 §3.1.1 draws them straight in lon/lat; for
// municipal zones the difference is a few metres at most.
#include "daemon/directory/geo_area.h"

#include <s2/mutable_s2shape_index.h>
#include <s2/r2rect.h>
#include <s2/s1angle.h>
#include <s2/s1chord_angle.h>
#include <s2/s2cap.h>
#include <s2/s2cell.h>
#include <s2/s2cell_id.h>
#include <s2/s2cell_union.h>
#include <s2/s2closest_edge_query.h>
#include <s2/s2contains_point_query.h>
#include <s2/s2convex_hull_query.h>
#include <s2/s2edge_clipping.h>
#include <s2/s2error.h>
#include <s2/s2latlng.h>
#include <s2/s2loop.h>
#include <s2/s2polygon.h>
#include <s2/s2region_coverer.h>
#include <s2/s2shape_index.h>
#include <s2/s2shape_index_region.h>
#include <s2/s2shapeutil_visit_crossing_edge_pairs.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "daemon/alerts/validate.h"
#include "daemon/core/json_strict.h"

namespace sirena::directory {

// The mean Earth radius used for CAP circles (km), as in S2Earth.
constexpr double kEarthRadiusKm = 6371.01;

namespace {

// A polygon with a finer shape index of its own than S2Polygon's (at most
// kEdgesPerIndexCell edges per cell instead of 10): the resolver classifies thousands
// of cells and tests thousands of points per alert, and each costs a clip or a
// crossing test per edge of the index cell it falls in.
constexpr int kEdgesPerIndexCell = 2;

struct IndexedPolygon {
  explicit IndexedPolygon(std::unique_ptr<S2Polygon> p) : polygon(std::move(p)) {
    MutableS2ShapeIndex::Options options;
    options.set_max_edges_per_cell(kEdgesPerIndexCell);
    index.Init(options);
    index.Add(std::make_unique<S2Polygon::Shape>(polygon.get()));
    index.ForceBuild();  // now, so that concurrent readers never build it
  }
  std::unique_ptr<S2Polygon> polygon;
  MutableS2ShapeIndex index;
};
using PolygonPtr = std::shared_ptr<const IndexedPolygon>;

PolygonPtr index_polygon(std::unique_ptr<S2Polygon> p) {
  return std::make_shared<IndexedPolygon>(std::move(p));
}

}  // namespace

struct Area::Impl {
  std::vector<PolygonPtr> polygons;
  std::vector<S2Cap> caps;
};

namespace {

S2Point leaf_point(uint64_t leaf) {
  return S2CellId(leaf).ToPoint();
}

S2Point to_point(LatLon p) {
  return S2LatLng::FromDegrees(p.lat, p.lon).Normalized().ToPoint();
}

bool in_range(LatLon p) {
  return std::isfinite(p.lat) && std::isfinite(p.lon) && p.lat >= -90 && p.lat <= 90 && p.lon >= -180 &&
         p.lon <= 180;
}

// A ring's vertices for S2Loop: the closing repeat and consecutive duplicates dropped
// (CAP and GeoJSON allow repeated positions; S2Loop rejects them as degenerate edges).
std::vector<S2Point> ring_vertices(const std::vector<LatLon>& ring) {
  std::vector<S2Point> v;
  v.reserve(ring.size());
  for (const LatLon& p : ring) {
    S2Point s = to_point(p);
    if (v.empty() || v.back() != s) v.push_back(s);
  }
  while (v.size() > 1 && v.back() == v.front()) v.pop_back();
  return v;
}

Error unprocessable(std::string code, std::string message, std::string where) {
  return make_error(ErrorKind::Invalid, std::move(code), std::move(message), std::move(where));
}

bool is_crossing(const S2Error& e) {
  switch (e.code()) {
    case S2Error::LOOP_SELF_INTERSECTION:
    case S2Error::DUPLICATE_VERTICES:  // the ring touches itself at a vertex
    case S2Error::POLYGON_LOOPS_CROSS:
    case S2Error::POLYGON_LOOPS_SHARE_EDGE:
      return true;
    default:
      return false;
  }
}

Error geometry_error(const S2Error& e, const std::string& where) {
  if (is_crossing(e))
    return unprocessable("self_intersecting",
                         "the polygon intersects itself (" + e.text() + "): fix the crossing edges", where);
  return unprocessable("invalid_geojson", "invalid polygon: " + e.text(), where);
}

// One ring as a normalised S2Loop: either orientation is accepted and the loop keeps the
// smaller side as its interior (S2Loop::Normalize), since CAP polygons and zones are
// always the small side (RFC 7946 §3.1.6 asks parsers not to reject wrong winding).
Result<std::unique_ptr<S2Loop>> make_loop(const std::vector<LatLon>& ring, const std::string& where) {
  std::vector<S2Point> v = ring_vertices(ring);
  if (v.size() < 3)
    return unprocessable("invalid_geojson", "a ring needs at least 3 distinct positions", where);
  auto loop = std::make_unique<S2Loop>(v, S2Debug::DISABLE);
  if (S2Error e; loop->FindValidationError(&e)) return geometry_error(e, where);
  loop->Normalize();
  return loop;
}

// One ring, as every CAP polygon is: the same checks as S2Polygon::FindValidationError,
// with the self-intersection test run on our own index, so that the index is built once
// rather than once per check (the loop's, the polygon's, then ours: 70% of the cost of
// a small polygon, which intake builds for every alert).
Result<PolygonPtr> make_single_ring_polygon(const std::vector<LatLon>& ring, const std::string& where) {
  const std::string ring_where = where + "/0";
  std::vector<S2Point> v = ring_vertices(ring);
  if (v.size() < 3)
    return unprocessable("invalid_geojson", "a ring needs at least 3 distinct positions", ring_where);
  // S2Loop's checks without an index (private to S2): to_point() gives unit vectors and
  // ring_vertices() no repeated neighbours, which leaves antipodal neighbours.
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i] == -v[(i + 1) % v.size()])
      return unprocessable("invalid_geojson",
                           "invalid polygon: positions " + std::to_string(i) + " and " +
                               std::to_string((i + 1) % v.size()) +
                               " are antipodal (their edge has no direction)",
                           ring_where);
  auto loop = std::make_unique<S2Loop>(v, S2Debug::DISABLE);
  loop->Normalize();  // meaningless for a ring that crosses itself, which fails below
  PolygonPtr polygon = index_polygon(std::make_unique<S2Polygon>(std::move(loop), S2Debug::DISABLE));
  if (S2Error e; s2shapeutil::FindSelfIntersection(polygon->index, &e)) return geometry_error(e, ring_where);
  return polygon;
}

// rings[0] is the shell, the rest are holes (RFC 7946 §3.1.6).
Result<PolygonPtr> make_polygon(const std::vector<std::vector<LatLon>>& rings, const std::string& where) {
  if (rings.size() == 1) return make_single_ring_polygon(rings[0], where);
  std::vector<std::unique_ptr<S2Loop>> loops;
  for (size_t i = 0; i < rings.size(); ++i) {
    const std::string ring_where = where + "/" + std::to_string(i);
    Result<std::unique_ptr<S2Loop>> loop = make_loop(rings[i], ring_where);
    if (!loop) return std::move(loop).take_error();
    if (i > 0 && !loops[0]->Contains(**loop)) {
      if (loops[0]->Intersects(**loop))
        return unprocessable("self_intersecting", "the hole crosses the exterior ring", ring_where);
      return unprocessable("invalid_geojson", "the hole is not inside the exterior ring (the first ring)",
                           ring_where);
    }
    loops.push_back(std::move(loop).value());
  }
  auto polygon = std::make_unique<S2Polygon>();
  polygon->set_s2debug_override(S2Debug::DISABLE);
  polygon->InitNested(std::move(loops));
  if (S2Error e; polygon->FindValidationError(&e)) return geometry_error(e, where);
  for (int i = 0; i < polygon->num_loops(); ++i) {
    if (polygon->loop(i)->depth() > 1)
      return unprocessable("invalid_geojson", "a hole lies inside another hole", where);
  }
  return index_polygon(std::move(polygon));
}

// A CAP polygon that S2 rejects (it crosses itself: intake checks closure and size, not
// simplicity) is replaced by its convex hull: for a warning, reaching a few people too
// many beats silently dropping the shape.
PolygonPtr cap_polygon(const alerts::Polygon& p) {
  std::vector<LatLon> ring;
  ring.reserve(p.points.size());
  for (const alerts::Point& pt : p.points) ring.push_back({pt.lat, pt.lon});
  if (Result<PolygonPtr> polygon = make_polygon({ring}, ""); polygon) return *polygon;
  S2ConvexHullQuery hull;
  for (const LatLon& q : ring) hull.AddPoint(to_point(q));
  return index_polygon(std::make_unique<S2Polygon>(hull.GetConvexHull(), S2Debug::DISABLE));
}

S2Cap cap_circle(const alerts::Circle& c) {
  // CAP 1.2 §3.2.4: radius in km; an angle on the sphere of the mean Earth radius.
  double km = std::isfinite(c.radius_km) && c.radius_km > 0 ? c.radius_km : 0;
  // The centre is snapped to its leaf cell like every location, so a circle of radius 0
  // holds the citizens registered at its very centre.
  const S2Point centre = leaf_point(leaf_cell_id({c.center.lat, c.center.lon}));
  return S2Cap(centre, S1Angle::Radians(km / kEarthRadiusKm));
}

bool polygon_meets_cap(const S2Polygon& p, const S2Cap& c) {
  // Distance 0 when the centre is inside (include_interiors defaults to true).
  S2ClosestEdgeQuery query(&p.index());
  S2ClosestEdgeQuery::PointTarget target(c.center());
  return query.IsDistanceLessOrEqual(&target, c.radius());
}

}  // namespace

Area::Area() : impl_(std::make_shared<Impl>()) {}
Area::~Area() = default;
Area::Area(const Area&) = default;
Area& Area::operator=(const Area&) = default;

Area Area::from_cap(const std::vector<alerts::Area>& areas) {
  auto impl = std::make_shared<Impl>();
  for (const alerts::Area& a : areas) {
    for (const alerts::Polygon& p : a.polygons) impl->polygons.push_back(cap_polygon(p));
    for (const alerts::Circle& c : a.circles) impl->caps.push_back(cap_circle(c));
  }
  return Area(std::move(impl));
}

Area Area::from_alert(const alerts::Alert& alert) {
  Area area;
  for (const auto& info : alert.infos) area.add(from_cap(info.areas));
  return area;
}

void Area::add(const Area& other) {
  // Copy on write: other holders of impl_ keep the area they had.
  auto impl = std::make_shared<Impl>(*impl_);
  impl->polygons.insert(impl->polygons.end(), other.impl_->polygons.begin(), other.impl_->polygons.end());
  impl->caps.insert(impl->caps.end(), other.impl_->caps.begin(), other.impl_->caps.end());
  impl_ = std::move(impl);
}

bool Area::empty() const {
  return impl_->polygons.empty() && impl_->caps.empty();
}

bool Area::contains(LatLon p) const {
  return in_range(p) && contains_leaf(leaf_cell_id(p));
}

bool Area::contains_leaf(uint64_t leaf) const {
  bool inside = false;
  contains_leaves(leaf, &leaf, 1, &inside);
  return inside;
}

namespace {

// Whether the edge comes near `target`, padded by the clipping error bounds so that
// "no" is certain: S2Polygon::MayIntersect(S2Cell)'s test (s2polygon.cc,
// BoundaryApproxIntersects), with S2's public edge clipping.
bool edge_near(const S2Shape::Edge& e, const S2Cell& target) {
  const R2Rect bound =
      target.GetBoundUV().Expanded(S2::kFaceClipErrorUVCoord + S2::kIntersectsRectErrorUVDist);
  R2Point a, b;
  return S2::ClipToPaddedFace(e.v0, e.v1, target.face(), S2::kFaceClipErrorUVCoord, &a, &b) &&
         S2::IntersectsRect(a, b, bound);
}

// S2Polygon::Contains(S2Cell) and MayIntersect(S2Cell) in one pass, plus kEdge: one
// index lookup, one clip per edge of the index cell, one centre test. Edges of
// S2Polygon::Shape keep the interior on their left (S2Loop::oriented_vertex), so a
// cell crossed by a single edge is split by that edge's great circle.
Area::CellRelation relate_polygon(const IndexedPolygon& polygon, const S2Cell& target,
                                  Area::EdgePlane* edge) {
  S2ContainsPointQuery<MutableS2ShapeIndex> query(&polygon.index);
  MutableS2ShapeIndex::Iterator& it = *query.mutable_iter();
  switch (it.Locate(target.id())) {
    case S2ShapeIndex::DISJOINT:
      return Area::CellRelation::kDisjoint;
    case S2ShapeIndex::SUBDIVIDED:  // several index cells, which exist only near edges
      return Area::CellRelation::kPartial;
    case S2ShapeIndex::INDEXED:
      break;
  }
  const S2ClippedShape* clipped = it.cell().find_clipped(0);
  if (clipped == nullptr) return Area::CellRelation::kDisjoint;
  const S2Shape& shape = *polygon.index.shape(clipped->shape_id());
  int near = 0;
  S2Shape::Edge crossing;
  for (int i = 0; i < clipped->num_edges() && near < 2; ++i) {
    const S2Shape::Edge e = shape.edge(clipped->edge(i));
    if (!edge_near(e, target)) continue;
    ++near;
    crossing = e;
  }
  if (near == 0) {
    // No edge comes near the target: all of it is on the side of its centre.
    return query.ShapeContains(it.id(), *clipped, target.GetCenter()) ? Area::CellRelation::kInside
                                                                      : Area::CellRelation::kDisjoint;
  }
  // One edge and no vertex (a vertex in the cell would bring both its edges near).
  if (near == 1 && edge != nullptr) {
    const S2Point n = crossing.v0.CrossProd(crossing.v1);
    *edge = {n.x(), n.y(), n.z()};
    return Area::CellRelation::kEdge;
  }
  return Area::CellRelation::kPartial;
}

}  // namespace

void Area::contains_leaves(uint64_t cell_id, const uint64_t* leaves, size_t n, bool* inside) const {
  std::fill(inside, inside + n, false);
  for (const auto& polygon : impl_->polygons) {
    // Through the polygon's shape index even when it is small (S2Polygon::Contains
    // tests every edge below 32 vertices), with one lookup for the whole batch: the
    // leaves share the index cell that holds `cell_id`. Same semi-open model as
    // S2Polygon::Contains, same answers.
    S2ContainsPointQuery<MutableS2ShapeIndex> query(&polygon->index);
    MutableS2ShapeIndex::Iterator& it = *query.mutable_iter();
    const S2ClippedShape* clipped =
        it.Locate(S2CellId(cell_id)) == S2ShapeIndex::INDEXED ? it.cell().find_clipped(0) : nullptr;
    for (size_t i = 0; i < n; ++i) {
      if (inside[i]) continue;
      const S2Point p = leaf_point(leaves[i]);
      inside[i] = clipped != nullptr ? query.ShapeContains(it.id(), *clipped, p) : query.Contains(p);
    }
  }
  for (const S2Cap& cap : impl_->caps)
    for (size_t i = 0; i < n; ++i) inside[i] = inside[i] || cap.Contains(leaf_point(leaves[i]));
}

Area::CellRelation Area::relate(uint64_t cell_id, EdgePlane* edge) const {
  const S2Cell cell{S2CellId(cell_id)};
  int meeting = 0;  // components that are not disjoint from the cell
  CellRelation last = CellRelation::kDisjoint;
  for (const auto& polygon : impl_->polygons) {
    const CellRelation r = relate_polygon(*polygon, cell, edge);
    if (r == CellRelation::kInside) return r;
    if (r != CellRelation::kDisjoint) ++meeting, last = r;
  }
  for (const S2Cap& cap : impl_->caps) {
    if (cap.Contains(cell)) return CellRelation::kInside;
    if (cap.MayIntersect(cell)) ++meeting, last = CellRelation::kPartial;
  }
  if (meeting == 0) return CellRelation::kDisjoint;
  // kEdge holds for the union only when nothing else meets the cell; `edge` then holds
  // the plane of that one component's edge.
  return meeting == 1 ? last : CellRelation::kPartial;
}

bool Area::intersects(const Area& other) const {
  const Impl& a = *impl_;
  const Impl& b = *other.impl_;
  for (const auto& p : a.polygons) {
    for (const auto& q : b.polygons)
      if (p->polygon->Intersects(*q->polygon)) return true;
    for (const S2Cap& c : b.caps)
      if (polygon_meets_cap(*p->polygon, c)) return true;
  }
  for (const S2Cap& c : a.caps) {
    for (const auto& q : b.polygons)
      if (polygon_meets_cap(*q->polygon, c)) return true;
    for (const S2Cap& d : b.caps)
      if (c.Intersects(d)) return true;
  }
  return false;
}

double Area::area_km2() const {
  // Steradians times R²; overlapping parts are counted twice (an estimate for previews).
  double sr = 0;
  for (const auto& p : impl_->polygons) sr += p->polygon->GetArea();
  for (const S2Cap& c : impl_->caps) sr += c.GetArea();
  return sr * kEarthRadiusKm * kEarthRadiusKm;
}

std::vector<uint64_t> Area::covering(int max_cells) const {
  S2RegionCoverer::Options options;
  options.set_max_cells(max_cells);
  S2RegionCoverer coverer(options);
  std::vector<S2CellId> ids;
  auto append = [&](const S2Region& region) {
    S2CellUnion u = coverer.GetCovering(region);
    ids.insert(ids.end(), u.cell_ids().begin(), u.cell_ids().end());
  };
  // Through our index, which is built (S2Polygon's own would be built here, on the loop).
  for (const auto& p : impl_->polygons) append(MakeS2ShapeIndexRegion(&p->index));
  for (const S2Cap& c : impl_->caps) append(c);
  S2CellUnion all(std::move(ids));  // normalises: sorted, overlaps merged
  std::vector<uint64_t> out;
  out.reserve(all.num_cells());
  for (S2CellId id : all) out.push_back(id.id());
  return out;
}

uint64_t leaf_cell_id(LatLon p) {
  return S2CellId(to_point(p)).id();
}

// ---- GeoJSON (RFC 7946) ----

namespace {

using nlohmann::json;

// A Feature holding a MultiPolygon nests positions 6 deep.
constexpr int kMaxGeoJsonDepth = 16;

struct GeoJsonReader {
  const ZoneLimits& limits;
  size_t points = 0;

  Error structure(const std::string& what, const std::string& where) {
    return unprocessable("invalid_geojson", what, where);
  }

  // RFC 7946 §3.1.1: a position is [longitude, latitude] or [longitude, latitude, altitude].
  Result<LatLon> position(const json& j, const std::string& where) {
    if (!j.is_array() || j.size() < 2 || j.size() > 3)
      return structure("a position is an array [longitude, latitude]", where);
    for (const json& n : j)
      if (!n.is_number()) return structure("a position holds numbers [longitude, latitude]", where);
    LatLon p{j[1].get<double>(), j[0].get<double>()};
    if (!in_range(p))
      return unprocessable("coordinate_out_of_range",
                           "longitude must be in [-180, 180] and latitude in [-90, 90] (GeoJSON order is "
                           "[longitude, latitude])",
                           where);
    return p;
  }

  // RFC 7946 §3.1.6: a linear ring is closed, with at least four positions.
  Result<std::vector<LatLon>> ring(const json& j, const std::string& where) {
    if (!j.is_array()) return structure("a linear ring is an array of positions", where);
    points += j.size();
    if (points > limits.max_points)
      return unprocessable("too_many_points",
                           "the geometry has more than " + std::to_string(limits.max_points) +
                               " points, the limit: simplify it",
                           where);
    if (j.size() < 4)
      return structure("a linear ring needs at least 4 positions (the first repeated as the last)", where);
    std::vector<LatLon> out;
    out.reserve(j.size());
    for (size_t i = 0; i < j.size(); ++i) {
      Result<LatLon> p = position(j[i], where + "/" + std::to_string(i));
      if (!p) return std::move(p).take_error();
      out.push_back(*p);
    }
    if (out.front().lat != out.back().lat || out.front().lon != out.back().lon)
      return unprocessable("unclosed_ring", "the ring is not closed: repeat the first position as the last",
                           where + "/" + std::to_string(j.size() - 1));
    return out;
  }

  Result<PolygonPtr> polygon(const json& j, const std::string& where) {
    if (!j.is_array() || j.empty())
      return structure("Polygon coordinates are a non-empty array of linear rings", where);
    std::vector<std::vector<LatLon>> rings;
    for (size_t i = 0; i < j.size(); ++i) {
      Result<std::vector<LatLon>> r = ring(j[i], where + "/" + std::to_string(i));
      if (!r) return std::move(r).take_error();
      rings.push_back(std::move(r).value());
    }
    Result<PolygonPtr> made = make_polygon(rings, where);
    if (!made) return made;
    // The same rule as a CAP polygon's (validate.h), after S2's own checks (fewer than
    // 3 distinct positions, crossing edges): a ring on one line covers nothing.
    for (size_t i = 0; i < rings.size(); ++i) {
      std::vector<alerts::Point> flat;
      flat.reserve(rings[i].size());
      for (const LatLon& p : rings[i]) flat.push_back(alerts::Point{p.lat, p.lon});
      if (alerts::ring_area_deg2(flat) < alerts::kMinRingAreaDeg2)
        return unprocessable("zero_area_ring", "the ring encloses no area: its positions are on one line",
                             where + "/" + std::to_string(i));
    }
    return made;
  }

  Result<Area> geometry(const json& j, const std::string& where) {
    if (!j.is_object()) return structure("expected a GeoJSON object", where);
    auto type = j.find("type");
    if (type == j.end() || !type->is_string()) return structure("missing \"type\"", where + "/type");
    const std::string& t = type->get_ref<const std::string&>();
    if (t == "Feature") {
      auto g = j.find("geometry");
      if (g == j.end()) return structure("a Feature needs a \"geometry\"", where + "/geometry");
      return geometry(*g, where + "/geometry");
    }
    if (t != "Polygon" && t != "MultiPolygon")
      return structure("expected a Polygon, a MultiPolygon or a Feature holding one, got " + t,
                       where + "/type");
    auto coords = j.find("coordinates");
    if (coords == j.end()) return structure("missing \"coordinates\"", where + "/coordinates");
    const std::string at = where + "/coordinates";
    auto impl = std::make_shared<Area::Impl>();
    if (t == "Polygon") {
      Result<PolygonPtr> p = polygon(*coords, at);
      if (!p) return std::move(p).take_error();
      impl->polygons.push_back(std::move(p).value());
    } else {
      if (!coords->is_array() || coords->empty())
        return structure("MultiPolygon coordinates are a non-empty array of polygons", at);
      // Parts stay separate polygons: RFC 7946 does not forbid them to overlap, and the
      // area is their union either way.
      for (size_t i = 0; i < coords->size(); ++i) {
        Result<PolygonPtr> p = polygon((*coords)[i], at + "/" + std::to_string(i));
        if (!p) return std::move(p).take_error();
        impl->polygons.push_back(std::move(p).value());
      }
    }
    return Area(std::move(impl));
  }
};

}  // namespace

Result<Area> parse_geojson_area(std::string_view geojson, const ZoneLimits& limits) {
  try {
    // Duplicate keys ("type" twice) and numbers out of range are refused, as in alerts.
    json doc;
    if (Status s = parse_json_strict(geojson, kMaxGeoJsonDepth, &doc); !s) {
      if (s.error().code == "malformed_json")
        return unprocessable("invalid_geojson", s.error().message, s.error().where);
      return std::move(s).take_error();
    }
    GeoJsonReader reader{limits};
    return reader.geometry(doc, "");
  } catch (const std::exception& e) {
    // nlohmann throws only on misuse (type errors); never let it escape.
    return unprocessable("invalid_geojson", std::string("invalid GeoJSON: ") + e.what(), "");
  }
}

}  // namespace sirena::directory
