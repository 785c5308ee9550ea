// The in-memory geo index of one tenant's recipients, and resolution over it.
//
// Recipients are identified by a dense `Slot` (uint32) assigned by the store. The index
// keeps, per slot, an interest bitset, channel flags and a language id; per location,
// an S2 leaf cell id in one array sorted by cell id (plus a small unsorted delta that
// is merged in when it grows), so an area's S2 covering becomes ranges of that array:
// interior cells are taken whole, boundary cells are tested point by point.
//
// Not thread-safe: one loop owns an index. Memory is reported by memory_bytes().
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sirena::directory {

class Area;  // geo_area.h

using Slot = uint32_t;
inline constexpr Slot kNoSlot = UINT32_MAX;

// Channel flags.
inline constexpr uint8_t kChannelSms = 1;
inline constexpr uint8_t kChannelApns = 2;
inline constexpr uint8_t kChannelFcm = 4;

struct LatLon {
  double lat = 0;
  double lon = 0;
};

// What the index needs of one recipient.
struct IndexEntry {
  Slot slot = kNoSlot;
  uint64_t topics = 0;   // bit i = topic i of the tenant's topic table
  uint8_t channels = 0;  // kChannel* flags
  uint8_t language = 0;  // id from the tenant's language table (the store interns them)
  std::vector<LatLon> locations;
  std::vector<uint16_t> zones;  // registered zones, as ids of the tenant's zone table
};

struct Query {
  const Area* area = nullptr;    // where the alert applies (required)
  const Area* within = nullptr;  // optional: also inside this (a neighbour's granted zones)
  uint64_t topics = 0;           // match recipients with any of these topics...
  bool everyone = false;         // ...or everyone in the area (e.g. Extreme + Immediate)
  // Zones whose registered recipients match as well: the zones the alert names (geocodes)
  // or whose polygon intersects the area (and `within`, when set). The caller decides.
  std::vector<uint16_t> zones;
};

// Dedup'd matches of one query, in no particular order.
struct Matches {
  std::vector<Slot> slots;
  // The work it took, for logs and the benchmark: S2 cells classified against the
  // area, and locations tested exactly (boundary cells).
  size_t cells_classified = 0;
  size_t points_tested = 0;
};

class GeoIndex {
 public:
  GeoIndex();
  ~GeoIndex();
  GeoIndex(const GeoIndex&) = delete;
  GeoIndex& operator=(const GeoIndex&) = delete;

  // Inserts or replaces the recipient in `e.slot`.
  void upsert(const IndexEntry& e);
  void remove(Slot slot);
  // Bulk load for start-up: entries may come in any order, and remove() may come between
  // them; call finish_bulk() once after.
  void bulk_add(const IndexEntry& e);
  void finish_bulk();

  Matches resolve(const Query& q) const;
  // Sorts the locations upserted since the last merge, which the next resolve() would
  // otherwise sort first: called when a burst of writes (an import request) ends, so
  // that the next alert does not pay for it (about 3 ms after a 1M import).
  void settle() const;

  bool contains(Slot slot) const;
  uint8_t channels(Slot slot) const;
  uint8_t language(Slot slot) const;
  // counts[language << 3 | channels] = how many of `slots` have that language id and those
  // channel flags (256 x 8 entries): a resolution's tally, its random reads overlapped.
  void tally(const std::vector<Slot>& slots, std::vector<size_t>& counts) const;
  size_t size() const;            // live recipients
  size_t location_count() const;  // live locations
  // Bytes held by the location arrays, and by the per-recipient arrays.
  size_t location_bytes() const;
  size_t recipient_bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sirena::directory
