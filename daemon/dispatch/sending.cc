#include "daemon/dispatch/dispatcher_impl.h"

// Sending: each message into its gateway's lane, the pump that drives the lanes, the
// results, the retries, and the SMS that wait for their delivery reports. The lanes
// (gateway_lane.h), the retry queue (retry_queue.h) and the report waits (report_waits.h)
// decide; this file applies their decisions to messages, outcomes and timers.

namespace sirena::dispatch {

auto Dispatcher::Impl::policy_of(const std::string& tenant) const -> const TenantPolicy& {
  static const TenantPolicy kDefault;
  auto it = policies.find(tenant);
  return it == policies.end() ? kDefault : it->second;
}

void Dispatcher::Impl::enqueue(Msg* m) {
  lane_of(m->m.channel).push_back(m->batch->priority, m->m.content->alert_tenant, m);
}

void Dispatcher::Impl::release(Msg* sms) {
  sms->held = false;
  held.erase(sms->held_until);
  enqueue(sms);
  pump(lane_of(Channel::Sms));
}

void Dispatcher::Impl::pump_all() {
  for (auto& lane : lanes)
    if (lane) pump(*lane);
}

// What a lane's pump asks of the dispatcher.
struct Dispatcher::Impl::PumpDriver {
  Impl& impl;
  Lane& lane;
  const int64_t now_ms = impl.clock.now_ms();  // a pump takes microseconds

