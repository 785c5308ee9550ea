// The dispatcher's state and parts, shared by its files: dispatcher.cc (the façade,
// the plan writer), work_source.cc (claiming, reclaiming, the poll and the sweep),
// batch_loader.cc (loading batches and making their messages), sending.cc (driving the
// gateway lanes; results, retries, delivery-report waits) and outcome_writer.cc
// (recording outcomes and writing them back). The parts that decide without I/O are
// classes of their own, each with its tests: GatewayLane, RetryQueue, ReportWaits, the
// flow pieces, ProgressReader and ReportWriter. Internal to daemon/dispatch: nothing
// outside it includes this.
#pragma once

#include <algorithm>
#include <charconv>
#include <deque>
#include <list>
#include <map>
#include <optional>
#include <span>
#include <unordered_map>
#include <unordered_set>

#include "daemon/alerts/alert_json.h"
#include "daemon/alerts/lifecycle.h"
#include "daemon/core/ids.h"
#include "daemon/core/log.h"
#include "daemon/core/number.h"
#include "daemon/core/turn_hook.h"
#include "daemon/dispatch/dispatcher.h"
#include "daemon/dispatch/flow.h"
#include "daemon/dispatch/gateway_lane.h"
#include "daemon/dispatch/render.h"
#include "daemon/dispatch/report_waits.h"
#include "daemon/dispatch/report_writer.h"
#include "daemon/dispatch/retry_queue.h"
#include "daemon/dispatch/scripts.h"
#include "daemon/dispatch/sms_text.h"
#include "daemon/metrics/metrics.h"
#include "daemon/store/keys.h"
#include "daemon/store/redis.h"
#include "daemon/uv/handle.h"

