#include "daemon/dispatch/dispatcher.h"

#include <algorithm>
#include <charconv>
#include <deque>
#include <list>
#include <map>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "daemon/alerts/alert_json.h"
#include "daemon/core/log.h"
#include "daemon/dispatch/flow.h"
#include "daemon/dispatch/render.h"
#include "daemon/dispatch/sms_text.h"
#include "daemon/metrics/metrics.h"
#include "daemon/store/redis.h"

namespace sirena::dispatch {
namespace {

constexpr const char* kGroup = "sirenad";
constexpr size_t kMaxBacklog = 2048;  // outcomes written at the latest when this many wait

std::string prefix(const std::string& tenant) { return "{t:" + tenant + "}:"; }
std::string stream_key(int priority) { return "{dispatch}:p" + std::to_string(priority); }

// KEYS[1] alert tenant prefix. ARGV: 1 alert id, 2 tenant, 3 batches, 4 recipients, 5 priority,
// 6 stream, 7.. "planned:<channel>", count pairs. Returns the batch count, or -1 if planned before.
constexpr const char* kPlanScript = R"LUA(
local p, id = KEYS[1], ARGV[1]
local plan = p .. 'plan:' .. id
if redis.call('EXISTS', plan) == 1 then return -1 end
local n = tonumber(ARGV[3])
local fields = {'batches', ARGV[3], 'done', '0', 'recipients', ARGV[4], 'priority', ARGV[5]}
for i = 7, #ARGV, 2 do fields[#fields + 1] = ARGV[i]; fields[#fields + 1] = ARGV[i + 1] end
redis.call('HSET', plan, unpack(fields))
for b = 0, n - 1 do redis.call('XADD', ARGV[6], '*', 'a', id, 't', ARGV[2], 'b', tostring(b)) end
local k = p .. 'alert:' .. id
if redis.call('HGET', k, 'state') == 'accepted' then
  redis.call('HSET', k, 'state', n == 0 and 'completed' or 'dispatching')
end
return n
)LUA";

// KEYS[1] alert tenant prefix. ARGV: 1 alert id, 2 now_ms, then three counted lists:
// delivery field/value pairs, progress field/increment pairs, stream/entry pairs of
// finished batches. One script, so outcomes, counters and acknowledgements land together
// (a batch is never acknowledged without its outcomes, nor counted twice: XACK answers 1
// only for an entry still pending).
constexpr const char* kFlushScript = R"LUA(
local p, id = KEYS[1], ARGV[1]
local i = 3
local nd = tonumber(ARGV[i]); i = i + 1
local deliv = p .. 'deliv:' .. id
for s = i, i + nd - 1, 2000 do
  local args = {}
  for k = s, math.min(s + 1999, i + nd - 1) do args[#args + 1] = ARGV[k] end
  redis.call('HSET', deliv, unpack(args))
end
i = i + nd
local np = tonumber(ARGV[i]); i = i + 1
for k = i, i + np - 1, 2 do redis.call('HINCRBY', p .. 'progress:' .. id, ARGV[k], ARGV[k + 1]) end
i = i + np
local nb = tonumber(ARGV[i]); i = i + 1
local plan = p .. 'plan:' .. id
for k = i, i + nb - 1, 2 do
  if redis.call('XACK', ARGV[k], 'sirenad', ARGV[k + 1]) == 1 then redis.call('HINCRBY', plan, 'done', 1) end
end
i = i + nb
-- SMS acceptances whose delivery report came first: the report wins.
local ns = tonumber(ARGV[i]); i = i + 1
local dlr = p .. 'dlr:' .. id
for k = i, i + ns - 1 do
  local d = redis.call('HGET', dlr, ARGV[k])
  if d then
    local bar = string.find(d, '|', 1, true)
    local state = string.sub(d, 1, bar - 1)
    local v = redis.call('HGET', deliv, ARGV[k])
    local attempts = string.match(v or '', '^[^|]*|([^|]*)') or '1'
    redis.call('HSET', deliv, ARGV[k], state .. '|' .. attempts .. '|' .. string.sub(d, bar + 1))
    redis.call('HINCRBY', p .. 'progress:' .. id, 'sms:accepted', -1)
    redis.call('HINCRBY', p .. 'progress:' .. id, 'sms:' .. state, 1)
  end
end
if nb > 0 then
  local total = tonumber(redis.call('HGET', plan, 'batches') or '0')
  local done = tonumber(redis.call('HGET', plan, 'done') or '0')
  if done >= total then
    local k = p .. 'alert:' .. id
    if redis.call('HGET', k, 'state') == 'dispatching' then redis.call('HSET', k, 'state', 'completed') end
    redis.call('HSET', plan, 'completed_ms', ARGV[2])
  end
end
return 1
)LUA";

// KEYS[1] alert tenant prefix. ARGV: 1 alert id, 2 "<R>|<number>", 3 final state
// ("delivered", "failed") or "" for an intermediate report, 4 reason. The first final
// report wins; one that comes before the acceptance is written waits in dlr:<A> for the
// flush script.
constexpr const char* kDlrScript = R"LUA(
local p, id = KEYS[1], ARGV[1]
local field = redis.call('HGET', p .. 'smsto:' .. id, ARGV[2])
if not field then return 'unknown' end
if ARGV[3] == '' then return 'noted' end
if redis.call('HSETNX', p .. 'dlr:' .. id, field, ARGV[3] .. '|' .. ARGV[4]) == 0 then return 'duplicate' end
local deliv = p .. 'deliv:' .. id
local v = redis.call('HGET', deliv, field)
if not v or string.sub(v, 1, 9) ~= 'accepted|' then return 'early' end
local attempts = string.match(v, '^[^|]*|([^|]*)') or '1'
redis.call('HSET', deliv, field, ARGV[3] .. '|' .. attempts .. '|' .. ARGV[4])
redis.call('HINCRBY', p .. 'progress:' .. id, 'sms:accepted', -1)
redis.call('HINCRBY', p .. 'progress:' .. id, 'sms:' .. ARGV[3], 1)
return ARGV[3]
)LUA";

const std::string& script(const char* text) {
  static std::unordered_map<const char*, std::string> cache;
  auto& s = cache[text];
  if (s.empty()) s = text;
  return s;
}

