#include "daemon/dispatch/dispatcher_impl.h"

// Where the work comes from: claiming batches of the {dispatch} streams through the
// consumer group (own pending entries first, then new ones), taking over what a dead
// consumer left, the periodic poll (state checks, reclaims, idle alerts) and the sweep
// of an alert that was stopped.

namespace sirena::dispatch {

auto Dispatcher::Impl::capacity() const -> size_t {
  size_t waiting = std::min(waiting_batches, static_cast<size_t>(cfg.max_batches) * kReportWaitFactor);
  size_t taken = batches.size() - waiting + batches_loading + claimed_count;
  return cfg.max_batches > taken ? cfg.max_batches - taken : 0;
}

void Dispatcher::Impl::waiting_changed(const Batch* b, bool was) {
  bool now = only_waiting(b);
  if (now && !was) {
    ++waiting_batches;
    claim();  // its place in the window is free
  }
  if (was && !now) --waiting_batches;
}

void Dispatcher::Impl::await_report(Msg* m) {
  bool was = only_waiting(m->batch);
  ++m->batch->awaiting;
  waiting_changed(m->batch, was);
}

void Dispatcher::Impl::report_done(Msg* m) {
  bool was = only_waiting(m->batch);
  --m->batch->awaiting;
  waiting_changed(m->batch, was);
}

void Dispatcher::Impl::claim(bool own_pending) {
  if (claiming) {
    claim_again = true;
    reread_own |= own_pending;
    return;
  }
  claiming = true;
  claim_again = false;
  claim_stream(0, own_pending || std::exchange(reread_own, false));
}

void Dispatcher::Impl::claim_stream(int priority, bool own_pending) {
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
                [this, priority, own_pending](store::Reply r, const Error* e) {
                  // Lost with the connection, a claim's entries may be ours all the same.
                  if (e || r.is_error()) reread_own = true;
                  if (!e && r.is_array()) take_streams(r, priority, !own_pending);
                  if (r.is_error()) ensure_groups();
                  claim_stream(priority + 1, own_pending);
                });
}

void Dispatcher::Impl::take_streams(store::Reply streams, int priority, bool fresh) {
  for (store::Reply stream : streams) take_entries(stream[1], priority, fresh);
  load_next();
}

void Dispatcher::Impl::take_entries(store::Reply entries, int priority, bool fresh) {
  for (store::Reply entry : entries) {
    std::string id = entry[0].string();
    if (in_work(id)) continue;
    store::Reply kv = entry[1];
    if (!kv.is_array()) {
      // Deleted or trimmed entry in our pending list: nothing to do but acknowledge.
      redis.command({"XACK", dispatch_stream(priority), kGroup, id}, [](store::Reply, const Error*) {});
      continue;
    }
    std::string alert, tenant, batch;
    bool replanned = false;  // its recipients may have outcomes from an interrupted plan
    for (size_t f = 0; f + 1 < kv.size(); f += 2) {
      std::string k = kv[f].string();
      if (k == "a")
        alert = kv[f + 1].string();
      else if (k == "t")
        tenant = kv[f + 1].string();
      else if (k == "b")
        batch = kv[f + 1].string();
      else if (k == "r")
        replanned = true;
    }
    claimed[priority].push_back({id, tenant, alert, batch, fresh && !replanned});
    ++claimed_count;
  }
}

auto Dispatcher::Impl::in_work(const std::string& entry) const -> bool {
  for (const auto& b : batches)
    if (b->stream_entry == entry) return true;
  for (const auto& q : claimed)
    for (const auto& c : q)
      if (c.entry == entry) return true;
  // Done here, its acknowledgement not yet confirmed by Redis (a write-back under way or
  // to be sent again): read again, it would send what only that write-back records.
  return acks_unconfirmed.count(entry) > 0 || entries_loading.count(entry) > 0;
}

void Dispatcher::Impl::load_next() {
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

void Dispatcher::Impl::loaded(const Batch& b) {
  entries_loading.erase(b.stream_entry);
  --batches_loading;
  load_next();
}

void Dispatcher::Impl::ensure_groups() {
  for (int p = 0; p < kPriorities; ++p)
    redis.command({"XGROUP", "CREATE", dispatch_stream(p), kGroup, "0", "MKSTREAM"},
                  [](store::Reply, const Error*) {});
}

void Dispatcher::Impl::poll() {
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
                    [this, a = b->alert](store::Reply r, const Error* e) {
                      a->state_check_pending = false;
                      if (e) return;
                      // Gone (empty) is left to the batch; completed has nothing to stop.
                      std::string text = r.string();
                      auto st = alerts::parse_state(text);
                      if (!text.empty() &&
                          !(st && (alerts::is_sending(*st) || *st == alerts::AlertState::Completed)) &&
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
                    [this, p](store::Reply r, const Error* e) {
                      // [next cursor, entries, ...]
                      if (e || !r.is_array() || r.size() < 2) return;
                      take_entries(r[1], p, false);
                      load_next();
                    });
    }
  }
  claim();
}

void Dispatcher::Impl::sweep(const std::string& alert_id) {
  for (auto& lane : lanes) {
    if (!lane) continue;
    lane->remove_if([&](Msg* m) {
      if (m->batch->alert->id != alert_id) return false;
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
  for (Msg* m : retries.remove_if([&](Msg* r) { return r->batch->alert->id == alert_id; }))
    finish(m, "cancelled", "");
  metrics.retry_queue_depth().Set(static_cast<double>(retries.size()));
  // Last, with the alert's queues empty: what the gateways and their HTTP clients hold
  // and have not started (answered Outcome::Cancelled through send()'s callback, which
  // pumps other alerts' messages into the room made).
  for (auto& lane : lanes)
    if (lane) lane->gateway().cancel(alert_id);
}

}  // namespace sirena::dispatch
