// The geo index: recipients sorted by S2 leaf cell, and resolution over them.
//
// Memory layout (what resolve touches is contiguous):
//   - locations, main: two arrays sorted by (cell, rank): uint64 leaf cell ids and uint32
//     ranks, 12 bytes per location. A cell's S2 range [range_min, range_max] is one run of
//     the array.
//   - locations, delta: upserts since the last merge, {cell, rank} pairs sorted lazily
//     (before a resolve or a merge). Merged into main when it exceeds 1/16 of main (at
//     least 64k), so a resolve never scans much unsorted data.
//   - recipients by rank: {topics, slot, visit stamp}, 16 bytes. A rank is the index's
//     own number for a recipient: every merge renumbers ranks in the order of the
//     recipients' first location in cell order, so the recipients of an area are nearly
//     consecutive and a resolve reads them almost sequentially instead of one cache miss
//     per hit. The visit stamp deduplicates a recipient met through several locations
//     or zones: it equals the query's epoch once taken.
//   - per slot: {rank, channels, language, location count}, 8 bytes, for the store's
//     lookups and to find the recipient's rank.
//   - zone id -> ranks of the recipients registered to it.
//
// Replacing or removing a recipient does not search for its old locations: its rank is
// marked dead (slot = kNoSlot, topics = 0), which every scan filters out at no extra
// cost, and it gets a fresh rank for its new locations. The dead entries are dropped at
// the next merge, which also runs when the dead locations or ranks exceed the same 1/16
// threshold. This costs nothing per recipient, where a per-recipient list of cells
// would cost 24+ bytes each, and recomputing cells would need the stored coordinates.
//
// Resolution: the area's S2 covering (intersected with `within`'s) gives top cells; each
// is split recursively where the data is (empty runs are skipped at once). A cell inside
// the area (S2Polygon::Contains(S2Cell), conservative) has its run taken whole; a
// disjoint cell is skipped; a cell on the boundary is split until its run is short, and
// then each point is tested exactly, after the cheap interest and stamp checks.
#include "daemon/directory/geo_index.h"

#include <s2/s2cell_id.h>
#include <s2/s2cell_union.h>

#include <algorithm>
#include <cassert>

#include "daemon/directory/geo_area.h"

