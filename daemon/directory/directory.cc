#include "daemon/directory/directory.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "daemon/core/log.h"
#include "daemon/metrics/metrics.h"
#include "daemon/store/keys.h"
#include "daemon/store/redis.h"

namespace sirena::directory {
namespace {

constexpr size_t kBlocksPerPart = 8;  // blocks read per call at start-up (about 8k recipients)
constexpr size_t kProgressEvery = 1'000'000;

// The index records are also kept, per block of 1024 slots, in one string that start-up
// reads whole: reading the hash costs Redis about 1 us a recipient (HSCAN walks the
// hash table, a cache miss or more a field), so a 10M directory could not load in 10 s.
// The hash stays the source of truth; every script that writes it appends to the block
// in the same script, so both change atomically.
//   index_block:<n>  string  (u32 slot, u32 length, record) each, little-endian, for
//                            slots [n * 1024, n * 1024 + 1024); length 0 = deleted; a later
//                            record of a slot supersedes an earlier one
//   index_blocks     hash    n -> records appended to block n since it was last rewritten:
//                            at 2048 the block is rewritten from the hash (live records
//                            only), so a block holds at most half garbage
//   index_blocks_built       set once every block was written (a directory stored before
//                            blocks existed has its blocks written while start-up reads them)
// Prepended to every script that uses them; KEYS[1] is the tenant's prefix.
constexpr const char* kBlocksLua = R"LUA(
local p = KEYS[1]
local B = 1024
local function rewrite_block(n)
  local slots = {}
  for s = n * B, n * B + B - 1 do slots[#slots + 1] = s end
  local recs, out = redis.call('HMGET', p .. 'index', unpack(slots)), {}
  for i = 1, B do
    if recs[i] then out[#out + 1] = struct.pack('<I4I4', slots[i], #recs[i]) .. recs[i] end
  end
  if #out == 0 then
    redis.call('DEL', p .. 'index_block:' .. n)
    redis.call('HDEL', p .. 'index_blocks', n)
  else
    redis.call('SET', p .. 'index_block:' .. n, table.concat(out))
    redis.call('HSET', p .. 'index_blocks', n, #out)
  end
end
-- pieces: a header (struct.pack('<I4I4', slot, #record)) and its record, per record
local function append_records(n, pieces)
  redis.call('APPEND', p .. 'index_block:' .. n, table.concat(pieces))
  if redis.call('HINCRBY', p .. 'index_blocks', n, #pieces / 2) >= 2 * B then rewrite_block(n) end
end
local function block_of(slot) return math.floor(tonumber(slot) / B) end
)LUA";

// ARGV: (id, json, packed index record, packed contacts) per recipient.
// Returns (slot, created) per recipient: created is 1 for a new recipient, 0 for a
// replaced one, -1 when the stored document, index record and contacts already were
// these (nothing is written: a registry exported and imported again every night costs
// reads, not writes). The slots are looked up with one HMGET and the new ones given with
// one INCRBY and one HSET: a call per recipient cost Redis more than the writes
// themselves. An id twice in one call gets one slot, "created" the first time, and is
// compared with what its earlier line wrote.
constexpr const char* kUpsertScript = R"LUA(
local out, docs, recs, contacts, slots, blocks = {}, {}, {}, {}, {}, {}
local ids, fresh, new_ids, reported, written = {}, {}, {}, {}, {}
for i = 1, #ARGV, 4 do ids[#ids + 1] = ARGV[i] end
local known = redis.call('HMGET', p .. 'slot', unpack(ids))
local has_slot = false
for k, id in ipairs(ids) do
  if known[k] then has_slot = true
  elseif not fresh[id] then fresh[id] = true; new_ids[#new_ids + 1] = id end
end
-- What is stored for a line that may be unchanged: its document first (a changed line
-- costs that one read), then the index record and contacts of those whose document is
-- the same.
local stored = {}  -- k -> {doc, record, contacts}
if has_slot then
  local old_docs = redis.call('HMGET', p .. 'recipients', unpack(ids))
  local same_slots, same_at = {}, {}
  for k = 1, #ids do
    if known[k] and old_docs[k] == ARGV[4 * k - 2] then
      same_slots[#same_slots + 1] = known[k]; same_at[#same_slots] = k
    end
  end
  if #same_slots > 0 then
    local old_recs = redis.call('HMGET', p .. 'index', unpack(same_slots))
    local old_contacts = redis.call('HMGET', p .. 'contacts', unpack(same_slots))
    for j, k in ipairs(same_at) do stored[k] = {old_docs[k], old_recs[j], old_contacts[j]} end
  end
end
if #new_ids > 0 then
  local first = redis.call('INCRBY', p .. 'slot_seq', #new_ids) - #new_ids
  local given = {}
  for k, id in ipairs(new_ids) do
    fresh[id] = tostring(first + k - 1)
    given[#given + 1] = id; given[#given + 1] = fresh[id]
  end
  redis.call('HSET', p .. 'slot', unpack(given))
end
for k, id in ipairs(ids) do
  local i = 4 * k - 3
  local slot, created = known[k], 0
  if not slot then
    slot = fresh[id]
    if not reported[id] then reported[id] = true; created = 1 end
  end
  local was = written[id] or stored[k]
  if was and was[1] == ARGV[i + 1] and was[2] == ARGV[i + 2] and was[3] == ARGV[i + 3] then
    created = -1
  else
    written[id] = {ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]}
    docs[#docs + 1] = id; docs[#docs + 1] = ARGV[i + 1]
    recs[#recs + 1] = slot; recs[#recs + 1] = ARGV[i + 2]
    contacts[#contacts + 1] = slot; contacts[#contacts + 1] = ARGV[i + 3]
    slots[#slots + 1] = slot
    local n = block_of(slot)
    local pieces = blocks[n] or {}
    blocks[n] = pieces
    pieces[#pieces + 1] = struct.pack('<I4I4', slot, #ARGV[i + 2]); pieces[#pieces + 1] = ARGV[i + 2]
  end
  out[#out + 1] = tonumber(slot); out[#out + 1] = created
end
if #docs > 0 then
  redis.call('HSET', p .. 'recipients', unpack(docs))
  redis.call('HSET', p .. 'index', unpack(recs))
  redis.call('HSET', p .. 'contacts', unpack(contacts))
  for n, pieces in pairs(blocks) do append_records(n, pieces) end
  redis.call('XADD', p .. 'changes', 'MAXLEN', '~', '100000', '*', 'op', 'upsert', 'slots', table.concat(slots, ','))
end
return out
)LUA";

// ARGV[1] id. Returns the freed slot, or -1.
constexpr const char* kDeleteScript = R"LUA(
local slot = redis.call('HGET', p .. 'slot', ARGV[1])
if not slot then return -1 end
redis.call('HDEL', p .. 'slot', ARGV[1])
redis.call('HDEL', p .. 'recipients', ARGV[1])
redis.call('HDEL', p .. 'index', slot)
redis.call('HDEL', p .. 'contacts', slot)
append_records(block_of(slot), {struct.pack('<I4I4', slot, 0), ''})
redis.call('XADD', p .. 'changes', 'MAXLEN', '~', '100000', '*', 'op', 'delete', 'slots', slot)
return tonumber(slot)
)LUA";

// ARGV[1] first block, ARGV[2] how many. Returns {more, block...}: more = 1 while blocks
// past these exist. Before index_blocks_built is set, each block is first rewritten from
// the hash (a directory stored before blocks existed); the last call sets it.
constexpr const char* kLoadScript = R"LUA(
local first, count = tonumber(ARGV[1]), tonumber(ARGV[2])
local blocks = math.ceil((tonumber(redis.call('GET', p .. 'slot_seq')) or 0) / B)
local built = redis.call('EXISTS', p .. 'index_blocks_built') == 1
local out = {0}
for n = first, math.min(first + count, blocks) - 1 do
  if not built then rewrite_block(n) end
  out[#out + 1] = redis.call('GET', p .. 'index_block:' .. n) or ''
end
if first + count < blocks then
  out[1] = 1
elseif not built then
  redis.call('SET', p .. 'index_blocks_built', '1')
end
return out
)LUA";

const std::string& upsert_script() {
  static const std::string s = std::string(kBlocksLua) + kUpsertScript;
  return s;
}
const std::string& delete_script() {
  static const std::string s = std::string(kBlocksLua) + kDeleteScript;
  return s;
}
const std::string& load_script() {
  static const std::string s = std::string(kBlocksLua) + kLoadScript;
  return s;
}

// The packed index record: what rebuilding the index needs, without the JSON.
//   u8 version=1 | str id | str language | u8 channels | u8 n topics, str each |
//   u8 n locations, (f64 lat, f64 lon) each | u8 n zones, str each        (str = u8 len + bytes)
struct Packed {
  std::string id;
  std::string language;
  uint8_t channels = 0;
  std::vector<std::string> topics;
  std::vector<LatLon> locations;
  std::vector<std::string> zones;
};

void put_str(std::string& out, const std::string& s) {
  out.push_back(static_cast<char>(std::min<size_t>(s.size(), 255)));
  out.append(s.data(), std::min<size_t>(s.size(), 255));
}

std::string pack(const Recipient& r) {
  std::string out;
  out.push_back(1);
  put_str(out, r.id);
  put_str(out, r.language);
  uint8_t ch = r.phone.empty() ? 0 : kChannelSms;
  for (const auto& p : r.push) ch |= p.platform == Platform::Apns ? kChannelApns : kChannelFcm;
  out.push_back(static_cast<char>(ch));
  out.push_back(static_cast<char>(r.topics.size()));
  for (const auto& t : r.topics) put_str(out, t);
  out.push_back(static_cast<char>(r.locations.size()));
  for (const auto& l : r.locations) {
    char buf[16];
    std::memcpy(buf, &l.lat, 8);
    std::memcpy(buf + 8, &l.lon, 8);
    out.append(buf, 16);
  }
  out.push_back(static_cast<char>(r.zones.size()));
  for (const auto& z : r.zones) put_str(out, z);
  return out;
}

bool unpack(std::string_view in, Packed* p) {
  size_t i = 0;
  auto u8 = [&](uint8_t* v) {
    if (i >= in.size()) return false;
    *v = static_cast<uint8_t>(in[i++]);
    return true;
  };
  auto str = [&](std::string* s) {
    uint8_t n;
    if (!u8(&n) || i + n > in.size()) return false;
    s->assign(in.data() + i, n);
    i += n;
    return true;
  };
  uint8_t version, n;
  if (!u8(&version) || version != 1 || !str(&p->id) || !str(&p->language) || !u8(&p->channels) || !u8(&n))
    return false;
  p->topics.resize(n);
  for (auto& t : p->topics)
    if (!str(&t)) return false;
  if (!u8(&n) || i + size_t{n} * 16 > in.size()) return false;
  p->locations.resize(n);
  for (auto& l : p->locations) {
    std::memcpy(&l.lat, in.data() + i, 8);
    std::memcpy(&l.lon, in.data() + i + 8, 8);
    i += 16;
  }
  if (!u8(&n)) return false;
  p->zones.resize(n);
  for (auto& z : p->zones)
    if (!str(&z)) return false;
  return i == in.size();
}

}  // namespace

std::string pack_contacts(const Recipient& r) {
  std::string out;
  out.push_back(1);
  put_str(out, r.id);
  put_str(out, r.language);
  put_str(out, r.phone);
  out.push_back(static_cast<char>(r.push.size()));
  for (const auto& p : r.push) {
    out.push_back(static_cast<char>(p.platform));
    put_str(out, p.app);
    // FCM tokens can exceed 255 bytes: a u16 length.
    uint16_t n = static_cast<uint16_t>(std::min<size_t>(p.token.size(), 65535));
    out.push_back(static_cast<char>(n & 0xff));
    out.push_back(static_cast<char>(n >> 8));
    out.append(p.token.data(), n);
  }
  return out;
}

bool unpack_contacts(std::string_view in, Contacts* c) {
  size_t i = 0;
  auto u8 = [&](uint8_t* v) {
    if (i >= in.size()) return false;
    *v = static_cast<uint8_t>(in[i++]);
    return true;
  };
  auto str = [&](std::string* s, size_t len) {
    if (i + len > in.size()) return false;
    s->assign(in.data() + i, len);
    i += len;
    return true;
  };
  uint8_t version, n, len;
  if (!u8(&version) || version != 1) return false;
  if (!u8(&len) || !str(&c->id, len) || !u8(&len) || !str(&c->language, len) || !u8(&len) ||
      !str(&c->phone, len) || !u8(&n))
    return false;
  c->push.resize(n);
  for (auto& p : c->push) {
    uint8_t platform, lo, hi;
    if (!u8(&platform) || !u8(&len) || !str(&p.app, len) || !u8(&lo) || !u8(&hi)) return false;
    p.platform = static_cast<Platform>(platform);
    if (!str(&p.token, size_t{lo} | (size_t{hi} << 8))) return false;
  }
  return i == in.size();
}

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

const char* channel_name(uint8_t bit) {
  return bit == kChannelSms ? "sms" : bit == kChannelApns ? "apns" : "fcm";
}

}  // namespace

struct Directory::TenantState {
  std::string id;
  config::Tenant cfg;
  std::shared_ptr<const RecipientRules> rules;
  std::unordered_map<std::string, uint8_t> topic_bits;  // topic -> bit
  GeoIndex index;
  std::vector<std::string> languages;  // id -> tag
  std::unordered_map<std::string, uint8_t> language_ids;
  std::vector<std::string> zone_names;  // id -> name
  std::unordered_map<std::string, uint16_t> zone_ids;
  std::vector<std::optional<Area>> zone_areas;   // by id; nullopt for a name no zone defines (yet)
  std::map<std::string, std::string> api_zones;  // name -> GeoJSON (zones stored over the API)
  std::map<std::string, std::string> file_zones;

  uint8_t language_id(const std::string& tag) {
    auto it = language_ids.find(tag);
    if (it != language_ids.end()) return it->second;
    if (languages.size() >= 255) return 0;  // more than 255 languages: counted with the first
    uint8_t next = static_cast<uint8_t>(languages.size());
    languages.push_back(tag);
    language_ids.emplace(tag, next);
    return next;
  }
  uint16_t zone_id(const std::string& name) {
    auto it = zone_ids.find(name);
    if (it != zone_ids.end()) return it->second;
    uint16_t next = static_cast<uint16_t>(zone_names.size());
    zone_names.push_back(name);
    zone_areas.emplace_back();
    zone_ids.emplace(name, next);
    return next;
  }
  void set_zone(const std::string& name, std::optional<Area> area) {
    zone_areas[zone_id(name)] = std::move(area);
  }

  uint64_t bits(const std::vector<std::string>& topics) const {
    uint64_t b = 0;
    for (const auto& t : topics)
      if (auto it = topic_bits.find(t); it != topic_bits.end()) b |= uint64_t{1} << it->second;
    return b;
  }

  IndexEntry entry(Slot slot, uint8_t channels, const std::string& language,
                   const std::vector<std::string>& topics, const std::vector<LatLon>& locations,
                   const std::vector<std::string>& zones) {
    IndexEntry e;
    e.slot = slot;
    e.channels = channels;
    e.language = language_id(language);
    e.topics = bits(topics);
    e.locations = locations;
    for (const auto& z : zones) e.zones.push_back(zone_id(z));
    return e;
  }

  void rebuild_rules() {
    auto r = std::make_shared<RecipientRules>();
    r->default_region = cfg.directory.default_region;
    r->topics = cap_categories();
    for (const auto& t : cfg.directory.topics)
      if (std::find(r->topics.begin(), r->topics.end(), t) == r->topics.end()) r->topics.push_back(t);
    if (r->topics.size() > 64) r->topics.resize(64);
    topic_bits.clear();
    for (size_t i = 0; i < r->topics.size(); ++i) topic_bits[r->topics[i]] = static_cast<uint8_t>(i);
    for (const auto& [name, _] : file_zones) r->zones.insert(name);
    for (const auto& [name, _] : api_zones) r->zones.insert(name);
    rules = std::move(r);
  }
};

Directory::Directory(store::Redis& redis, const Clock& clock, metrics::Metrics& metrics)
    : redis_(redis), clock_(clock), metrics_(metrics) {}

Directory::~Directory() = default;

Directory::TenantState* Directory::state(const std::string& tenant) const {
  auto it = tenants_.find(tenant);
  return it == tenants_.end() ? nullptr : it->second.get();
}

Status Directory::configure(const config::Config& cfg) {
  cfg_ = cfg;
  ZoneLimits limits;
  limits.max_points = static_cast<size_t>(cfg.directory.max_zone_points);
  for (const auto& [id, tenant] : cfg.tenants) {
    auto& slot = tenants_[id];
    if (!slot) {
      slot = std::make_unique<TenantState>();
      slot->id = id;
    }
    TenantState& t = *slot;
    t.cfg = tenant;
    // File zones: config/zones/<tenant>.geojson, a FeatureCollection named by properties.name.
    for (const auto& [name, _] : t.file_zones)
      if (!t.api_zones.count(name)) t.set_zone(name, std::nullopt);
    t.file_zones.clear();
    std::string path = cfg.directory.zones_dir + "/" + id + ".geojson";
    if (std::filesystem::exists(path)) {
      std::ifstream in(path);
      std::stringstream ss;
      ss << in.rdbuf();
      nlohmann::json fc = nlohmann::json::parse(ss.str(), nullptr, false);
      if (!fc.is_object() || fc.value("type", "") != "FeatureCollection" || !fc["features"].is_array())
        return make_error(ErrorKind::Config, "invalid_zones", path + ": expected a GeoJSON FeatureCollection",
                          path);
      for (size_t i = 0; i < fc["features"].size(); ++i) {
        const auto& f = fc["features"][i];
        std::string where = path + ": /features/" + std::to_string(i);
        if (!f.contains("properties") || !f["properties"].is_object() || !f["properties"].contains("name") ||
            !f["properties"]["name"].is_string())
          return make_error(ErrorKind::Config, "invalid_zones", where + ": a zone needs properties.name",
                            where);
        std::string name = f["properties"]["name"];
        auto area = parse_geojson_area(f.dump(), limits);
        if (!area)
          return make_error(ErrorKind::Config, "invalid_zones",
                            where + " (" + name + "): " + area.error().message, where);
        t.file_zones[name] = f["geometry"].dump();
        if (!t.api_zones.count(name)) t.set_zone(name, std::move(area).value());
      }
    }
    t.rebuild_rules();
  }
  for (const auto& [id, t] : cfg.tenants)
    for (const auto& [vn, values] : t.directory.geocodes)
      for (const auto& [value, zones] : values)
        for (const auto& z : zones)
          if (!tenants_[id]->rules->zones.count(z))
            return make_error(ErrorKind::Config, "invalid_config",
                              cfg.path + ": tenants." + id + ".directory.geocodes." + vn + "." + value +
                                  ": unknown zone \"" + z + "\" (define it in " + cfg.directory.zones_dir +
                                  "/" + id + ".geojson)");
  for (const auto& [id, t] : cfg.tenants)
    for (const auto& g : t.grants)
      for (const auto& z : g.zones)
        if (!tenants_[id]->rules->zones.count(z))
          return make_error(ErrorKind::Config, "invalid_config",
                            cfg.path + ": tenants." + id + ".grants: unknown zone \"" + z + "\"");
  return Ok{};
}

std::shared_ptr<const RecipientRules> Directory::rules(const std::string& tenant) const {
  auto* t = state(tenant);
  return t ? t->rules : nullptr;
}

void Directory::load(std::function<void(Status)> done) {
  std::vector<std::string> ids;
  for (const auto& [id, _] : tenants_) ids.push_back(id);
  load_tenant(std::move(ids), 0, [this, done = std::move(done)](Status s) {
    loaded_ = static_cast<bool>(s);
    done(std::move(s));
  });
}

void Directory::load_tenant(std::vector<std::string> ids, size_t next, std::function<void(Status)> done) {
  if (next == ids.size()) return done(Ok{});
  std::string tenant = ids[next];
  // API zones first, so that recipients' zone references find their areas.
  redis_.command({"HGETALL", store::keys::zones(tenant)},
                 [this, ids = std::move(ids), next, tenant, done = std::move(done)](store::Reply r,
                                                                                    const Error* e) mutable {
                   if (e) return done(*e);
                   TenantState& t = *state(tenant);
                   ZoneLimits limits;
                   limits.max_points = static_cast<size_t>(cfg_.directory.max_zone_points);
                   for (const auto& [name, geojson] : r.pairs()) {
                     auto area = parse_geojson_area(geojson, limits);
                     if (!area) {
                       metrics_.unexpected("stored_zone_invalid").Increment();
                       log::error("stored_zone_invalid",
                                  {{"tenant", tenant}, {"zone", name}, {"error", area.error().message}});
                       continue;
                     }
                     t.api_zones[name] = geojson;
                     t.set_zone(name, std::move(area).value());
                   }
                   t.rebuild_rules();
                   auto next_tenant = [this, ids, next, done](Status s) mutable {
                     if (!s) return done(std::move(s));
                     load_tenant(std::move(ids), next + 1, std::move(done));
                   };
                   load_blocks(tenant, 0, clock_.now_ms(), std::move(next_tenant));
                 });
}

void Directory::load_blocks(const std::string& tenant, size_t first, int64_t started_ms,
                            std::function<void(Status)> done) {
  std::string from = std::to_string(first), count = std::to_string(kBlocksPerPart);
  redis_.eval(
      load_script(), {store::keys::tenant(tenant)}, {from, count},
      [this, tenant, first, started_ms, done = std::move(done)](store::Reply r, const Error* e) mutable {
        if (e) return done(*e);
        if (r.is_error())
          return done(
              make_error(ErrorKind::Unavailable, "storage_error", "index load: " + std::string(r.str())));
        if (!r[0].is_integer())
          return done(make_error(ErrorKind::Internal, "storage_error", "unexpected index load reply"));
        TenantState& t = *state(tenant);
        const bool last = r[0].integer() == 0;
        // The next part is asked for first: Redis reads it while this one is
        // parsed. One request is out at a time, so replies come in order.
        if (!last) load_blocks(tenant, first + kBlocksPerPart, started_ms, std::move(done));
        size_t before = t.index.size();
        for (size_t i = 1; i < r.size(); ++i) load_block(t, r[i].str());
        if (t.index.size() / kProgressEvery != before / kProgressEvery)
          log::info("directory_loading", {{"tenant", tenant}, {"recipients", t.index.size()}});
        if (!last) return;
        t.index.finish_bulk();
        int64_t ms = std::max<int64_t>(1, clock_.now_ms() - started_ms);
        log::info("directory_loaded", {{"tenant", tenant},
                                       {"recipients", t.index.size()},
                                       {"ms", ms},
                                       {"per_second", t.index.size() * 1000 / ms},
                                       {"zones", t.rules->zones.size()}});
        done(Ok{});
      });
}

void Directory::load_block(TenantState& t, std::string_view block) {
  auto u32 = [](const char* p) {
    const auto* b = reinterpret_cast<const unsigned char*>(p);
    return uint32_t{b[0]} | uint32_t{b[1]} << 8 | uint32_t{b[2]} << 16 | uint32_t{b[3]} << 24;
  };
  Packed p;
  size_t i = 0;
  while (i < block.size()) {
    if (block.size() - i < 8 || u32(block.data() + i + 4) > block.size() - i - 8) {
      metrics_.unexpected("index_record_invalid").Increment();
      return;
    }
    Slot slot = u32(block.data() + i);
    std::string_view record = block.substr(i + 8, u32(block.data() + i + 4));
    i += 8 + record.size();
    // Records are in the order they were written: a slot's last one wins.
    if (record.empty()) {
      t.index.remove(slot);
    } else if (unpack(record, &p)) {
      t.index.bulk_add(t.entry(slot, p.channels, p.language, p.topics, p.locations, p.zones));
    } else {
      metrics_.unexpected("index_record_invalid").Increment();
    }
  }
}

void Directory::apply(TenantState& t, Slot slot, const Recipient& r) {
  std::vector<LatLon> locs;
  for (const auto& l : r.locations) locs.push_back({l.lat, l.lon});
  uint8_t ch = r.phone.empty() ? 0 : kChannelSms;
  for (const auto& p : r.push) ch |= p.platform == Platform::Apns ? kChannelApns : kChannelFcm;
  t.index.upsert(t.entry(slot, ch, r.language, r.topics, locs, r.zones));
}

void Directory::import(const std::string& tenant, std::shared_ptr<std::vector<Recipient>> batch,
                       std::function<void(Result<ImportOutcome>)> done) {
  TenantState* t = state(tenant);
  if (!t) return done(make_error(ErrorKind::NotFound, "unknown_tenant", "no such tenant"));
  if (batch->empty()) return done(ImportOutcome{});
  // Chunks of 1000 per script keep each script short (Redis runs one script at a time).
  constexpr size_t kChunk = 1000;
  size_t chunks = (batch->size() + kChunk - 1) / kChunk;
  auto outcome = std::make_shared<ImportOutcome>();
  auto remaining = std::make_shared<size_t>(chunks);
  auto failed = std::make_shared<std::optional<Error>>();
  auto shared_done = std::make_shared<std::function<void(Result<ImportOutcome>)>>(std::move(done));
  std::string pfx = store::keys::tenant(tenant);
  for (size_t c = 0; c < chunks; ++c) {
    size_t begin = c * kChunk, end = std::min(batch->size(), begin + kChunk);
    std::vector<std::string> owned;
    owned.reserve((end - begin) * 4);
    for (size_t i = begin; i < end; ++i) {
      const Recipient& r = (*batch)[i];
      owned.push_back(r.id);
      owned.push_back(recipient_to_json(r).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
      owned.push_back(pack(r));
      owned.push_back(pack_contacts(r));
    }
    std::vector<std::string_view> args(owned.begin(), owned.end());
    redis_.eval(upsert_script(), {pfx}, args,
                [this, tenant, batch, begin, end, outcome, remaining, failed, shared_done](store::Reply r,
                                                                                           const Error* e) {
                  if (e) {
                    if (!*failed) *failed = *e;
                  } else if (!r.is_array() || r.size() != (end - begin) * 2) {
                    if (!*failed)
                      *failed = make_error(ErrorKind::Internal, "storage_error", "unexpected import reply");
                  } else if (TenantState* ts = state(tenant)) {
                    for (size_t i = begin; i < end; ++i) {
                      size_t k = (i - begin) * 2;
                      const int64_t created = r[k + 1].integer();
                      // Unchanged: the index already holds what Redis holds for the slot.
                      if (created >= 0) apply(*ts, static_cast<Slot>(r[k].integer()), (*batch)[i]);
                      outcome->created += created == 1;
                      outcome->unchanged += created == -1;
                      ++outcome->imported;
                    }
                  }
                  if (--*remaining > 0) return;
                  // Chunks already written stay written: an import is idempotent, so the
                  // client retries the whole request.
                  if (*failed) return (*shared_done)(**failed);
                  (*shared_done)(*outcome);
                });
  }
}

void Directory::settle(const std::string& tenant) const {
  if (const TenantState* t = state(tenant)) t->index.settle();
}

void Directory::put(const std::string& tenant, const Recipient& r, std::function<void(Result<bool>)> done) {
  auto batch = std::make_shared<std::vector<Recipient>>(1, r);
  import(tenant, batch, [done = std::move(done)](Result<ImportOutcome> o) {
    if (!o) return done(o.error());
  done(o->created == 1);
});
}  // namespace sirena::directory

void Directory::get(const std::string& tenant, const std::string& id,
                    std::function<void(Result<std::optional<std::string>>)> done) {
  redis_.command({"HGET", store::keys::recipients(tenant), id},
                 [done = std::move(done)](store::Reply r, const Error* e) {
                   if (e) return done(*e);
                   if (r.is_nil()) return done(std::optional<std::string>{});
                   done(std::optional<std::string>{r.string()});
                 });
}

void Directory::remove(const std::string& tenant, const std::string& id,
                       std::function<void(Result<bool>)> done) {
  redis_.eval(delete_script(), {store::keys::tenant(tenant)}, {id},
              [this, tenant, done = std::move(done)](store::Reply r, const Error* e) {
                if (e) return done(*e);
                if (!r.is_integer())
                  return done(make_error(ErrorKind::Internal, "storage_error", "bad reply"));
                if (r.integer() < 0) return done(false);
                if (TenantState* t = state(tenant)) t->index.remove(static_cast<Slot>(r.integer()));
                done(true);
              });
}

Result<Area> Directory::parse_zone(const std::string& geojson) const {
  ZoneLimits limits;
  limits.max_points = static_cast<size_t>(cfg_.directory.max_zone_points);
  return parse_geojson_area(geojson, limits);
}

void Directory::put_zone(const std::string& tenant, const std::string& name, const std::string& geojson,
                         Area area, std::function<void(Result<bool>)> done) {
  redis_.command({"HSET", store::keys::zones(tenant), name, geojson},
                 [this, tenant, name, geojson, area = std::move(area), done = std::move(done)](
                     store::Reply r, const Error* e) {
                   if (e) return done(*e);
                   TenantState* t = state(tenant);
                   if (!t) return done(make_error(ErrorKind::NotFound, "unknown_tenant", "no such tenant"));
                   bool created = !t->api_zones.count(name) && !t->file_zones.count(name);
                   t->api_zones[name] = geojson;
                   t->set_zone(name, area);
                   t->rebuild_rules();
                   (void)r;
                   done(created);
                 });
}

void Directory::delete_zone(const std::string& tenant, const std::string& name,
                            std::function<void(Result<bool>)> done) {
  redis_.command({"HDEL", store::keys::zones(tenant), name},
                 [this, tenant, name, done = std::move(done)](store::Reply r, const Error* e) {
                   if (e) return done(*e);
                   TenantState* t = state(tenant);
                   if (!t) return done(make_error(ErrorKind::NotFound, "unknown_tenant", "no such tenant"));
                   bool existed = r.is_integer() && r.integer() == 1;
                   t->api_zones.erase(name);
                   if (!t->file_zones.count(name)) {
                     t->set_zone(name, std::nullopt);
                   } else {
                     // The file's zone comes back into force.
                     if (auto area = parse_zone(t->file_zones[name]))
                       t->set_zone(name, std::move(area).value());
                   }
                   t->rebuild_rules();
                   done(existed);
                 });
}

std::optional<std::string> Directory::zone_geojson(const std::string& tenant, const std::string& name) const {
  TenantState* t = state(tenant);
  if (!t) return std::nullopt;
  if (auto it = t->api_zones.find(name); it != t->api_zones.end()) return it->second;
  if (auto it = t->file_zones.find(name); it != t->file_zones.end()) return it->second;
  return std::nullopt;
}

std::vector<std::string> Directory::zone_names(const std::string& tenant) const {
  TenantState* t = state(tenant);
  if (!t) return {};
  return std::vector<std::string>(t->rules->zones.begin(), t->rules->zones.end());
}

Directory::Footprint Directory::footprint(const std::string& tenant, const Area& area) const {
  Footprint f;
  const TenantState* t = state(tenant);
  if (!t) return f;
  if (area.empty()) return f;
  f.alert_km2 = area.area_km2();
  for (const auto& zone : t->zone_areas) {
    if (!zone) continue;
    ++f.zones;
    f.zones_km2 += zone->area_km2();
    f.meets_a_zone = f.meets_a_zone || zone->intersects(area);
  }
  return f;
}

size_t Directory::size(const std::string& tenant) const {
  TenantState* t = state(tenant);
  return t ? t->index.size() : 0;
}

Resolution Directory::resolve(const std::string& tenant, const alerts::Alert& alert,
                              const Area& drawn) const {
  Resolution res;
  TenantState* own = state(tenant);
  if (!own) return res;

  // Interests: CAP categories, plus topics the tenant maps from <event>.
  std::vector<std::string> topics;
  bool everyone = false;
  Area area = drawn;
  std::vector<std::string> named_zones;
  for (const auto& info : alert.infos) {
    topics.insert(topics.end(), info.categories.begin(), info.categories.end());
    std::string event = lower(info.event);
    for (const auto& [needle, mapped] : own->cfg.directory.event_topics)
      if (event.find(lower(needle)) != std::string::npos)
        topics.insert(topics.end(), mapped.begin(), mapped.end());
    for (const auto& [sev, urg] : own->cfg.directory.everyone_when)
      if (info.severity == sev && info.urgency == urg) everyone = true;
    for (const auto& a : info.areas)
      for (const auto& g : a.geocodes) {
        auto vn = own->cfg.directory.geocodes.find(g.name);
        if (vn == own->cfg.directory.geocodes.end()) continue;
        auto zs = vn->second.find(g.value);
        if (zs != vn->second.end())
          named_zones.insert(named_zones.end(), zs->second.begin(), zs->second.end());
      }
  }
  for (const auto& z : named_zones) {
    auto it = own->zone_ids.find(z);
    if (it != own->zone_ids.end() && own->zone_areas[it->second]) area.add(*own->zone_areas[it->second]);
  }

  // Counted by language id and channel flags first (a big alert has a million slots),
  // then named.
  auto tally = [&](TenantState& t, Matches&& m, bool via_grant) {
    std::vector<size_t> by_language(t.languages.size() + 1), sms_by_language(t.languages.size() + 1);
    size_t by_flags[8] = {};
    std::vector<size_t> counts;
    t.index.tally(m.slots, counts);
    for (size_t k = 0; k < counts.size(); ++k) {
      if (counts[k] == 0) continue;
      size_t ch = k & 7, lang = t.languages.empty() ? 0 : std::min<size_t>(k >> 3, t.languages.size());
      by_flags[ch] += counts[k];
      by_language[lang] += counts[k];
      if (ch & kChannelSms) sms_by_language[lang] += counts[k];
    }
    for (size_t l = 0; l < by_language.size(); ++l) {
      if (by_language[l] == 0) continue;
      const std::string name = l < t.languages.size() ? t.languages[l] : std::string();
      res.by_language[name] += by_language[l];
      if (sms_by_language[l]) res.sms_by_language[name] += sms_by_language[l];
    }
    for (uint8_t flags = 0; flags < 8; ++flags) {
      if (by_flags[flags] == 0) continue;
      for (uint8_t bit : {kChannelSms, kChannelApns, kChannelFcm})
        if (flags & bit) res.by_channel[channel_name(bit)] += by_flags[flags];
      if (flags == 0) res.unreachable += by_flags[flags];
    }
    res.by_tenant[t.id] += m.slots.size();
    res.recipients += m.slots.size();
    res.parts.push_back(Resolution::TenantPart{t.id, std::move(m.slots), via_grant});
  };

  // A zone's registered recipients match when the alert names the zone or its area
  // intersects the alert's area.
  auto zones_for = [&](TenantState& t, const std::vector<std::string>& allowed) {
    std::vector<uint16_t> ids;
    for (size_t z = 0; z < t.zone_names.size(); ++z) {
      if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), t.zone_names[z]) == allowed.end())
        continue;
      bool named = &t == own &&
                   std::find(named_zones.begin(), named_zones.end(), t.zone_names[z]) != named_zones.end();
      if (named || (t.zone_areas[z] && !area.empty() && t.zone_areas[z]->intersects(area)))
        ids.push_back(static_cast<uint16_t>(z));
    }
    return ids;
  };

  if (area.empty() && named_zones.empty()) return res;
  // Nobody to find (no citizens here, none granted by a neighbour): skip the geometry.
  bool anyone = own->index.size() > 0;
  for (const auto& [id, other] : tenants_)
    for (const auto& g : other->cfg.grants)
      if (id != tenant && g.to_tenant == tenant && other->index.size() > 0) anyone = true;
  if (!anyone) return res;
  Query q;
  q.area = &area;
  q.topics = own->bits(topics);
  q.everyone = everyone;
  q.zones = zones_for(*own, {});
  tally(*own, own->index.resolve(q), false);

  // Neighbours that granted this tenant zones: only their recipients inside those zones.
  for (const auto& [id, other] : tenants_) {
    if (id == tenant) continue;
    for (const auto& grant : other->cfg.grants) {
      if (grant.to_tenant != tenant) continue;
      Area within;
      for (const auto& z : grant.zones) {
        auto it = other->zone_ids.find(z);
        if (it != other->zone_ids.end() && other->zone_areas[it->second])
          within.add(*other->zone_areas[it->second]);
      }
      if (within.empty() || area.empty() || !within.intersects(area)) continue;
      Query g;
      g.area = &area;
      g.within = &within;
      g.topics = other->bits(topics);
      g.everyone = everyone;
      g.zones = zones_for(*other, grant.zones);
      tally(*other, other->index.resolve(g), true);
    }
  }
  return res;
}

}  // namespace sirena::directory
