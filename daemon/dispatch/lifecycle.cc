#include "daemon/dispatch/lifecycle.h"

#include <nlohmann/json.hpp>

#include "daemon/alerts/alert_json.h"
#include "daemon/alerts/cap_parser.h"
#include "daemon/alerts/cap_writer.h"
#include "daemon/alerts/lifecycle.h"
#include "daemon/core/ids.h"
#include "daemon/core/log.h"
#include "daemon/dispatch/dispatcher.h"
#include "daemon/metrics/metrics.h"

namespace sirena::dispatch {

void Lifecycle::submit(Submission s, std::function<void(Result<Submitted>)> done) {
  // Resolution at intake: the recipient count drives the approval policy, and a
  // neighbour's grant use is audited in the neighbour's stream.
  auto resolution =
      std::make_shared<const directory::Resolution>(directory_.resolve(s.tenant, s.alert, s.drawn));
  const auto recipients = static_cast<int64_t>(resolution->recipients);
  const char* initial = alerts::initial_state(s.alert, s.approval_statuses, s.min_recipients, recipients);
  auto alert = std::make_shared<const alerts::Alert>(std::move(s.alert));
  alerts::NewAlert n{s.tenant, alert.get(), s.raw,         s.content_type, s.key_id,
                     s.remote, initial,     s.received_ms, recipients,     std::move(s.stored_json)};
  store_.create(n, [this, alert, resolution, tenant = s.tenant, received_ms = s.received_ms,
                    done = std::move(done)](Result<alerts::Created> r) {
    if (!r) return done(r.error());
    const alerts::Alert& a = *alert;
    if (r->created) {
      metrics_.alert_received(tenant, alerts::to_string(a.status), alerts::to_string(a.msg_type)).Increment();
      audit_grants(tenant, r->id, *resolution);
      if (r->state == alerts::state::kAccepted) {
        // An Update or Cancel stops what it replaces at once (DESIGN.md invariant 4).
        if (a.msg_type == alerts::MsgType::Update || a.msg_type == alerts::MsgType::Cancel)
          dispatcher_.cancel_references(tenant, a.references);
        if (a.msg_type != alerts::MsgType::Cancel)
          start_dispatch(tenant, r->id, alert, received_ms, resolution);
      }
    }
    done(Submitted{std::move(r).value(), resolution->recipients, alert});
  });
}

void Lifecycle::approve(const std::string& tenant, const std::string& id, const std::string& key_id,
                        const std::string& remote, std::function<void(Result<std::string>)> done) {
  store_.approve(
      tenant, id, key_id, remote, clock_.now_ms(),
      [this, tenant, id, done = std::move(done)](Result<std::string> r) {
        if (!r) return done(std::move(r));
        done(*r);
        // Resolution again at approval: the directory may have changed while it waited.
        store_.get(tenant, id, [this, tenant, id](Result<std::optional<alerts::StoredAlert>> s) {
          if (!s || !*s) return;
          auto parsed = alerts::alert_from_json(nlohmann::json::parse((*s)->parsed, nullptr, false));
          if (!parsed) return;
          auto alert = std::make_shared<const alerts::Alert>(std::move(parsed).value());
          if (alert->msg_type == alerts::MsgType::Update || alert->msg_type == alerts::MsgType::Cancel)
            dispatcher_.cancel_references(tenant, alert->references);
          if (alert->msg_type == alerts::MsgType::Cancel) return;
          start_dispatch(tenant, id, alert, (*s)->received_ms,
                         std::make_shared<const directory::Resolution>(directory_.resolve(tenant, *alert)));
        });
      });
}

void Lifecycle::cancel(const std::string& tenant, const std::string& id, const std::string& key_id,
                       const std::string& remote, std::function<void(Result<Cancelled>)> done) {
  store_.get(
      tenant, id,
      [this, id, tenant, key_id, remote,
       done = std::move(done)](Result<std::optional<alerts::StoredAlert>> r) {
        if (!r) return done(r.error());
        if (!*r) return done(make_error(ErrorKind::NotFound, "not_found", "no such alert"));
        const alerts::StoredAlert& target = **r;
        if (target.state == alerts::state::kCancelled)
          return done(Cancelled{target.state, target.cancelled_by, ""});
        // Stop sending now; the Cancel below makes it durable and visible to other daemons.
        dispatcher_.cancel(id);
        // A real CAP Cancel referencing the alert (CAP 1.2 §3.2.1 msgType "Cancel"),
        // taken through the same intake path as a posted one.
        int64_t now = clock_.now_ms();
        alerts::CancelSpec spec{target.sender,
                                "sirena-cancel-" + make_ulid(now),
                                alerts::cap_datetime(now),
                                target.status,
                                target.sender + "," + target.identifier + "," + target.sent,
                                "Cancelled through Sirena by " + key_id};
        auto xml = std::make_shared<std::string>(alerts::write_cancel(spec));
        auto parsed = alerts::parse_cap_xml(*xml);
        if (!parsed) {
          // The stop must hold all the same, here and for every other daemon and restart.
          metrics_.unexpected("generated_cancel_invalid").Increment();
          log::error("cancel_without_cap",
                     {{"tenant", tenant}, {"id", id}, {"error", parsed.error().message}});
          store_.cancel(
              tenant, id, "cancel:" + key_id, key_id, remote, now,
              [done, why = parsed.error().message](Result<std::string> c) {
                if (!c) return done(c.error());
                done(Cancelled{*c, "",
                               "the alert is cancelled, but no CAP Cancel could be issued for it: " + why});
              });
          return;
        }
        auto alert = std::make_shared<alerts::Alert>(std::move(parsed).value());
        alerts::NewAlert n{
            tenant, alert.get(), *xml, "application/cap+xml", key_id, remote, alerts::state::kAccepted,
            now,    0,           {}};
        store_.create(n, [this, xml, alert, tenant, done](Result<alerts::Created> c) {
          if (!c) return done(c.error());
          metrics_.alert_received(tenant, alerts::to_string(alert->status), "Cancel").Increment();
          done(Cancelled{alerts::state::kCancelled, c->id, ""});
        });
      });
}

void Lifecycle::start_dispatch(const std::string& tenant, const std::string& id,
                               std::shared_ptr<const alerts::Alert> alert, int64_t received_ms,
                               std::shared_ptr<const directory::Resolution> resolution) {
  // Defence in depth: intake stores System, Ack and Error messages as `recorded`, so none
  // should get here; if one does, it is not sent.
  if (!alerts::reaches_citizens(alert->status, alert->msg_type)) {
    metrics_.unexpected("dispatch_not_for_citizens").Increment();
    log::error("dispatch_refused", {{"tenant", tenant},
                                    {"id", id},
                                    {"status", alerts::to_string(alert->status)},
                                    {"msg_type", alerts::to_string(alert->msg_type)}});
    return;
  }
  dispatcher_.plan(tenant, id, *alert, received_ms, resolution, [this, tenant, id, alert](sirena::Status s) {
    if (!s) {
      // The alert is durable and in its tenant's `unplanned` set: the Replanner plans it.
      metrics_.unexpected("dispatch_plan_failed").Increment();
      log::error("dispatch_plan_failed", {{"tenant", tenant}, {"id", id}, {"error", s.error().message}});
    }
  });
}

void Lifecycle::audit_grants(const std::string& tenant, const std::string& alert_id,
                             const directory::Resolution& r) {
  for (const auto& part : r.parts) {
    if (!part.via_grant) continue;
    store_.audit(part.tenant,
                 {{"action", "grant_used"},
                  {"alert", alert_id},
                  {"by_tenant", tenant},
                  {"recipients", std::to_string(part.slots.size())},
                  {"time_ms", std::to_string(clock_.now_ms())}},
                 [this](Status s) {
                   if (!s) metrics_.unexpected("grant_audit_failed").Increment();
                 });
  }
}

}  // namespace sirena::dispatch