bool is_final_state(std::string_view s) {
  return s == "accepted" || s == "delivered" || s == "failed" || s == "expired" || s == "cancelled" ||
         s == "skipped";
}

}  // namespace

const char* to_string(Channel c) {
  switch (c) {
    case Channel::Sms: return "sms";
    case Channel::Apns: return "apns";
    case Channel::Fcm: return "fcm";
  }
  return "?";
}

struct Dispatcher::Impl {
  struct Active {
    std::string id, tenant;
    alerts::Alert alert;
    int priority = kPriorities - 1;
    std::string collapse;
    int64_t received_ms = 0;
    int64_t expires_ms = 0;
    bool cancelled = false;
    bool first_accepted = false;
    int64_t last_used_ms = 0;
  };
  struct Batch;
  struct Msg {
    Message m;
    Batch* batch;
    std::string field;  // "<R>:<slot>:<channel>"
    // Push first, SMS as fallback: a push message points at its recipient's SMS, which is
    // held until a push is accepted (then skipped), all failed, or the deadline passes.
    Msg* fallback = nullptr;
    int pushes_waiting = 0;
    bool held = false;
    std::multimap<int64_t, Msg*>::iterator held_until;
  };
  struct Batch {
    int priority;
    std::string stream_entry;
    std::shared_ptr<Active> alert;
    std::string rtenant;
    std::vector<std::unique_ptr<Msg>> msgs;
    size_t remaining = 0;
  };
  struct GatewaySlot {
    std::unique_ptr<Gateway> gw;
    std::unique_ptr<CircuitBreaker> breaker;
    std::unique_ptr<TokenBucket> bucket;
    FairQueue<Msg*> queue[kPriorities];  // round-robin over the alert tenants
    size_t queued = 0;
    size_t in_flight = 0;
    prometheus::Gauge* queue_depth = nullptr;
    prometheus::Gauge* bucket_tokens = nullptr;
  };
  struct Written {  // one message's final outcome, waiting for the next write-back
    std::string tenant, alert, field, value, progress_field;
    bool sms_accepted = false;  // a delivery report may have come first
  };
  struct Retry {
    int64_t due_ms;
    Msg* msg;
    bool operator>(const Retry& o) const { return due_ms > o.due_ms; }
  };

  uv_loop_t* loop;
  store::Redis& redis;
  directory::Directory& directory;
  const Clock& clock;
  metrics::Metrics& metrics;
  DispatchConfig cfg;
  Backoff backoff;
  GatewaySlot gateways[3];
  std::unordered_map<std::string, std::shared_ptr<Active>> alerts;
  std::list<std::unique_ptr<Batch>> batches;
  size_t batches_loading = 0;
  std::priority_queue<Retry, std::vector<Retry>, std::greater<>> retries;
  std::multimap<int64_t, Msg*> held;  // SMS fallbacks by deadline
  std::map<std::string, TenantPolicy> policies;
  std::vector<Written> outcomes;
  std::vector<std::pair<Batch*, bool>> finished_batches;  // flushed with the next write-back
  uv_timer_t* poll_timer = nullptr;
  uv_timer_t* flush_timer = nullptr;
  uv_timer_t* retry_timer = nullptr;
  uv_timer_t* pump_timer = nullptr;
  size_t unconfirmed = 0;  // outcomes sent to Redis, reply not yet seen
  bool claiming = false;
  bool started = false;
  bool stopping = false;
  int64_t last_reclaim_ms = 0;

  Impl(uv_loop_t* l, store::Redis& r, directory::Directory& d, const Clock& c, metrics::Metrics& m,
       DispatchConfig conf)
      : loop(l),
        redis(r),
        directory(d),
        clock(c),
        metrics(m),
        cfg(std::move(conf)),
        backoff(cfg.backoff_base_ms, cfg.backoff_cap_ms) {}

  uv_timer_t* make_timer() {
    auto* t = new uv_timer_t;
    uv_timer_init(loop, t);
    t->data = this;
    return t;
  }

  // ---- claiming work -------------------------------------------------------------

  size_t capacity() const { return cfg.max_batches > batches.size() + batches_loading
                                        ? cfg.max_batches - batches.size() - batches_loading
                                        : 0; }

  void claim(int priority = 0, bool own_pending = false) {
    if (stopping || !started || !redis.connected()) return;
    if (priority == 0) {
      if (claiming) return;
      claiming = true;
    }
    size_t want = capacity();
    if (want == 0 || priority >= kPriorities) {
      claiming = false;
      return;
    }
    std::string stream = stream_key(priority), count = std::to_string(want);
    // ">" = new entries; "0" = this consumer's own pending entries (after a restart).
    redis.command({"XREADGROUP", "GROUP", kGroup, cfg.consumer, "COUNT", count, "STREAMS", stream,
                   own_pending ? "0" : ">"},
                  [this, priority, own_pending](const redisReply* r, const Error* e) {
                    if (!e && r->type == REDIS_REPLY_ARRAY) take_entries(r, priority);
                    if (e || (r->type == REDIS_REPLY_ERROR)) {
                      if (r && r->type == REDIS_REPLY_ERROR) ensure_groups();
                    }
                    claim(priority + 1, own_pending);
                    if (priority + 1 >= kPriorities) claiming = false;
                  });
  }

  void take_entries(const redisReply* r, int priority) {
    // [[stream, [[id, [field, value, ...]], ...]]]
    for (size_t s = 0; s < r->elements; ++s) {
      const redisReply* entries = r->element[s]->element[1];
      for (size_t i = 0; i < entries->elements; ++i) {
        const redisReply* entry = entries->element[i];
        std::string id = store::reply_string(entry->element[0]);
        const redisReply* kv = entry->element[1];
        if (!kv || kv->type != REDIS_REPLY_ARRAY) {
          // Deleted or trimmed entry in our pending list: nothing to do but acknowledge.
          redis.command({"XACK", stream_key(priority), kGroup, id}, [](auto*, auto*) {});
          continue;
        }
        std::string alert, tenant, batch;
        for (size_t f = 0; f + 1 < kv->elements; f += 2) {
          std::string k = store::reply_string(kv->element[f]);
          if (k == "a") alert = store::reply_string(kv->element[f + 1]);
          else if (k == "t") tenant = store::reply_string(kv->element[f + 1]);
          else if (k == "b") batch = store::reply_string(kv->element[f + 1]);
        }
        load_batch(priority, id, tenant, alert, batch);
      }
    }
  }