namespace sirena::directory {

namespace {

constexpr uint32_t kNoRank = UINT32_MAX;
// Merge thresholds: the delta (or the garbage) may grow to 1/16 of main, at least this.
constexpr size_t kMinMergeThreshold = 64 * 1024;
// A boundary cell whose run is at most this long is tested point by point rather than
// split further: a point test costs about as much as classifying one cell.
constexpr size_t kTestRunLength = 16;
// Cells per polygon or circle in the top-level covering. The recursive split refines
// where points are, so the covering only needs to be tight enough to skip empty land.
constexpr int kCoveringCells = 24;
// How far ahead the take loop prefetches the recipient records.
constexpr size_t kPrefetchDistance = 16;

struct Recipient {
  uint64_t topics = 0;
  Slot slot = kNoSlot;  // kNoSlot: dead, waiting for the next merge
  uint32_t stamp = 0;   // == the epoch of the query that took it
};
static_assert(sizeof(Recipient) == 16);

struct SlotInfo {
  uint32_t rank = kNoRank;
  uint8_t channels = 0;
  uint8_t language = 0;
  uint16_t locations = 0;
};
static_assert(sizeof(SlotInfo) == 8);

struct Loc {
  uint64_t cell;
  uint32_t rank;
  bool operator<(const Loc& o) const { return cell != o.cell ? cell < o.cell : rank < o.rank; }
};

size_t merge_threshold(size_t n) {
  return std::max(kMinMergeThreshold, n / 16);
}

// Grows by 1/8 rather than doubling: these arrays are the index's memory.
template <typename T>
void reserve_for_one_more(std::vector<T>& v) {
  if (v.size() == v.capacity()) v.reserve(v.size() + v.size() / 8 + 1024);
}

// Read views over the two sorted location stores, so one walker serves both.
struct MainView {
  const uint64_t* cells;
  const uint32_t* ranks;
  size_t n;
  uint64_t cell(size_t i) const { return cells[i]; }
  uint32_t rank(size_t i) const { return ranks[i]; }
};
struct DeltaView {
  const Loc* locs;
  size_t n;
  uint64_t cell(size_t i) const { return locs[i].cell; }
  uint32_t rank(size_t i) const { return locs[i].rank; }
};

// First index in [lo, hi) whose cell is > key.
template <typename View>
size_t upper(const View& v, size_t lo, size_t hi, uint64_t key) {
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (v.cell(mid) <= key)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

// First index in [lo, hi) whose cell is >= key.
template <typename View>
size_t lower(const View& v, size_t lo, size_t hi, uint64_t key) {
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (v.cell(mid) < key)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

// One query's state while it walks the cells.
struct Filter {
  Recipient* recs;
  uint64_t topics;
  bool everyone;
  uint32_t epoch;
  std::vector<Slot>* out;

  bool wanted(const Recipient& r) const {
    return r.stamp != epoch && (everyone ? r.slot != kNoSlot : (r.topics & topics) != 0);
  }
  void take(Recipient& r) const {
    r.stamp = epoch;
    out->push_back(r.slot);
  }
};

template <typename View>
struct Walker {
  const View& v;
  const Filter& f;
  const Area* area;
  const Area* within;

  // A run whose cells are all inside: only interests and the stamp decide.
  void take_all(size_t lo, size_t hi) const {
    for (size_t i = lo; i < hi; ++i) {
      if (i + kPrefetchDistance < hi) __builtin_prefetch(&f.recs[v.rank(i + kPrefetchDistance)]);
      Recipient& r = f.recs[v.rank(i)];
      if (f.wanted(r)) f.take(r);
    }
  }

  void test_each(size_t lo, size_t hi, bool test_area, bool test_within) const {
    for (size_t i = lo; i < hi; ++i) {
      Recipient& r = f.recs[v.rank(i)];
      if (!f.wanted(r)) continue;  // cheap checks first: most points are then never tested
      const uint64_t leaf = v.cell(i);
      if (test_area && !area->contains_leaf(leaf)) continue;
      if (test_within && !within->contains_leaf(leaf)) continue;
      f.take(r);
    }
  }

  // Classifies against one area; returns false when the cell is disjoint from it, and
  // clears `need` when the cell is inside it (so the children need not ask again).
  static bool still_possible(const Area* a, S2CellId id, bool& need) {
    if (!need) return true;
    switch (a->relate(id.id())) {
      case Area::CellRelation::kDisjoint:
        return false;
      case Area::CellRelation::kInside:
        need = false;
        return true;
      case Area::CellRelation::kPartial:
        return true;
    }
    return true;
  }

  // [lo, hi) is the run of cell `id`.
  void visit(S2CellId id, size_t lo, size_t hi, bool need_area, bool need_within) const {
    if (lo == hi) return;
    if (need_area || need_within) {
      if (hi - lo <= kTestRunLength || id.is_leaf()) return test_each(lo, hi, need_area, need_within);
      if (!still_possible(area, id, need_area) || !still_possible(within, id, need_within)) return;
    }
    if (!need_area && !need_within) return take_all(lo, hi);
    size_t begin = lo;
    for (S2CellId child = id.child_begin(); child != id.child_end(); child = child.next()) {
      const size_t end = child.next() == id.child_end() ? hi : upper(v, begin, hi, child.range_max().id());
      visit(child, begin, end, need_area, need_within);
      begin = end;
    }
  }

  void walk(const std::vector<S2CellId>& top) const {
    for (S2CellId id : top) {
      const size_t lo = lower(v, 0, v.n, id.range_min().id());
      const size_t hi = upper(v, lo, v.n, id.range_max().id());
      visit(id, lo, hi, true, within != nullptr);
    }
  }
};

template <typename View>
size_t run_length(const View& v, const std::vector<S2CellId>& top) {
  size_t n = 0;
  for (S2CellId id : top) n += upper(v, 0, v.n, id.range_max().id()) - lower(v, 0, v.n, id.range_min().id());
  return n;
}

S2CellUnion covering_of(const Area& a) {
  std::vector<uint64_t> ids = a.covering(kCoveringCells);
  std::vector<S2CellId> cells;
  cells.reserve(ids.size());
  for (uint64_t id : ids) cells.emplace_back(id);
  return S2CellUnion::FromNormalized(std::move(cells));
}

}  // namespace

struct GeoIndex::Impl {
  std::vector<SlotInfo> slots;
  mutable std::vector<Recipient> recs;  // mutable: resolve writes the visit stamps
  std::vector<uint64_t> cells;          // main, sorted with `ranks`
  std::vector<uint32_t> ranks;
  mutable std::vector<Loc> delta;  // [0, delta_sorted) sorted; the rest appended since
  mutable size_t delta_sorted = 0;
  std::vector<std::vector<uint32_t>> zones;  // zone id -> ranks (dead ones until a merge)
  size_t live = 0;
  size_t live_locations = 0;
  size_t dead_locations = 0;
  size_t dead_ranks = 0;
  mutable uint32_t epoch = 0;
  bool bulk = false;  // loading: grow arrays by doubling, merge once in finish_bulk()

  const SlotInfo* info(Slot s) const {
    return s < slots.size() && slots[s].rank != kNoRank ? &slots[s] : nullptr;
  }

  void kill(Slot s) {
    if (s >= slots.size() || slots[s].rank == kNoRank) return;
    SlotInfo& si = slots[s];
    recs[si.rank] = Recipient{};
    dead_locations += si.locations;
    live_locations -= si.locations;
    ++dead_ranks;
    --live;
    si = SlotInfo{};
  }

  void add(const IndexEntry& e) {
    if (e.slot == kNoSlot) return;
    kill(e.slot);
    if (e.slot >= slots.size()) slots.resize(size_t{e.slot} + 1);
    const auto rank = static_cast<uint32_t>(recs.size());
    if (!bulk) reserve_for_one_more(recs);
    recs.push_back(Recipient{e.topics, e.slot, 0});
    // The per-slot count is 16 bits; validation allows far fewer locations.
    const size_t n = std::min<size_t>(e.locations.size(), UINT16_MAX);
    for (size_t i = 0; i < n; ++i) {
      if (!bulk) reserve_for_one_more(delta);
      delta.push_back(Loc{leaf_cell_id(e.locations[i]), rank});
    }
    for (uint16_t z : e.zones) {
      if (z >= zones.size()) zones.resize(size_t{z} + 1);
      zones[z].push_back(rank);
    }
    slots[e.slot] = SlotInfo{rank, e.channels, e.language, static_cast<uint16_t>(n)};
    ++live;
    live_locations += n;
  }

  void sort_delta() const {
    if (delta_sorted == delta.size()) return;
    std::sort(delta.begin() + static_cast<ptrdiff_t>(delta_sorted), delta.end());
    std::inplace_merge(delta.begin(), delta.begin() + static_cast<ptrdiff_t>(delta_sorted), delta.end());
    delta_sorted = delta.size();
  }

  void maybe_merge() {
    const size_t t = merge_threshold(cells.size());
    if (delta.size() > t || dead_locations > t || dead_ranks > merge_threshold(recs.size())) merge();
  }

  // Folds the delta into main, drops dead entries and renumbers ranks in cell order.
  void merge() {
    sort_delta();
    std::vector<uint64_t> new_cells;
    std::vector<uint32_t> new_ranks;
    new_cells.reserve(live_locations);
    new_ranks.reserve(live_locations);
    auto alive = [&](uint32_t r) { return recs[r].slot != kNoSlot; };
    size_t i = 0, j = 0;
    while (i < cells.size() || j < delta.size()) {
      const bool from_main = j == delta.size() ||
                             (i < cells.size() && (cells[i] < delta[j].cell ||
                                                   (cells[i] == delta[j].cell && ranks[i] < delta[j].rank)));
      const uint64_t c = from_main ? cells[i] : delta[j].cell;
      const uint32_t r = from_main ? ranks[i++] : delta[j++].rank;
      if (!alive(r)) continue;
      new_cells.push_back(c);
      new_ranks.push_back(r);
    }
    assert(new_cells.size() == live_locations);
    std::vector<uint64_t>().swap(cells);
    std::vector<uint32_t>().swap(ranks);
    std::vector<Loc>().swap(delta);
    delta_sorted = 0;

    // New ranks in order of first appearance; recipients with zones only go last.
    std::vector<uint32_t> remap(recs.size(), kNoRank);
    uint32_t next = 0;
    for (uint32_t& r : new_ranks) {
      if (remap[r] == kNoRank) remap[r] = next++;
      r = remap[r];
    }
    for (size_t r = 0; r < recs.size(); ++r)
      if (alive(static_cast<uint32_t>(r)) && remap[r] == kNoRank) remap[r] = next++;
    assert(next == live);
    std::vector<Recipient> new_recs(next);
    for (size_t r = 0; r < recs.size(); ++r) {
      if (!alive(static_cast<uint32_t>(r))) continue;
      new_recs[remap[r]] = Recipient{recs[r].topics, recs[r].slot, 0};
      slots[recs[r].slot].rank = remap[r];
    }
    for (std::vector<uint32_t>& members : zones) {
      std::erase_if(members, [&](uint32_t r) { return !alive(r); });
      for (uint32_t& r : members) r = remap[r];
      std::sort(members.begin(), members.end());  // sequential reads when resolving
      members.shrink_to_fit();
    }
    recs = std::move(new_recs);
    cells = std::move(new_cells);
    ranks = std::move(new_ranks);
    epoch = 0;
    dead_locations = 0;
    dead_ranks = 0;
  }

  uint32_t next_epoch() const {
    if (++epoch == 0) {  // wrapped: old stamps could collide with the new epochs
      for (Recipient& r : recs) r.stamp = 0;
      epoch = 1;
    }
    return epoch;
  }
};

GeoIndex::GeoIndex() : impl_(std::make_unique<Impl>()) {}
GeoIndex::~GeoIndex() = default;

void GeoIndex::upsert(const IndexEntry& e) {
  impl_->add(e);
  impl_->maybe_merge();
}

void GeoIndex::remove(Slot slot) {
  impl_->kill(slot);
  impl_->maybe_merge();
}

void GeoIndex::bulk_add(const IndexEntry& e) {
  impl_->bulk = true;
  impl_->add(e);
}

void GeoIndex::finish_bulk() {
  impl_->bulk = false;
  impl_->merge();
}

Matches GeoIndex::resolve(const Query& q) const {
  Matches m;
  const Impl& x = *impl_;
  x.sort_delta();
  const Filter f{x.recs.data(), q.topics, q.everyone, x.next_epoch(), &m.slots};

  std::vector<S2CellId> top;
  if (q.area != nullptr && !q.area->empty() && (q.within == nullptr || !q.within->empty())) {
    S2CellUnion cover = covering_of(*q.area);
    if (q.within != nullptr) cover = cover.Intersection(covering_of(*q.within));
    top = cover.cell_ids();
  }
  const MainView main{x.cells.data(), x.ranks.data(), x.cells.size()};
  const DeltaView delta{x.delta.data(), x.delta.size()};

  // An upper bound of the matches, so the output never reallocates while it fills.
  size_t bound = run_length(main, top) + run_length(delta, top);
  for (uint16_t z : q.zones)
    if (z < x.zones.size()) bound += x.zones[z].size();
  m.slots.reserve(std::min(bound, x.live));

  Walker<MainView>{main, f, q.area, q.within}.walk(top);
  Walker<DeltaView>{delta, f, q.area, q.within}.walk(top);
  // Registered zones: the caller chose them (named by the alert, or met by its area and
  // the grant), so their members match without a geometric test.
  for (uint16_t z : q.zones) {
    if (z >= x.zones.size()) continue;
    for (uint32_t r : x.zones[z])
      if (f.wanted(x.recs[r])) f.take(x.recs[r]);
  }
  return m;
}

bool GeoIndex::contains(Slot slot) const {
  return impl_->info(slot) != nullptr;
}

uint8_t GeoIndex::channels(Slot slot) const {
  const SlotInfo* s = impl_->info(slot);
  return s != nullptr ? s->channels : 0;
}

uint8_t GeoIndex::language(Slot slot) const {
  const SlotInfo* s = impl_->info(slot);
  return s != nullptr ? s->language : 0;
}

size_t GeoIndex::size() const {
  return impl_->live;
}

size_t GeoIndex::location_count() const {
  return impl_->live_locations;
}

size_t GeoIndex::location_bytes() const {
  const Impl& x = *impl_;
  return x.cells.capacity() * sizeof(uint64_t) + x.ranks.capacity() * sizeof(uint32_t) +
         x.delta.capacity() * sizeof(Loc);
}

size_t GeoIndex::recipient_bytes() const {
  const Impl& x = *impl_;
  size_t n = x.recs.capacity() * sizeof(Recipient) + x.slots.capacity() * sizeof(SlotInfo) +
             x.zones.capacity() * sizeof(std::vector<uint32_t>);
  for (const auto& z : x.zones) n += z.capacity() * sizeof(uint32_t);
  return n;
}

}  // namespace sirena::directory
