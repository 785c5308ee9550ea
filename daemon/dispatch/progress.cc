#include "daemon/dispatch/progress.h"

#include <algorithm>
#include <charconv>
#include <memory>

#include "daemon/directory/directory.h"
#include "daemon/dispatch/scripts.h"
#include "daemon/store/keys.h"
#include "daemon/store/redis.h"

namespace sirena::dispatch {
namespace {

// Delivery fields a deliveries page reads at most while looking for the state asked for.
constexpr size_t kScanBudget = 20000;

// A decimal count as Redis keeps it; anything else (a hand-edited hash) counts 0.
int64_t count_of(std::string_view v) {
  int64_t n = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  return ec == std::errc() && end == v.data() + v.size() ? n : 0;
}

int64_t* field_of(ChannelProgress& c, std::string_view state) {
  if (state == "accepted") return &c.accepted;
  if (state == "delivered") return &c.delivered;
  if (state == "failed") return &c.failed;
  if (state == "expired") return &c.expired;
  if (state == "cancelled") return &c.cancelled;
  if (state == "skipped") return &c.skipped;
  return nullptr;
}

Error storage_error(const std::string& what) {
  return make_error(ErrorKind::Internal, "storage_error", what);
}

}  // namespace

void ProgressReader::progress(const std::string& tenant, const std::string& alert_id,
                              std::vector<Channel> channels, std::function<void(Result<Progress>)> done) {
  auto plan = std::make_shared<std::vector<std::pair<std::string, std::string>>>();
  redis_.command({"HGETALL", store::keys::plan(tenant, alert_id)}, [plan](store::Reply r, const Error* e) {
    if (!e) *plan = r.pairs();
  });
  redis_.command(
      {"HGETALL", store::keys::progress(tenant, alert_id)},
      [plan, channels = std::move(channels), done = std::move(done)](store::Reply r, const Error* e) {
        if (e) return done(*e);
        Progress out;
        for (Channel ch : channels) out[to_string(ch)] = {};
        for (const auto& [k, v] : *plan)
          if (k.rfind("planned:", 0) == 0)
            if (auto it = out.find(k.substr(8)); it != out.end()) it->second.planned = count_of(v);
        for (const auto& [k, v] : r.pairs()) {
          auto colon = k.find(':');
          if (colon == std::string::npos) continue;
          auto it = out.find(k.substr(0, colon));
          if (it == out.end()) continue;
          if (int64_t* n = field_of(it->second, std::string_view(k).substr(colon + 1))) *n += count_of(v);
        }
        for (auto& [ch, c] : out) {
          int64_t final = c.accepted + c.delivered + c.failed + c.expired + c.cancelled + c.skipped;
          c.pending = std::max<int64_t>(0, c.planned - final);
        }
        done(std::move(out));
      });
}

void ProgressReader::deliveries(const std::string& tenant, const std::string& alert_id,
                                const std::string& state, const std::string& cursor, size_t limit,
                                std::function<void(Result<DeliveryPage>)> done) {
  bool with_accepted = state.empty() || state == "accepted";
  auto bad_cursor = [&] {
    done(make_error(ErrorKind::BadRequest, "invalid_parameter", "cursor is not one this listing gave",
                    "cursor"));
  };
  if (cursor.rfind("a", 0) == 0) {
    int64_t batch = 0, skip = 0;
    auto dot = cursor.find('.');
    const char* end = cursor.data() + cursor.size();
    if (!with_accepted || dot == std::string::npos ||
        std::from_chars(cursor.data() + 1, cursor.data() + dot, batch).ec != std::errc() ||
        std::from_chars(cursor.data() + dot + 1, end, skip).ec != std::errc() || batch < 0 || skip < 0)
      return bad_cursor();
    return accepted_page(tenant, alert_id, batch, skip, limit, {}, std::move(done));
  }
  if (!std::all_of(cursor.begin(), cursor.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return bad_cursor();
  scan(tenant, alert_id, state, cursor.empty() ? "0" : cursor, limit, {}, 0, std::move(done));
}

// A step of the first phase: HSCAN of deliv:<A> from `cursor`, gathering the deliveries
// in `state` until `limit` are found, the hash ends (then the first-attempt records
// follow, when `state` allows accepted ones), or kScanBudget fields were read for this
// page (it may then hold fewer than `limit`).
void ProgressReader::scan(const std::string& tenant, const std::string& alert_id, const std::string& state,
                          const std::string& cursor, size_t limit, Pairs pairs, size_t scanned,
                          PageDone done) {
  std::string count = std::to_string(limit);
  redis_.command({"HSCAN", store::keys::deliv(tenant, alert_id), cursor, "COUNT", count},
                 [this, tenant, alert_id, state, limit, scanned, pairs = std::move(pairs),
                  done = std::move(done)](store::Reply r, const Error* e) mutable {
                   if (e) return done(*e);
                   if (!r.is_array() || r.size() != 2) return done(storage_error("unexpected HSCAN reply"));
                   std::string next = r[0].string();
                   for (auto& p : r[1].pairs()) {
                     ++scanned;
                     if (state.empty() || p.second.compare(0, state.size() + 1, state + "|") == 0)
                       pairs.push_back(std::move(p));
                   }
                   bool with_accepted = state.empty() || state == "accepted";
                   if (next == "0" && with_accepted && pairs.size() < limit) {
                     // Counted before the call: its by-value `pairs` may be moved from first.
                     const size_t rest = limit - pairs.size();
                     return accepted_page(tenant, alert_id, 0, 0, rest, std::move(pairs), std::move(done));
                   }
                   if (next == "0")
                     return page(std::move(pairs),
                                 with_accepted ? std::optional<std::string>("a0.0") : std::nullopt,
                                 std::move(done));
                   if (pairs.size() >= limit || scanned >= std::max<size_t>(kScanBudget, 10 * limit))
                     return page(std::move(pairs), next, std::move(done));
                   scan(tenant, alert_id, state, next, limit, std::move(pairs), scanned, std::move(done));
                 });
}

// Up to `limit` messages of the first-attempt records from batch `batch` (its first
// `skip` messages already listed), after `pairs`; then page().
void ProgressReader::accepted_page(const std::string& tenant, const std::string& alert_id, int64_t batch,
                                   int64_t skip, size_t limit, Pairs pairs, PageDone done) {
  std::string args[] = {alert_id, std::to_string(batch), std::to_string(skip), std::to_string(limit)};
  redis_.eval(
      scripts::accepted_page(), {store::keys::tenant(tenant)}, {args[0], args[1], args[2], args[3]},
      [this, pairs = std::move(pairs), done = std::move(done)](store::Reply r, const Error* e) mutable {
        if (e) return done(*e);
        if (!r.is_array() || r.size() < 2) return done(storage_error("unexpected reply listing deliveries"));
        for (size_t k = 2; k < r.size(); ++k) pairs.emplace_back(r[k].string(), "accepted|1|");
        std::optional<std::string> next;
        if (r[0].integer() >= 0)
          next = "a" + std::to_string(r[0].integer()) + "." + std::to_string(r[1].integer());
        page(std::move(pairs), std::move(next), std::move(done));
      });
}

// A page of deliveries: (deliv field "<R>:<slot>:<channel>", value "<state>|<attempts>|<error>")
// pairs, with their recipients' ids from the contacts records (the slot is internal).
void ProgressReader::page(Pairs pairs, std::optional<std::string> next, PageDone done) {
  auto out = std::make_shared<DeliveryPage>();
  out->next = std::move(next);
  std::map<std::string, std::vector<std::pair<uint32_t, size_t>>> by_tenant;  // tenant -> (slot, item)
  for (const auto& [field, value] : pairs) {
    auto p1 = field.find(':'), p2 = field.rfind(':');
    auto bar1 = value.find('|');
    auto bar2 = bar1 == std::string::npos ? std::string::npos : value.find('|', bar1 + 1);
    if (p1 == std::string::npos || p2 <= p1 || bar2 == std::string::npos)
      continue;  // not one the dispatcher wrote
    Delivery d;
    d.tenant = field.substr(0, p1);
    d.channel = field.substr(p2 + 1);
    d.state = value.substr(0, bar1);
    d.attempts = count_of(std::string_view(value).substr(bar1 + 1, bar2 - bar1 - 1));
    d.error = value.substr(bar2 + 1);
    uint32_t slot = 0;
    std::from_chars(field.data() + p1 + 1, field.data() + p2, slot);
    by_tenant[d.tenant].emplace_back(slot, out->items.size());
    out->items.push_back(std::move(d));
  }
  if (by_tenant.empty()) return done(std::move(*out));
  auto remaining = std::make_shared<size_t>(by_tenant.size());
  auto shared_done = std::make_shared<PageDone>(std::move(done));
  for (auto& [t, list] : by_tenant) {
    std::vector<std::string> keys{"HMGET", store::keys::contacts(t)};
    for (auto& [slot, _] : list) keys.push_back(std::to_string(slot));
    std::vector<std::string_view> argv(keys.begin(), keys.end());
    redis_.command(argv, [out, list, remaining, shared_done](store::Reply r, const Error* e) {
      if (!e && r.is_array())
        for (size_t k = 0; k < list.size() && k < r.size(); ++k) {
          directory::Contacts c;
          if (r[k].is_string() && directory::unpack_contacts(r[k].str(), &c))
            out->items[list[k].second].recipient = c.id;
        }
      if (--*remaining == 0) (*shared_done)(std::move(*out));
    });
  }
}

}  // namespace sirena::dispatch
