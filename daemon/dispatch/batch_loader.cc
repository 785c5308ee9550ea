#include "daemon/dispatch/dispatcher_impl.h"

// Loading a claimed batch: its alert (kept from the plan or read once), its slots and
// contacts (from the plan this daemon wrote, or lua/load.lua), the outcomes already
// recorded, and the messages made from them, queued on their gateways.

namespace sirena::dispatch {

void Dispatcher::Impl::with_alert(const std::string& tenant, const std::string& id,
                                  std::function<void(std::shared_ptr<Active>)> fn) {
  if (auto it = alerts.find(id); it != alerts.end()) return fn(it->second);
  auto& waiting = alerts_loading[id];
  waiting.push_back(std::move(fn));
  if (waiting.size() > 1) return;
  std::string key = store::keys::alert(tenant, id);
  redis.command({"HMGET", key, "parsed", "state", "received_ms", "expires_ms"},
                [this, tenant, id](store::Reply r, const Error* e) {
                  std::shared_ptr<Active> a = read_alert(tenant, id, e ? store::Reply() : r);
                  if (a) a = alerts.emplace(id, a).first->second;
                  auto fns = std::move(alerts_loading[id]);
                  alerts_loading.erase(id);
                  // An error reply is Redis unable to answer (LOADING after a restart, ...),
                  // not the alert's absence.
                  alert_read_failed = e != nullptr || r.is_error();
                  for (auto& waiting_fn : fns) waiting_fn(a);
                  alert_read_failed = false;
                });
}

auto Dispatcher::Impl::read_alert(const std::string& tenant, const std::string& id, store::Reply r)
    -> std::shared_ptr<Active> {
  if (!r.is_array() || r.size() != 4 || r[0].is_nil()) return nullptr;
  auto json = nlohmann::json::parse(r[0].string(), nullptr, false);
  auto parsed = alerts::alert_from_json(json);
  if (!parsed) return nullptr;
  auto a = make_active(tenant, id, std::move(parsed).value(), r[2].integer(clock.now_ms()));
  auto st = alerts::parse_state(r[1].string());
  a->cancelled = !st || !alerts::is_sending(*st);
  a->expires_ms = r[3].integer(0);
  return a;
}

auto Dispatcher::Impl::make_active(const std::string& tenant, const std::string& id, alerts::Alert alert,
                                   int64_t received_ms) -> std::shared_ptr<Active> {
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

void Dispatcher::Impl::load_batch(int priority, const std::string& entry, const std::string& tenant,
                                  const std::string& alert_id, const std::string& batch_no, bool fresh) {
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
      redis.command({"XACK", dispatch_stream(priority), kGroup, entry}, [](store::Reply, const Error*) {});
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
    redis.eval(scripts::load(), {key}, {},
               [this, raw](store::Reply r, const Error* e) { on_load(std::unique_ptr<Batch>(raw), r, e); });
  });
}

