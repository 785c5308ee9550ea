#include "daemon/store/managed_redis.h"

#include <signal.h>

#include <filesystem>
#include <vector>

#include "daemon/core/log.h"

namespace sirena::store {

ManagedRedis::ManagedRedis(uv_loop_t* loop, config::RedisConfig cfg) : loop_(loop), cfg_(std::move(cfg)) {}

ManagedRedis::~ManagedRedis() = default;

Result<std::string> ManagedRedis::start() {
  std::error_code ec;
  std::filesystem::create_directories(cfg_.managed_dir, ec);
  if (ec)
    return make_error(ErrorKind::Config, "invalid_config",
                      "redis.managed.dir: cannot create " + cfg_.managed_dir + ": " + ec.message());
  dir_ = std::filesystem::absolute(cfg_.managed_dir).string();
  socket_path_ = dir_ + "/redis.sock";
  // A unix socket path is limited to 107 bytes (sockaddr_un.sun_path).
  if (socket_path_.size() > 100)
    return make_error(ErrorKind::Config, "invalid_config",
                      "redis.managed.dir: path too long for a unix socket: " + dir_);
  restart_timer_.init(loop_, this, uv_timer_init);
  if (auto s = spawn(); !s) return std::move(s).take_error();
  return "unix://" + socket_path_;
}

Status ManagedRedis::spawn() {
  std::vector<std::string> args{
      cfg_.managed_binary, "--port", "0", "--unixsocket", socket_path_, "--unixsocketperm", "700", "--dir",
      dir_, "--appendonly", "yes", "--appendfsync", cfg_.managed_appendfsync, "--save", "",
      // Rewrites fork and copy the dataset; at the default 64 MB they
      // come every few seconds under load and show in tail latency.
      "--auto-aof-rewrite-min-size", "1gb", "--daemonize", "no", "--logfile", dir_ + "/redis.log"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  uv_process_options_t opts{};
  opts.file = args[0].c_str();
  opts.args = argv.data();
  opts.exit_cb = &ManagedRedis::on_exit;
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_IGNORE;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  opts.stdio = stdio;
  opts.stdio_count = 3;
  // uv_spawn initialises the handle even on failure: init() closes it then.
  int rc = process_.init(loop_, this, uv_spawn, &opts);
  if (rc != 0) {
    return make_error(ErrorKind::Config, "redis_spawn_failed",
                      "cannot start " + cfg_.managed_binary + ": " + uv_strerror(rc) +
                          " (install redis-server or set redis.managed.binary)");
  }
  pid_ = process_->pid;
  log::info("managed_redis_started",
            {{"pid", pid_}, {"dir", dir_}, {"appendfsync", cfg_.managed_appendfsync}});
  return Ok{};
}

void ManagedRedis::on_exit(uv_process_t* p, int64_t status, int term_signal) {
  auto* self = static_cast<ManagedRedis*>(p->data);
  self->process_.reset();
  self->pid_ = 0;
  if (self->stopping_) {
    log::info("managed_redis_stopped", {{"status", status}});
    self->close_timer();
    return;
  }
  // Unexpected exit: restart with capped backoff; the client reconnects by itself.
  int64_t delay = std::min<int64_t>(100LL << std::min(self->restarts_, 5), 3000);
  ++self->restarts_;
  log::error("managed_redis_exited", {{"status", status}, {"signal", term_signal}, {"restart_in_ms", delay}});
  uv_timer_start(
      self->restart_timer_.get(),
      [](uv_timer_t* t) {
        auto* me = static_cast<ManagedRedis*>(t->data);
        if (auto s = me->spawn(); !s)
          log::error("managed_redis_restart_failed", {{"error", s.error().message}});
      },
      static_cast<uint64_t>(delay), 0);
}

void ManagedRedis::stop(std::function<void()> done) {
  stopping_ = true;
  on_stopped_ = std::move(done);
  if (restart_timer_) uv_timer_stop(restart_timer_.get());
  if (process_) {
    uv_process_kill(process_.get(), SIGTERM);  // Redis fsyncs the AOF and exits
    return;
  }
  close_timer();
}

void ManagedRedis::close_timer() {
  // on_stopped_ once the timer is freed (at once when there is none).
  restart_timer_.reset([this] {
    if (on_stopped_) on_stopped_();
  });
}

}  // namespace sirena::store
