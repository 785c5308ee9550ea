#include "daemon/alerts/alert_store.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "daemon/alerts/alert_json.h"
#include "daemon/alerts/lifecycle.h"
#include "daemon/core/ids.h"
#include "daemon/store/keys.h"
#include "daemon/store/redis.h"

namespace sirena::alerts {
namespace {

// Shared by the scripts below. `apply` is the effect of an Update (superseded) or a
// Cancel (cancelled) on the alert it references. It only crosses alerts of the same
// CAP status: a Test or Exercise message must never cancel or replace an Actual one.
const std::string kLuaCommon = state_names_lua() + R"LUA(
local p = KEYS[1]
-- An alert to be sent waits in `unplanned` (score: when a replanner may take it up) until
-- its plan is complete; the intake or approval that made it sendable plans it at once.
local plan_grace_ms = 5000
local function to_plan(id, now)
  if redis.call('HGET', p .. 'alert:' .. id, 'msg_type') ~= 'Cancel' then
    redis.call('ZADD', p .. 'unplanned', tonumber(now) + plan_grace_ms, id)
  end
end
local function audit(action, alert, key, remote, now, extra)
  local args = {p .. 'audit', 'MAXLEN', '~', '100000', '*', 'action', action, 'alert', alert,
                'key', key, 'remote', remote, 'time_ms', now}
  if extra then for i = 1, #extra do args[#args + 1] = extra[i] end end
  redis.call('XADD', unpack(args))
end
local function apply(target, effect, by, by_status, now)
  local k = p .. 'alert:' .. target
  local st, status = unpack(redis.call('HMGET', k, 'state', 'status'))
  if not st then return end
  if status ~= by_status then
    audit('reference_ignored', target, '', '', now, {'by', by, 'reason', 'status ' .. by_status .. ' cannot change a ' .. status .. ' alert'})
    return
  end
  if effect == S.cancelled and st ~= S.cancelled then
    redis.call('HSET', k, 'state', S.cancelled, 'cancelled_by', by)
    audit('cancelled', target, '', '', now, {'by', by})
  elseif effect == S.superseded and st ~= S.cancelled and st ~= S.superseded then
    redis.call('HSET', k, 'state', S.superseded, 'superseded_by', by)
    audit('superseded', target, '', '', now, {'by', by})
  end
end
-- Applies an active alert's references: to stored targets now, to missing ones when they arrive.
local function apply_refs(id, refs, effect, status, now)
  if effect == '' or refs == '' then return end
  for triple in string.gmatch(refs, '[^\n]+') do
    local target = redis.call('HGET', p .. 'idem', triple)
    if target then
      apply(target, effect, id, status, now)
    else
      redis.call('RPUSH', p .. 'pending:' .. triple, effect .. '|' .. id .. '|' .. status)
    end
  end
end
)LUA";

// KEYS[1] prefix. ARGV: 1 idem triple, 2 id, 3 state, 4 now_ms, 5 effect, 6 refs ("\n"-joined
// triples), 7 key id, 8 remote, 9 status, 10.. field/value pairs.
const std::string kCreateScript = std::string(kLuaCommon) + R"LUA(
local existing = redis.call('HGET', p .. 'idem', ARGV[1])
if existing then
  return {0, existing, redis.call('HGET', p .. 'alert:' .. existing, 'state') or ''}
end
local id, state, now, status = ARGV[2], ARGV[3], ARGV[4], ARGV[9]
local k = p .. 'alert:' .. id
local fields = {}
for i = 10, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', k, 'state', state, 'refs', ARGV[6], 'effect', ARGV[5], 'status', status, unpack(fields))
redis.call('HSET', p .. 'idem', ARGV[1], id)
redis.call('ZADD', p .. 'alerts', 0, id)
audit('create', id, ARGV[7], ARGV[8], now, {'state', state})
-- References that named this alert before it existed.
local pk = p .. 'pending:' .. ARGV[1]
for _, entry in ipairs(redis.call('LRANGE', pk, 0, -1)) do
  local effect, by, by_status = string.match(entry, '([^|]+)|([^|]+)|(.*)')
  apply(id, effect, by, by_status, now)
end
redis.call('DEL', pk)
if state == S.accepted then apply_refs(id, ARGV[6], ARGV[5], status, now) end
local final = redis.call('HGET', k, 'state')
if final == S.accepted then to_plan(id, now) end
return {1, id, final}
)LUA";

