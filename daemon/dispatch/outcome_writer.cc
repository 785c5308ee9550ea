#include "daemon/dispatch/dispatcher_impl.h"

// Recording outcomes: each final outcome is counted and written back with its
// batch's acknowledgement in one lua/flush.lua call per alert, idempotently (a token per
// call), holding the unconfirmed budget until Redis has it.

namespace sirena::dispatch {

void Dispatcher::Impl::finish(Msg* m, std::string_view state, const std::string& reason) {
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

auto Dispatcher::Impl::counter(Batch* b, Channel ch, std::string_view state) -> prometheus::Counter& {
  const std::string& gw = lane_of(ch).name();
  if (state != "accepted") return metrics.message(b->rtenant, to_string(ch), gw, std::string(state));
  auto& c = b->accepted[static_cast<int>(ch)];
  if (!c) c = &metrics.message(b->rtenant, to_string(ch), gw, "accepted");
  return *c;
}

void Dispatcher::Impl::schedule_flush() {
  if (!flush_timer || uv_is_active(flush_timer.base())) return;  // stopped, or armed
  uv_timer_start(
      flush_timer.get(), [](uv_timer_t* t) { static_cast<Impl*>(t->data)->flush(); },
      static_cast<uint64_t>(cfg.flush_ms), 0);
}

void Dispatcher::Impl::send_flush(std::shared_ptr<FlushCall> call) {
  std::vector<std::string_view> argv(call->args.begin(), call->args.end());
  std::string_view pfx = call->prefix;
  redis.eval(scripts::flush(), {pfx}, argv, [this, call](store::Reply r, const Error* e) {
    if (e || r.is_error()) {
      metrics.unexpected("dispatch_flush_failed").Increment();
      if (stopping || !flush_timer) return;  // its batches stay pending: re-read at the restart
      failed_flushes.push_back(call);
      uv_timer_start(
          flush_timer.get(), [](uv_timer_t* t) { static_cast<Impl*>(t->data)->flush(); }, 100, 0);
      return;
    }
    unconfirmed -= call->n;
    for (const auto& entry : call->entries) acks_unconfirmed.erase(entry);
    pump_all();
  });
}

void Dispatcher::Impl::flush() {
  if (!redis.connected()) {
    // Keep everything; try again shortly. Nothing is acked meanwhile.
    if (!stopping && flush_timer)
      uv_timer_start(
          flush_timer.get(), [](uv_timer_t* t) { static_cast<Impl*>(t->data)->flush(); }, 100, 0);
    return;
  }
  for (auto& call : std::exchange(failed_flushes, {})) send_flush(std::move(call));
  struct Work {
    std::vector<std::string> deliv;
    std::map<int64_t, std::vector<std::pair<Channel, uint32_t>>> accepted;  // by batch
    size_t n = 0;                                                           // outcomes
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

}  // namespace sirena::dispatch
