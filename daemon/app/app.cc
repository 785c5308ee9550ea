#include "daemon/app/app.h"

#include <signal.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "daemon/alerts/alert.h"
#include "daemon/alerts/alert_store.h"
#include "daemon/api/alerts_api.h"
#include "daemon/api/directory_api.h"
#include "daemon/api/dlr_api.h"
#include "daemon/api/router.h"
#include "daemon/core/log.h"
#include "daemon/directory/directory.h"
#include "daemon/dispatch/dispatcher.h"
#include "daemon/dispatch/replanner.h"
#include "daemon/http/server.h"
#include "daemon/metrics/metrics.h"
#include "daemon/store/managed_redis.h"
#include "daemon/store/redis.h"
#include "daemon/tenants/tenants.h"
#include "daemon/uv/handle.h"
#include "gateways/apns/apns.h"
#include "gateways/fcm/fcm.h"
#include "gateways/sms/sms_gateway.h"

namespace sirena::app {
namespace {

constexpr uint64_t kLagProbeMs = 250;
constexpr int64_t kDrainDeadlineMs = 10'000;
constexpr int kIntakeConnections = 4;

void warn_about_open_senders(const config::Config& cfg) {
  for (const auto& [id, t] : cfg.tenants)
    for (const auto& s : t.senders)
      if (s == "*")
        log::warn("tenant_accepts_any_sender",
                  {{"tenant", id}, {"hint", "list the tenant's own CAP senders"}});
}

std::map<std::string, dispatch::TenantPolicy> dispatch_policies(const config::Config& cfg) {
  std::map<std::string, dispatch::TenantPolicy> out;
  for (const auto& [id, t] : cfg.tenants) {
    dispatch::TenantPolicy& p = out[id];
    p.sms.max_segments = static_cast<size_t>(t.sms.max_segments);
    p.sms.text_parameter = t.sms.text_parameter;
    p.fallback_ms = t.sms.fallback_after_s * 1000;
    p.by_severity.clear();
    for (const auto& [severity, policy] : t.sms.channels) {
      auto cp = policy == "all" ? dispatch::ChannelPolicy::All : dispatch::ChannelPolicy::PushFirst;
      if (severity == "default")
        p.otherwise = cp;
      else
        p.by_severity[severity] = cp;
    }
  }
  return out;
}

// GOAWAYs and reconnects of a push gateway's connections, exported per gateway. Asking for
// the counters here also makes them exist (at 0) from the start.
void count_pool_events(metrics::Metrics& m, push::PushGateway& g) {
  prometheus::Counter* goaways = &m.http2_goaways(g.name());
  prometheus::Counter* reconnects = &m.http2_reconnects(g.name());
  g.set_pool_observer([goaways, reconnects](http2::PoolEvent e) {
    (e == http2::PoolEvent::Goaway ? goaways : reconnects)->Increment();
  });
}

// What sirena_messages_total{result} can say: the final states dispatch counts
// (dispatcher.cc finish()).
constexpr const char* kMessageResults[] = {"accepted", "failed", "expired", "cancelled", "skipped"};

metrics::KnownLabels known_labels(const config::Config& cfg,
                                  std::vector<metrics::KnownLabels::Gateway> gateways) {
  metrics::KnownLabels k;
  for (const auto& [id, _] : cfg.tenants) k.tenants.push_back(id);
  k.gateways = std::move(gateways);
  for (auto s : {alerts::Status::Actual, alerts::Status::Exercise, alerts::Status::System,
                 alerts::Status::Test, alerts::Status::Draft})
    k.alert_statuses.push_back(alerts::to_string(s));
  for (auto m : {alerts::MsgType::Alert, alerts::MsgType::Update, alerts::MsgType::Cancel,
                 alerts::MsgType::Ack, alerts::MsgType::Error})
    k.alert_msg_types.push_back(alerts::to_string(m));
  k.message_results.assign(std::begin(kMessageResults), std::end(kMessageResults));
  return k;
}

}  // namespace

struct App::Impl {
  uv_loop_t* loop;
  config::Config cfg;
  SystemClock clock;
  metrics::Metrics metrics;
  std::unique_ptr<store::ManagedRedis> managed;
  std::unique_ptr<store::Redis> redis;
  std::vector<std::unique_ptr<store::Redis>> writers;  // intake connections (AlertStore::set_writers)
  std::unique_ptr<alerts::AlertStore> alert_store;
  std::unique_ptr<directory::Directory> directory;
  std::unique_ptr<dispatch::Dispatcher> dispatcher;
  std::unique_ptr<dispatch::Replanner> replanner;
  std::unique_ptr<dispatch::Lifecycle> lifecycle;
  bool directory_loading = false;
  std::shared_ptr<const tenants::Tenants> tenants;
  std::unique_ptr<api::Router> router;
  std::unique_ptr<api::AlertsApi> alerts_api;
  std::unique_ptr<api::DirectoryApi> directory_api;
  std::unique_ptr<api::DlrApi> dlr_api;
  std::unique_ptr<http::Server> server;
  std::vector<metrics::KnownLabels::Gateway> gateway_labels;  // for KnownLabels after a reload
  uv::Handle<uv_signal_t> sig_term, sig_int, sig_hup;
  uv::Handle<uv_timer_t> lag_timer, drain_timer, load_retry_timer;
  int64_t lag_expected_ns = 0;
  int64_t drain_started_ms = 0;
  bool shutting_down = false;