  void ensure_groups() {
    for (int p = 0; p < kPriorities; ++p)
      redis.command({"XGROUP", "CREATE", stream_key(p), kGroup, "0", "MKSTREAM"}, [](auto*, auto*) {});
  }

  // ---- loading a batch -------------------------------------------------------------

  void with_alert(const std::string& tenant, const std::string& id, std::function<void(std::shared_ptr<Active>)> fn) {
    if (auto it = alerts.find(id); it != alerts.end()) return fn(it->second);
    std::string key = prefix(tenant) + "alert:" + id;
    redis.command({"HMGET", key, "parsed", "state", "received_ms", "expires_ms"},
                  [this, tenant, id, fn = std::move(fn)](const redisReply* r, const Error* e) {
                    if (e || r->type != REDIS_REPLY_ARRAY || r->elements != 4 || r->element[0]->type == REDIS_REPLY_NIL)
                      return fn(nullptr);
                    auto json = nlohmann::json::parse(store::reply_string(r->element[0]), nullptr, false);
                    auto parsed = alerts::alert_from_json(json);
                    if (!parsed) return fn(nullptr);
                    auto a = std::make_shared<Active>();
                    a->id = id;
                    a->tenant = tenant;
                    a->alert = std::move(parsed).value();
                    a->priority = priority_of(a->alert);
                    a->collapse = collapse_id(a->alert);
                    std::string state = store::reply_string(r->element[1]);
                    a->cancelled = state != "dispatching" && state != "accepted";
                    std::string rec = store::reply_string(r->element[2]);
                    std::string exp = store::reply_string(r->element[3]);
                    a->received_ms = rec.empty() ? clock.now_ms() : std::stoll(rec);
                    a->expires_ms = exp.empty() ? 0 : std::stoll(exp);
                    auto [it, fresh] = alerts.emplace(id, a);
                    fn(it->second);
                  });
  }

  void load_batch(int priority, const std::string& entry, const std::string& tenant, const std::string& alert_id,
                  const std::string& batch_no) {
    ++batches_loading;
    with_alert(tenant, alert_id, [=, this](std::shared_ptr<Active> a) {
      auto b = std::make_unique<Batch>();
      b->priority = priority;
      b->stream_entry = entry;
      b->alert = a;
      if (!a) {
        // The alert is gone (or unreadable): nothing can be sent for it.
        metrics.unexpected("dispatch_alert_missing").Increment();
        --batches_loading;
        redis.command({"XACK", stream_key(priority), kGroup, entry}, [](auto*, auto*) {});
        return;
      }
      a->last_used_ms = clock.now_ms();
      std::string key = prefix(tenant) + "batch:" + alert_id + ":" + batch_no;
      Batch* raw = b.release();
      redis.command({"GET", key}, [this, raw](const redisReply* r, const Error* e) {
        std::unique_ptr<Batch> b(raw);
        if (e) {
          --batches_loading;
          return;  // left pending: re-read after a restart or by the next reclaim
        }
        std::string text = store::reply_string(r);
        auto nl = text.find('\n');
        if (nl == std::string::npos) {
          metrics.unexpected("dispatch_batch_missing").Increment();
          --batches_loading;
          return finish_empty(std::move(b));
        }
        b->rtenant = text.substr(0, nl);
        std::vector<uint32_t> slots;
        const char* p = text.data() + nl + 1;
        const char* end = text.data() + text.size();
        while (p < end) {
          uint32_t v = 0;
          auto res = std::from_chars(p, end, v);
          if (res.ec != std::errc()) break;
          slots.push_back(v);
          p = res.ptr;
          while (p < end && *p == ' ') ++p;
        }
        load_contacts(std::move(b), std::move(slots));
      });
    });
  }

  void load_contacts(std::unique_ptr<Batch> b, std::vector<uint32_t> slots) {
    std::string rp = prefix(b->rtenant);
    std::vector<std::string> keys{"HMGET", rp + "contacts"};
    for (uint32_t s : slots) keys.push_back(std::to_string(s));
    std::vector<std::string_view> argv(keys.begin(), keys.end());
    Batch* raw = b.release();
    redis.command(argv, [this, raw, slots = std::move(slots)](const redisReply* r, const Error* e) {
      std::unique_ptr<Batch> b(raw);
      if (e || r->type != REDIS_REPLY_ARRAY || r->elements != slots.size()) {
        --batches_loading;
        return;
      }
      Active& a = *b->alert;
      const TenantPolicy& policy = policy_of(a.tenant);
      std::unordered_map<std::string, PushText> texts;
      std::unordered_map<std::string, std::string> sms_texts;
      bool test = a.alert.status == alerts::Status::Test || a.alert.status == alerts::Status::Exercise;
      auto add = [&](Channel ch, uint32_t slot, const directory::Contacts& c, const alerts::Info* info) {
        auto m = std::make_unique<Msg>();
        m->batch = b.get();
        m->field = b->rtenant + ":" + std::to_string(slot) + ":" + to_string(ch);
        Message& msg = m->m;
        msg.alert_id = a.id;
        msg.alert_tenant = a.tenant;
        msg.tenant = b->rtenant;
        msg.slot = slot;
        msg.channel = ch;
        msg.language = c.language;
        msg.severity = info ? info->severity : "";
        msg.expires_ms = a.expires_ms;
        msg.collapse_id = a.collapse;
        msg.test = test;
        b->msgs.push_back(std::move(m));
        return b->msgs.back().get();
      };
      for (size_t i = 0; i < slots.size(); ++i) {
        if (r->element[i]->type != REDIS_REPLY_STRING) continue;  // deleted since the plan
        directory::Contacts c;
        if (!directory::unpack_contacts(std::string_view(r->element[i]->str, r->element[i]->len), &c)) continue;
        const alerts::Info* info = pick_info(a.alert, c.language);
        // One device per platform: the most recently registered token (the last one).
        const directory::PushToken* last[2] = {nullptr, nullptr};
        for (const auto& t : c.push) last[t.platform == directory::Platform::Apns ? 0 : 1] = &t;
        std::vector<Msg*> pushes;
        for (int k = 0; k < 2; ++k) {
          Channel ch = k == 0 ? Channel::Apns : Channel::Fcm;
          if (!last[k] || !gateways[static_cast<int>(ch)].gw) continue;
          auto it = texts.find(c.language);
          if (it == texts.end()) it = texts.emplace(c.language, render_push(a.alert, info)).first;
          Msg* m = add(ch, slots[i], c, info);
          m->m.address = last[k]->token;
          m->m.app = last[k]->app;
          m->m.title = it->second.title;
          m->m.body = it->second.body;
          pushes.push_back(m);
        }
        if (c.phone.empty() || !info || !gateways[static_cast<int>(Channel::Sms)].gw) continue;
        auto it = sms_texts.find(c.language);
        if (it == sms_texts.end()) it = sms_texts.emplace(c.language, render_sms(a.alert, *info, policy.sms)).first;
        Msg* sms = add(Channel::Sms, slots[i], c, info);
        sms->m.address = c.phone;
        sms->m.body = it->second;
        if (!pushes.empty() && policy.for_severity(info->severity) == ChannelPolicy::PushFirst) {
          sms->held = true;
          sms->pushes_waiting = static_cast<int>(pushes.size());
          for (Msg* m : pushes) m->fallback = sms;
        }
      }
      skip_done(std::move(b));
    });
  }

