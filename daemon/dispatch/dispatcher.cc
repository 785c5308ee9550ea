#include "daemon/dispatch/dispatcher.h"

#include "daemon/dispatch/dispatcher_impl.h"

namespace sirena::dispatch {

const char* to_string(Channel c) {
  switch (c) {
    case Channel::Sms:
      return "sms";
    case Channel::Apns:
      return "apns";
    case Channel::Fcm:
      return "fcm";
  }
  return "?";
}

auto Dispatcher::Impl::field_of(const Msg& m) -> std::string {
  const Batch& b = *m.batch;
  std::string f;
  f.reserve(b.rtenant.size() + 16);
  f.append(b.rtenant).append(":").append(std::to_string(m.m.slot)).append(":").append(to_string(m.m.channel));
  return f;
}

Dispatcher::Dispatcher(uv_loop_t* loop, store::Redis& redis, directory::Directory& directory,
                       const Clock& clock, metrics::Metrics& metrics, DispatchConfig config)
    : impl_(std::make_unique<Impl>(loop, redis, directory, clock, metrics, std::move(config))) {}

Dispatcher::~Dispatcher() = default;

void Dispatcher::add_gateway(std::unique_ptr<Gateway> gateway, double rate_per_s) {
  metrics::Metrics& m = impl_->metrics;
  const std::string& name = gateway->name();
  int ch = static_cast<int>(gateway->channel());
  LaneGauges gauges{&m.gateway_queue_depth(name), &m.gateway_bucket_tokens(name), &m.circuit_state(name),
                    &m.gateway_in_flight(name), &m.gateway_duration(name)};
  impl_->latency[ch] = &m.delivery_latency(to_string(gateway->channel()));
  impl_->lanes[ch] = std::make_unique<Impl::Lane>(impl_->clock, std::move(gateway), rate_per_s, gauges);
}

bool Dispatcher::has_channel(Channel c) const {
  return impl_->lanes[static_cast<int>(c)] != nullptr;
}

void Dispatcher::set_policies(std::map<std::string, TenantPolicy> policies) {
  impl_->policies = std::move(policies);
}

void Dispatcher::start() {
  Impl& i = *impl_;
  if (i.started) return;
  i.started = true;
  for (auto* t : {&i.poll_timer, &i.flush_timer, &i.retry_timer, &i.pump_timer})
    t->init(i.loop, &i, uv_timer_init);
  i.pump_idle.init(i.loop, &i, uv_idle_init);
  i.gauge_hook = std::make_unique<TurnHook>(i.loop, [&i] { i.set_gauges(); });
  i.ensure_groups();
  // First this consumer's own pending batches (work in progress when it last stopped),
  // then new ones.
  i.claim(true);
  uv_timer_start(
      i.poll_timer.get(), [](uv_timer_t* t) { static_cast<Impl*>(t->data)->poll(); },
      static_cast<uint64_t>(i.cfg.poll_ms), static_cast<uint64_t>(i.cfg.poll_ms));
}

void Dispatcher::stop(std::function<void()> done) {
  Impl& i = *impl_;
  i.stopping = true;
  if (i.started) {
    i.flush();  // what finished is recorded; the rest stays pending for the restart
    for (auto* t : {&i.poll_timer, &i.flush_timer, &i.retry_timer, &i.pump_timer}) t->reset();
    i.pump_idle.reset();
  }
  i.reports.stop();  // the reports of this turn go now; later ones one call each
  if (i.gauge_hook) {
    i.set_gauges();
    i.gauge_hook->close(nullptr);
  }
  auto remaining = std::make_shared<int>(0);
  for (auto& lane : i.lanes)
    if (lane) ++*remaining;
  if (*remaining == 0) return done();
  auto shared = std::make_shared<std::function<void()>>(std::move(done));
  for (auto& lane : i.lanes)
    if (lane)
      lane->gateway().close([remaining, shared] {
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
    for (size_t start = 0; start < part.slots.size(); start += pt.batch_size)
      pt.batches.emplace_back(&part, start);
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
                      [this, w, alert_id, to, cb = std::move(cb)](store::Reply r, const Error* e) {
                        impl_->note_written(alert_id, w->plan, to, r, e);
                        cb(r, e);
                      });
  };
  auto check = [](store::Reply r, const Error* e) -> std::optional<Error> {
    if (e) return *e;
    if (r.is_error())
      return make_error(ErrorKind::Internal, "storage_error", "plan script: " + std::string(r.str()));
    if (r.size() == 0) return make_error(ErrorKind::Internal, "storage_error", "plan script: no reply");
    return std::nullopt;
  };
  store::Redis::Callback finished = [this, alert_id, tenant, w, check, done = std::move(done)](
                                        store::Reply r, const Error* e) {
    Impl& me = *impl_;
    me.planning.erase(alert_id);
    if (!w->failed) w->failed = check(r, e);
    if (w->failed) return done(*w->failed);
    if (r[0].integer() >= 0)
      log::info("dispatch_planned", {{"tenant", tenant},
                                     {"id", alert_id},
                                     {"batches", w->n},
                                     {"ms", (me.clock.mono_ns() - w->started_ns) / 1'000'000}});
    me.claim();
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
    call(from, to, 0, [check, finished, n, to, self = weak.lock()](store::Reply r, const Error* e) {
      if (to == n || check(r, e) || r[0].integer() < 0) return finished(r, e);
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
  call(0, split, claim, [this, prio, claim, w, check, finished, next, split](store::Reply r, const Error* e) {
    Impl& me = *impl_;
    me.claimed_count -= claim;
    w->failed = check(r, e);
    if (!w->failed && r[1].is_array()) me.take_streams(r[1], prio, true);
    if (split == w->n || w->failed || r[0].integer() < 0) return finished(r, e);
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
  impl_->reported(report_key(alert_id, recipient_tenant, number));
  impl_->reports.add({store::keys::tenant(alert_tenant), alert_id, recipient_tenant + "|" + number, state,
                      reason, std::move(done)});
}

void Dispatcher::deliveries(const std::string& tenant, const std::string& alert_id, const std::string& state,
                            const std::string& cursor, size_t limit,
                            std::function<void(Result<DeliveryPage>)> done) {
  impl_->reader.deliveries(tenant, alert_id, state, cursor, limit, std::move(done));
}

}  // namespace sirena::dispatch