  Impl(uv_loop_t* l, config::Config c) : loop(l), cfg(std::move(c)) {}
};

App::App(uv_loop_t* loop, config::Config cfg) : impl_(std::make_unique<Impl>(loop, std::move(cfg))) {}

App::~App() = default;

Status App::start() {
  Impl& i = *impl_;
  log::Level level;
  if (log::parse_level(i.cfg.log_level, &level)) log::set_level(level);

  std::string url = i.cfg.redis.url;
  if (url == "managed") {
    i.managed = std::make_unique<store::ManagedRedis>(i.loop, i.cfg.redis);
    auto started = i.managed->start();
    if (!started) return std::move(started).take_error();
    url = *started;
  }
  auto target = store::parse_redis_url(url);
  if (!target) return std::move(target).take_error();
  i.redis = std::make_unique<store::Redis>(i.loop, i.clock, i.metrics, *target);
  i.redis->set_command_timeout(i.cfg.redis.command_timeout_ms);
  i.redis->set_max_pending(static_cast<size_t>(i.cfg.redis.max_pending));
  i.alert_store = std::make_unique<alerts::AlertStore>(*i.redis);
  std::vector<store::Redis*> writer_ptrs;
  for (int w = 0; w < kIntakeConnections; ++w) {
    i.writers.push_back(std::make_unique<store::Redis>(i.loop, i.clock, i.metrics, *target));
    i.writers.back()->set_command_timeout(i.cfg.redis.command_timeout_ms);
    i.writers.back()->set_max_pending(static_cast<size_t>(i.cfg.redis.max_pending));
    i.writers.back()->start();
    writer_ptrs.push_back(i.writers.back().get());
  }
  i.alert_store->set_writers(writer_ptrs);
  i.directory = std::make_unique<directory::Directory>(*i.redis, i.clock, i.metrics);
  if (auto s = i.directory->configure(i.cfg); !s) return s;
  // The index is rebuilt from Redis once connected, and again a second later after a
  // failed attempt (a Redis still loading its AOF answers LOADING for a while).
  i.load_retry_timer.init(i.loop, this, uv_timer_init);
  i.redis->set_state_listener([this](bool connected) {
    if (connected) load_directory();
  });
  i.redis->start();
  i.tenants = std::make_shared<tenants::Tenants>(i.cfg.tenants);
  warn_about_open_senders(i.cfg);

  dispatch::DispatchConfig dc;
  dc.consumer = i.cfg.dispatch.consumer;
  if (dc.consumer.empty()) {
    char host[256] = "sirenad";
    gethostname(host, sizeof host - 1);
    dc.consumer = std::string(host) + ":" + i.cfg.http.listen.substr(i.cfg.http.listen.rfind(':') + 1);
  }
  dc.batch_size = static_cast<size_t>(i.cfg.dispatch.batch_size);
  dc.max_batches = static_cast<size_t>(i.cfg.dispatch.max_batches);
  dc.max_attempts = static_cast<int>(i.cfg.dispatch.max_attempts);
  dc.max_unconfirmed = static_cast<size_t>(i.cfg.dispatch.max_unconfirmed);
  i.dispatcher =
      std::make_unique<dispatch::Dispatcher>(i.loop, *i.redis, *i.directory, i.clock, i.metrics, dc);
  i.dispatcher->set_policies(dispatch_policies(i.cfg));
  if (auto s = add_gateways(); !s) return s;
  i.metrics.start_at_zero(known_labels(i.cfg, i.gateway_labels));
  i.replanner = std::make_unique<dispatch::Replanner>(i.loop, *i.redis, *i.alert_store, *i.directory,
                                                      *i.dispatcher, i.clock, i.metrics);
  i.lifecycle =
      std::make_unique<dispatch::Lifecycle>(*i.alert_store, *i.directory, *i.dispatcher, i.clock, i.metrics);

  api::RateLimits limits;
  limits.per_key = {i.cfg.http.key_rate, i.cfg.http.key_burst};
  limits.per_address = {i.cfg.http.address_rate, i.cfg.http.address_burst};
  i.router = std::make_unique<api::Router>([this] { return impl_->tenants; }, i.clock, i.metrics, limits);
  api::AlertsApiOptions opts;
  opts.max_body_bytes = static_cast<size_t>(i.cfg.http.max_body_bytes);
  opts.intake_max_pending = static_cast<size_t>(i.cfg.redis.intake_max_pending);
  opts.loop = i.loop;
  i.alerts_api = std::make_unique<api::AlertsApi>(*i.alert_store, *i.directory, *i.dispatcher, *i.lifecycle,
                                                  i.clock, i.metrics, opts);
  i.alerts_api->register_routes(*i.router);
  api::DirectoryApiOptions dopts;
  dopts.max_body_bytes = static_cast<size_t>(i.cfg.http.max_body_bytes);
  dopts.import_max_bytes = static_cast<size_t>(i.cfg.directory.import_max_bytes);
  dopts.max_zones_per_tenant = static_cast<size_t>(i.cfg.directory.max_zones_per_tenant);
  i.directory_api = std::make_unique<api::DirectoryApi>(i.loop, *i.directory, dopts);
  i.directory_api->register_routes(*i.router);
  i.dlr_api = std::make_unique<api::DlrApi>(*i.dispatcher, i.metrics, [this](const std::string& gateway) {
    auto it = impl_->cfg.gateways.find(gateway);
    if (it == impl_->cfg.gateways.end() || !it->second.is_sms()) return std::optional<std::string>();
    auto secret = it->second.keys.find("dlr_secret");
    return std::optional<std::string>(secret == it->second.keys.end() ? "" : secret->second);
  });
  i.dlr_api->register_routes(*i.router);
  i.router->add("GET", "/healthz", api::Access::open("public"),
                [](auto&, auto res, auto&) { res->send_json(200, R"({"status":"ok"})"); });
  i.router->add("GET", "/readyz", api::Access::open("public"), [this](auto&, auto res, auto&) {
    bool redis_ok = impl_->redis->connected();
    bool directory_ok = impl_->directory->loaded();
    nlohmann::json body = {{"ready", redis_ok && directory_ok && !impl_->shutting_down},
                           {"redis", redis_ok ? "connected" : "disconnected"},
                           {"directory", directory_ok ? "loaded" : "loading"},
                           {"config", "loaded"},
                           {"shutting_down", impl_->shutting_down}};
    res->send_json(body["ready"].get<bool>() ? 200 : 503, body.dump());
  });
  i.router->add("GET", "/metrics", api::Access::open("public"), [this](auto&, auto res, auto&) {
    res->send(200, "text/plain; version=0.0.4; charset=utf-8", impl_->metrics.serialize());
  });

  // Who may call what, once at start-up (README "HTTP API" says the same for people).
  log::info("http_routes", {{"routes", i.router->describe()}});
  i.server =
      std::make_unique<http::Server>(i.loop, i.cfg.http, i.clock, i.metrics,
                                     [this](const http::Request& req, std::shared_ptr<http::Responder> res) {
                                       impl_->router->dispatch(req, std::move(res));
                                     });
  // h2o answers bodies over its own limit with a plain 413 before any route runs; the
  // margin lets slightly-too-large bodies reach the routes, which answer in JSON.
  size_t largest = static_cast<size_t>(std::max(i.cfg.http.max_body_bytes, i.cfg.directory.import_max_bytes));
  if (auto s = i.server->start(largest + (1 << 20)); !s) return s;

  auto add_signal = [&](uv::Handle<uv_signal_t>& h, int signum, uv_signal_cb cb) {
    h.init(i.loop, this, uv_signal_init);
    uv_signal_start(h.get(), cb, signum);
  };
  add_signal(i.sig_term, SIGTERM, [](uv_signal_t* h, int) { static_cast<App*>(h->data)->shutdown(); });
  add_signal(i.sig_int, SIGINT, [](uv_signal_t* h, int) { static_cast<App*>(h->data)->shutdown(); });
  add_signal(i.sig_hup, SIGHUP, [](uv_signal_t* h, int) { static_cast<App*>(h->data)->reload(); });

  // Event-loop lag: a repeating timer that measures how late it fires.
  i.lag_timer.init(i.loop, this, uv_timer_init);
  i.lag_expected_ns = i.clock.mono_ns() + static_cast<int64_t>(kLagProbeMs) * 1'000'000;
  uv_timer_start(
      i.lag_timer.get(),
      [](uv_timer_t* t) {
        Impl& me = *static_cast<App*>(t->data)->impl_;
        int64_t now = me.clock.mono_ns();
        double lag = static_cast<double>(std::max<int64_t>(0, now - me.lag_expected_ns)) / 1e9;
        me.metrics.loop_lag().Observe(lag);
        me.metrics.loop_lag_last().Set(lag);
        me.lag_expected_ns = now + static_cast<int64_t>(kLagProbeMs) * 1'000'000;
      },
      kLagProbeMs, kLagProbeMs);

  log::info("sirenad_started", {{"config", i.cfg.path},
                                {"tenants", i.cfg.tenants.size()},
                                {"port", i.server->port()},
                                {"redis", i.managed ? "managed" : i.cfg.redis.url}});
  return Ok{};
}

Status App::add_gateways() {
  Impl& i = *impl_;
  for (const auto& [name, gc] : i.cfg.gateways) {
    if (gc.profile == config::GatewayProfile::Apns) {
      apns::ApnsConfig c;
      c.url = gc.url;
      c.team_id = gc.team_id;
      c.key_id = gc.key_id;
      c.key_file = gc.key_file;
      c.critical_alerts = gc.critical_alerts;
      c.max_in_flight = static_cast<size_t>(gc.max_in_flight);
      c.connections = static_cast<size_t>(gc.connections);
      c.verify_peer = gc.tls_verify;
      auto g = apns::ApnsGateway::create(i.loop, i.clock, name, c);
      if (!g) return gc.locate(std::move(g).take_error());
      count_pool_events(i.metrics, **g);
      i.gateway_labels.push_back({name, "apns", true});
      i.dispatcher->add_gateway(std::move(g).value(), gc.rate);
    } else if (gc.profile == config::GatewayProfile::Fcm) {
      fcm::FcmConfig c;
      c.url = gc.url;
      c.project_id = gc.project_id;
      c.service_account_file = gc.service_account_file;
      c.token_url = gc.token_url;
      c.max_in_flight = static_cast<size_t>(gc.max_in_flight);
      c.connections = static_cast<size_t>(gc.connections);
      c.verify_peer = gc.tls_verify;
      auto g = fcm::FcmGateway::create(i.loop, i.clock, name, c);
      if (!g) return gc.locate(std::move(g).take_error());
      count_pool_events(i.metrics, **g);
      i.gateway_labels.push_back({name, "fcm", true});
      i.dispatcher->add_gateway(std::move(g).value(), gc.rate);
    } else {
      auto c = sms::SmsConfig::from_keys(name, gc.keys);
      if (!c) return gc.locate(std::move(c).take_error());
      auto g = sms::SmsGateway::create(i.loop, name, std::move(c).value());
      if (!g) return gc.locate(std::move(g).take_error());
      i.gateway_labels.push_back({name, "sms", false});
      (*g)->set_reply_observer(
          [this, name](int status) { impl_->metrics.sms_request(name, status).Increment(); });
      // SMSC binds are slow: the provider's messages/s (0 = no limit).
      i.dispatcher->add_gateway(std::move(g).value(), gc.rate);
    }
  }
  return Ok{};
}

void App::abort_start() {
  Impl& i = *impl_;
  if (i.managed && i.managed->pid() > 0) kill(i.managed->pid(), SIGTERM);
}

void App::load_directory() {
  Impl& me = *impl_;
  if (me.shutting_down || !me.redis->connected() || me.directory->loaded() || me.directory_loading) return;
  me.directory_loading = true;
  log::info("directory_load_started", {});
  me.directory->load([this](Status s) {
    Impl& m = *impl_;
    m.directory_loading = false;
    if (!s) {
      log::error("directory_load_failed", {{"error", s.error().message}, {"retry_in_ms", 1000}});
      // Not after shutdown has closed the timer.
      if (m.load_retry_timer)
        uv_timer_start(
            m.load_retry_timer.get(), [](uv_timer_t* t) { static_cast<App*>(t->data)->load_directory(); },
            1000, 0);
      return;
    }
    // Dispatch starts once resolution is possible: first pending work, then new.
    m.dispatcher->start();
    std::vector<std::string> ids;
    for (const auto& [id, _] : m.cfg.tenants) ids.push_back(id);
    m.replanner->start(std::move(ids));
  });
}

void App::reload() {
  Impl& i = *impl_;
  auto fresh = config::load(i.cfg.path);
  if (!fresh) {
    log::error("config_reload_failed", {{"error", fresh.error().message}, {"where", fresh.error().where}});
    i.metrics.unexpected("config_reload_failed").Increment();
    return;
  }
  // Tenants, keys and zones change at once; listeners and Redis need a restart to change.
  if (auto s = i.directory->configure(*fresh); !s) {
    log::error("config_reload_failed", {{"error", s.error().message}, {"where", s.error().where}});
    i.metrics.unexpected("config_reload_failed").Increment();
    return;
  }
  i.cfg.tenants = fresh->tenants;
  i.cfg.gateways = fresh->gateways;
  i.dispatcher->set_policies(dispatch_policies(*fresh));
  std::vector<std::string> ids;
  for (const auto& [id, _] : fresh->tenants) ids.push_back(id);
  i.replanner->set_tenants(std::move(ids));
  i.tenants = std::make_shared<tenants::Tenants>(fresh->tenants);
  i.metrics.start_at_zero(known_labels(*fresh, i.gateway_labels));
  warn_about_open_senders(*fresh);
  log::info("config_reloaded", {{"config", i.cfg.path}, {"tenants", fresh->tenants.size()}});
}

void App::shutdown() {
  Impl& i = *impl_;
  if (i.shutting_down) return;
  i.shutting_down = true;
  log::info("shutdown_started", {{"in_flight", i.server->in_flight()}});
  i.server->stop_accepting();
  i.drain_started_ms = i.clock.now_ms();
  i.drain_timer.init(i.loop, this, uv_timer_init);
  // Poll until in-flight requests have been answered (they may be waiting on Redis).
  uv_timer_start(
      i.drain_timer.get(),
      [](uv_timer_t* t) {
        auto* app = static_cast<App*>(t->data);
        Impl& me = *app->impl_;
        bool timed_out = me.clock.now_ms() - me.drain_started_ms > kDrainDeadlineMs;
        if (me.server->in_flight() > 0 && !timed_out) return;
        if (timed_out) log::warn("shutdown_drain_timeout", {{"in_flight", me.server->in_flight()}});
        me.drain_timer.reset();  // `t`: freed in its close callback, after this one returns
        for (auto* h : {&me.sig_term, &me.sig_int, &me.sig_hup}) h->reset();
        me.lag_timer.reset();
        me.load_retry_timer.reset();
        me.replanner->stop();
        // Dispatch stops claiming; what is in flight finishes or stays pending for the restart.
        me.dispatcher->stop([app] {
          Impl& me2 = *app->impl_;
          for (auto& w : me2.writers) w->stop([] {});
          me2.redis->stop([app] {
            Impl& m = *app->impl_;
            auto finish = [app] {
              log::info("shutdown_complete", {});
              uv_stop(app->impl_->loop);
            };
            if (m.managed)
              m.managed->stop(finish);
            else
              finish();
          });
        });
      },
      0, 10);
}

}  // namespace sirena::app