  // Drops messages already final (a restart re-reads a batch whose outcomes were partly
  // written), settles SMS fallbacks whose pushes are already decided, and queues the rest.
  void skip_done(std::unique_ptr<Batch> b) {
    if (b->msgs.empty()) {
      --batches_loading;
      return finish_empty(std::move(b));
    }
    const Active& a = *b->alert;
    // The number -> delivery map that delivery reports need; written before the HMGET on
    // the same connection, so it exists before any SMS of the batch is sent.
    std::vector<std::string> map{"HSET", prefix(a.tenant) + "smsto:" + a.id};
    for (const auto& m : b->msgs)
      if (m->m.channel == Channel::Sms) {
        map.push_back(b->rtenant + "|" + m->m.address);
        map.push_back(m->field);
      }
    if (map.size() > 2) {
      std::vector<std::string_view> argv(map.begin(), map.end());
      redis.command(argv, [this](const redisReply* r, const Error* e) {
        if (e || r->type == REDIS_REPLY_ERROR) metrics.unexpected("dispatch_smsto_failed").Increment();
      });
    }
    std::vector<std::string> keys{"HMGET", prefix(a.tenant) + "deliv:" + a.id};
    for (const auto& m : b->msgs) keys.push_back(m->field);
    std::vector<std::string_view> argv(keys.begin(), keys.end());
    Batch* raw = b.release();
    redis.command(argv, [this, raw](const redisReply* r, const Error* e) {
      std::unique_ptr<Batch> b(raw);
      --batches_loading;
      if (e || r->type != REDIS_REPLY_ARRAY || r->elements != b->msgs.size()) return;
      std::vector<std::unique_ptr<Msg>> todo;
      std::vector<Msg*> skip;
      for (size_t i = 0; i < b->msgs.size(); ++i) {
        std::string v = store::reply_string(r->element[i]);
        std::string_view state = std::string_view(v).substr(0, v.find('|'));
        Msg* m = b->msgs[i].get();
        if (!v.empty() && is_final_state(state)) {
          if (Msg* sms = m->fallback) {  // a push decided before the restart
            if (state == "accepted" || state == "delivered") skip.push_back(sms);
            --sms->pushes_waiting;
          }
          continue;
        }
        todo.push_back(std::move(b->msgs[i]));
      }
      if (todo.size() != b->msgs.size())
        log::info("dispatch_batch_resumed", {{"alert", b->alert->id}, {"done", b->msgs.size() - todo.size()},
                                             {"to_send", todo.size()}});
      // A push whose SMS is already final (sent on the deadline before the restart) has
      // nothing left to decide.
      std::unordered_set<Msg*> live;
      for (auto& m : todo) live.insert(m.get());
      for (auto& m : todo)
        if (m->fallback && !live.count(m->fallback)) m->fallback = nullptr;
      b->msgs = std::move(todo);
      b->remaining = b->msgs.size();
      if (b->remaining == 0) return finish_empty(std::move(b));
      Batch* bp = b.get();
      batches.push_back(std::move(b));
      metrics.batches_in_work().Set(static_cast<double>(batches.size()));
      int64_t deadline = clock.now_ms() + policy_of(bp->alert->tenant).fallback_ms;
      for (auto& m : bp->msgs) {
        if (!m->held) {
          enqueue(m.get());
        } else if (std::find(skip.begin(), skip.end(), m.get()) != skip.end()) {
          m->held = false;
          finish(m.get(), "skipped", "push accepted");
        } else if (m->pushes_waiting == 0) {
          m->held = false;
          enqueue(m.get());
        } else {
          m->held_until = held.emplace(deadline, m.get());
          arm_retry();
        }
      }
      pump_all();
    });
  }

  void finish_empty(std::unique_ptr<Batch> b) {
    Batch* raw = b.get();
    batches.push_back(std::move(b));
    finished_batches.emplace_back(raw, true);
    schedule_flush();
  }

  // ---- sending ---------------------------------------------------------------------

  const TenantPolicy& policy_of(const std::string& tenant) const {
    static const TenantPolicy kDefault;
    auto it = policies.find(tenant);
    return it == policies.end() ? kDefault : it->second;
  }

  void enqueue(Msg* m) {
    GatewaySlot& g = gateways[static_cast<int>(m->m.channel)];
    g.queue[m->batch->priority].push_back(m->m.alert_tenant, m);
    ++g.queued;
  }

  Msg* pop(GatewaySlot& g) {
    for (auto& q : g.queue) {
      if (!q.empty()) {
        --g.queued;
        return q.pop();
      }
    }
    return nullptr;
  }

  void push_front(GatewaySlot& g, Msg* m) {
    g.queue[m->batch->priority].push_front(m->m.alert_tenant, m);
    ++g.queued;
  }

  // An SMS held for its pushes goes now (no push accepted, or the deadline passed).
  void release(Msg* sms) {
    sms->held = false;
    held.erase(sms->held_until);
    enqueue(sms);
    pump(gateways[static_cast<int>(Channel::Sms)]);
  }

