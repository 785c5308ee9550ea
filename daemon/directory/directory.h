// The recipient directory: every tenant's citizens and zones, durable in Redis and
// indexed in memory for resolution.
//
// Redis is the source of truth. Keys per tenant (hash tag {t:<tenant>}):
//   recipients  hash  id -> recipient JSON (the validated document)
//   slot        hash  id -> slot (dense uint32 used by the index and by dispatch plans)
//   slot_seq    int   the next slot
//   contacts    hash  slot -> packed Contacts (id, language, phone, tokens) for dispatch
//   index       hash  slot -> packed index record (topics, channels, language, locations,
//                     zones): what the index is made of, without parsing JSON
//   index_block:<n>, index_blocks, index_blocks_built
//               the same records, 1024 slots to a string, kept by the same scripts:
//               what start-up reads to rebuild the index (directory.cc says how)
//   zones       hash  name -> GeoJSON (zones added over the API; file zones are config)
//   changes     stream one entry per write batch (slots), for other daemons to follow
// Every write is one Lua script per batch; the in-memory index is updated from the
// script's reply, so the index never holds what Redis does not.
//
// Ownership: the app owns one Directory; it outlives the API. All calls on the loop.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "daemon/alerts/alert.h"
#include "daemon/config/config.h"
#include "daemon/core/clock.h"
#include "daemon/core/result.h"
#include "daemon/directory/geo_area.h"
#include "daemon/directory/geo_index.h"
#include "daemon/directory/recipient.h"

namespace sirena::store {
class Redis;
}
namespace sirena::metrics {
class Metrics;
}

namespace sirena::directory {

struct ImportOutcome {
  size_t imported = 0;
  size_t created = 0;
  size_t unchanged = 0;  // stored exactly so already: nothing written
};

// The resolution of one alert: who it reaches, deduplicated, grouped.
struct Resolution {
  struct TenantPart {
    std::string tenant;
    std::vector<Slot> slots;
    bool via_grant = false;
  };
  std::vector<TenantPart> parts;  // the alert's tenant first, then granting neighbours
  size_t recipients = 0;
  std::map<std::string, size_t> by_channel;   // "sms", "apns", "fcm"
  std::map<std::string, size_t> by_language;  // recipient language
  std::map<std::string, size_t> by_tenant;
  std::map<std::string, size_t> sms_by_language;  // SMS-reachable recipients per language
  size_t unreachable = 0;  // matched, but no phone and no push token
};

// What dispatch needs to reach one recipient, stored per slot in the `contacts` hash
// (packed: read by the hundred thousand per second, never parsed as JSON).
struct Contacts {
  std::string id;
  std::string language;
  std::string phone;
  std::vector<PushToken> push;
};
std::string pack_contacts(const Recipient& r);
bool unpack_contacts(std::string_view packed, Contacts* out);

class Directory {
 public:
  Directory(store::Redis& redis, const Clock& clock, metrics::Metrics& metrics);
  ~Directory();

  // Builds each tenant's rules and loads zones from config.directory.zones_dir.
  // Called at start-up and on SIGHUP; keeps the indexes. Errors name the file.
  Status configure(const config::Config& cfg);
  // Rebuilds every tenant's index from Redis (zones from the API, then recipients),
  // logging progress. `done` runs once, on the loop.
  void load(std::function<void(Status)> done);
  bool loaded() const { return loaded_; }

  // The rules a tenant's recipients are validated with (for parsing off the loop).
  std::shared_ptr<const RecipientRules> rules(const std::string& tenant) const;

  void put(const std::string& tenant, const Recipient& r, std::function<void(Result<bool /*created*/>)> done);
  void get(const std::string& tenant, const std::string& id,
           std::function<void(Result<std::optional<std::string>>)> done);
  void remove(const std::string& tenant, const std::string& id, std::function<void(Result<bool>)> done);
  // Stores a batch durably (idempotent per id), then indexes it.
  void import(const std::string& tenant, std::shared_ptr<std::vector<Recipient>> batch,
              std::function<void(Result<ImportOutcome>)> done);
  // A burst of imports ended: the index's pending work is done now, not at the next alert.
  void settle(const std::string& tenant) const;

  // Zones: validated GeoJSON, stored in Redis and indexed.
  Result<Area> parse_zone(const std::string& geojson) const;
  void put_zone(const std::string& tenant, const std::string& name, const std::string& geojson, Area area,
                std::function<void(Result<bool>)> done);
  void delete_zone(const std::string& tenant, const std::string& name, std::function<void(Result<bool>)> done);
  std::optional<std::string> zone_geojson(const std::string& tenant, const std::string& name) const;
  std::vector<std::string> zone_names(const std::string& tenant) const;

  // How the geometry of `alert` (its polygons and circles) sits against `tenant`'s own
  // zones, for the preview's warnings: areas in km² (S2 estimates) and whether any zone
  // meets it. No zones or no geometry: zeros.
  struct Footprint {
    double alert_km2 = 0;
    double zones_km2 = 0;  // summed over the zones (overlaps counted twice)
    size_t zones = 0;
    bool meets_a_zone = false;
  };
  // `drawn`: Area::from_alert(alert).
  Footprint footprint(const std::string& tenant, const Area& drawn) const;

  // Who `alert` from `tenant` reaches: interests AND area, deduplicated, plus the
  // recipients of neighbours that granted `tenant` zones. No side effects.
  // `drawn` is Area::from_alert(alert), when the caller has built it already.
  Resolution resolve(const std::string& tenant, const alerts::Alert& alert, const Area& drawn) const;
  Resolution resolve(const std::string& tenant, const alerts::Alert& alert) const {
    return resolve(tenant, alert, Area::from_alert(alert));
  }

  size_t size(const std::string& tenant) const;

 private:
  struct TenantState;
  TenantState* state(const std::string& tenant) const;
  void load_tenant(std::vector<std::string> tenants, size_t next, std::function<void(Status)> done);
  // Reads the tenant's index blocks from `first` on, a part per call, into the index.
  void load_blocks(const std::string& tenant, size_t first, int64_t started_ms, std::function<void(Status)> done);
  void load_block(TenantState& t, std::string_view block);
  void apply(TenantState& t, Slot slot, const Recipient& r);

  store::Redis& redis_;
  const Clock& clock_;
  metrics::Metrics& metrics_;
  std::map<std::string, std::unique_ptr<TenantState>> tenants_;
  config::Config cfg_;
  bool loaded_ = false;
};

}  // namespace sirena::directory
