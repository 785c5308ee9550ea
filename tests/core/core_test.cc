// Small pieces of the base layer, with no sockets: ids, the loop-turn hook, log lines.
#include <gtest/gtest.h>
#include <uv.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "daemon/core/ids.h"
#include "daemon/core/log.h"
#include "daemon/core/turn_hook.h"

namespace sirena {
namespace {

TEST(Ulid, SortsInCreationOrderEvenWithinAMillisecond) {
  std::string prev = make_ulid(1'700'000'000'000);
  for (int i = 0; i < 1000; ++i) {
    std::string next = make_ulid(1'700'000'000'000);  // same millisecond
    ASSERT_LT(prev, next);
    ASSERT_TRUE(looks_like_ulid(next));
    prev = next;
  }
  EXPECT_LT(prev, make_ulid(1'700'000'000'001));
  EXPECT_LT(prev, make_ulid(1'600'000'000'000)) << "a clock step back must not break the order";
  EXPECT_FALSE(looks_like_ulid("../../etc/passwd"));
}

TEST(TurnHook, RunsOnceAfterTheTurnHoweverOftenScheduledAndClosesCleanly) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  int runs = 0;
  {
    TurnHook hook(&loop, [&] { ++runs; });
    hook.schedule();
    hook.schedule();
    EXPECT_TRUE(hook.scheduled());
    EXPECT_EQ(runs, 0) << "never from inside schedule()";
    uv_run(&loop, UV_RUN_NOWAIT);
    EXPECT_EQ(runs, 1);
    EXPECT_FALSE(hook.scheduled());
    hook.schedule();
    hook.cancel();
    uv_run(&loop, UV_RUN_NOWAIT);
    EXPECT_EQ(runs, 1);
    bool closed = false;
    hook.close([&] { closed = true; });
    hook.schedule();  // closed: nothing more runs
    EXPECT_FALSE(closed) << "done runs in the close callback";
    uv_run(&loop, UV_RUN_DEFAULT);
    EXPECT_TRUE(closed);
    EXPECT_EQ(runs, 1);
  }
  // Destroyed by its own callback, without close(): closed in the background.
  std::unique_ptr<TurnHook> self;
  self = std::make_unique<TurnHook>(&loop, [&] {
    ++runs;
    self.reset();
  });
  self->schedule();
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(runs, 2);
  EXPECT_EQ(self, nullptr);
  // Destroyed while its close is pending: `done` is dropped.
  auto hook = std::make_unique<TurnHook>(&loop, [] {});
  bool called = false;
  hook->close([&] { called = true; });
  hook.reset();
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_FALSE(called);
  EXPECT_EQ(uv_loop_close(&loop), 0) << "a handle was left open";
}

// Issue 14 finding 12: a 500 KB identifier is not written whole into a log line.
TEST(Log, EveryFieldIsBounded) {
  testing::internal::CaptureStderr();
  log::info("alert_accepted", {{"identifier", std::string(500 * 1024, 'x')},
                               {"normalisations", std::vector<std::string>(1000, std::string(1000, 'n'))},
                               {"remote", "127.0.0.1"},
                               {"utf8", std::string(255, 'a') + "\xC3\xA0"}});
  const std::string out = testing::internal::GetCapturedStderr();
  EXPECT_LT(out.size(), 16u * 1024) << out.size();
  auto line = nlohmann::json::parse(out.substr(0, out.find('\n')));
  const std::string id = line["identifier"];
  EXPECT_EQ(id.substr(0, 256), std::string(256, 'x'));
  EXPECT_NE(id.find("[truncated " + std::to_string(500 * 1024 - 256) + " bytes]"), std::string::npos) << id;
  EXPECT_EQ(line["normalisations"].size(), 33u);
  EXPECT_EQ(line["remote"], "127.0.0.1");
  // Cut at a character boundary: the two-byte "à" is dropped whole, not split.
  const std::string utf8 = line["utf8"];
  EXPECT_EQ(utf8.substr(0, 256), std::string(255, 'a') + "\xE2");  // "…" follows the 255 'a's
}

}  // namespace
}  // namespace sirena