  void pump_all() {
    for (auto& g : gateways)
      if (g.gw) pump(g);
  }

  void pump(GatewaySlot& g) {
    if (stopping) return;
    while (g.gw->capacity() > 0) {
      // Outcomes not yet durable are what a crash would resend: wait for Redis to catch up.
      if (outcomes.size() + unconfirmed >= cfg.max_unconfirmed) {
        if (!outcomes.empty()) flush();
        break;
      }
      Msg* m = pop(g);
      if (!m) break;
      Active& a = *m->batch->alert;
      if (a.cancelled) {
        finish(m, "cancelled", "");
        continue;
      }
      if (a.expires_ms && clock.now_ms() >= a.expires_ms) {
        finish(m, "expired", "");
        continue;
      }
      if (!g.breaker->allow()) {
        push_front(g, m);
        metrics.circuit_state(g.gw->name()).Set(static_cast<double>(g.breaker->state()));
        arm_pump(200);
        break;
      }
      if (!g.bucket->take()) {
        push_front(g, m);
        arm_pump(g.bucket->wait_ms());
        break;
      }
      send(g, m);
    }
    g.queue_depth->Set(static_cast<double>(g.queued));
    g.bucket_tokens->Set(g.bucket->fill());
  }

  void arm_pump(int64_t ms) {
    if (uv_is_active(reinterpret_cast<uv_handle_t*>(pump_timer))) return;
    uv_timer_start(pump_timer, [](uv_timer_t* t) { static_cast<Impl*>(t->data)->pump_all(); },
                   static_cast<uint64_t>(std::max<int64_t>(ms, 1)), 0);
  }

  void send(GatewaySlot& g, Msg* m) {
    ++g.in_flight;
    ++m->m.attempt;
    metrics.gateway_in_flight(g.gw->name()).Set(static_cast<double>(g.in_flight));
    int64_t started = clock.mono_ns();
    GatewaySlot* gp = &g;
    g.gw->send(m->m, [this, gp, m, started](const SendResult& r) {
      --gp->in_flight;
      metrics.gateway_duration(gp->gw->name()).Observe(static_cast<double>(clock.mono_ns() - started) / 1e9);
      metrics.gateway_in_flight(gp->gw->name()).Set(static_cast<double>(gp->in_flight));
      on_result(*gp, m, r);
      pump(*gp);
    });
  }

  void on_result(GatewaySlot& g, Msg* m, const SendResult& r) {
    Active& a = *m->batch->alert;
    switch (r.outcome) {
      case Outcome::Accepted: {
        g.breaker->on_success();
        int64_t now = clock.now_ms();
        double latency = static_cast<double>(now - a.received_ms) / 1e3;
        metrics.delivery_latency(to_string(m->m.channel)).Observe(latency);
        if (!a.first_accepted) {
          a.first_accepted = true;
          metrics.time_to_first_message().Observe(latency);
        }
        if (m->m.channel == Channel::Sms)
          metrics.sms_segments(g.gw->name()).Increment(static_cast<double>(count_sms(m->m.body).segments));
        finish(m, "accepted", "");
        break;
      }
      case Outcome::Unregistered:
        g.breaker->on_success();  // the gateway works; the token does not
        metrics.tokens_pruned(to_string(m->m.channel)).Increment();
        // Pruned: later alerts skip it (DESIGN.md invariant 5).
        redis.command({"SADD", prefix(m->m.tenant) + "pruned", m->m.address}, [](auto*, auto*) {});
        finish(m, "failed", r.reason.empty() ? "unregistered" : r.reason);
        break;
      case Outcome::Permanent:
        g.breaker->on_success();
        finish(m, "failed", r.reason);
        break;
      case Outcome::Retry: {
        g.breaker->on_failure();
        metrics.circuit_state(g.gw->name()).Set(static_cast<double>(g.breaker->state()));
        int64_t delay = backoff.delay_ms(m->m.attempt, r.retry_after_ms);
        int64_t due = clock.now_ms() + delay;
        if (m->m.attempt >= cfg.max_attempts) {
          finish(m, "failed", "gave up after " + std::to_string(m->m.attempt) + " attempts: " + r.reason);
        } else if (a.expires_ms && due >= a.expires_ms) {
          finish(m, "expired", r.reason);
        } else if (a.cancelled) {
          finish(m, "cancelled", "");
        } else {
          retries.push({due, m});
          metrics.retry_queue_depth().Set(static_cast<double>(retries.size()));
          arm_retry();
        }
        break;
      }
    }
  }

  void arm_retry() {
    if (retries.empty() && held.empty()) return;
    int64_t due = INT64_MAX;
    if (!retries.empty()) due = retries.top().due_ms;
    if (!held.empty()) due = std::min(due, held.begin()->first);
    int64_t wait = std::max<int64_t>(0, due - clock.now_ms());
    uv_timer_start(retry_timer, [](uv_timer_t* t) { static_cast<Impl*>(t->data)->run_retries(); },
                   static_cast<uint64_t>(wait), 0);
  }

  void run_retries() {
    int64_t now = clock.now_ms();
    while (!retries.empty() && retries.top().due_ms <= now) {
      Msg* m = retries.top().msg;
      retries.pop();
      if (m->batch->alert->cancelled) finish(m, "cancelled", "");
      else enqueue(m);
    }
    metrics.retry_queue_depth().Set(static_cast<double>(retries.size()));
    while (!held.empty() && held.begin()->first <= now) release(held.begin()->second);
    pump_all();
    arm_retry();
  }

  // ---- recording outcomes ----------------------------------------------------------

  void finish(Msg* m, const std::string& state, const std::string& reason) {
    Active& a = *m->batch->alert;
    std::string value = state + "|" + std::to_string(m->m.attempt) + "|" + reason;
    outcomes.push_back({a.tenant, a.id, m->field, std::move(value), std::string(to_string(m->m.channel)) + ":" + state,
                        m->m.channel == Channel::Sms && state == "accepted"});
    metrics.message(m->m.tenant, to_string(m->m.channel), gateways[static_cast<int>(m->m.channel)].gw->name(), state)
        .Increment();
    if (Msg* sms = m->fallback; sms && sms->held) {
      if (state == "accepted") {
        sms->held = false;
        held.erase(sms->held_until);
        finish(sms, "skipped", "push accepted");
      } else if (--sms->pushes_waiting == 0) {
        if (a.cancelled) {
          sms->held = false;
          held.erase(sms->held_until);
          finish(sms, "cancelled", "");
        } else {
          release(sms);
        }
      }
    }
    Batch* b = m->batch;
    if (--b->remaining == 0) finished_batches.emplace_back(b, false);
    // The unflushed backlog is part of the crash window (resent after a restart): keep
    // it bounded by count as well as by time.
    if (outcomes.size() >= kMaxBacklog) return flush();
    schedule_flush();
  }

