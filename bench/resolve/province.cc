#include "bench/resolve/province.h"

#include <cmath>
#include <cstdio>

namespace sirena::bench {

namespace {

using directory::LatLon;

struct Town {
  const char* name;
  double lat, lon;
  double population;
};

// ISTAT populations, rounded; town centres.
constexpr Town kTowns[] = {
    {"Modena", 44.647, 10.925, 185000},
    {"Carpi", 44.783, 10.885, 72000},
    {"Sassuolo", 44.543, 10.784, 41000},
    {"Formigine", 44.573, 10.846, 34000},
    {"Castelfranco Emilia", 44.596, 11.052, 33000},
    {"Vignola", 44.481, 11.011, 25000},
    {"Mirandola", 44.887, 11.066, 24000},
    {"Fiorano Modenese", 44.539, 10.817, 17000},
    {"Maranello", 44.526, 10.866, 17000},
    {"Pavullo nel Frignano", 44.334, 10.835, 17000},
    {"Nonantola", 44.678, 11.042, 16000},
    {"Castelnuovo Rangone", 44.551, 10.937, 15000},
    {"Soliera", 44.737, 10.924, 15000},
    {"Finale Emilia", 44.834, 11.294, 15000},
    {"Spilamberto", 44.532, 11.017, 13000},
    {"San Felice sul Panaro", 44.839, 11.140, 11000},
    {"Novi di Modena", 44.892, 10.902, 10000},
    {"Bomporto", 44.730, 11.038, 10000},
    {"Campogalliano", 44.690, 10.843, 9000},
    {"Savignano sul Panaro", 44.480, 11.035, 9000},
    {"Concordia sulla Secchia", 44.913, 10.983, 8000},
    {"Serramazzoni", 44.424, 10.790, 8000},
    {"Cavezzo", 44.837, 11.030, 7000},
    {"Medolla", 44.848, 11.071, 6000},
    {"Ravarino", 44.723, 11.097, 6000},
    {"San Prospero", 44.789, 11.022, 6000},
    {"Marano sul Panaro", 44.456, 10.969, 5000},
    {"Zocca", 44.346, 10.994, 4500},
    {"Bastiglia", 44.727, 10.999, 4000},
    {"Guiglia", 44.424, 10.962, 4000},
    {"Prignano sulla Secchia", 44.437, 10.692, 3700},
    {"San Possidonio", 44.893, 10.997, 3500},
    {"Montese", 44.269, 10.941, 3300},
    {"Camposanto", 44.789, 11.140, 3000},
    {"Fanano", 44.208, 10.795, 3000},
    {"Lama Mocogno", 44.306, 10.731, 2700},
    {"Sestola", 44.229, 10.773, 2500},
    {"Pievepelago", 44.204, 10.617, 2300},
    {"Montefiorino", 44.354, 10.625, 2200},
    {"Palagano", 44.322, 10.646, 2200},
    {"Frassinoro", 44.296, 10.573, 1900},
    {"Polinago", 44.345, 10.723, 1600},
    {"Fiumalbo", 44.178, 10.647, 1300},
    {"Montecreto", 44.247, 10.718, 950},
    {"Riolunato", 44.229, 10.653, 700},
};

// The province's extent, for the recipients who live in the countryside.
constexpr double kLatMin = 44.10, kLatMax = 44.95, kLonMin = 10.60, kLonMax = 11.30;
constexpr double kInTowns = 0.88;
constexpr double kWithWorkPlace = 0.40;
constexpr double kKmPerDegree = 111.2;

// CAP 1.2 §3.2.2 categories, then the tenant's own topics, with the share of citizens
// who follow each (weather and the local flood topic are the popular ones).
struct Topic {
  const char* name;
  double share;
};
constexpr Topic kTopics[kCapTopics + kTenantTopics] = {
    {"Geo", 0.30},           {"Met", 0.55},     {"Safety", 0.40},  {"Security", 0.10},
    {"Rescue", 0.10},        {"Fire", 0.20},    {"Health", 0.25},  {"Env", 0.20},
    {"Transport", 0.30},     {"Infra", 0.15},   {"CBRNE", 0.05},   {"Other", 0.05},
    {"secchia-flood", 0.35}, {"schools", 0.20}, {"traffic", 0.25}, {"events", 0.10},
};

std::discrete_distribution<int> town_choice(bool work) {
  std::vector<double> w;
  for (const Town& t : kTowns)
    // Jobs concentrate in the big towns more than homes do.
    w.push_back(work ? std::pow(t.population, 1.3) : t.population);
  return std::discrete_distribution<int>(w.begin(), w.end());
}

}  // namespace

const char* topic_name(int bit) {
  return kTopics[bit].name;
}

Province::Province(uint64_t seed) : rng_(seed), town_(town_choice(false)), work_town_(town_choice(true)) {}

namespace {

LatLon around(std::mt19937_64& rng, const Town& t) {
  // About 0.25 km of spread per sqrt(1000 inhabitants): 3.4 km for Modena, 0.5 km for
  // Bastiglia.
  const double sigma_km = 0.25 * std::sqrt(t.population / 1000.0);
  std::normal_distribution<double> d(0, sigma_km / kKmPerDegree);
  return {t.lat + d(rng), t.lon + d(rng) / std::cos(t.lat * M_PI / 180)};
}

}  // namespace

LatLon Province::home() {
  std::uniform_real_distribution<double> u(0, 1);
  if (u(rng_) < kInTowns) return around(rng_, kTowns[town_(rng_)]);
  return {kLatMin + u(rng_) * (kLatMax - kLatMin), kLonMin + u(rng_) * (kLonMax - kLonMin)};
}

LatLon Province::work() {
  return around(rng_, kTowns[work_town_(rng_)]);
}

void Province::recipient(directory::Slot slot, directory::IndexEntry& e) {
  std::uniform_real_distribution<double> u(0, 1);
  e.slot = slot;
  e.topics = 0;
  for (int t = 0; t < kCapTopics + kTenantTopics; ++t)
    if (u(rng_) < kTopics[t].share) e.topics |= uint64_t{1} << t;
  const double c = u(rng_);  // SMS only, app only, or both
  e.channels =
      c < 0.3   ? directory::kChannelSms
      : c < 0.6 ? (u(rng_) < 0.5 ? directory::kChannelApns : directory::kChannelFcm)
                : directory::kChannelSms | (u(rng_) < 0.5 ? directory::kChannelApns : directory::kChannelFcm);
  const double l = u(rng_);
  e.language = l < 0.90 ? 0 : l < 0.96 ? 1 : 2;  // it, en, other
  e.locations.clear();
  e.locations.push_back(home());
  if (u(rng_) < kWithWorkPlace) e.locations.push_back(work());
  e.zones.clear();
}

Ring blob(LatLon centre, double scale_km, double stretch, double tilt_deg, int vertices, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> wobble(0.8, 1.2);
  Ring r;
  const double tilt = tilt_deg * M_PI / 180;
  const double lon_scale = 1 / std::cos(centre.lat * M_PI / 180);
  for (int i = 0; i < vertices; ++i) {
    const double a = 2 * M_PI * i / vertices;
    const double rad = scale_km / 2 * (1 + 0.15 * std::sin(3 * a)) * wobble(rng) / kKmPerDegree;
    const double x = rad * std::cos(a), y = rad * std::sin(a) / stretch;  // x east, y north
    const double east = x * std::cos(tilt) - y * std::sin(tilt);
    const double north = x * std::sin(tilt) + y * std::cos(tilt);
    r.points.push_back({centre.lat + north, centre.lon + east * lon_scale});
  }
  r.points.push_back(r.points.front());
  r.lat_min = r.lat_max = centre.lat;
  r.lon_min = r.lon_max = centre.lon;
  for (const LatLon& p : r.points) {
    r.lat_min = std::min(r.lat_min, p.lat);
    r.lat_max = std::max(r.lat_max, p.lat);
    r.lon_min = std::min(r.lon_min, p.lon);
    r.lon_max = std::max(r.lon_max, p.lon);
  }
  return r;
}

std::string Ring::wkt() const {
  std::string s = "POLYGON((";
  char buf[64];
  for (size_t i = 0; i < points.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%s%.9f %.9f", i ? "," : "", points[i].lon, points[i].lat);
    s += buf;
  }
  return s + "))";
}

}  // namespace sirena::bench
