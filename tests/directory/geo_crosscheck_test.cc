// The brute-force cross-check (issue 3): over a random 200k-recipient directory, the
// resolver's set equals an exact scan that asks S2 about every location, for hundreds of
// random polygons (tiny to province-sized, both orientations), circles, unions and
// grants, with the directory in every state: bulk-loaded, with a pending delta, after
// merges, with replaced and removed recipients.
//
// The scan builds its own S2 shapes, independently of geo_area.cc, and applies the
// documented rule: a location (and a circle's centre) is the centre of its S2 leaf cell
// (about 1 cm). With raw coordinates instead, a few of the ~100M decisions per run fall
// within a centimetre of an edge in the dense towns and may go either way.
#include <gtest/gtest.h>
#include <s2/s1angle.h>
#include <s2/s2cap.h>
#include <s2/s2cell_id.h>
#include <s2/s2error.h>
#include <s2/s2latlng.h>
#include <s2/s2latlng_rect.h>
#include <s2/s2loop.h>
#include <s2/s2polygon.h>

#include <iomanip>
#include <memory>
#include <optional>
#include <random>

#include "daemon/directory/geo_area.h"
#include "daemon/directory/geo_index.h"
#include "tests/directory/geo_test_util.h"

namespace sirena::directory {
namespace {

// The province of Modena, roughly, and its towns.
constexpr double kLat0 = 44.10, kLat1 = 44.95, kLon0 = 10.60, kLon1 = 11.30;
constexpr LatLon kTowns[] = {{44.737, 10.924}, {44.727, 10.999}, {44.647, 10.925}, {44.784, 10.883}};
constexpr int kTopics = 16;
constexpr uint16_t kZones = 12;

S2Point leaf_centre(LatLon p) {
  return S2CellId(S2LatLng::FromDegrees(p.lat, p.lon)).ToPoint();
}

// One shape as the alert gives it (for the index) and as the scan builds it (for S2).
struct Shape {
  alerts::Area cap;
  std::vector<std::unique_ptr<S2Polygon>> polygons;
  std::vector<S2Cap> caps;
  std::vector<S2LatLngRect> bounds;

  bool contains(LatLon p) const {
    const S2LatLng ll = S2LatLng::FromDegrees(p.lat, p.lon);
    const S2Point pt = leaf_centre(p);
    for (size_t i = 0; i < polygons.size(); ++i)
      if (bounds[i].Contains(ll) && polygons[i]->Contains(pt)) return true;
    for (const S2Cap& c : caps)
      if (c.Contains(pt)) return true;
    return false;
  }
};

class Generator {
 public:
  explicit Generator(uint32_t seed) : rng_(seed) {}

  double uniform(double a, double b) { return std::uniform_real_distribution<double>(a, b)(rng_); }
  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
  bool coin(double p) { return uniform(0, 1) < p; }

  LatLon location() {
    if (coin(0.6)) {  // dense around a town, sigma about 1.5 km
      const LatLon t = kTowns[pick(std::size(kTowns))];
      std::normal_distribution<double> d(0, 0.015);
      return {t.lat + d(rng_), t.lon + d(rng_)};
    }
    return {uniform(kLat0, kLat1), uniform(kLon0, kLon1)};
  }

  IndexEntry recipient(Slot slot) {
    IndexEntry e;
    e.slot = slot;
    for (int t = 0; t < kTopics; ++t)
      if (coin(0.25)) e.topics |= uint64_t{1} << t;
    e.channels = static_cast<uint8_t>(1 + pick(7));
    e.language = static_cast<uint8_t>(pick(3));
    const int locations = coin(0.05) ? 0 : 1 + pick(2);
    for (int i = 0; i < locations; ++i) e.locations.push_back(location());
    if (locations == 0 || coin(0.1)) e.zones.push_back(static_cast<uint16_t>(pick(kZones)));
    return e;
  }

  // A random star-shaped polygon, radius log-uniform from 20 m to 40 km, given clockwise
  // half of the time. Geodesic edges can still cross where the lon/lat picture does not,
  // so a polygon S2 finds invalid is drawn again.
  void add_polygon(Shape& s) {
    for (;;) {
      const LatLon c = location();
      const double radius_deg = std::exp(uniform(std::log(0.0002), std::log(0.36)));
      const int n = 3 + pick(40);
      std::vector<double> angles;
      for (int i = 0; i < n; ++i) angles.push_back(uniform(0, 2 * M_PI));
      std::sort(angles.begin(), angles.end());
      std::vector<LatLon> corners;
      for (double a : angles) {
        const double r = radius_deg * uniform(0.3, 1.0);
        corners.push_back({c.lat + r * std::sin(a), c.lon + r * std::cos(a) / std::cos(c.lat * M_PI / 180)});
      }
      if (coin(0.5)) std::reverse(corners.begin(), corners.end());

      std::vector<S2Point> v;
      for (const LatLon& p : corners) v.push_back(S2LatLng::FromDegrees(p.lat, p.lon).ToPoint());
      auto loop = std::make_unique<S2Loop>(v, S2Debug::DISABLE);
      if (S2Error e; loop->FindValidationError(&e)) continue;
      loop->Normalize();
      s.cap.polygons.push_back(testing::cap_ring(corners));
      s.polygons.push_back(std::make_unique<S2Polygon>(std::move(loop)));
      s.bounds.push_back(s.polygons.back()->GetRectBound());
      return;
    }
  }

