#include "daemon/dispatch/dispatcher.h"

#include <algorithm>
#include <charconv>
#include <deque>
#include <list>
#include <map>
#include <optional>
#include <queue>
#include <span>
#include <unordered_map>
#include <unordered_set>

#include "daemon/alerts/alert_json.h"
#include "daemon/alerts/lifecycle.h"
#include "daemon/core/ids.h"
#include "daemon/core/log.h"
#include "daemon/core/turn_hook.h"
#include "daemon/dispatch/flow.h"
#include "daemon/dispatch/render.h"
#include "daemon/dispatch/report_writer.h"
#include "daemon/dispatch/scripts.h"
#include "daemon/dispatch/sms_text.h"
#include "daemon/metrics/metrics.h"
#include "daemon/store/keys.h"
#include "daemon/store/redis.h"

namespace sirena::dispatch {
namespace {

constexpr const char* kGroup = "sirenad";
// Batches written by one plan call after the second: a 1M-recipient plan is 17 calls, with
// the fan-out's own loads and write-backs served in between.
constexpr size_t kPlanChunk = 64;
// How often the state of the alerts with batches here is read: the backstop for stops made
// through another daemon, which then stop sending here within about this long. At most
// one read per such alert, so at most max_batches reads a tick.
constexpr int64_t kStateCheckMs = 50;
// The call right after the first batch writes fewer: its texts are printed in the loop
// turn that handles the first batch's replies, ahead of its loading and first requests.
constexpr size_t kPlanSecondChunk = 4;
// A delivery report for an SMS whose acceptance this daemon has not seen is kept this
// long, at most kMaxEarlyReports of them (the acceptance is normally milliseconds away).
constexpr int64_t kEarlyReportMs = 60'000;
constexpr size_t kMaxEarlyReports = 262144;
// Batches waiting only for SMS delivery reports, beyond max_batches: at most this many
// times it (their messages stay in memory until reported).
constexpr size_t kReportWaitFactor = 4;
constexpr size_t kMaxBacklog = 2048;  // outcomes written at the latest when this many wait
// Batches read from Redis at once: enough to keep ahead of the gateways while every
// round trip waits for Redis's fsyncs. Claimed batches wait for their turn, and an idle
// dispatcher loads one alone first: Redis answers the commands it read together only
// after running them all, so the first contacts would wait for everyone else's.
constexpr size_t kMaxLoading = 8;
constexpr size_t kBurst = 128;  // messages submitted to a gateway per loop turn
// ... and when it has nothing in flight (an alert's first messages): these are written at
// the end of this turn, and answered while the next turn renders a whole burst.
constexpr size_t kFirstBurst = 8;

using store::keys::dispatch_stream;

// Push messages accepted at their first attempt (nearly all of them) are recorded per
// batch, "<channel>:<from>[-<to>]," for each run of positions, instead of one deliv field
// each: Redis then stores a few bytes per message instead of a hash entry.
std::string encode_accepted(std::vector<std::pair<Channel, uint32_t>>& v) {
  std::sort(v.begin(), v.end());
  std::string out;
  for (size_t i = 0; i < v.size();) {
    size_t j = i;
    while (j + 1 < v.size() && v[j + 1].first == v[i].first && v[j + 1].second == v[j].second + 1) ++j;
    out.append(to_string(v[i].first)).append(":").append(std::to_string(v[i].second));
    if (j > i) out.append("-").append(std::to_string(v[j].second));
    out += ',';
    i = j + 1;
  }
  return out;
}

// Calls fn(channel, position) for each message of a record made by encode_accepted().
template <class F>
void each_accepted(std::string_view record, F fn) {
  while (true) {
    auto colon = record.find(':'), comma = record.find(',');
    if (colon == std::string_view::npos || comma == std::string_view::npos || comma < colon) return;
    std::string_view name = record.substr(0, colon);
    Channel ch = name == "apns" ? Channel::Apns : name == "fcm" ? Channel::Fcm : Channel::Sms;
    const char* end = record.data() + comma;
    uint32_t from = 0, to = 0;
    auto r = std::from_chars(record.data() + colon + 1, end, from);
    to = from;
    if (r.ptr < end && *r.ptr == '-') std::from_chars(r.ptr + 1, end, to);
    for (uint32_t i = from; i <= to && i - from < (1u << 20); ++i) fn(ch, i);
    record.remove_prefix(comma + 1);
  }
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

// A plan's batches, as written: batch k is part batches[k].first from slot batches[k].second,
// at most batch_size slots. Its text, "<R>\n" and the slots, is printed just before the call
// that writes it: a 1M-recipient plan has a million numbers to print, which must not hold up
// the first batch's replies.
struct PlanText {
  std::shared_ptr<const directory::Resolution> resolution;
  std::vector<std::pair<const directory::Resolution::TenantPart*, size_t>> batches;
  size_t batch_size = 0;

  std::span<const directory::Slot> slots(size_t k) const {
    const auto& [part, start] = batches[k];
    size_t end = std::min(part->slots.size(), start + batch_size);
    return std::span<const directory::Slot>(part->slots).subspan(start, end - start);
  }
  std::string text(size_t k) const {
    const std::string& tenant = batches[k].first->tenant;
    auto ss = slots(k);
    std::string out;
    out.reserve(tenant.size() + 1 + ss.size() * 11);
    out.append(tenant).push_back('\n');
    char digits[16];
    for (directory::Slot s : ss) {
      char* e = std::to_chars(digits, digits + sizeof digits, s).ptr;
      out.append(digits, e).push_back(' ');
    }
    return out;
  }
};

struct Dispatcher::Impl {
  struct Active {
    std::string id, tenant;
    alerts::Alert alert;
    int priority = kPriorities - 1;
    std::string collapse;
    int64_t received_ms = 0;
    int64_t expires_ms = 0;
    bool cancelled = false;
    bool state_check_pending = false;  // at most one state read in flight per alert
    bool first_accepted = false;
    int64_t last_used_ms = 0;
    // What its messages say, per recipient language: built for the first message.
    std::unordered_map<std::string, std::shared_ptr<const Content>> push_content, sms_content;
  };
  struct Batch;
  struct Msg {
    Message m;
    Batch* batch;
    uint32_t pos = 0;  // its slot's index in the batch
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
    // Read from the stream for the first time: nobody has sent any of its messages, so
    // no outcome can exist yet (a batch delivered before is checked against deliv:<A>).
    bool fresh = false;
    std::shared_ptr<Active> alert;
    int64_t number = -1;  // in the plan
    std::string rtenant;
    std::vector<std::unique_ptr<Msg>> msgs;
    // Read with a batch delivered before: its first-attempt record, as accepted_key()s.
    std::vector<uint64_t> first_accepted;
    size_t remaining = 0;
    size_t awaiting = 0;  // of the remaining: accepted, waiting only for their delivery report
    prometheus::Counter* accepted[3] = {};  // sirena_messages_total{result="accepted"} per channel
  };
  struct GatewaySlot {
    std::unique_ptr<Gateway> gw;
    std::unique_ptr<CircuitBreaker> breaker;
    std::unique_ptr<TokenBucket> bucket;
    FairQueue<Msg*> queue[kPriorities];  // round-robin over the alert tenants
    size_t queued = 0;
    size_t in_flight = 0;
    // Looked up once: these move with every message.
    prometheus::Gauge* queue_depth = nullptr;
    prometheus::Gauge* bucket_tokens = nullptr;
    prometheus::Gauge* circuit = nullptr;
    prometheus::Gauge* in_flight_gauge = nullptr;
    prometheus::Histogram* duration = nullptr;
    prometheus::Histogram* latency = nullptr;
  };
  struct Written {  // one message's final outcome, waiting for the next write-back
    Active* alert;    // kept alive by the message's batch until the write-back is sent
    std::string field, value;  // empty for a push accepted at its first attempt: then
    int64_t batch = -1;        // it goes in its batch's record, at `pos`
    uint32_t pos = 0;
    Channel channel;
    std::string_view state;  // a literal
  };
  struct FlushCall {  // one alert's write-back (lua/flush.lua), kept until Redis took it
    std::string prefix;
    std::vector<std::string> args;
    size_t n = 0;                      // outcomes
    std::vector<std::string> entries;  // the stream entries it acknowledges
  };
  struct Claimed {  // a stream entry of this consumer, waiting to be loaded
    std::string entry, tenant, alert, batch;
    bool fresh;
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
  ProgressReader reader{redis};
  DispatchConfig cfg;
  Backoff backoff;
  GatewaySlot gateways[3];
  std::unordered_map<std::string, std::shared_ptr<Active>> alerts;
  // Alerts being read from Redis, with the batch loads waiting for them.
  std::unordered_map<std::string, std::vector<std::function<void(std::shared_ptr<Active>)>>> alerts_loading;
  std::list<std::unique_ptr<Batch>> batches;
  std::deque<Claimed> claimed[kPriorities];
  std::unordered_map<std::string, Batch*> prefetching;  // batch key -> the batch waiting for it
  // The batches of a fresh plan this daemon wrote (base 0), up to its last call Redis
  // answered: such a batch's text is known here, so its load is the HMGET of its contacts
  // alone. The load script costs Redis as much again, turning a thousand contacts into Lua
  // values and back. Forgotten when every batch was loaded once, when a call fails, and
  // after a minute unused; a batch not found here is read by the script.
  struct OwnPlan {
    std::shared_ptr<const PlanText> text;
    size_t written = 0;  // batches [0, written) are durable, as text describes them
    size_t left = 0;     // loads still expected
    int64_t last_used_ms = 0;
  };
  std::unordered_map<std::string, OwnPlan> own_plans;  // by alert id
  std::unordered_set<std::string> planning;             // alerts whose plan() is under way
  size_t claimed_count = 0;
  size_t batches_loading = 0;
  size_t waiting_batches = 0;  // batches in work that only wait for delivery reports (capacity())
  std::priority_queue<Retry, std::vector<Retry>, std::greater<>> retries;
  std::multimap<int64_t, Msg*> held;  // SMS fallbacks by deadline
  std::map<std::string, TenantPolicy> policies;
  // SMS accepted by a gateway that reports (Kannel asked for delivery reports): final once
  // any report proves the SMSC has it, sent again when none comes in time (a crashed
  // bearerbox loses what it had queued). By report_key(); reports that arrive before the
  // acceptance is seen wait in `early_reports` (forgotten after kEarlyReportMs).
  struct Unreported {
    Msg* msg;
    std::multimap<int64_t, std::string>::iterator due;
  };
  std::unordered_map<std::string, Unreported> unreported;
  std::multimap<int64_t, std::string> unreported_due;
  std::unordered_map<std::string, int64_t> early_reports;
  std::deque<std::pair<int64_t, std::string>> early_order;
  std::vector<Written> outcomes;
  std::vector<std::pair<Batch*, bool>> finished_batches;  // flushed with the next write-back
  uv_timer_t* poll_timer = nullptr;
  uv_timer_t* flush_timer = nullptr;
  uv_timer_t* retry_timer = nullptr;
  uv_timer_t* pump_timer = nullptr;
  uv_idle_t* pump_idle = nullptr;  // the rest of a burst, on the next loop turn
  size_t unconfirmed = 0;          // outcomes sent to Redis, reply not yet seen (or failed, to be sent again)
  std::vector<std::shared_ptr<FlushCall>> failed_flushes;
  std::unordered_set<std::string> acks_unconfirmed;       // entries of the calls not yet taken
  std::unordered_set<std::string> entries_loading;        // claimed entries whose batch is being read
  uint64_t flushes = 0;                                   // write-back calls made (their tokens)
  const std::string boot_id = make_ulid(clock.now_ms());  // tokens of this process's calls
  bool claiming = false;
  bool claim_again = false;  // asked for while claiming: another pass follows
  // A batch load or a claim failed (Redis lost or stalled): its entries stay pending on this
  // consumer, so the next claim reads them back at once rather than a reclaim 30 s later.
  bool reread_own = false;
  bool alert_read_failed = false;  // set while with_alert() calls back after a Redis error
  bool started = false;
  bool stopping = false;
  int64_t last_reclaim_ms = 0;
  int64_t last_state_check_ms = 0;
  int64_t last_forget_ms = 0;
  ReportWriter reports{loop, redis};  // SMS delivery reports, group-committed
  // The gateways' gauges (queue depth, in flight, circuit, bucket) are set once a loop
  // turn, after what moved them: per message they were 2% of the daemon's CPU.
  std::unique_ptr<TurnHook> gauge_hook;

  Impl(uv_loop_t* l, store::Redis& r, directory::Directory& d, const Clock& c, metrics::Metrics& m,
       DispatchConfig conf)
      : loop(l),
        redis(r),
        directory(d),
        clock(c),
        metrics(m),
        cfg(std::move(conf)),
        backoff(cfg.backoff_base_ms, cfg.backoff_cap_ms) {}

  // Its deliv field: "<R>:<slot>:<channel>".
  static std::string field_of(const Msg& m) {
    const Batch& b = *m.batch;
    std::string f;
    f.reserve(b.rtenant.size() + 16);
    f.append(b.rtenant).append(":").append(std::to_string(m.m.slot)).append(":").append(to_string(m.m.channel));
    return f;
  }
  static uint64_t accepted_key(Channel ch, uint32_t pos) { return uint64_t{pos} << 2 | static_cast<uint8_t>(ch); }

  uv_timer_t* make_timer() {
    auto* t = new uv_timer_t;
    uv_timer_init(loop, t);
    t->data = this;
    return t;
  }

  // ---- claiming work -------------------------------------------------------------

  // Batches in work count against max_batches, except those whose remaining messages are
  // all with the provider, only waiting for delivery reports (up to kReportWaitFactor
  // times max_batches of them): an SMSC reports seconds after it accepts, and the next
  // batches must not wait for that.
  size_t capacity() const {
    size_t waiting = std::min(waiting_batches, static_cast<size_t>(cfg.max_batches) * kReportWaitFactor);
    size_t taken = batches.size() - waiting + batches_loading + claimed_count;
    return cfg.max_batches > taken ? cfg.max_batches - taken : 0;
  }

  static bool only_waiting(const Batch* b) { return b->remaining > 0 && b->awaiting == b->remaining; }
  // After `b`'s remaining or awaiting changed; `was`: only_waiting(b) before.
  void waiting_changed(const Batch* b, bool was) {
    bool now = only_waiting(b);
    if (now && !was) {
      ++waiting_batches;
      claim();  // its place in the window is free
    }
    if (was && !now) --waiting_batches;
  }
  void await_report(Msg* m) {
    bool was = only_waiting(m->batch);
    ++m->batch->awaiting;
    waiting_changed(m->batch, was);
  }
  void report_done(Msg* m) {
    bool was = only_waiting(m->batch);
    --m->batch->awaiting;
    waiting_changed(m->batch, was);
  }

  // One pass over the streams, most urgent first, for up to capacity() batches. A claim
  // asked for during a pass (a new plan) runs another pass after it, so none is lost.
  // `own_pending`: this consumer's own pending entries first (after a restart, or after
  // a load or a claim failed: see reread_own).
  void claim(bool own_pending = false) {
    if (claiming) {
      claim_again = true;
      reread_own |= own_pending;
      return;
    }
    claiming = true;
    claim_again = false;
    claim_stream(0, own_pending || std::exchange(reread_own, false));
  }

  void claim_stream(int priority, bool own_pending) {
    size_t want = capacity();
    if (stopping || !started || !redis.connected() || want == 0 || priority >= kPriorities) {
      if (own_pending && priority < kPriorities) reread_own = true;  // not read yet: the next claim does
      claiming = false;
      if (claim_again) claim();
      return;
    }
    // Own entries still in work here come back too (and are skipped): ask for enough.
    size_t count = own_pending ? want + batches.size() + claimed_count + acks_unconfirmed.size() : want;
    std::string stream = dispatch_stream(priority), count_text = std::to_string(count);
    // ">" = new entries; "0" = this consumer's own pending entries.
    redis.command({"XREADGROUP", "GROUP", kGroup, cfg.consumer, "COUNT", count_text, "STREAMS", stream,
                   own_pending ? "0" : ">"},
                  [this, priority, own_pending](const redisReply* r, const Error* e) {
                    // Lost with the connection, a claim's entries may be ours all the same.
                    if (e || (r && r->type == REDIS_REPLY_ERROR)) reread_own = true;
                    if (!e && r->type == REDIS_REPLY_ARRAY) take_entries(r, priority, !own_pending);
                    if (r && r->type == REDIS_REPLY_ERROR) ensure_groups();
                    claim_stream(priority + 1, own_pending);
                  });
  }

  void take_entries(const redisReply* r, int priority, bool fresh) {
    // [[stream, [[id, [field, value, ...]], ...]]]
    for (size_t s = 0; s < r->elements; ++s) {
      const redisReply* entries = r->element[s]->element[1];
      for (size_t i = 0; i < entries->elements; ++i) {
        const redisReply* entry = entries->element[i];
        std::string id = store::reply_string(entry->element[0]);
        if (in_work(id)) continue;
        const redisReply* kv = entry->element[1];
        if (!kv || kv->type != REDIS_REPLY_ARRAY) {
          // Deleted or trimmed entry in our pending list: nothing to do but acknowledge.
          redis.command({"XACK", dispatch_stream(priority), kGroup, id}, [](auto*, auto*) {});
          continue;
        }
        std::string alert, tenant, batch;
        bool replanned = false;  // its recipients may have outcomes from an interrupted plan
        for (size_t f = 0; f + 1 < kv->elements; f += 2) {
          std::string k = store::reply_string(kv->element[f]);
          if (k == "a") alert = store::reply_string(kv->element[f + 1]);
          else if (k == "t") tenant = store::reply_string(kv->element[f + 1]);
          else if (k == "b") batch = store::reply_string(kv->element[f + 1]);
          else if (k == "r") replanned = true;
        }
        claimed[priority].push_back({id, tenant, alert, batch, fresh && !replanned});
        ++claimed_count;
      }
    }
    load_next();
  }

  // A stream entry this daemon already works on: XAUTOCLAIM returns our own entries too
  // when a batch takes longer than reclaim_idle_ms (retries, rate limits, awaited reports).
  bool in_work(const std::string& entry) const {
    for (const auto& b : batches)
      if (b->stream_entry == entry) return true;
    for (const auto& q : claimed)
      for (const auto& c : q)
        if (c.entry == entry) return true;
    // Done here, its acknowledgement not yet confirmed by Redis (a write-back under way or
    // to be sent again): read again, it would send what only that write-back records.
    return acks_unconfirmed.count(entry) > 0 || entries_loading.count(entry) > 0;
  }

  // Starts loading claimed batches, most urgent first, up to kMaxLoading at once.
  void load_next() {
    size_t limit = batches.empty() && batches_loading == 0 ? 1 : kMaxLoading;
    for (auto& q : claimed) {
      while (!q.empty() && batches_loading < limit) {
        Claimed c = std::move(q.front());
        q.pop_front();
        --claimed_count;
        entries_loading.insert(c.entry);
        load_batch(static_cast<int>(&q - claimed), c.entry, c.tenant, c.alert, c.batch, c.fresh);
      }
    }
  }

  void loaded(const Batch& b) {
    entries_loading.erase(b.stream_entry);
    --batches_loading;
    load_next();
  }

  void ensure_groups() {
    for (int p = 0; p < kPriorities; ++p)
      redis.command({"XGROUP", "CREATE", dispatch_stream(p), kGroup, "0", "MKSTREAM"}, [](auto*, auto*) {});
  }

  // ---- loading a batch -------------------------------------------------------------

  // The alert in work, read once however many of its batches are loading.
  // `fn` gets null when the alert is gone or unreadable, and also when Redis could not be
  // asked (`alert_read_failed` then tells the two apart).
  void with_alert(const std::string& tenant, const std::string& id, std::function<void(std::shared_ptr<Active>)> fn) {
    if (auto it = alerts.find(id); it != alerts.end()) return fn(it->second);
    auto& waiting = alerts_loading[id];
    waiting.push_back(std::move(fn));
    if (waiting.size() > 1) return;
    std::string key = store::keys::alert(tenant, id);
    redis.command({"HMGET", key, "parsed", "state", "received_ms", "expires_ms"},
                  [this, tenant, id](const redisReply* r, const Error* e) {
                    std::shared_ptr<Active> a = read_alert(tenant, id, e ? nullptr : r);
                    if (a) a = alerts.emplace(id, a).first->second;
                    auto fns = std::move(alerts_loading[id]);
                    alerts_loading.erase(id);
                    // An error reply is Redis unable to answer (LOADING after a restart, ...),
                    // not the alert's absence.
                    alert_read_failed = e != nullptr || (r && r->type == REDIS_REPLY_ERROR);
                    for (auto& fn : fns) fn(a);
                    alert_read_failed = false;
                  });
  }

  std::shared_ptr<Active> read_alert(const std::string& tenant, const std::string& id, const redisReply* r) {
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 4 || r->element[0]->type == REDIS_REPLY_NIL)
      return nullptr;
    auto json = nlohmann::json::parse(store::reply_string(r->element[0]), nullptr, false);
    auto parsed = alerts::alert_from_json(json);
    if (!parsed) return nullptr;
    std::string state = store::reply_string(r->element[1]);
    std::string rec = store::reply_string(r->element[2]);
    std::string exp = store::reply_string(r->element[3]);
    auto a = make_active(tenant, id, std::move(parsed).value(), rec.empty() ? clock.now_ms() : std::stoll(rec));
    auto st = alerts::parse_state(state);
    a->cancelled = !st || !alerts::is_sending(*st);
    a->expires_ms = exp.empty() ? 0 : std::stoll(exp);
    return a;
  }

  std::shared_ptr<Active> make_active(const std::string& tenant, const std::string& id, alerts::Alert alert,
                                      int64_t received_ms) {
    auto a = std::make_shared<Active>();
    a->id = id;
    a->tenant = tenant;
    a->alert = std::move(alert);
    a->priority = priority_of(a->alert);
    a->collapse = collapse_id(a->alert);
    a->received_ms = received_ms;
    a->expires_ms = alerts::latest_expiry_ms(a->alert).value_or(0);
    a->last_used_ms = clock.now_ms();
    return a;
  }

  void load_batch(int priority, const std::string& entry, const std::string& tenant, const std::string& alert_id,
                  const std::string& batch_no, bool fresh) {
    ++batches_loading;
    with_alert(tenant, alert_id, [=, this](std::shared_ptr<Active> a) {
      auto b = std::make_unique<Batch>();
      b->priority = priority;
      b->stream_entry = entry;
      b->fresh = fresh;
      b->alert = a;
      std::from_chars(batch_no.data(), batch_no.data() + batch_no.size(), b->number);
      if (!a && alert_read_failed) {
        // Redis was not reachable: the entry stays pending and is read again.
        loaded(*b);
        reread_own = true;
        return;
      }
      if (!a) {
        // The alert is gone (or unreadable): nothing can be sent for it.
        metrics.unexpected("dispatch_alert_missing").Increment();
        loaded(*b);
        redis.command({"XACK", dispatch_stream(priority), kGroup, entry}, [](auto*, auto*) {});
        return;
      }
      a->last_used_ms = clock.now_ms();
      std::string key = store::keys::batch(tenant, alert_id, batch_no);
      auto plan = own_batch(alert_id, b->number);
      if (auto it = prefetching.find(key); it != prefetching.end()) {
        it->second = b.release();  // its load is on the way
        return;
      }
      if (plan) return load_own(std::move(b), std::move(plan));
      Batch* raw = b.release();
      redis.eval(scripts::load(), {key}, {}, [this, raw](const redisReply* r, const Error* e) {
        on_load(std::unique_ptr<Batch>(raw), r, e);
      });
    });
  }

  // A plan call answered: batches [0, to) of a fresh plan are durable as `plan` has them.
  void note_written(const std::string& alert_id, const std::shared_ptr<const PlanText>& plan, size_t to,
                    const redisReply* r, const Error* e) {
    bool fresh = !e && r->type == REDIS_REPLY_ARRAY && r->elements >= 3 &&
                 r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer >= 0 &&
                 r->element[2]->type == REDIS_REPLY_INTEGER && r->element[2]->integer == 0;
    auto it = own_plans.find(alert_id);
    if (!fresh) {
      if (it != own_plans.end()) own_plans.erase(it);
      return;
    }
    if (it == own_plans.end() || it->second.text != plan)
      it = own_plans.insert_or_assign(alert_id, OwnPlan{plan, 0, plan->batches.size(), 0}).first;
    it->second.written = to;
    it->second.last_used_ms = clock.now_ms();
  }

  // Batch `number` of `alert_id` when this daemon wrote it (see own_plans), else null.
  std::shared_ptr<const PlanText> own_batch(const std::string& alert_id, int64_t number) {
    auto it = own_plans.find(alert_id);
    if (it == own_plans.end() || number < 0 || static_cast<size_t>(number) >= it->second.written)
      return nullptr;
    std::shared_ptr<const PlanText> plan = it->second.text;
    it->second.last_used_ms = clock.now_ms();
    if (--it->second.left == 0) own_plans.erase(it);
    return plan;
  }

  // Loads a batch of an own plan: the contacts of its slots, in order, with one HMGET.
  void load_own(std::unique_ptr<Batch> b, std::shared_ptr<const PlanText> plan) {
    size_t k = static_cast<size_t>(b->number);
    b->rtenant = plan->batches[k].first->tenant;
    auto slots = plan->slots(k);
    std::string key = store::keys::contacts(b->rtenant);
    std::string digits(slots.size() * 10, '\0');  // a 32-bit slot has at most 10 digits
    std::vector<std::string_view> argv;
    argv.reserve(2 + slots.size());
    argv.push_back("HMGET");
    argv.push_back(key);
    char* p = digits.data();
    for (directory::Slot s : slots) {
      char* e = std::to_chars(p, p + 10, s).ptr;
      argv.emplace_back(p, static_cast<size_t>(e - p));
      p = e;
    }
    Batch* raw = b.release();
    redis.command(argv, [this, raw, plan = std::move(plan), slots](const redisReply* r, const Error* e) {
      std::unique_ptr<Batch> b(raw);
      if (e || r->type != REDIS_REPLY_ARRAY) {
        loaded(*b);
        reread_own = true;
        return;  // left pending: re-read by the next claim (reread_own)
      }
      add_messages(std::move(b), slots, r);  // `plan` keeps the slots alive
    });
  }

  // Reads a batch before it is claimed: plan() sends it behind the plan's first call, so
  // the first batch's contacts come back with the claim. The claim's load_batch() takes
  // it; unclaimed (another alert's batches came first), it is dropped.
  void prefetch(const std::string& key) {
    prefetching.emplace(key, nullptr);
    redis.eval(scripts::load(), {key}, {}, [this, key](const redisReply* r, const Error* e) {
      auto it = prefetching.find(key);
      Batch* raw = it->second;
      prefetching.erase(it);
      if (raw) on_load(std::unique_ptr<Batch>(raw), r, e);
    });
  }

  void on_load(std::unique_ptr<Batch> b, const redisReply* r, const Error* e) {
    if (e || r->type != REDIS_REPLY_ARRAY) {
      loaded(*b);
      reread_own = true;
      return;  // left pending: re-read by the next claim (reread_own)
    }
    std::string_view text = r->elements == 2 ? std::string_view(r->element[0]->str, r->element[0]->len) : "";
    auto nl = text.find('\n');
    if (nl == std::string::npos) {
      metrics.unexpected("dispatch_batch_missing").Increment();
      loaded(*b);
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
    add_messages(std::move(b), slots, r->element[1]);
  }

  static std::shared_ptr<const Content> make_content(const Active& a, const std::string& language,
                                                     const alerts::Info* info, std::string title, std::string body,
                                                     int segments) {
    auto c = std::make_shared<Content>();
    c->alert_id = a.id;
    c->alert_tenant = a.tenant;
    c->language = language;
    c->severity = info ? info->severity : "";
    c->title = std::move(title);
    c->body = std::move(body);
    c->segments = segments;
    c->expires_ms = a.expires_ms;
    c->collapse_id = a.collapse;
    c->test = a.alert.status == alerts::Status::Test || a.alert.status == alerts::Status::Exercise;
    return c;
  }

  // One message per channel the recipient can be reached on (`contacts`: the HMGET of
  // the slots' packed contacts, in order); then prepare().
  void add_messages(std::unique_ptr<Batch> b, std::span<const uint32_t> slots, const redisReply* r) {
    if (r->type != REDIS_REPLY_ARRAY || r->elements != slots.size()) {
      loaded(*b);
      return;
    }
    Active& a = *b->alert;
    const TenantPolicy& policy = policy_of(a.tenant);
    uint32_t pos = 0;
    auto add = [&](Channel ch, uint32_t slot, std::shared_ptr<const Content> content, std::string&& address) {
      auto m = std::make_unique<Msg>();
      m->batch = b.get();
      m->pos = pos;
      Message& msg = m->m;
      msg.content = std::move(content);
      msg.tenant = b->rtenant;
      msg.slot = slot;
      msg.channel = ch;
      msg.address = std::move(address);
      b->msgs.push_back(std::move(m));
      return b->msgs.back().get();
    };
    for (size_t i = 0; i < slots.size(); ++i) {
      pos = static_cast<uint32_t>(i);
      if (r->element[i]->type != REDIS_REPLY_STRING) continue;  // deleted since the plan
      directory::Contacts c;
      if (!directory::unpack_contacts(std::string_view(r->element[i]->str, r->element[i]->len), &c)) continue;
      const alerts::Info* info = nullptr;
      bool info_picked = false;
      auto pick = [&] {
        if (!info_picked) info = pick_info(a.alert, c.language);
        info_picked = true;
        return info;
      };
      // One device per platform: the most recently registered token (the last one).
      directory::PushToken* last[2] = {nullptr, nullptr};
      for (auto& t : c.push) last[t.platform == directory::Platform::Apns ? 0 : 1] = &t;
      std::vector<Msg*> pushes;
      for (int k = 0; k < 2; ++k) {
        Channel ch = k == 0 ? Channel::Apns : Channel::Fcm;
        if (!last[k] || !gateways[static_cast<int>(ch)].gw) continue;
        auto& content = a.push_content[c.language];
        if (!content) {
          PushText t = render_push(a.alert, pick());
          content = make_content(a, c.language, info, std::move(t.title), std::move(t.body), 0);
        }
        Msg* m = add(ch, slots[i], content, std::move(last[k]->token));
        m->m.app = std::move(last[k]->app);
        pushes.push_back(m);
      }
      if (c.phone.empty() || !pick() || !gateways[static_cast<int>(Channel::Sms)].gw) continue;
      auto& content = a.sms_content[c.language];
      if (!content) {
        std::string text = render_sms(a.alert, *info, policy.sms);
        int segments = static_cast<int>(count_sms(text).segments);
        content = make_content(a, c.language, info, "", std::move(text), segments);
      }
      Msg* sms = add(Channel::Sms, slots[i], content, std::move(c.phone));
      if (!pushes.empty() && policy.for_severity(info->severity) == ChannelPolicy::PushFirst) {
        sms->held = true;
        sms->pushes_waiting = static_cast<int>(pushes.size());
        for (Msg* m : pushes) m->fallback = sms;
      }
    }
    prepare(std::move(b));
  }

  // Before a batch is queued: SMS numbers are mapped for delivery reports (the smsto HSET
  // is answered before any SMS of the batch is sent), and a batch delivered before (re-read
  // after a restart, or taken over) reads the outcomes already written. A fresh batch of
  // push messages is queued at once.
  void prepare(std::unique_ptr<Batch> b) {
    if (b->msgs.empty()) {
      loaded(*b);
      return finish_empty(std::move(b));
    }
    const Active& a = *b->alert;
    std::vector<std::string> map{"HSET", store::keys::smsto(a.tenant, a.id)};
    for (const auto& m : b->msgs)
      if (m->m.channel == Channel::Sms) {
        map.push_back(b->rtenant + "|" + m->m.address);
        map.push_back(field_of(*m));
      }
    bool sms = map.size() > 2;
    if (b->fresh && !sms) {
      loaded(*b);
      return queue(std::move(b), nullptr);
    }
    std::vector<std::string> read;
    if (!b->fresh) {
      // Its first-attempt record, then the other outcomes (answered in this order).
      redis.command({"HGET", store::keys::acc(a.tenant, a.id), std::to_string(b->number)}, [raw = b.get()](const redisReply* r, const Error* e) {
        if (e || r->type != REDIS_REPLY_STRING) return;
        each_accepted(std::string_view(r->str, r->len),
                      [raw](Channel ch, uint32_t pos) { raw->first_accepted.push_back(accepted_key(ch, pos)); });
        std::sort(raw->first_accepted.begin(), raw->first_accepted.end());
      });
      read = {"HMGET", store::keys::deliv(a.tenant, a.id)};
      for (const auto& m : b->msgs) read.push_back(field_of(*m));
    }
    // The reply of the last command sent (HMGET, else HSET) continues.
    Batch* raw = b.release();
    store::Redis::Callback next = [this, raw](const redisReply* r, const Error* e) {
      std::unique_ptr<Batch> b(raw);
      loaded(*b);
      if (e) {
        reread_own = true;
        return;  // left pending: re-read by the next claim (reread_own)
      }
      if (b->fresh) {
        if (r->type == REDIS_REPLY_ERROR) metrics.unexpected("dispatch_smsto_failed").Increment();
        return queue(std::move(b), nullptr);
      }
      if (r->type != REDIS_REPLY_ARRAY || r->elements != b->msgs.size()) {
        reread_own = true;  // e.g. LOADING after a Redis restart: read again
        return;
      }
      queue(std::move(b), r);
    };
    if (sms) {
      std::vector<std::string_view> argv(map.begin(), map.end());
      if (read.empty()) return redis.command(argv, std::move(next));
      redis.command(argv, [this](const redisReply* r, const Error* e) {
        if (e || r->type == REDIS_REPLY_ERROR) metrics.unexpected("dispatch_smsto_failed").Increment();
      });
    }
    std::vector<std::string_view> argv(read.begin(), read.end());
    redis.command(argv, std::move(next));
  }

  // Drops messages already final (`deliv`: their states, for a batch delivered before),
  // settles SMS fallbacks whose pushes are already decided, and queues the rest.
  void queue(std::unique_ptr<Batch> b, const redisReply* deliv) {
    std::vector<Msg*> skip;
    if (deliv) {
      std::vector<std::unique_ptr<Msg>> todo;
      for (size_t i = 0; i < b->msgs.size(); ++i) {
        Msg* m = b->msgs[i].get();
        std::string v = store::reply_string(deliv->element[i]);
        if (std::binary_search(b->first_accepted.begin(), b->first_accepted.end(), accepted_key(m->m.channel, m->pos)))
          v = "accepted";
        std::string_view state = std::string_view(v).substr(0, v.find('|'));
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
    }
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
    g.queue[m->batch->priority].push_back(m->m.content->alert_tenant, m);
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
    g.queue[m->batch->priority].push_front(m->m.content->alert_tenant, m);
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
    // A burst (a new batch, a window reopening) leaves in slices: what is submitted is
    // written at the end of the loop turn, so the first requests need not wait for the
    // whole burst to be rendered.
    size_t budget = g.in_flight == 0 ? kFirstBurst : kBurst;
    // A gateway that groups messages into requests gets whole batches per turn: a slice
    // that cut one would make a request of its own.
    if (size_t batch = g.bucket->batch(); batch > 1) budget = batch * std::max<size_t>(1, kBurst / batch);
    const int64_t now_ms = clock.now_ms();  // a burst takes microseconds
    while (g.gw->capacity() > 0) {
      if (budget-- == 0) {
        if (!uv_is_active(reinterpret_cast<uv_handle_t*>(pump_idle)))
          uv_idle_start(pump_idle, [](uv_idle_t* h) {
            uv_idle_stop(h);
            static_cast<Impl*>(h->data)->pump_all();
          });
        break;
      }
      // Outcomes not yet durable are what a crash would resend: wait for Redis to catch up.
      // With write-backs under way their replies pump again (the flush timer takes what
      // waits meanwhile): a write-back per answer would cost Redis an fsync each.
      if (outcomes.size() + unconfirmed >= cfg.max_unconfirmed) {
        if (unconfirmed == 0) flush();
        break;
      }
      Msg* m = pop(g);
      if (!m) break;
      Active& a = *m->batch->alert;
      if (a.cancelled) {
        finish(m, "cancelled", "");
        continue;
      }
      if (a.expires_ms && now_ms >= a.expires_ms) {
        finish(m, "expired", "");
        continue;
      }
      if (!g.breaker->allow()) {
        push_front(g, m);
        metrics.circuit_state(g.gw->name()).Set(static_cast<double>(g.breaker->state()));
        arm_pump(200);
        break;
      }
      // A batching gateway is released a whole batch at once (the rate stays per message).
      if (!g.bucket->take(g.queued + 1)) {
        push_front(g, m);
        arm_pump(g.bucket->wait_ms(g.queued));
        break;
      }
      send(g, m);
    }
    if (gauge_hook) gauge_hook->schedule();
  }

  void set_gauges() {
    for (GatewaySlot& g : gateways) {
      if (!g.gw) continue;
      g.queue_depth->Set(static_cast<double>(g.queued));
      g.in_flight_gauge->Set(static_cast<double>(g.in_flight));
      g.circuit->Set(static_cast<double>(g.breaker->state()));  // also once a success closed it
      g.bucket_tokens->Set(g.bucket->fill());
    }
  }

  void arm_pump(int64_t ms) {
    if (uv_is_active(reinterpret_cast<uv_handle_t*>(pump_timer))) return;
    uv_timer_start(pump_timer, [](uv_timer_t* t) { static_cast<Impl*>(t->data)->pump_all(); },
                   static_cast<uint64_t>(std::max<int64_t>(ms, 1)), 0);
  }

  void send(GatewaySlot& g, Msg* m) {
    ++g.in_flight;
    ++m->m.attempt;
    int64_t started = clock.mono_ns();
    GatewaySlot* gp = &g;
    g.gw->send(m->m, [this, gp, m, started](const SendResult& r) {
      --gp->in_flight;
      gp->duration->Observe(static_cast<double>(clock.mono_ns() - started) / 1e9);
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
        g.latency->Observe(latency);
        if (!a.first_accepted) {
          a.first_accepted = true;
          metrics.time_to_first_message().Observe(latency);
          log::info("dispatch_first_message", {{"tenant", a.tenant},
                                               {"id", a.id},
                                               {"channel", to_string(m->m.channel)},
                                               {"ms_from_post", now - a.received_ms}});
        }
        if (m->m.channel == Channel::Sms)
          metrics.sms_segments(g.gw->name()).Increment(m->m.content->segments);
        if (int64_t wait = g.gw->report_timeout_ms(); wait > 0) {
          std::string key = report_key(m->m.content->alert_id, m->m.tenant, m->m.address);
          // (A number twice in one alert cannot be told apart: the second is final at once.)
          if (!early_reports.erase(key) && !unreported.count(key)) {
            unreported[key] = {m, unreported_due.emplace(now + wait, key)};
            await_report(m);
            arm_retry();
            break;
          }
        }
        finish(m, "accepted", "");
        break;
      }
      case Outcome::Unregistered:
        g.breaker->on_success();  // the gateway works; the token does not
        metrics.tokens_pruned(to_string(m->m.channel)).Increment();
        // Pruned: later alerts skip it (DESIGN.md invariant 5).
        redis.command({"SADD", store::keys::pruned(m->m.tenant), m->m.address}, [](auto*, auto*) {});
        finish(m, "failed", r.reason.empty() ? "unregistered" : r.reason);
        break;
      case Outcome::Permanent:
        g.breaker->on_success();
        finish(m, "failed", r.reason);
        break;
      case Outcome::Cancelled:  // dropped by Gateway::cancel() before it was sent (sweep())
        --m->m.attempt;         // not an attempt: nothing left
        finish(m, "cancelled", "");
        break;
      case Outcome::Retry:
        g.breaker->on_failure();
        metrics.circuit_state(g.gw->name()).Set(static_cast<double>(g.breaker->state()));
        retry(m, r.retry_after_ms, r.reason);
        break;
    }
  }

  void retry(Msg* m, int64_t retry_after_ms, const std::string& reason) {
    Active& a = *m->batch->alert;
    int64_t due = clock.now_ms() + backoff.delay_ms(m->m.attempt, retry_after_ms);
    if (m->m.attempt >= cfg.max_attempts) {
      finish(m, "failed", "gave up after " + std::to_string(m->m.attempt) + " attempts: " + reason);
    } else if (a.expires_ms && due >= a.expires_ms) {
      finish(m, "expired", reason);
    } else if (a.cancelled) {
      finish(m, "cancelled", "");
    } else {
      retries.push({due, m});
      metrics.retry_queue_depth().Set(static_cast<double>(retries.size()));
      arm_retry();
    }
  }

  static std::string report_key(const std::string& alert_id, const std::string& rtenant, const std::string& number) {
    return alert_id + "|" + rtenant + "|" + number;
  }

  // A delivery report for an SMS this daemon may be waiting on: any report proves the SMSC
  // has it, so the acceptance is final (the report's own state is applied in Redis).
  void reported(const std::string& key) {
    auto it = unreported.find(key);
    if (it == unreported.end()) {
      // Most are a second report for an SMS already final (Kannel sends 8, then 1): kept
      // briefly and bounded, since only one racing its HTTP answer is ever needed.
      if (early_reports.emplace(key, clock.now_ms()).second) early_order.emplace_back(clock.now_ms(), key);
      if (early_order.size() > kMaxEarlyReports)
        forget_early_reports(clock.now_ms(), early_order.size() - kMaxEarlyReports);
      return;
    }
    Msg* m = it->second.msg;
    unreported_due.erase(it->second.due);
    unreported.erase(it);
    report_done(m);
    finish(m, "accepted", "");
  }

  // Forgets early reports older than kEarlyReportMs, and at least `count` of the oldest.
  void forget_early_reports(int64_t now, size_t count = 0) {
    while (!early_order.empty() && (count > 0 || now - early_order.front().first > kEarlyReportMs)) {
      auto it = early_reports.find(early_order.front().second);
      if (it != early_reports.end() && it->second == early_order.front().first) early_reports.erase(it);
      early_order.pop_front();
      if (count > 0) --count;
    }
  }

  void arm_retry() {
    if (retries.empty() && held.empty() && unreported_due.empty()) return;
    int64_t due = INT64_MAX;
    if (!retries.empty()) due = retries.top().due_ms;
    if (!held.empty()) due = std::min(due, held.begin()->first);
    if (!unreported_due.empty()) due = std::min(due, unreported_due.begin()->first);
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
    while (!unreported_due.empty() && unreported_due.begin()->first <= now) {
      auto it = unreported.find(unreported_due.begin()->second);
      unreported_due.erase(unreported_due.begin());
      Msg* m = it->second.msg;
      unreported.erase(it);
      report_done(m);
      metrics.unexpected("sms_no_delivery_report").Increment();
      if (m->batch->alert->cancelled) finish(m, "accepted", "no delivery report (alert cancelled)");
      else retry(m, 0, "no delivery report from the SMSC in time");
    }
    forget_early_reports(now);
    pump_all();
    arm_retry();
  }

  // ---- recording outcomes ----------------------------------------------------------

  // `state` is a literal: it is kept until the write-back.
  void finish(Msg* m, std::string_view state, const std::string& reason) {
    Active& a = *m->batch->alert;
    Channel ch = m->m.channel;
    if (ch != Channel::Sms && state == "accepted" && m->m.attempt == 1 && m->batch->number >= 0) {
      outcomes.push_back({&a, {}, {}, m->batch->number, m->pos, ch, state});
    } else {
      std::string value = std::string(state) + "|" + std::to_string(m->m.attempt) + "|" + reason;
      outcomes.push_back({&a, field_of(*m), std::move(value), -1, 0, ch, state});
    }
    counter(m->batch, ch, state).Increment();
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
    bool was = only_waiting(b);
    if (--b->remaining == 0) finished_batches.emplace_back(b, false);
    waiting_changed(b, was);
    // The unflushed backlog is part of the crash window (resent after a restart): keep
    // it bounded by count as well as by time.
    if (outcomes.size() >= kMaxBacklog) return flush();
    schedule_flush();
  }

  prometheus::Counter& counter(Batch* b, Channel ch, std::string_view state) {
    const std::string& gw = gateways[static_cast<int>(ch)].gw->name();
    if (state != "accepted") return metrics.message(b->rtenant, to_string(ch), gw, std::string(state));
    auto& c = b->accepted[static_cast<int>(ch)];
    if (!c) c = &metrics.message(b->rtenant, to_string(ch), gw, "accepted");
    return *c;
  }

  void schedule_flush() {
    if (uv_is_active(reinterpret_cast<uv_handle_t*>(flush_timer))) return;
    uv_timer_start(flush_timer, [](uv_timer_t* t) { static_cast<Impl*>(t->data)->flush(); },
                   static_cast<uint64_t>(cfg.flush_ms), 0);
  }

  // One write-back call: its outcomes count in `unconfirmed` until Redis has answered it.
  // A call that fails is sent again, the same (its token makes a repeat harmless), until
  // Redis takes it: dropping it would drop its outcomes and free its share of the budget,
  // so that a Redis restart or stall let sending run on with nothing recorded, and every
  // such message went again after the batches were re-read.
  void send_flush(std::shared_ptr<FlushCall> call) {
    std::vector<std::string_view> argv(call->args.begin(), call->args.end());
    std::string_view pfx = call->prefix;
    redis.eval(scripts::flush(), {pfx}, argv, [this, call](const redisReply* r, const Error* e) {
      if (e || (r && r->type == REDIS_REPLY_ERROR)) {
        metrics.unexpected("dispatch_flush_failed").Increment();
        if (stopping) return;  // its batches stay pending: re-read at the restart
        failed_flushes.push_back(call);
        uv_timer_start(
            flush_timer, [](uv_timer_t* t) { static_cast<Impl*>(t->data)->flush(); }, 100, 0);
        return;
      }
      unconfirmed -= call->n;
      for (const auto& entry : call->entries) acks_unconfirmed.erase(entry);
      pump_all();
    });
  }

  std::string flush_token() { return boot_id + ":" + std::to_string(++flushes); }

  // Writes outcomes and acknowledges the batches they completed, one script per alert.
  void flush() {
    if (!redis.connected()) {
      // Keep everything; try again shortly. Nothing is acked meanwhile.
      if (!stopping)
        uv_timer_start(
            flush_timer, [](uv_timer_t* t) { static_cast<Impl*>(t->data)->flush(); }, 100, 0);
      return;
    }
    for (auto& call : std::exchange(failed_flushes, {})) send_flush(std::move(call));
    struct Work {
      std::vector<std::string> deliv;
      std::map<int64_t, std::vector<std::pair<Channel, uint32_t>>> accepted;  // by batch
      size_t n = 0;  // outcomes
      std::map<std::pair<Channel, std::string_view>, int64_t> progress;
      std::vector<std::string> acks;
      std::vector<std::string> sms_accepted;
    };
    // Active alerts stay alive meanwhile: their batches are removed below.
    std::map<Active*, Work> by_alert;
    for (auto& o : outcomes) {
      Work& w = by_alert[o.alert];
      // An accepted SMS: its delivery report may have come first.
      if (o.channel == Channel::Sms && o.state == "accepted") w.sms_accepted.push_back(o.field);
      if (o.batch >= 0) {
        w.accepted[o.batch].emplace_back(o.channel, o.pos);
      } else {
        w.deliv.push_back(std::move(o.field));
        w.deliv.push_back(std::move(o.value));
      }
      ++w.n;
      ++w.progress[{o.channel, o.state}];
    }
    outcomes.clear();
    auto done = std::move(finished_batches);
    finished_batches.clear();
    for (auto [b, empty] : done) {
      (void)empty;
      Work& w = by_alert[b->alert.get()];
      w.acks.push_back(dispatch_stream(b->priority));
      w.acks.push_back(b->stream_entry);
    }
    std::string now = std::to_string(clock.now_ms());
    for (auto& [a, w] : by_alert) {
      auto call = std::make_shared<FlushCall>();
      call->prefix = store::keys::tenant(a->tenant);
      call->n = w.n;
      std::vector<std::string>& args = call->args;
      args = {a->id, now, flush_token(), std::to_string(w.deliv.size())};
      args.reserve(w.deliv.size() + w.acks.size() + w.sms_accepted.size() + 32);
      args.insert(args.end(), std::make_move_iterator(w.deliv.begin()), std::make_move_iterator(w.deliv.end()));
      args.push_back(std::to_string(w.accepted.size() * 2));
      for (auto& [batch, list] : w.accepted) {
        args.push_back(std::to_string(batch));
        args.push_back(encode_accepted(list));
      }
      args.push_back(std::to_string(w.progress.size() * 2));
      for (const auto& [key, n] : w.progress) {
        args.push_back(std::string(to_string(key.first)) + ":" + std::string(key.second));
        args.push_back(std::to_string(n));
      }
      args.push_back(std::to_string(w.acks.size()));
      args.insert(args.end(), w.acks.begin(), w.acks.end());
      for (size_t k = 1; k < w.acks.size(); k += 2) {
        call->entries.push_back(w.acks[k]);
        acks_unconfirmed.insert(w.acks[k]);
      }
      args.push_back(std::to_string(w.sms_accepted.size()));
      args.insert(args.end(), w.sms_accepted.begin(), w.sms_accepted.end());
      unconfirmed += call->n;
      send_flush(std::move(call));
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
    // Forget alerts idle for a minute; looked for once a second, since after a burst the
    // map holds every alert of the last minute (walking it each tick was 4% of intake's CPU).
    if (now - last_forget_ms >= 1000) {
      last_forget_ms = now;
      std::erase_if(own_plans, [now](const auto& kv) { return now - kv.second.last_used_ms > 60'000; });
      std::erase_if(alerts, [now](const auto& kv) {
        return now - kv.second->last_used_ms > 60'000 && kv.second.use_count() == 1;
      });
    }
    // A cancel or an Update through this daemon stops its sends at once (cancel()); one
    // through another daemon is seen here, the backstop: the state of each alert that has
    // batches in work here, read every kStateCheckMs, one read per alert at a time. So the
    // reads are bounded by the work window (max_batches), not by the alerts seen lately:
    // polling all of those flooded Redis after a burst of small alerts.
    if (now - last_state_check_ms >= kStateCheckMs) {
      last_state_check_ms = now;
      for (const auto& b : batches) {
        Active* a = b->alert.get();
        if (!a || a->cancelled || a->state_check_pending) continue;
        a->state_check_pending = true;
        redis.command({"HGET", store::keys::alert(a->tenant, a->id), "state"},
                      [this, a = b->alert](const redisReply* r, const Error* e) {
                        a->state_check_pending = false;
                        if (e) return;
                        // Gone (empty) is left to the batch; completed has nothing to stop.
                        std::string text = store::reply_string(r);
                        auto st = alerts::parse_state(text);
                        if (!text.empty() && !(st && (alerts::is_sending(*st) || *st == alerts::AlertState::Completed)) &&
                            !a->cancelled) {
                          a->cancelled = true;
                          sweep(a->id);
                        }
                      });
      }
    }
    // Take over batches another (dead) consumer left pending for too long.
    if (now - last_reclaim_ms > cfg.reclaim_idle_ms / 2) {
      last_reclaim_ms = now;
      for (int p = 0; p < kPriorities; ++p) {
        std::string idle = std::to_string(cfg.reclaim_idle_ms), count = std::to_string(capacity());
        if (capacity() == 0) break;
        redis.command({"XAUTOCLAIM", dispatch_stream(p), kGroup, cfg.consumer, idle, "0-0", "COUNT", count},
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
                        take_entries(&outer, p, false);
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
    // Retries waiting for their backoff would otherwise stay pending until due.
    std::vector<Retry> keep;
    std::vector<Msg*> dropped;
    for (; !retries.empty(); retries.pop()) {
      if (retries.top().msg->batch->alert->id == alert_id)
        dropped.push_back(retries.top().msg);
      else
        keep.push_back(retries.top());
    }
    retries = decltype(retries)(std::greater<>(), std::move(keep));
    for (Msg* m : dropped) finish(m, "cancelled", "");
    metrics.retry_queue_depth().Set(static_cast<double>(retries.size()));
    // Last, with the alert's queues empty: what the gateways and their HTTP clients hold
    // and have not started (answered Outcome::Cancelled through send()'s callback, which
    // pumps other alerts' messages into the room made).
    for (auto& g : gateways)
      if (g.gw) g.gw->cancel(alert_id);
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
  slot.bucket->set_batch(gateway->batch_size());
  slot.queue_depth = &impl_->metrics.gateway_queue_depth(gateway->name());
  slot.bucket_tokens = &impl_->metrics.gateway_bucket_tokens(gateway->name());
  slot.circuit = &impl_->metrics.circuit_state(gateway->name());
  slot.in_flight_gauge = &impl_->metrics.gateway_in_flight(gateway->name());
  slot.duration = &impl_->metrics.gateway_duration(gateway->name());
  slot.latency = &impl_->metrics.delivery_latency(to_string(gateway->channel()));
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
  i.pump_idle = new uv_idle_t;
  uv_idle_init(i.loop, i.pump_idle);
  i.pump_idle->data = &i;
  i.gauge_hook = std::make_unique<TurnHook>(i.loop, [&i] { i.set_gauges(); });
  i.ensure_groups();
  // First this consumer's own pending batches (work in progress when it last stopped),
  // then new ones.
  i.claim(true);
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
    uv_close(reinterpret_cast<uv_handle_t*>(i.pump_idle), [](uv_handle_t* h) { delete reinterpret_cast<uv_idle_t*>(h); });
  }
  i.reports.stop();  // the reports of this turn go now; later ones one call each
  if (i.gauge_hook) {
    i.set_gauges();
    i.gauge_hook->close(nullptr);
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
                      int64_t received_ms, std::shared_ptr<const directory::Resolution> resolution,
                      std::function<void(sirena::Status)> done) {
  Impl& i = *impl_;
  if (!i.planning.insert(alert_id).second) return done(Ok{});  // the call under way plans it
  int prio = priority_of(alert);
  std::vector<std::string> counts;
  for (Channel ch : {Channel::Sms, Channel::Apns, Channel::Fcm}) {
    if (!has_channel(ch)) continue;
    auto it = resolution->by_channel.find(to_string(ch));
    counts.push_back(std::string("planned:") + to_string(ch));
    counts.push_back(std::to_string(it == resolution->by_channel.end() ? 0 : it->second));
  }
  // What every call of this plan sends: shared, since the calls after the first go one
  // after another.
  struct Write {
    std::shared_ptr<PlanText> plan = std::make_shared<PlanText>();
    scripts::PlanArgs args;
    std::vector<std::string> texts;  // of the call under way
    size_t n = 0;
    int64_t started_ns = 0;
    std::optional<Error> failed;  // what went wrong in the first call, if anything: the last one reports it
  };
  auto w = std::make_shared<Write>();
  PlanText& pt = *w->plan;
  pt.resolution = std::move(resolution);
  pt.batch_size = i.cfg.batch_size;
  for (const auto& part : pt.resolution->parts)
    for (size_t start = 0; start < part.slots.size(); start += pt.batch_size) pt.batches.emplace_back(&part, start);
  w->n = pt.batches.size();
  w->started_ns = i.clock.mono_ns();
  scripts::PlanArgs& a = w->args;
  a.id = alert_id;
  a.tenant = tenant;
  a.batches = w->n;
  a.recipients = pt.resolution->recipients;
  a.priority = prio;
  a.stream = dispatch_stream(prio);
  a.consumer = i.cfg.consumer;
  a.now_ms = i.clock.now_ms();
  a.planned = std::move(counts);
  auto call = [this, w, alert_id](size_t from, size_t to, size_t claim, store::Redis::Callback cb) {
    w->args.claim = claim;
    w->args.first = from;
    w->args.last = to == w->n;
    w->texts.clear();
    for (size_t k = from; k < to; ++k) w->texts.push_back(w->plan->text(k));
    const std::vector<std::string> head = w->args.head();
    std::vector<std::string_view> argv(head.begin(), head.end());
    argv.insert(argv.end(), w->texts.begin(), w->texts.end());
    impl_->redis.eval(scripts::plan(), {store::keys::tenant(w->args.tenant)}, argv,
                      [this, w, alert_id, to, cb = std::move(cb)](const redisReply* r, const Error* e) {
                        impl_->note_written(alert_id, w->plan, to, r, e);
                        cb(r, e);
                      });
  };
  auto check = [](const redisReply* r, const Error* e) -> std::optional<Error> {
    if (e) return *e;
    if (r->type == REDIS_REPLY_ERROR) return make_error(500, "storage_error", "plan script: " + std::string(r->str, r->len));
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) return make_error(500, "storage_error", "plan script: no reply");
    return std::nullopt;
  };
  store::Redis::Callback finished = [this, alert_id, tenant, w, check, done = std::move(done)](const redisReply* r,
                                                                                            const Error* e) {
    Impl& i = *impl_;
    i.planning.erase(alert_id);
    if (!w->failed) w->failed = check(r, e);
    if (w->failed) return done(*w->failed);
    if (r->element[0]->integer >= 0)
      log::info("dispatch_planned", {{"tenant", tenant},
                                     {"id", alert_id},
                                     {"batches", w->n},
                                     {"ms", (i.clock.mono_ns() - w->started_ns) / 1'000'000}});
    i.claim();
    done(Ok{});
  };
  // The rest in chunks, each sent when the one before is written: in between, Redis serves
  // the loads and write-backs of the batches already going out, so a big plan does not
  // stall its own fan-out. A chunk that fails (or finds another writer) ends the writing;
  // the plan is then taken up again like any interrupted one.
  size_t n = w->n;
  auto next = std::make_shared<std::function<void(size_t)>>();
  *next = [call, check, finished, n, weak = std::weak_ptr<std::function<void(size_t)>>(next)](size_t from) {
    size_t to = std::min(n, from + (from == 1 ? kPlanSecondChunk : kPlanChunk));
    // The chunk's callback keeps the writer alive until it has sent the next chunk.
    call(from, to, 0, [check, finished, n, to, self = weak.lock()](const redisReply* r, const Error* e) {
      if (to == n || check(r, e) || r->element[0]->integer < 0) return finished(r, e);
      (*self)(to);
    });
  };
  // The first batch goes alone: durable (and claimed) in a millisecond whatever the alert's
  // size, and sent while Redis writes and fsyncs the rest, which starts once it is written
  // (and with it the first batch's load, sent right behind it). The first call claims the
  // stream's next entries, counted as claimed until it answers so that no claim pass
  // meanwhile takes more than the window.
  size_t split = std::min<size_t>(n, 1);
  size_t claim = i.started && !i.stopping ? i.capacity() : 0;
  i.claimed_count += claim;
  call(0, split, claim, [this, prio, claim, w, check, finished, next, split](const redisReply* r, const Error* e) {
    Impl& i = *impl_;
    i.claimed_count -= claim;
    w->failed = check(r, e);
    if (!w->failed && r->elements > 1 && r->element[1]->type == REDIS_REPLY_ARRAY) i.take_entries(r->element[1], prio, true);
    if (split == w->n || w->failed || r->element[0]->integer < 0) return finished(r, e);
    (*next)(split);
  });
  // The alert as given (its batches load without reading it back), unless one is
  // already in work here; and behind the first call on the same connection, the first batch.
  if (!i.alerts.count(alert_id) && !i.alerts_loading.count(alert_id))
    i.alerts.emplace(alert_id, i.make_active(tenant, alert_id, alert, received_ms));
  if (claim > 0 && n > 0) i.prefetch(store::keys::batch(tenant, alert_id, 0));
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
                          std::function<void(Result<Progress>)> done) {
  std::vector<Channel> channels;
  for (Channel ch : {Channel::Sms, Channel::Apns, Channel::Fcm})
    if (has_channel(ch)) channels.push_back(ch);
  impl_->reader.progress(tenant, alert_id, std::move(channels), std::move(done));
}

void Dispatcher::delivery_report(const std::string& alert_tenant, const std::string& alert_id,
                                 const std::string& recipient_tenant, const std::string& number, int type,
                                 std::function<void(Result<std::string>)> done) {
  // Kannel sends one type per report; a final one decides the delivery.
  const char* state = "";
  const char* reason = "";
  if (type & kDlrDelivered) {
    state = "delivered";
  } else if (type & kDlrUndelivered) {
    state = "failed";
    reason = "undelivered (DLR 2)";
  } else if (type & kDlrSmscRejected) {
    state = "failed";
    reason = "rejected by the SMSC (DLR 16)";
  }
  impl_->reported(Impl::report_key(alert_id, recipient_tenant, number));
  impl_->reports.add({store::keys::tenant(alert_tenant), alert_id, recipient_tenant + "|" + number, state, reason, std::move(done)});
}

void Dispatcher::deliveries(const std::string& tenant, const std::string& alert_id, const std::string& state,
                            const std::string& cursor, size_t limit, std::function<void(Result<DeliveryPage>)> done) {
  impl_->reader.deliveries(tenant, alert_id, state, cursor, limit, std::move(done));
}

}  // namespace sirena::dispatch