  void schedule_flush() {
    if (uv_is_active(reinterpret_cast<uv_handle_t*>(flush_timer))) return;
    uv_timer_start(flush_timer, [](uv_timer_t* t) { static_cast<Impl*>(t->data)->flush(); },
                   static_cast<uint64_t>(cfg.flush_ms), 0);
  }

  // Writes outcomes and acknowledges the batches they completed, one script per alert.
  void flush() {
    if (!redis.connected()) {
      // Keep everything; try again shortly. Nothing is acked meanwhile.
      uv_timer_start(flush_timer, [](uv_timer_t* t) { static_cast<Impl*>(t->data)->flush(); }, 100, 0);
      return;
    }
    struct Work {
      std::vector<std::string> deliv;
      std::map<std::string, int64_t> progress;
      std::vector<std::string> acks;
      std::vector<std::string> sms_accepted;
    };
    std::map<std::pair<std::string, std::string>, Work> by_alert;
    for (auto& o : outcomes) {
      Work& w = by_alert[{o.tenant, o.alert}];
      if (o.sms_accepted) w.sms_accepted.push_back(o.field);
      w.deliv.push_back(std::move(o.field));
      w.deliv.push_back(std::move(o.value));
      ++w.progress[o.progress_field];
    }
    outcomes.clear();
    auto done = std::move(finished_batches);
    finished_batches.clear();
    for (auto [b, empty] : done) {
      (void)empty;
      Work& w = by_alert[{b->alert->tenant, b->alert->id}];
      w.acks.push_back(stream_key(b->priority));
      w.acks.push_back(b->stream_entry);
    }
    std::string now = std::to_string(clock.now_ms());
    for (auto& [key, w] : by_alert) {
      std::vector<std::string> args{key.second, now, std::to_string(w.deliv.size())};
      args.insert(args.end(), std::make_move_iterator(w.deliv.begin()), std::make_move_iterator(w.deliv.end()));
      args.push_back(std::to_string(w.progress.size() * 2));
      for (const auto& [field, n] : w.progress) {
        args.push_back(field);
        args.push_back(std::to_string(n));
      }
      args.push_back(std::to_string(w.acks.size()));
      args.insert(args.end(), w.acks.begin(), w.acks.end());
      args.push_back(std::to_string(w.sms_accepted.size()));
      args.insert(args.end(), w.sms_accepted.begin(), w.sms_accepted.end());
      std::vector<std::string_view> argv(args.begin(), args.end());
      // On failure the outcomes are lost and the batches stay pending: they are re-read
      // (after a restart or a reclaim) and only messages without a final outcome resent.
      size_t n = w.deliv.size() / 2;
      unconfirmed += n;
      redis.eval(script(kFlushScript), {prefix(key.first)}, argv, [this, n](const redisReply* r, const Error* e) {
        if (e || (r && r->type == REDIS_REPLY_ERROR)) metrics.unexpected("dispatch_flush_failed").Increment();
        unconfirmed -= n;
        pump_all();
      });
    }
    for (auto [b, empty] : done) {
      (void)empty;
      batches.remove_if([b](const std::unique_ptr<Batch>& x) { return x.get() == b; });
    }
    metrics.batches_in_work().Set(static_cast<double>(batches.size()));
    if (!done.empty()) claim();
  }

  void poll() {
    if (stopping) return;
    int64_t now = clock.now_ms();
    // Refresh the state of alerts in work: another daemon (or a CAP Cancel) may have
    // stopped them. Forget alerts idle for a minute.
    for (auto it = alerts.begin(); it != alerts.end();) {
      auto a = it->second;
      if (now - a->last_used_ms > 60'000 && a.use_count() == 1) {
        it = alerts.erase(it);
        continue;
      }
      redis.command({"HGET", prefix(a->tenant) + "alert:" + a->id, "state"}, [this, a](const redisReply* r, const Error* e) {
        if (e) return;
        std::string st = store::reply_string(r);
        if (!st.empty() && st != "dispatching" && st != "accepted" && st != "completed" && !a->cancelled) {
          a->cancelled = true;
          sweep(a->id);
        }
      });
      ++it;
    }
    // Take over batches another (dead) consumer left pending for too long.
    if (now - last_reclaim_ms > cfg.reclaim_idle_ms / 2) {
      last_reclaim_ms = now;
      for (int p = 0; p < kPriorities; ++p) {
        std::string idle = std::to_string(cfg.reclaim_idle_ms), count = std::to_string(capacity());
        if (capacity() == 0) break;
        redis.command({"XAUTOCLAIM", stream_key(p), kGroup, cfg.consumer, idle, "0-0", "COUNT", count},
                      [this, p](const redisReply* r, const Error* e) {
                        if (e || r->type != REDIS_REPLY_ARRAY || r->elements < 2) return;
                        // Reshape into XREADGROUP's [[stream, entries]] form.
                        redisReply entries = *r->element[1];
                        redisReply stream{};
                        stream.type = REDIS_REPLY_ARRAY;
                        redisReply name{};
                        redisReply* pair[2] = {&name, &entries};
                        stream.elements = 2;
                        stream.element = pair;
                        redisReply outer{};
                        redisReply* one[1] = {&stream};
                        outer.type = REDIS_REPLY_ARRAY;
                        outer.elements = 1;
                        outer.element = one;
                        take_entries(&outer, p);
                      });
      }
    }
    claim();
  }