void Dispatcher::Impl::note_written(const std::string& alert_id, const std::shared_ptr<const PlanText>& plan,
                                    size_t to, store::Reply r, const Error* e) {
  bool fresh = !e && r.size() >= 3 && r[0].is_integer() && r[0].integer() >= 0 && r[2].is_integer() &&
               r[2].integer() == 0;
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

auto Dispatcher::Impl::own_batch(const std::string& alert_id, int64_t number)
    -> std::shared_ptr<const PlanText> {
  auto it = own_plans.find(alert_id);
  if (it == own_plans.end() || number < 0 || static_cast<size_t>(number) >= it->second.written)
    return nullptr;
  std::shared_ptr<const PlanText> plan = it->second.text;
  it->second.last_used_ms = clock.now_ms();
  if (--it->second.left == 0) own_plans.erase(it);
  return plan;
}

void Dispatcher::Impl::load_own(std::unique_ptr<Batch> b, std::shared_ptr<const PlanText> plan) {
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
  redis.command(argv, [this, raw, plan = std::move(plan), slots](store::Reply r, const Error* e) {
    std::unique_ptr<Batch> batch(raw);
    if (e || !r.is_array()) {
      loaded(*batch);
      reread_own = true;
      return;  // left pending: re-read by the next claim (reread_own)
    }
    add_messages(std::move(batch), slots, r);  // `plan` keeps the slots alive
  });
}

void Dispatcher::Impl::prefetch(const std::string& key) {
  prefetching.emplace(key, nullptr);
  redis.eval(scripts::load(), {key}, {}, [this, key](store::Reply r, const Error* e) {
    auto it = prefetching.find(key);
    Batch* raw = it->second;
    prefetching.erase(it);
    if (raw) on_load(std::unique_ptr<Batch>(raw), r, e);
  });
}

void Dispatcher::Impl::on_load(std::unique_ptr<Batch> b, store::Reply r, const Error* e) {
  if (e || !r.is_array()) {
    loaded(*b);
    reread_own = true;
    return;  // left pending: re-read by the next claim (reread_own)
  }
  std::string_view text = r.size() == 2 ? r[0].str() : "";
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
  add_messages(std::move(b), slots, r[1]);
}

auto Dispatcher::Impl::make_content(const Active& a, const std::string& language, const alerts::Info* info,
                                    std::string title, std::string body, int segments)
    -> std::shared_ptr<const Content> {
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

void Dispatcher::Impl::add_messages(std::unique_ptr<Batch> b, std::span<const uint32_t> slots,
                                    store::Reply r) {
  if (!r.is_array() || r.size() != slots.size()) {
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
    if (!r[i].is_string()) continue;  // deleted since the plan
    directory::Contacts c;
    if (!directory::unpack_contacts(r[i].str(), &c)) continue;
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
      if (!last[k] || !has_channel(ch)) continue;
      auto& content = a.push_content[c.language];
      if (!content) {
        PushText t = render_push(a.alert, pick());
        content = make_content(a, c.language, info, std::move(t.title), std::move(t.body), 0);
      }
      Msg* m = add(ch, slots[i], content, std::move(last[k]->token));
      m->m.app = std::move(last[k]->app);
      pushes.push_back(m);
    }
    if (c.phone.empty() || !pick() || !has_channel(Channel::Sms)) continue;
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

void Dispatcher::Impl::prepare(std::unique_ptr<Batch> b) {
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
    return queue(std::move(b), store::Reply());
  }
  std::vector<std::string> read;
  if (!b->fresh) {
    // Its first-attempt record, then the other outcomes (answered in this order).
    redis.command({"HGET", store::keys::acc(a.tenant, a.id), std::to_string(b->number)},
                  [raw = b.get()](store::Reply r, const Error* e) {
                    if (e || !r.is_string()) return;
                    each_accepted(r.str(), [raw](Channel ch, uint32_t pos) {
                      raw->first_accepted.push_back(accepted_key(ch, pos));
                    });
                    std::sort(raw->first_accepted.begin(), raw->first_accepted.end());
                  });
    read = {"HMGET", store::keys::deliv(a.tenant, a.id)};
    for (const auto& m : b->msgs) read.push_back(field_of(*m));
  }
  // The reply of the last command sent (HMGET, else HSET) continues.
  Batch* raw = b.release();
  store::Redis::Callback next = [this, raw](store::Reply r, const Error* e) {
    std::unique_ptr<Batch> batch(raw);
    loaded(*batch);
    if (e) {
      reread_own = true;
      return;  // left pending: re-read by the next claim (reread_own)
    }
    if (batch->fresh) {
      if (r.is_error()) metrics.unexpected("dispatch_smsto_failed").Increment();
      return queue(std::move(batch), store::Reply());
    }
    if (!r.is_array() || r.size() != batch->msgs.size()) {
      reread_own = true;  // e.g. LOADING after a Redis restart: read again
      return;
    }
    queue(std::move(batch), r);
  };
  if (sms) {
    std::vector<std::string_view> argv(map.begin(), map.end());
    if (read.empty()) return redis.command(argv, std::move(next));
    redis.command(argv, [this](store::Reply r, const Error* e) {
      if (e || r.is_error()) metrics.unexpected("dispatch_smsto_failed").Increment();
    });
  }
  std::vector<std::string_view> argv(read.begin(), read.end());
  redis.command(argv, std::move(next));
}

void Dispatcher::Impl::queue(std::unique_ptr<Batch> b, store::Reply deliv) {
  std::vector<Msg*> skip;
  if (deliv) {
    std::vector<std::unique_ptr<Msg>> todo;
    for (size_t i = 0; i < b->msgs.size(); ++i) {
      Msg* m = b->msgs[i].get();
      std::string v = deliv[i].string();
      if (std::binary_search(b->first_accepted.begin(), b->first_accepted.end(),
                             accepted_key(m->m.channel, m->pos)))
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
      log::info("dispatch_batch_resumed",
                {{"alert", b->alert->id}, {"done", b->msgs.size() - todo.size()}, {"to_send", todo.size()}});
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

void Dispatcher::Impl::finish_empty(std::unique_ptr<Batch> b) {
  Batch* raw = b.get();
  batches.push_back(std::move(b));
  finished_batches.emplace_back(raw, true);
  schedule_flush();
}

}  // namespace sirena::dispatch
