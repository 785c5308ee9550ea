// sirena-sim apns|fcm|sms --listen HOST:PORT [options]: Sirena's gateway simulators.
// One thread, one libuv loop. Prints "listening on HOST:PORT" to stderr once it serves
// (after "admin on HOST:PORT" when --admin is given); SIGINT/SIGTERM flush --record and
// exit 0.
#include <uv.h>

#include <csignal>
#include <cstdio>
#include <memory>

#include "daemon/core/clock.h"
#include "gateways/sim/apns.h"
#include "gateways/sim/delay_queue.h"
#include "gateways/sim/faults.h"
#include "gateways/sim/fcm.h"
#include "gateways/sim/h1_server.h"
#include "gateways/sim/h2_server.h"
#include "gateways/sim/ledger.h"
#include "gateways/sim/options.h"
#include "gateways/sim/simulator.h"
#include "gateways/sim/sms.h"
#include "gateways/sim/tls.h"

namespace {

using namespace sirena;
using namespace sirena::sim;

constexpr uint64_t kRecordFlushMs = 100;
constexpr uint64_t kShutdownGraceMs = 1000;

std::string host_port(const std::string& host, int port) {
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

struct App {
  uv_loop_t* loop = nullptr;
  Recorder recorder;
  std::unique_ptr<H2Server> h2;
  std::unique_ptr<H1Server> h1;
  std::unique_ptr<H1Server> admin;
  std::unique_ptr<DelayQueue> delays;
  uv_timer_t flush_timer{};
  uv_timer_t grace_timer{};
  uv_signal_t sigint{}, sigterm{};
  bool stopping = false;

  void stop() {
    if (stopping) return;
    stopping = true;
    recorder.flush();
    if (h2) h2->close();
    if (h1) h1->close();
    if (admin) admin->close();
    delays->close();
    uv_close(reinterpret_cast<uv_handle_t*>(&flush_timer), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&sigint), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&sigterm), nullptr);
    // Wait for h2o to close its connections, then free its context, so the loop runs dry
    // and closes cleanly; give up (uv_stop) after kShutdownGraceMs.
    uv_timer_init(loop, &grace_timer);
    grace_timer.data = this;
    grace_started = uv_now(loop);
    uv_timer_start(&grace_timer, on_grace, 0, 5);
  }

  static void on_grace(uv_timer_t* t) {
    auto* app = static_cast<App*>(t->data);
    bool idle = (!app->h1 || app->h1->idle()) && (!app->admin || app->admin->idle());
    if (idle) {
      if (app->h1) app->h1->dispose();
      if (app->admin) app->admin->dispose();
      uv_close(reinterpret_cast<uv_handle_t*>(t), nullptr);
    } else if (uv_now(t->loop) - app->grace_started > kShutdownGraceMs) {
      uv_stop(t->loop);
    }
  }
  uint64_t grace_started = 0;
};

int run(int argc, char** argv) {
  auto parsed = parse_options(argc, argv);
  if (!parsed) {
    const Error& e = parsed.error();
    std::fprintf(e.kind == ErrorKind::Help ? stdout : stderr, "%s\n", e.message.c_str());
    return exit_code(e.kind);
  }
  const Options& opt = *parsed;
  std::signal(SIGPIPE, SIG_IGN);  // a peer that vanished is a write error, not a death

  App app;
  app.loop = uv_default_loop();
  SystemClock clock;
  RecipientSet unregistered;
  if (!opt.unregistered_file.empty()) {
    if (auto st = unregistered.load(opt.unregistered_file); !st) {
      std::fprintf(stderr, "sirena-sim: %s\n", st.error().message.c_str());
      return exit_code(st.error().kind);
    }
  }
  if (!opt.record_file.empty() && !app.recorder.open(opt.record_file)) {
    std::fprintf(stderr, "sirena-sim: --record: cannot open %s\n", opt.record_file.c_str());
    return exit_code(ErrorKind::Config);
  }
  Ledger ledger(opt.record_file.empty() ? nullptr : &app.recorder);
  Faults faults(opt.faults);
  app.delays = std::make_unique<DelayQueue>(app.loop);

  std::unique_ptr<DlrSender> dlr;
  std::unique_ptr<Service> service;
  switch (opt.protocol) {
    case Protocol::Apns:
      service = std::make_unique<ApnsService>(clock, unregistered, opt.faults.seed);
      break;
    case Protocol::Fcm:
      service = std::make_unique<FcmService>(clock, unregistered, opt.faults.seed);
      break;
    case Protocol::Sms:
      if (opt.dlr) dlr = std::make_unique<DlrSender>();
      service = std::make_unique<SmsService>(SmsService::Config{opt.username, opt.password}, unregistered,
                                             dlr.get());
      break;
  }
  Simulator sim(*service, faults, ledger);

  if (opt.has_admin) {
    app.admin = std::make_unique<H1Server>(app.loop, sim, *app.delays, H1Server::Mode::Admin);
    auto port = app.admin->listen(opt.admin);
    if (!port) {
      std::fprintf(stderr, "sirena-sim: --admin %s\n", port.error().message.c_str());
      return exit_code(port.error().kind);
    }
    std::fprintf(stderr, "admin on %s\n", host_port(opt.admin.host, *port).c_str());
  }

  std::unique_ptr<TlsContext> tls;
  Result<int> port = 0;
  if (opt.protocol == Protocol::Sms) {
    app.h1 = std::make_unique<H1Server>(app.loop, sim, *app.delays, H1Server::Mode::Simulator);
    port = app.h1->listen(opt.listen, opt.tls_cert, opt.tls_key);
  } else {
    H2Server::Settings settings{opt.max_streams, opt.faults.goaway_every, nullptr};
    if (!opt.tls_cert.empty()) {
      auto loaded = TlsContext::load(opt.tls_cert, opt.tls_key);
      if (!loaded) {
        std::fprintf(stderr, "sirena-sim: %s\n", loaded.error().message.c_str());
        return exit_code(loaded.error().kind);
      }
      tls = std::move(*loaded);
      settings.tls = tls->get();
    }
    app.h2 = std::make_unique<H2Server>(app.loop, sim, *app.delays, settings);
    port = app.h2->listen(opt.listen);
  }
  if (!port) {
    std::fprintf(stderr, "sirena-sim: --listen %s\n", port.error().message.c_str());
    return exit_code(port.error().kind);
  }

  uv_timer_init(app.loop, &app.flush_timer);
  app.flush_timer.data = &app;
  uv_timer_start(
      &app.flush_timer, [](uv_timer_t* t) { static_cast<App*>(t->data)->recorder.flush(); }, kRecordFlushMs,
      kRecordFlushMs);
  for (uv_signal_t* s : {&app.sigint, &app.sigterm}) {
    uv_signal_init(app.loop, s);
    s->data = &app;
  }
  auto on_signal = [](uv_signal_t* s, int) { static_cast<App*>(s->data)->stop(); };
  uv_signal_start(&app.sigint, on_signal, SIGINT);
  uv_signal_start(&app.sigterm, on_signal, SIGTERM);

  std::fprintf(stderr, "listening on %s\n", host_port(opt.listen.host, *port).c_str());
  std::fflush(stderr);
  uv_run(app.loop, UV_RUN_DEFAULT);
  app.recorder.flush();
  uv_loop_close(app.loop);  // UV_EBUSY after a timed-out shutdown: nothing more to do
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return run(argc, argv);
}