  // Cancelled: everything of the alert still queued here is dropped now.
  void sweep(const std::string& alert_id) {
    for (auto& g : gateways) {
      if (!g.gw) continue;
      for (auto& q : g.queue)
        q.remove_if([&](Msg* m) {
          if (m->batch->alert->id != alert_id) return false;
          --g.queued;
          finish(m, "cancelled", "");
          return true;
        });
    }
    for (auto it = held.begin(); it != held.end();) {
      Msg* m = it->second;
      if (m->batch->alert->id != alert_id) {
        ++it;
        continue;
      }
      it = held.erase(it);
      m->held = false;
      finish(m, "cancelled", "");
    }
  }
};

Dispatcher::Dispatcher(uv_loop_t* loop, store::Redis& redis, directory::Directory& directory, const Clock& clock,
                       metrics::Metrics& metrics, DispatchConfig config)
    : impl_(std::make_unique<Impl>(loop, redis, directory, clock, metrics, std::move(config))) {}

Dispatcher::~Dispatcher() = default;

void Dispatcher::add_gateway(std::unique_ptr<Gateway> gateway, double rate_per_s) {
  auto& slot = impl_->gateways[static_cast<int>(gateway->channel())];
  slot.breaker = std::make_unique<CircuitBreaker>(impl_->clock);
  // A one-second burst: smooth enough to stay under a per-minute quota without 429 storms.
  slot.bucket = std::make_unique<TokenBucket>(impl_->clock, rate_per_s, std::max(1.0, rate_per_s));
  slot.queue_depth = &impl_->metrics.gateway_queue_depth(gateway->name());
  slot.bucket_tokens = &impl_->metrics.gateway_bucket_tokens(gateway->name());
  slot.gw = std::move(gateway);
}

bool Dispatcher::has_channel(Channel c) const { return impl_->gateways[static_cast<int>(c)].gw != nullptr; }

void Dispatcher::set_policies(std::map<std::string, TenantPolicy> policies) { impl_->policies = std::move(policies); }

void Dispatcher::start() {
  Impl& i = *impl_;
  if (i.started) return;
  i.started = true;
  i.poll_timer = i.make_timer();
  i.flush_timer = i.make_timer();
  i.retry_timer = i.make_timer();
  i.pump_timer = i.make_timer();
  i.ensure_groups();
  // First this consumer's own pending batches (work in progress when it last stopped),
  // then new ones.
  i.claim(0, true);
  uv_timer_start(i.poll_timer, [](uv_timer_t* t) { static_cast<Impl*>(t->data)->poll(); },
                 static_cast<uint64_t>(i.cfg.poll_ms), static_cast<uint64_t>(i.cfg.poll_ms));
}

