// A real redis-server and a store::Redis client on a private libuv loop, for the tests
// of the dispatcher's parts that talk to Redis (no daemon, no simulators).
#pragma once

#include <gtest/gtest.h>
#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "daemon/core/clock.h"
#include "daemon/metrics/metrics.h"
#include "daemon/store/redis.h"
#include "tests/support/harness.h"

namespace sirena::dispatch {

class RedisLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<testing::RedisServer>(dir_.path());
    server_->start();
    uv_loop_init(&loop_);
    store::RedisTarget target;
    target.host = "127.0.0.1";
    target.port = server_->port();
    redis_ = std::make_unique<store::Redis>(&loop_, clock_, metrics_, target);
    redis_->start();
    run_until([&] { return redis_->connected(); });
  }
  void TearDown() override {
    bool stopped = false;
    redis_->stop([&] { stopped = true; });
    run_until([&] { return stopped; });
    redis_.reset();
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }
  // Runs the loop until `done`, for at most 10 s.
  void run_until(const std::function<bool()>& done) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done() && std::chrono::steady_clock::now() < deadline) uv_run(&loop_, UV_RUN_NOWAIT);
    ASSERT_TRUE(done());
  }
  std::string cli(const std::vector<std::string>& args) { return server_->cli(args); }

  testing::TempDir dir_;
  std::unique_ptr<testing::RedisServer> server_;
  uv_loop_t loop_{};
  SystemClock clock_;
  metrics::Metrics metrics_;
  std::unique_ptr<store::Redis> redis_;
};

}  // namespace sirena::dispatch
