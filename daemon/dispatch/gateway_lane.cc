#include "daemon/dispatch/dispatcher_impl.h"

// Sending: each gateway's fair queue, token bucket, circuit breaker and pump; the
// results, the retries with backoff, and the SMS that wait for their delivery reports.

namespace sirena::dispatch {

auto Dispatcher::Impl::policy_of(const std::string& tenant) const -> const TenantPolicy& {
  static const TenantPolicy kDefault;
  auto it = policies.find(tenant);
  return it == policies.end() ? kDefault : it->second;
}

void Dispatcher::Impl::enqueue(Msg* m) {
  GatewaySlot& g = gateways[static_cast<int>(m->m.channel)];
  g.queue[m->batch->priority].push_back(m->m.content->alert_tenant, m);
  ++g.queued;
}

auto Dispatcher::Impl::pop(GatewaySlot& g) -> Msg* {
  for (auto& q : g.queue) {
    if (!q.empty()) {
      --g.queued;
      return q.pop();
    }
  }
  return nullptr;
}

void Dispatcher::Impl::push_front(GatewaySlot& g, Msg* m) {
  g.queue[m->batch->priority].push_front(m->m.content->alert_tenant, m);
  ++g.queued;
}

void Dispatcher::Impl::release(Msg* sms) {
  sms->held = false;
  held.erase(sms->held_until);
  enqueue(sms);
  pump(gateways[static_cast<int>(Channel::Sms)]);
}

void Dispatcher::Impl::pump_all() {
  for (auto& g : gateways)
    if (g.gw) pump(g);
}

void Dispatcher::Impl::pump(GatewaySlot& g) {
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
      if (pump_idle && !uv_is_active(pump_idle.base()))
        uv_idle_start(pump_idle.get(), [](uv_idle_t* h) {
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

void Dispatcher::Impl::set_gauges() {
  for (GatewaySlot& g : gateways) {
    if (!g.gw) continue;
    g.queue_depth->Set(static_cast<double>(g.queued));
    g.in_flight_gauge->Set(static_cast<double>(g.in_flight));
    g.circuit->Set(static_cast<double>(g.breaker->state()));  // also once a success closed it
    g.bucket_tokens->Set(g.bucket->fill());
  }
}

void Dispatcher::Impl::arm_pump(int64_t ms) {
  if (!pump_timer || uv_is_active(pump_timer.base())) return;  // stopped, or armed
  uv_timer_start(
      pump_timer.get(), [](uv_timer_t* t) { static_cast<Impl*>(t->data)->pump_all(); },
      static_cast<uint64_t>(std::max<int64_t>(ms, 1)), 0);
}

void Dispatcher::Impl::send(GatewaySlot& g, Msg* m) {
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

void Dispatcher::Impl::on_result(GatewaySlot& g, Msg* m, const SendResult& r) {
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
      if (m->m.channel == Channel::Sms) metrics.sms_segments(g.gw->name()).Increment(m->m.content->segments);
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
      redis.command({"SADD", store::keys::pruned(m->m.tenant), m->m.address},
                    [](store::Reply, const Error*) {});
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

void Dispatcher::Impl::retry(Msg* m, int64_t retry_after_ms, const std::string& reason) {
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

auto Dispatcher::Impl::report_key(const std::string& alert_id, const std::string& rtenant,
                                  const std::string& number) -> std::string {
  return alert_id + "|" + rtenant + "|" + number;
}

void Dispatcher::Impl::reported(const std::string& key) {
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

void Dispatcher::Impl::forget_early_reports(int64_t now, size_t count) {
  while (!early_order.empty() && (count > 0 || now - early_order.front().first > kEarlyReportMs)) {
    auto it = early_reports.find(early_order.front().second);
    if (it != early_reports.end() && it->second == early_order.front().first) early_reports.erase(it);
    early_order.pop_front();
    if (count > 0) --count;
  }
}

void Dispatcher::Impl::arm_retry() {
  // Nothing due, or stopped: after stop() the gateways' close answers what they held.
  if ((retries.empty() && held.empty() && unreported_due.empty()) || !retry_timer) return;
  int64_t due = INT64_MAX;
  if (!retries.empty()) due = retries.top().due_ms;
  if (!held.empty()) due = std::min(due, held.begin()->first);
  if (!unreported_due.empty()) due = std::min(due, unreported_due.begin()->first);
  int64_t wait = std::max<int64_t>(0, due - clock.now_ms());
  uv_timer_start(
      retry_timer.get(), [](uv_timer_t* t) { static_cast<Impl*>(t->data)->run_retries(); },
      static_cast<uint64_t>(wait), 0);
}

void Dispatcher::Impl::run_retries() {
  int64_t now = clock.now_ms();
  while (!retries.empty() && retries.top().due_ms <= now) {
    Msg* m = retries.top().msg;
    retries.pop();
    if (m->batch->alert->cancelled)
      finish(m, "cancelled", "");
    else
      enqueue(m);
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
    if (m->batch->alert->cancelled)
      finish(m, "accepted", "no delivery report (alert cancelled)");
    else
      retry(m, 0, "no delivery report from the SMSC in time");
  }
  forget_early_reports(now);
  pump_all();
  arm_retry();
}

}  // namespace sirena::dispatch
