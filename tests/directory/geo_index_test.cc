// The geo index on hand-made cases: interests, zones, grants, upserts, removal, merges.
#include "daemon/directory/geo_index.h"

#include <gtest/gtest.h>
#include <s2/s2cell_id.h>
#include <s2/s2latlng.h>

#include "daemon/directory/geo_area.h"
#include "tests/directory/geo_test_util.h"

namespace sirena::directory {
namespace {

using testing::box;
using testing::circle;
using testing::entry;
using testing::polygon;
using testing::resolve;

constexpr LatLon kSoliera{44.737, 10.924};
constexpr LatLon kBastiglia{44.727, 10.999};
constexpr LatLon kModena{44.647, 10.925};
constexpr uint64_t kMet = 1u << 0;
constexpr uint64_t kFire = 1u << 1;
constexpr uint64_t kFlood = 1u << 2;

const Area& soliera_box() {
  static const Area a = polygon(box(44.73, 10.91, 44.75, 10.94));
  return a;
}

TEST(GeoIndex, ResolvesByLocationAndInterest) {
  GeoIndex index;
  index.upsert(entry(1, kMet, {kSoliera}));
  index.upsert(entry(2, kFire, {kSoliera}));
  index.upsert(entry(3, kMet | kFire, {kModena}));
  index.upsert(entry(4, kMet, {kBastiglia, kSoliera}));
  EXPECT_EQ(resolve(index, soliera_box(), kMet), (std::vector<Slot>{1, 4}));
  EXPECT_EQ(resolve(index, soliera_box(), kFire), (std::vector<Slot>{2}));
  EXPECT_EQ(resolve(index, soliera_box(), kFlood), (std::vector<Slot>{}));
  EXPECT_EQ(index.size(), 4u);
  EXPECT_EQ(index.location_count(), 5u);
}

TEST(GeoIndex, EveryoneIgnoresTopics) {
  GeoIndex index;
  index.upsert(entry(1, kMet, {kSoliera}));
  index.upsert(entry(2, 0, {kSoliera}));  // no topics at all
  index.upsert(entry(3, kFire, {kModena}));
  Query q;
  q.area = &soliera_box();
  q.topics = kFlood;
  q.everyone = true;
  EXPECT_EQ(testing::sorted(index.resolve(q)), (std::vector<Slot>{1, 2}));
}

TEST(GeoIndex, OverlappingAreasMatchOnce) {
  GeoIndex index;
  // Home and work both inside, in two overlapping shapes of one alert.
  index.upsert(entry(7, kMet, {kSoliera, {44.745, 10.93}}));
  Area a = soliera_box();
  a.add(circle(kSoliera, 3.0));
  a.add(polygon(box(44.70, 10.90, 44.76, 10.95)));
  EXPECT_EQ(resolve(index, a, kMet), (std::vector<Slot>{7}));
}

TEST(GeoIndex, ZoneRegisteredRecipients) {
  GeoIndex index;
  index.upsert(entry(1, kFlood, {}, {3}));          // registered to zone 3 only
  index.upsert(entry(2, kFlood, {kSoliera}, {3}));  // in the area and in zone 3
  index.upsert(entry(3, kMet, {}, {3}));            // zone 3, other interests
  index.upsert(entry(4, kFlood, {}, {5}));
  EXPECT_EQ(resolve(index, soliera_box(), kFlood, {3}), (std::vector<Slot>{1, 2}));
  EXPECT_EQ(resolve(index, soliera_box(), kFlood, {3, 5, 900}), (std::vector<Slot>{1, 2, 4}));
  EXPECT_EQ(resolve(index, Area(), kFlood, {5}), (std::vector<Slot>{4}));  // geocodes only
  EXPECT_EQ(resolve(index, soliera_box(), kFlood), (std::vector<Slot>{2}));
}

TEST(GeoIndex, WithinRestrictsToTheGrant) {
  GeoIndex index;
  index.upsert(entry(1, kMet, {kSoliera}));
  index.upsert(entry(2, kMet, {kBastiglia}));
  index.upsert(entry(3, kMet, {{44.735, 11.02}}));  // Bastiglia's east, outside the granted zone
  const Area alert = circle({44.73, 10.96}, 8.0);   // both towns
  const Area granted = polygon(box(44.72, 10.98, 44.74, 11.01));
  EXPECT_EQ(resolve(index, alert, kMet), (std::vector<Slot>{1, 2, 3}));
  EXPECT_EQ(resolve(index, alert, kMet, {}, &granted), (std::vector<Slot>{2}));
  const Area elsewhere = polygon(box(44.60, 10.90, 44.65, 10.95));
  EXPECT_EQ(resolve(index, alert, kMet, {}, &elsewhere), (std::vector<Slot>{}));
}

TEST(GeoIndex, UpsertReplacesLocationsTopicsAndZones) {
  GeoIndex index;
  index.upsert(entry(1, kMet, {kSoliera}, {2}));
  IndexEntry moved = entry(1, kFire, {kBastiglia}, {4});
  moved.channels = kChannelApns | kChannelFcm;
  moved.language = 3;
  index.upsert(moved);
  const Area bastiglia = circle(kBastiglia, 1.0);
  EXPECT_EQ(resolve(index, soliera_box()), (std::vector<Slot>{}));
  EXPECT_EQ(resolve(index, Area(), ~uint64_t{0}, {2}), (std::vector<Slot>{}));
  EXPECT_EQ(resolve(index, bastiglia, kFire), (std::vector<Slot>{1}));
  EXPECT_EQ(resolve(index, bastiglia, kMet), (std::vector<Slot>{}));
  EXPECT_EQ(resolve(index, Area(), kFire, {4}), (std::vector<Slot>{1}));
  EXPECT_EQ(index.size(), 1u);
  EXPECT_EQ(index.location_count(), 1u);
  EXPECT_EQ(index.channels(1), kChannelApns | kChannelFcm);
  EXPECT_EQ(index.language(1), 3);
}

TEST(GeoIndex, TallyCountsSlotsByLanguageAndChannels) {
  GeoIndex index;
  IndexEntry a = entry(1, kMet, {kSoliera});
  a.channels = kChannelSms;
  a.language = 2;
  IndexEntry b = entry(2, kMet, {kSoliera});
  b.channels = kChannelApns | kChannelFcm;
  b.language = 2;
  IndexEntry c = entry(3, kMet, {kSoliera});
  c.channels = kChannelApns | kChannelFcm;
  c.language = 2;
  for (const auto& e : {a, b, c}) index.upsert(e);
  index.upsert(entry(4, kMet, {kSoliera}));
  index.remove(4);
  std::vector<size_t> counts;
  // 4 was removed and 99 never seen: both count as no language and no channel.
  index.tally({1, 2, 3, 4, 99}, counts);
  ASSERT_EQ(counts.size(), size_t{256} << 3);
  EXPECT_EQ(counts[2 << 3 | kChannelSms], 1u);
  EXPECT_EQ(counts[2 << 3 | (kChannelApns | kChannelFcm)], 2u);
  EXPECT_EQ(counts[0], 2u);
  size_t total = 0;
  for (size_t n : counts) total += n;
  EXPECT_EQ(total, 5u);
}

TEST(GeoIndex, Remove) {
  GeoIndex index;
  index.upsert(entry(1, kMet, {kSoliera}, {2}));
  index.upsert(entry(2, kMet, {kSoliera}));
  index.remove(1);
  index.remove(1);   // twice is harmless
  index.remove(99);  // never seen
  EXPECT_FALSE(index.contains(1));
  EXPECT_TRUE(index.contains(2));
  EXPECT_EQ(index.channels(1), 0);
  EXPECT_EQ(resolve(index, soliera_box(), kMet, {2}), (std::vector<Slot>{2}));
  EXPECT_EQ(index.size(), 1u);
  EXPECT_EQ(index.location_count(), 1u);
  index.upsert(entry(1, kMet, {kSoliera}));  // back again
  EXPECT_EQ(resolve(index, soliera_box(), kMet), (std::vector<Slot>{1, 2}));
}

TEST(GeoIndex, BulkLoadThenUpdates) {
  GeoIndex index;
  for (Slot s = 0; s < 1000; ++s) index.bulk_add(entry(s, kMet, {{44.70 + s * 1e-4, 10.92}}));
  index.bulk_add(entry(5, kFire, {kModena}));  // a later duplicate replaces the first
  index.finish_bulk();
  EXPECT_EQ(index.size(), 1000u);
  EXPECT_EQ(index.location_count(), 1000u);
  const Area strip = polygon(box(44.69, 10.91, 44.75, 10.93));
  std::vector<Slot> expected;
  for (Slot s = 0; s < 1000; ++s)
    if (s != 5 && strip.contains({44.70 + s * 1e-4, 10.92})) expected.push_back(s);
  EXPECT_EQ(resolve(index, strip, kMet), expected);
  EXPECT_EQ(resolve(index, circle(kModena, 0.1), kFire), (std::vector<Slot>{5}));
  EXPECT_GE(index.location_bytes(), 1000u * 12);
  EXPECT_GE(index.recipient_bytes(), 1000u * 16);
}

// settle() sorts the upserts made since the last merge ahead of the next resolve; upserts
// after it extend the sorted part again. Whatever the interleaving, resolve agrees with a
// scan of the points.
TEST(GeoIndex, SettledAndUnsettledUpsertsResolveAlike) {
  GeoIndex index;
  for (Slot s = 0; s < 500; ++s) index.bulk_add(entry(s, kMet, {{44.70 + s * 1e-4, 10.92}}));
  index.finish_bulk();
  auto where = [](Slot s) { return LatLon{44.70 + (s * 7919 % 997) * 1e-4, 10.91 + (s % 3) * 0.01}; };
  for (Slot s = 500; s < 800; ++s) index.upsert(entry(s, kMet, {where(s)}));
  index.settle();
  index.settle();  // twice: nothing left to sort
  for (Slot s = 800; s < 1000; ++s) index.upsert(entry(s, kMet, {where(s)}));
  index.upsert(entry(3, kMet, {where(3)}));  // moved after the settle
  const Area strip = polygon(box(44.69, 10.905, 44.75, 10.925));
  std::vector<Slot> expected;
  for (Slot s = 0; s < 1000; ++s) {
    const LatLon at = s < 500 && s != 3 ? LatLon{44.70 + s * 1e-4, 10.92} : where(s);
    if (strip.contains(at)) expected.push_back(s);
  }
  ASSERT_GT(expected.size(), 300u);
  EXPECT_EQ(resolve(index, strip, kMet), expected);
  index.settle();
  EXPECT_EQ(resolve(index, strip, kMet), expected);
}

// Dense recipients on and next to long edges: the resolver descends into cells crossed
// by one edge and decides points by the edge's plane, falling back to S2's exact rules
// for points on the edge. It must agree with Area::contains everywhere, and a shared
// edge must give each recipient to exactly one side.
TEST(GeoIndex, PointsOnAndAlongEdgesFollowTheBoundaryRule) {
  const double lat0 = 44.70, lat1 = 44.76, lon0 = 10.90, lon1 = 10.95, lon2 = 11.00;
  const Area west = polygon(box(lat0, lon0, lat1, lon1));
  const Area east = polygon(box(lat0, lon1, lat1, lon2));
  GeoIndex index;
  std::vector<LatLon> where;
  for (int i = 0; i < 3000; ++i) {
    const double lat = lat0 + (lat1 - lat0) * (i + 0.5) / 3000;
    where.push_back({lat, lon1});                           // exactly on the shared meridian
    where.push_back({lat, lon1 + (i % 2 ? 1e-7 : -1e-7)});  // a centimetre off it
    where.push_back({lat, lon0});                           // on the west box's outer edge
  }
  for (int i = 0; i < 1000; ++i) where.push_back({lat0, lon0 + (lon2 - lon0) * i / 1000});  // southern edges
  for (Slot s = 0; s < where.size(); ++s) index.bulk_add(entry(s, kMet, {where[s]}));
  index.finish_bulk();

  const std::vector<Slot> w = resolve(index, west, kMet);
  const std::vector<Slot> e = resolve(index, east, kMet);
  for (Slot s = 0; s < where.size(); ++s) {
    const bool in_w = std::binary_search(w.begin(), w.end(), s);
    const bool in_e = std::binary_search(e.begin(), e.end(), s);
    EXPECT_EQ(in_w, west.contains(where[s])) << s;
    EXPECT_EQ(in_e, east.contains(where[s])) << s;
    if (where[s].lon == lon1 && where[s].lat > lat0) {
      EXPECT_NE(in_w, in_e) << "shared edge, slot " << s;
    }
  }
  Area both = west;
  both.add(east);
  std::vector<Slot> all = resolve(index, both, kMet);
  EXPECT_TRUE(std::adjacent_find(all.begin(), all.end()) == all.end());  // one match per recipient
}

// Leaf centres lying on a polygon's edge to within rounding: a line of constant i on an
// S2 face is a great circle, so the centres of the leaves (i, j) for many j lie on the
// edge through two of them, which two boxes share. The index decides such points by a
// plane's sign where the sign is certain and by S2's exact test otherwise, and must
// agree with S2 (Area::contains) on every one, with exactly one of the two boxes taking
// each point of the shared edge.
TEST(GeoIndex, LeafCentresOnAnEdgeFollowS2) {
  const S2CellId anchor(S2LatLng::FromDegrees(44.72, 10.95));
  int i0 = 0, j0 = 0;
  const int face = anchor.ToFaceIJOrientation(&i0, &j0, nullptr);
  const auto centre = [&](int i, int j) {
    const S2LatLng ll = S2CellId::FromFaceIJ(face, i, j).ToLatLng();
    return LatLon{ll.lat().degrees(), ll.lng().degrees()};
  };
  // The shared edge runs from j0 to j0 + 2^22 leaves (about 5 km); points every 977
  // leaves along it (about 9 m: several per level-20 cell, so the walk splits cells
  // crossed by that edge alone and tests their points against its plane) and at
  // i0 +- 1, a leaf (about 1 cm) to either side. The boxes reach 2^21 leaves to each side.
  const int span = 1 << 22, width = 1 << 21;
  const LatLon a = centre(i0, j0), b = centre(i0, j0 + span);
  const Area west = polygon({a, b, centre(i0 - width, j0 + span), centre(i0 - width, j0)});
  const Area east = polygon({a, centre(i0 + width, j0), centre(i0 + width, j0 + span), b});
  GeoIndex index;
  std::vector<LatLon> where;
  std::vector<bool> on_edge;
  for (int j = j0 + 977; j < j0 + span; j += 977)
    for (int di = -1; di <= 1; ++di) {
      const LatLon p = centre(i0 + di, j);
      ASSERT_EQ(leaf_cell_id(p), S2CellId::FromFaceIJ(face, i0 + di, j).id());
      where.push_back(p);
      on_edge.push_back(di == 0);
    }
  for (Slot s = 0; s < where.size(); ++s) index.bulk_add(entry(s, kMet, {where[s]}));
  index.finish_bulk();

  Query q;
  q.area = &west;
  q.everyone = true;
  const Matches mw = index.resolve(q);
  EXPECT_GT(mw.points_tested, where.size() / 2);  // the points were tested, not taken whole
  std::vector<Slot> w = testing::sorted(mw);
  const std::vector<Slot> e = resolve(index, east, kMet);
  size_t west_edge = 0, east_edge = 0;
  for (Slot s = 0; s < where.size(); ++s) {
    const bool in_w = std::binary_search(w.begin(), w.end(), s);
    const bool in_e = std::binary_search(e.begin(), e.end(), s);
    ASSERT_EQ(in_w, west.contains(where[s])) << s;
    ASSERT_EQ(in_e, east.contains(where[s])) << s;
    if (on_edge[s]) {
      ASSERT_NE(in_w, in_e) << "shared edge, slot " << s;
      (in_w ? west_edge : east_edge)++;
    }
  }
  // Rounding puts the centres on both sides of the computed edge: both rules were used.
  EXPECT_GT(west_edge, 0u);
  EXPECT_GT(east_edge, 0u);
}

}  // namespace
}  // namespace sirena::directory