  void add_circle(Shape& s) {
    const LatLon c = location();
    const double km = std::exp(uniform(std::log(0.05), std::log(30.0)));
    s.cap.circles.push_back({{c.lat, c.lon}, km});
    s.caps.emplace_back(leaf_centre(c), S1Angle::Radians(km / 6371.01));
  }

  Shape shape() {
    Shape s;
    const int parts = coin(0.2) ? 2 + pick(2) : 1;  // sometimes a union of several
    for (int i = 0; i < parts; ++i) coin(0.75) ? add_polygon(s) : add_circle(s);
    return s;
  }

 private:
  std::mt19937_64 rng_;
};

// The directory as plain data, next to the index under test.
struct Model {
  std::vector<std::optional<IndexEntry>> entries;

  std::vector<Slot> scan(const Shape& area, const Shape* within, uint64_t topics, bool everyone,
                         const std::vector<uint16_t>& zones) const {
    std::vector<Slot> out;
    for (const auto& e : entries) {
      if (!e || !(everyone || (e->topics & topics) != 0)) continue;
      bool hit = false;
      for (const LatLon& p : e->locations)
        hit = hit || (area.contains(p) && (within == nullptr || within->contains(p)));
      for (uint16_t z : e->zones) hit = hit || std::find(zones.begin(), zones.end(), z) != zones.end();
      if (hit) out.push_back(e->slot);
    }
    return out;
  }
};

class CrossCheck : public ::testing::Test {
 protected:
  // Runs `count` random queries and compares; returns the total number of matches so the
  // test can show it was not vacuous.
  size_t check(int count) {
    size_t total = 0;
    for (int i = 0; i < count; ++i) {
      const Shape shape = gen_.shape();
      const Area area = Area::from_cap({shape.cap});
      std::optional<Shape> grant;
      std::optional<Area> within;
      if (gen_.coin(0.15)) {
        grant = gen_.shape();
        within = Area::from_cap({grant->cap});
      }
      Query q;
      q.area = &area;
      q.within = within ? &*within : nullptr;
      q.everyone = gen_.coin(0.2);
      q.topics = (uint64_t{1} << gen_.pick(kTopics)) | (uint64_t{1} << gen_.pick(kTopics));
      if (gen_.coin(0.3)) q.zones = {static_cast<uint16_t>(gen_.pick(kZones))};
      const std::vector<Slot> got = testing::sorted(index_.resolve(q));
      const std::vector<Slot> want =
          model_.scan(shape, grant ? &*grant : nullptr, q.topics, q.everyone, q.zones);
      EXPECT_EQ(got.size(), want.size()) << "query " << i;
      if (got != want) {
        ADD_FAILURE() << "query " << i << ": resolver and S2 scan differ";
        std::vector<Slot> diff;
        std::set_symmetric_difference(got.begin(), got.end(), want.begin(), want.end(),
                                      std::back_inserter(diff));
        for (Slot d : diff) {
          for (const LatLon& p : model_.entries[d]->locations) {
            ADD_FAILURE() << std::setprecision(17) << "slot " << d << " at " << p.lat << "," << p.lon
                          << ": resolver says " << std::count(got.begin(), got.end(), d) << "; scan: area "
                          << shape.contains(p) << ", grant " << (grant ? grant->contains(p) : -1)
                          << "; Area: " << area.contains(p) << ", " << (within ? within->contains(p) : -1);
          }
        }
        return total;
      }
      total += got.size();
    }
    return total;
  }

  void upsert(Slot slot) {
    IndexEntry e = gen_.recipient(slot);
    index_.upsert(e);
    if (slot >= model_.entries.size()) model_.entries.resize(slot + 1);
    model_.entries[slot] = std::move(e);
  }

  Generator gen_{20240611};
  GeoIndex index_;
  Model model_;
};

TEST_F(CrossCheck, RandomAreasOverA200kDirectory) {
  constexpr Slot kInitial = 150000;
  model_.entries.resize(kInitial);
  for (Slot s = 0; s < kInitial; ++s) {
    IndexEntry e = gen_.recipient(s);
    index_.bulk_add(e);
    model_.entries[s] = std::move(e);
  }
  index_.finish_bulk();
  EXPECT_GT(check(150), 50000u);

  // 50k new recipients and 30k replaced (at least one merge, then a pending delta)...
  for (Slot s = kInitial; s < kInitial + 50000; ++s) upsert(s);
  for (int i = 0; i < 30000; ++i) upsert(static_cast<Slot>(gen_.pick(kInitial + 50000)));
  // ...and 5k removed.
  for (int i = 0; i < 5000; ++i) {
    const auto s = static_cast<Slot>(gen_.pick(kInitial + 50000));
    index_.remove(s);
    model_.entries[s].reset();
  }
  size_t live = 0, locations = 0;
  for (const auto& e : model_.entries)
    if (e) ++live, locations += e->locations.size();
  EXPECT_EQ(index_.size(), live);
  EXPECT_EQ(index_.location_count(), locations);
  EXPECT_GT(check(150), 50000u);

  // Enough churn for the garbage (dead locations) alone to force merges.
  for (int i = 0; i < 120000; ++i) upsert(static_cast<Slot>(gen_.pick(kInitial + 50000)));
  EXPECT_GT(check(60), 20000u);
}

}  // namespace
}  // namespace sirena::directory