// KEYS[1] prefix. ARGV: 1 id, 2 key id, 3 remote, 4 now_ms.
const std::string kApproveScript = std::string(kLuaCommon) + R"LUA(
local id, key, now = ARGV[1], ARGV[2], ARGV[4]
local k = p .. 'alert:' .. id
local st, by, refs, effect, status = unpack(redis.call('HMGET', k, 'state', 'submitted_by', 'refs', 'effect', 'status'))
if not st then return {'err', 'not_found', ''} end
if st ~= S.pending_approval then return {'err', 'not_pending_approval', st} end
if by == key then return {'err', 'same_key_cannot_approve', st} end
redis.call('HSET', k, 'state', S.accepted, 'approved_by', key, 'approved_ms', now)
to_plan(id, now)
audit('approve', id, key, ARGV[3], now, nil)
apply_refs(id, refs or '', effect or '', status or '', now)
return {'ok', S.accepted, ''}
)LUA";

// KEYS[1] prefix. ARGV: 1 id, 2 by (what cancelled it), 3 key id, 4 remote, 5 now_ms. The
// effect of a Cancel, without one: for a stop that must hold even when no CAP Cancel
// could be made. Returns the state.
const std::string kCancelScript = std::string(kLuaCommon) + R"LUA(
local id, now = ARGV[1], ARGV[5]
local k = p .. 'alert:' .. id
local status = redis.call('HGET', k, 'status')
if not status then return '' end
apply(id, S.cancelled, ARGV[2], status, now)
audit('cancel_without_cap', id, ARGV[3], ARGV[4], now, nil)
return redis.call('HGET', k, 'state')
)LUA";

std::string refs_text(const Alert& a) {
  std::string out;
  for (const auto& r : a.references) {
    if (!out.empty()) out.push_back('\n');
    out += r.sender + "," + r.identifier + "," + r.sent;
  }
  return out;
}

const char* effect_of(MsgType m) {
  switch (m) {
    case MsgType::Update:
      return state::kSuperseded;
    case MsgType::Cancel:
      return state::kCancelled;
    default:
      return "";
  }
}

StoredAlert from_pairs(const std::string& tenant, const std::string& id,
                       const std::vector<std::pair<std::string, std::string>>& pairs) {
  StoredAlert s;
  s.id = id;
  s.tenant = tenant;
  for (const auto& [k, v] : pairs) {
    if (k == "state")
      s.state = v;
    else if (k == "status")
      s.status = v;
    else if (k == "msg_type")
      s.msg_type = v;
    else if (k == "sender")
      s.sender = v;
    else if (k == "identifier")
      s.identifier = v;
    else if (k == "sent")
      s.sent = v;
    else if (k == "received_ms" && !v.empty())
      s.received_ms = std::stoll(v);
    else if (k == "expires_ms" && !v.empty())
      s.expires_ms = std::stoll(v);
    else if (k == "submitted_by")
      s.submitted_by = v;
    else if (k == "recipients" && !v.empty())
      s.recipients = std::stoll(v);
    else if (k == "approved_by")
      s.approved_by = v;
    else if (k == "superseded_by")
      s.superseded_by = v;
    else if (k == "cancelled_by")
      s.cancelled_by = v;
    else if (k == "content_type")
      s.content_type = v;
    else if (k == "raw")
      s.raw = v;
    else if (k == "parsed")
      s.parsed = v;
  }
  return s;
}

// What a listing shows; the raw bytes and parsed form stay behind.
constexpr std::string_view kSummaryFields[] = {
    "state",      "status",       "msg_type",    "sender",        "identifier",   "sent",      "received_ms",
    "expires_ms", "submitted_by", "approved_by", "superseded_by", "cancelled_by", "recipients"};