void Dispatcher::stop(std::function<void()> done) {
  Impl& i = *impl_;
  i.stopping = true;
  if (i.started) {
    i.flush();  // what finished is recorded; the rest stays pending for the restart
    for (uv_timer_t* t : {i.poll_timer, i.flush_timer, i.retry_timer, i.pump_timer})
      uv_close(reinterpret_cast<uv_handle_t*>(t), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  }
  auto remaining = std::make_shared<int>(0);
  for (auto& g : i.gateways)
    if (g.gw) ++*remaining;
  if (*remaining == 0) return done();
  auto shared = std::make_shared<std::function<void()>>(std::move(done));
  for (auto& g : i.gateways)
    if (g.gw)
      g.gw->close([remaining, shared] {
        if (--*remaining == 0) (*shared)();
      });
}

void Dispatcher::plan(const std::string& tenant, const std::string& alert_id, const alerts::Alert& alert,
                      const directory::Resolution& resolution, std::function<void(sirena::Status)> done) {
  Impl& i = *impl_;
  std::string pfx = prefix(tenant);
  size_t n = 0;
  // Batches first (plain SETs, pipelined); the plan script then makes them visible at once.
  for (const auto& part : resolution.parts) {
    for (size_t start = 0; start < part.slots.size(); start += i.cfg.batch_size) {
      size_t end = std::min(part.slots.size(), start + i.cfg.batch_size);
      std::string text = part.tenant + "\n";
      for (size_t k = start; k < end; ++k) {
        text += std::to_string(part.slots[k]);
        text.push_back(' ');
      }
      std::string key = pfx + "batch:" + alert_id + ":" + std::to_string(n++);
      i.redis.command({"SET", key, text}, [](auto*, auto*) {});
    }
  }
  int prio = priority_of(alert);
  std::vector<std::string> args{alert_id, tenant, std::to_string(n), std::to_string(resolution.recipients),
                                std::to_string(prio), stream_key(prio)};
  for (Channel ch : {Channel::Sms, Channel::Apns, Channel::Fcm}) {
    if (!has_channel(ch)) continue;
    auto it = resolution.by_channel.find(to_string(ch));
    args.push_back(std::string("planned:") + to_string(ch));
    args.push_back(std::to_string(it == resolution.by_channel.end() ? 0 : it->second));
  }
  std::vector<std::string_view> argv(args.begin(), args.end());
  i.redis.eval(script(kPlanScript), {pfx}, argv, [this, alert_id, tenant, n, done = std::move(done)](
                                                    const redisReply* r, const Error* e) {
    if (e) return done(*e);
    if (r->type == REDIS_REPLY_ERROR)
      return done(make_error(500, "storage_error", std::string("plan script: ") + std::string(r->str, r->len)));
    if (r->integer >= 0) log::info("dispatch_planned", {{"tenant", tenant}, {"id", alert_id}, {"batches", n}});
    impl_->claim();
    done(Ok{});
  });
}

void Dispatcher::cancel(const std::string& alert_id) {
  Impl& i = *impl_;
  auto it = i.alerts.find(alert_id);
  if (it == i.alerts.end()) return;
  it->second->cancelled = true;
  i.sweep(alert_id);
}

void Dispatcher::cancel_references(const std::string& tenant, const std::vector<alerts::Reference>& refs) {
  Impl& i = *impl_;
  std::vector<std::string> hit;
  for (const auto& [id, a] : i.alerts) {
    if (a->tenant != tenant) continue;
    for (const auto& r : refs)
      if (r.sender == a->alert.sender && r.identifier == a->alert.identifier && r.sent == a->alert.sent.text)
        hit.push_back(id);
  }
  for (const auto& id : hit) cancel(id);
}

void Dispatcher::progress(const std::string& tenant, const std::string& alert_id,
                          std::function<void(Result<nlohmann::json>)> done) {
  Impl& i = *impl_;
  auto plan = std::make_shared<std::vector<std::pair<std::string, std::string>>>();
  i.redis.command({"HGETALL", prefix(tenant) + "plan:" + alert_id}, [plan](const redisReply* r, const Error* e) {
    if (!e) *plan = store::reply_pairs(r);
  });
  i.redis.command({"HGETALL", prefix(tenant) + "progress:" + alert_id},
                  [this, plan, done = std::move(done)](const redisReply* r, const Error* e) {
                    if (e) return done(*e);
                    nlohmann::json out = nlohmann::json::object();
                    for (Channel ch : {Channel::Sms, Channel::Apns, Channel::Fcm}) {
                      if (!has_channel(ch)) continue;
                      out[to_string(ch)] = {{"planned", 0},  {"accepted", 0}, {"delivered", 0}, {"failed", 0},
                                            {"expired", 0},  {"cancelled", 0}, {"skipped", 0}, {"pending", 0}};
                    }
                    for (const auto& [k, v] : *plan)
                      if (k.rfind("planned:", 0) == 0 && out.contains(k.substr(8))) out[k.substr(8)]["planned"] = std::stoll(v);
                    for (const auto& [k, v] : store::reply_pairs(r)) {
                      auto colon = k.find(':');
                      std::string ch = k.substr(0, colon), st = k.substr(colon + 1);
                      if (out.contains(ch)) out[ch][st] = out[ch].value(st, int64_t{0}) + std::stoll(v);
                    }
                    for (auto& [ch, c] : out.items()) {
                      int64_t final = c["accepted"].get<int64_t>() + c["delivered"].get<int64_t>() +
                                      c["failed"].get<int64_t>() + c["expired"].get<int64_t>() +
                                      c["cancelled"].get<int64_t>() + c["skipped"].get<int64_t>();
                      c["pending"] = std::max<int64_t>(0, c["planned"].get<int64_t>() - final);
                    }
                    done(out);
                  });
}

void Dispatcher::delivery_report(const std::string& alert_tenant, const std::string& alert_id,
                                 const std::string& recipient_tenant, const std::string& number, int type,
                                 std::function<void(Result<std::string>)> done) {
  // Kannel sends one type per report; a final one decides the delivery.
  std::string state, reason;
  if (type & kDlrDelivered) {
    state = "delivered";
  } else if (type & kDlrUndelivered) {
    state = "failed";
    reason = "undelivered (DLR 2)";
  } else if (type & kDlrSmscRejected) {
    state = "failed";
    reason = "rejected by the SMSC (DLR 16)";
  }
  std::vector<std::string> args{alert_id, recipient_tenant + "|" + number, state, reason};
  std::vector<std::string_view> argv(args.begin(), args.end());
  impl_->redis.eval(script(kDlrScript), {prefix(alert_tenant)}, argv,
                    [done = std::move(done)](const redisReply* r, const Error* e) {
                      if (e) return done(*e);
                      if (r->type == REDIS_REPLY_ERROR)
                        return done(make_error(500, "storage_error", std::string("dlr script: ") + std::string(r->str, r->len)));
                      done(store::reply_string(r));
                    });
}

void Dispatcher::deliveries(const std::string& tenant, const std::string& alert_id, const std::string& state,
                            const std::string& cursor, size_t limit, std::function<void(Result<nlohmann::json>)> done) {
  Impl& i = *impl_;
  std::string count = std::to_string(limit);
  i.redis.command(
      {"HSCAN", prefix(tenant) + "deliv:" + alert_id, cursor.empty() ? "0" : cursor, "COUNT", count},
      [this, state, done = std::move(done)](const redisReply* r, const Error* e) {
        if (e) return done(*e);
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) return done(make_error(500, "storage_error", "HSCAN"));
        std::string next = store::reply_string(r->element[0]);
        auto items = std::make_shared<nlohmann::json>(nlohmann::json::array());
        std::map<std::string, std::vector<std::pair<uint32_t, size_t>>> by_tenant;  // tenant -> (slot, item)
        for (const auto& [field, value] : store::reply_pairs(r->element[1])) {
          auto p1 = field.find(':'), p2 = field.rfind(':');
          std::string st = value.substr(0, value.find('|'));
          if (!state.empty() && st != state) continue;
          auto rest = value.substr(value.find('|') + 1);
          nlohmann::json item = {{"tenant", field.substr(0, p1)},
                                 {"channel", field.substr(p2 + 1)},
                                 {"state", st},
                                 {"attempts", std::stoi(rest.substr(0, rest.find('|')))},
                                 {"error", rest.substr(rest.find('|') + 1)}};
          uint32_t slot = static_cast<uint32_t>(std::stoul(field.substr(p1 + 1, p2 - p1 - 1)));
          by_tenant[field.substr(0, p1)].emplace_back(slot, items->size());
          items->push_back(std::move(item));
        }
        nlohmann::json next_json = next == "0" ? nlohmann::json() : nlohmann::json(next);
        if (by_tenant.empty()) return done(nlohmann::json{{"items", *items}, {"next", next_json}});
        // Recipient ids, from the contacts records (the slot is internal).
        auto remaining = std::make_shared<size_t>(by_tenant.size());
        auto shared_done = std::make_shared<std::function<void(Result<nlohmann::json>)>>(std::move(done));
        for (auto& [t, list] : by_tenant) {
          std::vector<std::string> keys{"HMGET", prefix(t) + "contacts"};
          for (auto& [slot, _] : list) keys.push_back(std::to_string(slot));
          std::vector<std::string_view> argv(keys.begin(), keys.end());
          impl_->redis.command(argv, [items, list, remaining, shared_done, next_json](const redisReply* r2,
                                                                                     const Error* e2) {
            if (!e2 && r2->type == REDIS_REPLY_ARRAY)
              for (size_t k = 0; k < list.size() && k < r2->elements; ++k) {
                directory::Contacts c;
                if (r2->element[k]->type == REDIS_REPLY_STRING &&
                    directory::unpack_contacts(std::string_view(r2->element[k]->str, r2->element[k]->len), &c))
                  (*items)[list[k].second]["recipient"] = c.id;
              }
            if (--*remaining == 0) (*shared_done)(nlohmann::json{{"items", *items}, {"next", next_json}});
          });
        }
      });
}

}  // namespace sirena::dispatch
