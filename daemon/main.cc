// sirenad: the Sirena daemon.
//
//   sirenad --config FILE             run
//   sirenad --config FILE --check-config   validate and exit (0 ok, 2 invalid)
//   sirenad --hash-key KEY            print the sha256 to put in a tenant's keys
#include <uv.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "daemon/app/app.h"
#include "daemon/config/config.h"
#include "daemon/core/log.h"

int main(int argc, char** argv) {
  CLI::App cli{"sirenad: emergency alert dispatch daemon"};
  std::string config_path = "config/demo.yaml";
  bool check_only = false;
  std::string hash_key;
  cli.add_option("-c,--config", config_path, "configuration file (YAML)");
  cli.add_flag("--check-config", check_only, "validate the configuration and exit (0 ok, 2 invalid)");
  cli.add_option("--hash-key", hash_key, "print the sha256 of an API key for the config, and exit");
  CLI11_PARSE(cli, argc, argv);

  if (!hash_key.empty()) {
    std::cout << sirena::config::sha256_hex(hash_key) << "\n";
    return 0;
  }

  auto cfg = sirena::config::load(config_path);
  if (!cfg) {
    std::fprintf(stderr, "sirenad: invalid configuration: %s\n", cfg.error().message.c_str());
    return sirena::exit_code(sirena::ErrorKind::Config);
  }
  if (check_only) {
    std::printf("%s: OK (%zu tenants)\n", config_path.c_str(), cfg->tenants.size());
    return 0;
  }

  sirena::log::buffer_output(std::chrono::seconds(1));
  // Writes to a closed socket must fail with EPIPE, not kill the daemon.
  signal(SIGPIPE, SIG_IGN);
  uv_loop_t* loop = uv_default_loop();
  // The app stays reachable until exit: h2o keeps idle keep-alive connections that
  // are only torn down by the process exit, and LeakSanitizer must not call them leaks.
  static sirena::app::App* app = new sirena::app::App(loop, std::move(cfg).value());
  if (auto started = app->start(); !started) {
    sirena::log::error("startup_failed", {{"error", started.error().message}});
    app->abort_start();
    return sirena::exit_code(started.error().kind);
  }
  sirena::log::flush();  // the start-up lines at once (scripts read the managed Redis's pid)
  uv_run(loop, UV_RUN_DEFAULT);
  return app->exit_code();
}