std::vector<std::pair<std::string, std::string>> summary_pairs(store::Reply r) {
  std::vector<std::pair<std::string, std::string>> out;
  for (size_t i = 0; i < r.size() && i < std::size(kSummaryFields); ++i)
    out.emplace_back(std::string(kSummaryFields[i]), r[i].string());
  return out;
}

Error script_error(store::Reply r) {
  return make_error(ErrorKind::Internal, "storage_error",
                    std::string("storage script failed: ") + std::string(r.str()));
}

}  // namespace

std::string stored_json(const Alert& a) {
  return alert_to_json(a).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string AlertStore::idem_key(const Alert& a) {
  return a.sender + "," + a.identifier + "," + a.sent.text;
}

size_t AlertStore::backlog() const {
  size_t most = redis_.pending();
  for (const auto* w : writers_) most = std::max(most, w->pending());
  return most;
}

void AlertStore::create(const NewAlert& n, std::function<void(Result<Created>)> done) {
  const Alert& a = *n.alert;
  std::string id = make_ulid(n.now_ms);
  std::string pfx = store::keys::tenant(n.tenant);
  std::string idem = idem_key(a);
  std::string now = std::to_string(n.now_ms);
  std::string refs = refs_text(a);
  std::string parsed = n.stored_json.empty() ? stored_json(a) : n.stored_json;
  std::string recipients = std::to_string(n.recipients);
  auto expiry = latest_expiry_ms(a);
  std::string expires = expiry ? std::to_string(*expiry) : std::string();
  std::vector<std::string_view> args{idem,
                                     id,
                                     n.initial_state,
                                     now,
                                     effect_of(a.msg_type),
                                     refs,
                                     n.key_id,
                                     n.remote,
                                     to_string(a.status),
                                     "tenant",
                                     n.tenant,
                                     "msg_type",
                                     to_string(a.msg_type),
                                     "sender",
                                     a.sender,
                                     "identifier",
                                     a.identifier,
                                     "sent",
                                     a.sent.text,
                                     "received_ms",
                                     now,
                                     "expires_ms",
                                     expires,
                                     "submitted_by",
                                     n.key_id,
                                     "recipients",
                                     recipients,
                                     "content_type",
                                     n.content_type,
                                     "raw",
                                     n.raw,
                                     "parsed",
                                     parsed};
  store::Redis* conn = &redis_;
  if (!writers_.empty()) {
    store::Redis* w = writers_[next_writer_++ % writers_.size()];
    if (w->connected()) conn = w;  // a writer reconnecting: the main connection serves
  }
  conn->eval(kCreateScript, {pfx}, args, [done = std::move(done)](store::Reply r, const Error* e) {
    if (e) return done(*e);
    if (r.is_error()) return done(script_error(r));
    if (!r.is_array() || r.size() != 3)
      return done(make_error(ErrorKind::Internal, "storage_error", "bad reply"));
    done(Created{r[0].integer() == 1, r[1].string(), r[2].string()});
  });
}

void AlertStore::get(const std::string& tenant, const std::string& id,
                     std::function<void(Result<std::optional<StoredAlert>>)> done) {
  std::string key = store::keys::alert(tenant, id);
  redis_.command({"HGETALL", key}, [tenant, id, done = std::move(done)](store::Reply r, const Error* e) {
    if (e) return done(*e);
    if (r.is_error()) return done(script_error(r));
    if (r.size() == 0) return done(std::optional<StoredAlert>{});
    done(std::optional<StoredAlert>{from_pairs(tenant, id, r.pairs())});
  });
}

void AlertStore::list(const std::string& tenant, const std::string& cursor, int limit,
                      std::function<void(Result<Page>)> done) {
  std::string max = cursor.empty() ? "+" : "(" + cursor;
  std::string count = std::to_string(limit + 1);
  redis_.command({"ZREVRANGEBYLEX", store::keys::alerts(tenant), max, "-", "LIMIT", "0", count},
                 [this, tenant, limit, done = std::move(done)](store::Reply r, const Error* e) mutable {
                   if (e) return done(*e);
                   if (!r.is_array()) return done(script_error(r));
                   std::vector<std::string> ids;
                   for (store::Reply id : r) ids.push_back(id.string());
                   auto page = std::make_shared<Page>();
                   if (static_cast<int>(ids.size()) > limit) {
                     ids.resize(limit);
                     page->next = ids.back();
                   }
                   if (ids.empty()) return done(std::move(*page));
                   // One HMGET per id, pipelined; the last reply completes the page.
                   page->items.resize(ids.size());
                   auto remaining = std::make_shared<size_t>(ids.size());
                   auto failed = std::make_shared<bool>(false);
                   auto shared_done = std::make_shared<std::function<void(Result<Page>)>>(std::move(done));
                   for (size_t i = 0; i < ids.size(); ++i) {
                     std::vector<std::string_view> argv{"HMGET"};
                     std::string key = store::keys::alert(tenant, ids[i]);
                     argv.push_back(key);
                     argv.insert(argv.end(), std::begin(kSummaryFields), std::end(kSummaryFields));
                     redis_.command(argv, [=, id = ids[i]](store::Reply r2, const Error* e2) {
                       if (e2 && !*failed) {
                         *failed = true;
                         (*shared_done)(*e2);
                       }
                       if (!e2) page->items[i] = from_pairs(tenant, id, summary_pairs(r2));
                       if (--*remaining == 0 && !*failed) (*shared_done)(std::move(*page));
                     });
                   }
                 });
}

void AlertStore::cancel(const std::string& tenant, const std::string& id, const std::string& by,
                        const std::string& key_id, const std::string& remote, int64_t now_ms,
                        std::function<void(Result<std::string>)> done) {
  std::string now = std::to_string(now_ms);
  redis_.eval(kCancelScript, {store::keys::tenant(tenant)}, {id, by, key_id, remote, now},
              [done = std::move(done)](store::Reply r, const Error* e) {
                if (e) return done(*e);
                if (r.is_error()) return done(script_error(r));
                done(r.string());
              });
}

void AlertStore::audit(const std::string& tenant,
                       const std::vector<std::pair<std::string, std::string>>& fields,
                       std::function<void(sirena::Status)> done) {
  std::string key = store::keys::audit(tenant);
  std::vector<std::string_view> argv{"XADD", key, "MAXLEN", "~", "100000", "*"};
  for (const auto& [k, v] : fields) {
    argv.push_back(k);
    argv.push_back(v);
  }
  redis_.command(argv, [done = std::move(done)](store::Reply r, const Error* e) {
    if (e) return done(*e);
    if (r.is_error()) return done(script_error(r));
    done(Ok{});
  });
}

void AlertStore::approve(const std::string& tenant, const std::string& id, const std::string& key_id,
                         const std::string& remote, int64_t now_ms,
                         std::function<void(Result<std::string>)> done) {
  std::string pfx = store::keys::tenant(tenant);
  std::string now = std::to_string(now_ms);
  redis_.eval(kApproveScript, {pfx}, {id, key_id, remote, now},
              [done = std::move(done)](store::Reply r, const Error* e) {
                if (e) return done(*e);
                if (r.is_error()) return done(script_error(r));
                std::string kind = r[0].string();
                std::string what = r[1].string();
                if (kind == "ok") return done(what);
                if (what == "not_found")
                  return done(make_error(ErrorKind::NotFound, "not_found", "no such alert"));
                if (what == "same_key_cannot_approve")
                  return done(make_error(ErrorKind::Forbidden, "same_key_cannot_approve",
                                         "two-person rule: the alert must be approved with a different key "
                                         "than the one that submitted it"));
                done(make_error(ErrorKind::Conflict, "not_pending_approval",
                                "the alert is " + r[2].string() + ", not pending_approval"));
              });
}

}  // namespace sirena::alerts