  // Outcomes not yet durable are what a crash would resend: wait for Redis to catch up.
  // With write-backs under way their replies pump again (the flush timer takes what
  // waits meanwhile): a write-back per answer would cost Redis an fsync each.
  bool may_send() {
    if (impl.outcomes.size() + impl.unconfirmed < impl.cfg.max_unconfirmed) return true;
    if (impl.unconfirmed == 0) impl.flush();
    return false;
  }
  bool settle(Msg* m) {
    const Active& a = *m->batch->alert;
    if (a.cancelled) {
      impl.finish(m, "cancelled", "");
      return true;
    }
    if (a.expires_ms && now_ms >= a.expires_ms) {
      impl.finish(m, "expired", "");
      return true;
    }
    return false;
  }
  void send(Msg* m) { impl.send(lane, m); }
};

void Dispatcher::Impl::pump(Lane& lane) {
  if (stopping) return;
  PumpDriver driver{*this, lane};
  Lane::Pumped p = lane.pump(driver);
  if (p.more && pump_idle && !uv_is_active(pump_idle.base()))
    uv_idle_start(pump_idle.get(), [](uv_idle_t* h) {
      uv_idle_stop(h);
      static_cast<Impl*>(h->data)->pump_all();
    });
  if (p.wait_ms >= 0) arm_pump(p.wait_ms);
  if (gauge_hook) gauge_hook->schedule();
}

void Dispatcher::Impl::set_gauges() {
  for (auto& lane : lanes)
    if (lane) lane->set_gauges();
}

void Dispatcher::Impl::arm_pump(int64_t ms) {
  if (!pump_timer || uv_is_active(pump_timer.base())) return;  // stopped, or armed
  uv_timer_start(
      pump_timer.get(), [](uv_timer_t* t) { static_cast<Impl*>(t->data)->pump_all(); },
      static_cast<uint64_t>(std::max<int64_t>(ms, 1)), 0);
}

void Dispatcher::Impl::send(Lane& lane, Msg* m) {
  ++m->m.attempt;
  Lane* lp = &lane;
  lane.send(m->m, [this, lp, m](const SendResult& r) {
    on_result(*lp, m, r);
    pump(*lp);
  });
}

void Dispatcher::Impl::on_result(Lane& lane, Msg* m, const SendResult& r) {
  Active& a = *m->batch->alert;
  switch (r.outcome) {
    case Outcome::Accepted: {
      int64_t now = clock.now_ms();
      double seconds = static_cast<double>(now - a.received_ms) / 1e3;
      latency[static_cast<int>(m->m.channel)]->Observe(seconds);
      if (!a.first_accepted) {
        a.first_accepted = true;
        metrics.time_to_first_message().Observe(seconds);
        log::info("dispatch_first_message", {{"tenant", a.tenant},
                                             {"id", a.id},
                                             {"channel", to_string(m->m.channel)},
                                             {"ms_from_post", now - a.received_ms}});
      }
      if (m->m.channel == Channel::Sms) metrics.sms_segments(lane.name()).Increment(m->m.content->segments);
      if (int64_t wait = lane.gateway().report_timeout_ms(); wait > 0) {
        if (report_waits.await(report_key(m->m.content->alert_id, m->m.tenant, m->m.address), m,
                               now + wait)) {
          await_report(m);
          arm_retry();
          break;
        }
      }
      finish(m, "accepted", "");
      break;
    }
    case Outcome::Unregistered:
      metrics.tokens_pruned(to_string(m->m.channel)).Increment();
      // Pruned: later alerts skip it (DESIGN.md invariant 5).
      redis.command({"SADD", store::keys::pruned(m->m.tenant), m->m.address},
                    [](store::Reply, const Error*) {});
      finish(m, "failed", r.reason.empty() ? "unregistered" : r.reason);
      break;
    case Outcome::Permanent:
      finish(m, "failed", r.reason);
      break;
    case Outcome::Cancelled:  // dropped by Gateway::cancel() before it was sent (sweep())
      --m->m.attempt;         // not an attempt: nothing left
      finish(m, "cancelled", "");
      break;
    case Outcome::Retry:
      retry(m, r.retry_after_ms, r.reason);
      break;
  }
}

void Dispatcher::Impl::retry(Msg* m, int64_t retry_after_ms, const std::string& reason) {
  Active& a = *m->batch->alert;
  auto d = retries.judge(m->m.attempt, retry_after_ms, a.expires_ms);
  if (d.verdict == Retries::Verdict::GiveUp) {
    finish(m, "failed", "gave up after " + std::to_string(m->m.attempt) + " attempts: " + reason);
  } else if (d.verdict == Retries::Verdict::Expire) {
    finish(m, "expired", reason);
  } else if (a.cancelled) {
    finish(m, "cancelled", "");
  } else {
    retries.push(d.due_ms, m);
    metrics.retry_queue_depth().Set(static_cast<double>(retries.size()));
    arm_retry();
  }
}

void Dispatcher::Impl::reported(const std::string& key) {
  if (auto m = report_waits.reported(key)) {
    report_done(*m);
    finish(*m, "accepted", "");
  }
}

void Dispatcher::Impl::arm_retry() {
  // Nothing due, or stopped: after stop() the gateways' close answers what they held.
  int64_t due =
      std::min({retries.next_due(), report_waits.next_due(), held.empty() ? INT64_MAX : held.begin()->first});
  if (due == INT64_MAX || !retry_timer) return;
  int64_t wait = std::max<int64_t>(0, due - clock.now_ms());
  uv_timer_start(
      retry_timer.get(), [](uv_timer_t* t) { static_cast<Impl*>(t->data)->run_retries(); },
      static_cast<uint64_t>(wait), 0);
}

void Dispatcher::Impl::run_retries() {
  int64_t now = clock.now_ms();
  retries.take_due(now, [this](Msg* m) {
    if (m->batch->alert->cancelled)
      finish(m, "cancelled", "");
    else
      enqueue(m);
  });
  metrics.retry_queue_depth().Set(static_cast<double>(retries.size()));
  while (!held.empty() && held.begin()->first <= now) release(held.begin()->second);
  report_waits.take_overdue(now, [this](Msg* m) {
    report_done(m);
    metrics.unexpected("sms_no_delivery_report").Increment();
    if (m->batch->alert->cancelled)
      finish(m, "accepted", "no delivery report (alert cancelled)");
    else
      retry(m, 0, "no delivery report from the SMSC in time");
  });
  pump_all();
  arm_retry();
}

}  // namespace sirena::dispatch