namespace sirena::dispatch {

inline constexpr const char* kGroup = "sirenad";
// Batches written by one plan call after the second: a 1M-recipient plan is 17 calls, with
// the fan-out's own loads and write-backs served in between.
inline constexpr size_t kPlanChunk = 64;
// How often the state of the alerts with batches here is read: the backstop for stops made
// through another daemon, which then stop sending here within about this long. At most
// one read per such alert, so at most max_batches reads a tick.
inline constexpr int64_t kStateCheckMs = 50;
// The call right after the first batch writes fewer: its texts are printed in the loop
// turn that handles the first batch's replies, ahead of its loading and first requests.
inline constexpr size_t kPlanSecondChunk = 4;
// Batches waiting only for SMS delivery reports, beyond max_batches: at most this many
// times it (their messages stay in memory until reported).
inline constexpr size_t kReportWaitFactor = 4;
inline constexpr size_t kMaxBacklog = 2048;  // outcomes written at the latest when this many wait
// Batches read from Redis at once: enough to keep ahead of the gateways while every
// round trip waits for Redis's fsyncs. Claimed batches wait for their turn, and an idle
// dispatcher loads one alone first: Redis answers the commands it read together only
// after running them all, so the first contacts would wait for everyone else's.
inline constexpr size_t kMaxLoading = 8;

using store::keys::dispatch_stream;

// Push messages accepted at their first attempt (nearly all of them) are recorded per
// batch, "<channel>:<from>[-<to>]," for each run of positions, instead of one deliv field
// each: Redis then stores a few bytes per message instead of a hash entry.
inline std::string encode_accepted(std::vector<std::pair<Channel, uint32_t>>& v) {
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

inline bool is_final_state(std::string_view s) {
  return s == "accepted" || s == "delivered" || s == "failed" || s == "expired" || s == "cancelled" ||
         s == "skipped";
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
  using Lane = GatewayLane<Msg*>;
  using Retries = RetryQueue<Msg*>;
  struct PumpDriver;
  struct Written {             // one message's final outcome, waiting for the next write-back
    Active* alert;             // kept alive by the message's batch until the write-back is sent
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

  uv_loop_t* loop;
  store::Redis& redis;
  directory::Directory& directory;
  const Clock& clock;
  metrics::Metrics& metrics;
  ProgressReader reader{redis};
  DispatchConfig cfg;
  std::unique_ptr<Lane> lanes[3];          // by Channel; null for a channel without a gateway
  prometheus::Histogram* latency[3] = {};  // from the POST to each acceptance, by Channel
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
  std::unordered_set<std::string> planning;            // alerts whose plan() is under way
  size_t claimed_count = 0;
  size_t batches_loading = 0;
  size_t waiting_batches = 0;  // batches in work that only wait for delivery reports (capacity())
  Retries retries{clock, Backoff(cfg.backoff_base_ms, cfg.backoff_cap_ms), cfg.max_attempts};
  std::multimap<int64_t, Msg*> held;  // SMS fallbacks by deadline
  std::map<std::string, TenantPolicy> policies;
  ReportWaits<Msg*> report_waits{clock};
  std::vector<Written> outcomes;
  std::vector<std::pair<Batch*, bool>> finished_batches;  // flushed with the next write-back
  // Made by start(), closed by stop(): empty before and after, when nothing is armed.
  uv::Handle<uv_timer_t> poll_timer, flush_timer, retry_timer, pump_timer;
  uv::Handle<uv_idle_t> pump_idle;  // the rest of a burst, on the next loop turn
  size_t unconfirmed = 0;  // outcomes sent to Redis, reply not yet seen (or failed, to be sent again)
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
      : loop(l), redis(r), directory(d), clock(c), metrics(m), cfg(std::move(conf)) {}

  // Its deliv field: "<R>:<slot>:<channel>".
  static std::string field_of(const Msg& m);
  static uint64_t accepted_key(Channel ch, uint32_t pos) {
    return uint64_t{pos} << 2 | static_cast<uint8_t>(ch);
  }

  // ---- claiming work -------------------------------------------------------------

  // Batches in work count against max_batches, except those whose remaining messages are
  // all with the provider, only waiting for delivery reports (up to kReportWaitFactor
  // times max_batches of them): an SMSC reports seconds after it accepts, and the next
  // batches must not wait for that.
  size_t capacity() const;

  static bool only_waiting(const Batch* b) { return b->remaining > 0 && b->awaiting == b->remaining; }
  // After `b`'s remaining or awaiting changed; `was`: only_waiting(b) before.
  void waiting_changed(const Batch* b, bool was);
  void await_report(Msg* m);
  void report_done(Msg* m);

  // One pass over the streams, most urgent first, for up to capacity() batches. A claim
  // asked for during a pass (a new plan) runs another pass after it, so none is lost.
  // `own_pending`: this consumer's own pending entries first (after a restart, or after
  // a load or a claim failed: see reread_own).
  void claim(bool own_pending = false);

  void claim_stream(int priority, bool own_pending);

  // Claims the entries of an XREADGROUP reply ([[stream, entries]], also the plan
  // script's), then loads what it can.
  void take_streams(store::Reply streams, int priority, bool fresh);

  // Claims one stream's entries ([[id, [field, value, ...]], ...]); load_next() loads them.
  void take_entries(store::Reply entries, int priority, bool fresh);

  // A stream entry this daemon already works on: XAUTOCLAIM returns our own entries too
  // when a batch takes longer than reclaim_idle_ms (retries, rate limits, awaited reports).
  bool in_work(const std::string& entry) const;

  // Starts loading claimed batches, most urgent first, up to kMaxLoading at once.
  void load_next();

  void loaded(const Batch& b);

  void ensure_groups();

  // ---- loading a batch -------------------------------------------------------------

  // The alert in work, read once however many of its batches are loading.
  // `fn` gets null when the alert is gone or unreadable, and also when Redis could not be
  // asked (`alert_read_failed` then tells the two apart).
  void with_alert(const std::string& tenant, const std::string& id,
                  std::function<void(std::shared_ptr<Active>)> fn);

  std::shared_ptr<Active> read_alert(const std::string& tenant, const std::string& id, store::Reply r);

  std::shared_ptr<Active> make_active(const std::string& tenant, const std::string& id, alerts::Alert alert,
                                      int64_t received_ms);

  void load_batch(int priority, const std::string& entry, const std::string& tenant,
                  const std::string& alert_id, const std::string& batch_no, bool fresh);

  // A plan call answered: batches [0, to) of a fresh plan are durable as `plan` has them.
  void note_written(const std::string& alert_id, const std::shared_ptr<const PlanText>& plan, size_t to,
                    store::Reply r, const Error* e);

  // Batch `number` of `alert_id` when this daemon wrote it (see own_plans), else null.
  std::shared_ptr<const PlanText> own_batch(const std::string& alert_id, int64_t number);

  // Loads a batch of an own plan: the contacts of its slots, in order, with one HMGET.
  void load_own(std::unique_ptr<Batch> b, std::shared_ptr<const PlanText> plan);

  // Reads a batch before it is claimed: plan() sends it behind the plan's first call, so
  // the first batch's contacts come back with the claim. The claim's load_batch() takes
  // it; unclaimed (another alert's batches came first), it is dropped.
  void prefetch(const std::string& key);

  void on_load(std::unique_ptr<Batch> b, store::Reply r, const Error* e);

  static std::shared_ptr<const Content> make_content(const Active& a, const std::string& language,
                                                     const alerts::Info* info, std::string title,
                                                     std::string body, int segments);

  // One message per channel the recipient can be reached on (`contacts`: the HMGET of
  // the slots' packed contacts, in order); then prepare().
  void add_messages(std::unique_ptr<Batch> b, std::span<const uint32_t> slots, store::Reply r);

  // Before a batch is queued: SMS numbers are mapped for delivery reports (the smsto HSET
  // is answered before any SMS of the batch is sent), and a batch delivered before (re-read
  // after a restart, or taken over) reads the outcomes already written. A fresh batch of
  // push messages is queued at once.
  void prepare(std::unique_ptr<Batch> b);

  // Drops messages already final (`deliv`: their states, for a batch delivered before),
  // settles SMS fallbacks whose pushes are already decided, and queues the rest.
  void queue(std::unique_ptr<Batch> b, store::Reply deliv);

  void finish_empty(std::unique_ptr<Batch> b);

  // ---- sending ---------------------------------------------------------------------

  const TenantPolicy& policy_of(const std::string& tenant) const;

  Lane& lane_of(Channel ch) { return *lanes[static_cast<int>(ch)]; }
  bool has_channel(Channel ch) const { return lanes[static_cast<int>(ch)] != nullptr; }

  void enqueue(Msg* m);

  // An SMS held for its pushes goes now (no push accepted, or the deadline passed).
  void release(Msg* sms);

  void pump_all();

  void pump(Lane& lane);

  void set_gauges();

  void arm_pump(int64_t ms);

  void send(Lane& lane, Msg* m);

  void on_result(Lane& lane, Msg* m, const SendResult& r);

  void retry(Msg* m, int64_t retry_after_ms, const std::string& reason);

  // A delivery report for an SMS this daemon may be waiting on: any report proves the SMSC
  // has it, so the acceptance is final (the report's own state is applied in Redis).
  void reported(const std::string& key);

  void arm_retry();

  void run_retries();

  // ---- recording outcomes ----------------------------------------------------------

  // `state` is a literal: it is kept until the write-back.
  void finish(Msg* m, std::string_view state, const std::string& reason);

  prometheus::Counter& counter(Batch* b, Channel ch, std::string_view state);

  void schedule_flush();

  // One write-back call: its outcomes count in `unconfirmed` until Redis has answered it.
  // A call that fails is sent again, the same (its token makes a repeat harmless), until
  // Redis takes it: dropping it would drop its outcomes and free its share of the budget,
  // so that a Redis restart or stall let sending run on with nothing recorded, and every
  // such message went again after the batches were re-read.
  void send_flush(std::shared_ptr<FlushCall> call);

  std::string flush_token() { return boot_id + ":" + std::to_string(++flushes); }

  // Writes outcomes and acknowledges the batches they completed, one script per alert.
  void flush();

  void poll();

  // Cancelled: everything of the alert still queued here is dropped now.
  void sweep(const std::string& alert_id);
};

}  // namespace sirena::dispatch
