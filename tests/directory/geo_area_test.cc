// Areas: CAP polygons and circles, the boundary rule, and GeoJSON zone validation.
#include "daemon/directory/geo_area.h"

#include <gtest/gtest.h>

#include "daemon/directory/geo_index.h"
#include "tests/directory/geo_test_util.h"

namespace sirena::directory {
namespace {

using testing::box;
using testing::circle;
using testing::north_of;
using testing::polygon;

constexpr LatLon kSoliera{44.737, 10.924};

TEST(Area, PolygonContainsInsideAndNotOutside) {
  const Area a = polygon(box(44.73, 10.91, 44.75, 10.94));
  EXPECT_TRUE(a.contains(kSoliera));
  EXPECT_TRUE(a.contains(north_of({44.73, 10.92}, 0.01)));    // 10 m inside the south edge
  EXPECT_FALSE(a.contains(north_of({44.73, 10.92}, -0.01)));  // 10 m outside
  EXPECT_FALSE(a.contains({44.647, 10.925}));                 // Modena
  EXPECT_FALSE(a.empty());
  EXPECT_TRUE(Area().empty());
  EXPECT_FALSE(Area().contains(kSoliera));
}

TEST(Area, EitherRingOrientationMeansTheSmallSide) {
  std::vector<LatLon> ccw = box(44.73, 10.91, 44.75, 10.94);
  std::vector<LatLon> cw(ccw.rbegin(), ccw.rend());
  const Area a = polygon(ccw);
  const Area b = polygon(cw);
  EXPECT_TRUE(b.contains(kSoliera));
  EXPECT_FALSE(b.contains({44.647, 10.925}));
  EXPECT_NEAR(a.area_km2(), b.area_km2(), 1e-9);
  EXPECT_LT(b.area_km2(), 10.0);  // about 2.2 km x 2.4 km, not the rest of the planet
  EXPECT_GT(b.area_km2(), 4.0);
}

TEST(Area, CircleRadiusInKm) {
  const Area c = circle(kSoliera, 1.0);
  EXPECT_TRUE(c.contains(kSoliera));
  EXPECT_TRUE(c.contains(north_of(kSoliera, 0.999)));
  EXPECT_FALSE(c.contains(north_of(kSoliera, 1.001)));
  EXPECT_NEAR(circle(kSoliera, 10.0).area_km2(), M_PI * 100.0, 0.5);
}

TEST(Area, ZeroRadiusCircleHoldsItsCentreOnly) {
  const Area c = circle(kSoliera, 0.0);
  EXPECT_TRUE(c.contains(kSoliera));
  EXPECT_FALSE(c.contains(north_of(kSoliera, 0.001)));
}

// The boundary rule (geo_area.cc): S2's semi-open model gives every point on an edge or
// vertex shared by polygons to exactly one of them, so zones that partition a town
// place each citizen in exactly one zone.
TEST(Area, SharedEdgesAndVerticesBelongToExactlyOnePolygon) {
  const double lat0 = 44.72, lat1 = 44.74, lat2 = 44.76, lon0 = 10.90, lon1 = 10.93, lon2 = 10.96;
  const std::vector<Area> quads = {polygon(box(lat0, lon0, lat1, lon1)), polygon(box(lat0, lon1, lat1, lon2)),
                                   polygon(box(lat1, lon0, lat2, lon1)),
                                   polygon(box(lat1, lon1, lat2, lon2))};
  // Inner edges and the common vertex; the outer boundary is not shared.
  std::vector<LatLon> on_boundary = {{lat1, lon1}};
  for (int i = 1; i < 20; ++i) {
    const double f = i / 20.0;
    on_boundary.push_back({lat0 + f * (lat2 - lat0), lon1});  // on the shared meridian edge
    on_boundary.push_back({lat1, lon0 + f * (lon2 - lon0)});  // near the shared geodesic edge
  }
  for (const LatLon& p : on_boundary) {
    int holders = 0;
    for (const Area& q : quads) holders += q.contains(p) ? 1 : 0;
    EXPECT_EQ(holders, 1) << p.lat << "," << p.lon;
  }
}

TEST(Area, ContainsIsTheLeafCellRule) {
  const Area a = polygon(box(44.73, 10.91, 44.75, 10.94));
  for (LatLon p : {kSoliera, LatLon{44.73, 10.92}, LatLon{44.75, 10.94}, LatLon{44.76, 10.92}})
    EXPECT_EQ(a.contains(p), a.contains_leaf(leaf_cell_id(p)));
}

TEST(Area, UnionOfPolygonsAndCircles) {
  alerts::Area cap;
  cap.polygons.push_back(testing::cap_ring(box(44.73, 10.91, 44.75, 10.94)));
  cap.circles.push_back({{44.727, 10.999}, 1.0});  // Bastiglia
  cap.geocodes.push_back({"ISTAT", "036045"});     // ignored: the caller maps geocodes to zones
  const Area a = Area::from_cap({cap});
  EXPECT_TRUE(a.contains(kSoliera));
  EXPECT_TRUE(a.contains({44.727, 10.999}));
  EXPECT_FALSE(a.contains({44.647, 10.925}));

  Area b = circle({44.647, 10.925}, 2.0);
  const Area before = b;
  b.add(a);
  EXPECT_TRUE(b.contains(kSoliera));
  EXPECT_TRUE(b.contains({44.647, 10.925}));
  EXPECT_FALSE(before.contains(kSoliera));  // copies are immutable
}

TEST(Area, Intersects) {
  const Area soliera = polygon(box(44.73, 10.91, 44.75, 10.94));
  const Area overlapping = polygon(box(44.74, 10.93, 44.76, 10.95));
  const Area nearby_circle = circle({44.76, 10.92}, 0.9);  // its centre is 1.1 km north of the box
  const Area far_circle = circle({44.647, 10.925}, 1.0);
  const Area near_circle = circle({44.647, 10.925}, 12.0);
  EXPECT_TRUE(soliera.intersects(overlapping));
  EXPECT_FALSE(soliera.intersects(polygon(box(44.60, 10.90, 44.65, 10.95))));
  EXPECT_FALSE(soliera.intersects(far_circle));
  EXPECT_TRUE(soliera.intersects(near_circle));
  EXPECT_TRUE(near_circle.intersects(soliera));
  EXPECT_TRUE(far_circle.intersects(near_circle));
  EXPECT_FALSE(far_circle.intersects(circle({44.737, 10.924}, 1.0)));
  EXPECT_FALSE(soliera.intersects(nearby_circle));
  EXPECT_TRUE(soliera.intersects(circle({44.76, 10.92}, 1.2)));
  EXPECT_TRUE(circle(kSoliera, 0.1).intersects(soliera));  // a circle wholly inside
}

TEST(Area, SelfIntersectingCapPolygonFallsBackToItsHull) {
  // A bow-tie: intake accepts it (closed, >= 4 points); the index must not drop it.
  const Area a = polygon({{44.70, 10.90}, {44.76, 10.96}, {44.70, 10.96}, {44.76, 10.90}});
  EXPECT_TRUE(a.contains({44.72, 10.93}));
  EXPECT_TRUE(a.contains({44.74, 10.93}));
  EXPECT_FALSE(a.contains({44.80, 10.93}));
}

TEST(Area, DegenerateCapPolygonDoesNotBreakAnything) {
  // All corners equal, or on one line: no area, but intake lets such a polygon through.
  const Area point = polygon({{44.7, 10.9}, {44.7, 10.9}, {44.7, 10.9}});
  const Area line = polygon({{44.7, 10.9}, {44.8, 10.9}, {44.75, 10.9}});
  for (const Area* a : {&point, &line}) {
    EXPECT_FALSE(a->contains({44.72, 10.95}));
    EXPECT_GE(a->area_km2(), 0.0);
    EXPECT_FALSE(a->intersects(circle({44.0, 10.0}, 1.0)));
    GeoIndex index;
    index.upsert(testing::entry(1, 1, {{44.72, 10.95}}));
    EXPECT_TRUE(testing::resolve(index, *a).empty());
  }
}

// ---- GeoJSON ----

std::string polygon_json(const std::string& rings) {
  return R"({"type":"Polygon","coordinates":[)" + rings + "]}";
}

const std::string kRing = "[[10.91,44.73],[10.94,44.73],[10.94,44.75],[10.91,44.75],[10.91,44.73]]";
const std::string kHole = "[[10.92,44.735],[10.93,44.735],[10.93,44.745],[10.92,44.745],[10.92,44.735]]";

Error parse_error(const std::string& json, const ZoneLimits& limits = {}) {
  Result<Area> r = parse_geojson_area(json, limits);
  EXPECT_FALSE(r.ok()) << json;
  if (r.ok()) return {};
  EXPECT_EQ(r.error().kind, ErrorKind::Invalid);
  return r.error();
}

TEST(GeoJson, Polygon) {
  Result<Area> a = parse_geojson_area(polygon_json(kRing));
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_TRUE(a->contains(kSoliera));
  EXPECT_FALSE(a->contains({44.647, 10.925}));
}

TEST(GeoJson, ClockwiseRingIsAccepted) {
  // RFC 7946 §3.1.6: parsers should not reject rings with the wrong winding.
  Result<Area> a = parse_geojson_area(
      polygon_json("[[10.91,44.73],[10.91,44.75],[10.94,44.75],[10.94,44.73],[10.91,44.73]]"));
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_TRUE(a->contains(kSoliera));
  EXPECT_LT(a->area_km2(), 10.0);
}

TEST(GeoJson, HoleIsExcluded) {
  Result<Area> a = parse_geojson_area(polygon_json(kRing + "," + kHole));
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_FALSE(a->contains({44.74, 10.925}));  // in the hole
  EXPECT_TRUE(a->contains({44.732, 10.915}));  // in the shell, outside the hole
}

TEST(GeoJson, MultiPolygonAndFeature) {
  const std::string multi =
      R"({"type":"MultiPolygon","coordinates":[[)" + kRing +
      R"(],[[[10.99,44.72],[11.01,44.72],[11.01,44.735],[10.99,44.735],[10.99,44.72]]]]})";
  Result<Area> a = parse_geojson_area(multi);
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_TRUE(a->contains(kSoliera));
  EXPECT_TRUE(a->contains({44.727, 10.999}));
  EXPECT_FALSE(a->contains({44.647, 10.925}));

  Result<Area> f =
      parse_geojson_area(R"({"type":"Feature","properties":{"name":"x"},"geometry":)" + multi + "}");
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_TRUE(f->contains({44.727, 10.999}));
}

TEST(GeoJson, BowTieIsSelfIntersecting) {
  Error e =
      parse_error(polygon_json("[[10.90,44.70],[10.96,44.76],[10.96,44.70],[10.90,44.76],[10.90,44.70]]"));
  EXPECT_EQ(e.code, "self_intersecting");
  EXPECT_NE(e.message.find("cross"), std::string::npos) << e.message;  // S2's own words
  EXPECT_EQ(e.where, "/coordinates/0");
}

TEST(GeoJson, UnclosedRing) {
  Error e = parse_error(polygon_json("[[10.91,44.73],[10.94,44.73],[10.94,44.75],[10.91,44.75]]"));
  EXPECT_EQ(e.code, "unclosed_ring");
  EXPECT_EQ(e.where, "/coordinates/0/3");
}

TEST(GeoJson, CoordinateOutOfRange) {
  // Latitude and longitude swapped is the classic mistake; 44.73 is a fine longitude, so
  // put an impossible latitude in.
  Error e =
      parse_error(polygon_json("[[10.91,44.73],[10.94,44.73],[10.94,95.0],[10.91,44.75],[10.91,44.73]]"));
  EXPECT_EQ(e.code, "coordinate_out_of_range");
  EXPECT_EQ(e.where, "/coordinates/0/2");
  EXPECT_EQ(parse_error(polygon_json("[[190,44.73],[10.94,44.73],[10.94,44.75],[190,44.73]]")).code,
            "coordinate_out_of_range");
}

TEST(GeoJson, TooManyPointsNamesTheLimit) {
  Error e = parse_error(polygon_json(kRing + "," + kHole), ZoneLimits{8});
  EXPECT_EQ(e.code, "too_many_points");
  EXPECT_NE(e.message.find("8"), std::string::npos) << e.message;
  EXPECT_TRUE(parse_geojson_area(polygon_json(kRing + "," + kHole), ZoneLimits{10}).ok());
}

TEST(GeoJson, HoleCrossingOrOutsideTheShell) {
  EXPECT_EQ(
      parse_error(
          polygon_json(kRing + ",[[10.92,44.74],[10.99,44.74],[10.99,44.745],[10.92,44.745],[10.92,44.74]]"))
          .code,
      "self_intersecting");
  Error outside = parse_error(
      polygon_json(kRing + ",[[11.92,44.74],[11.93,44.74],[11.93,44.745],[11.92,44.745],[11.92,44.74]]"));
  EXPECT_EQ(outside.code, "invalid_geojson");
  EXPECT_EQ(outside.where, "/coordinates/1");
}

TEST(GeoJson, BadStructureNamesTheJsonPointer) {
  EXPECT_EQ(parse_error("{not json").code, "invalid_geojson");
  EXPECT_EQ(parse_error("[]").where, "");
  EXPECT_EQ(parse_error(R"({"type":"Point","coordinates":[10.9,44.7]})").where, "/type");
  EXPECT_EQ(parse_error(R"({"type":"Polygon"})").where, "/coordinates");
  EXPECT_EQ(
      parse_error(
          R"({"type":"Feature","geometry":{"type":"Polygon","coordinates":[[[10.9,44.7],[10.95,"x"]]]}})")
          .where,
      "/geometry/coordinates/0");  // too short a ring, before its positions are read
  EXPECT_EQ(parse_error(polygon_json(R"([[10.91,44.73],[10.94,"x"],[10.94,44.75],[10.91,44.73]])")).where,
            "/coordinates/0/1");
  EXPECT_EQ(parse_error(polygon_json("[[10.91,44.73],[10.94,44.73],[10.91,44.73]]")).code, "invalid_geojson");
  // Four positions but only two distinct: no area.
  EXPECT_EQ(parse_error(polygon_json("[[10.91,44.73],[10.94,44.73],[10.94,44.73],[10.91,44.73]]")).code,
            "invalid_geojson");
  EXPECT_EQ(parse_error(R"({"type":"MultiPolygon","coordinates":[]})").where, "/coordinates");
}

}  // namespace
}  // namespace sirena::directory
