// Small pieces of the base layer, with no sockets: ids, the loop-turn hook, log lines,
// numbers from text, the libuv handle owner.
#include <gtest/gtest.h>
#include <uv.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "daemon/core/ids.h"
#include "daemon/core/log.h"
#include "daemon/core/number.h"
#include "daemon/core/turn_hook.h"
#include "daemon/uv/handle.h"

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
TEST(ParseNumber, TakesTheWholeTextInRangeOrNothing) {
  EXPECT_EQ(parse_number<int64_t>("42"), 42);
  EXPECT_EQ(parse_number<int64_t>("-7"), -7);
  EXPECT_EQ(parse_number<double>("2.5"), 2.5);
  EXPECT_EQ(parse_number<double>("1e3"), 1000.0);
  EXPECT_EQ(parse_number<uint16_t>("65535"), 65535);
  for (const char* bad : {"", " 1", "1 ", "12abc", "0x10", "+1", "--1", "1.5"})
    EXPECT_FALSE(parse_number<int64_t>(bad)) << bad;
  EXPECT_FALSE(parse_number<int64_t>("99999999999999999999")) << "overflow is no number, not an exception";
  EXPECT_FALSE(parse_number<uint16_t>("65536"));
  EXPECT_FALSE(parse_number<uint64_t>("-1"));
  EXPECT_FALSE(parse_number<int>("11", 0, 10));
  EXPECT_FALSE(parse_number<double>("nan"));
  EXPECT_FALSE(parse_number<double>("inf"));
  EXPECT_FALSE(parse_number<double>("1e999"));
  EXPECT_FALSE(parse_number<double>("fast"));
}

// A loop that must end with every handle closed and freed: uv_loop_close() fails while any
// handle is left, and ASan reports one freed twice or used after it was freed.
class UvHandleTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(uv_loop_init(&loop_), 0); }
  void TearDown() override {
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "a handle was left open";
  }
  uv_loop_t loop_;
};

TEST_F(UvHandleTest, FreesInTheCloseCallbackNotBefore) {
  uv::Handle<uv_timer_t> t;
  EXPECT_FALSE(t);
  int fired = 0;
  ASSERT_EQ(t.init(&loop_, &fired, uv_timer_init), 0);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->data, &fired);
  EXPECT_EQ(t.base()->type, UV_TIMER);
  bool closed = false;
  // The timer closes its own handle from its callback: the memory must live on until
  // libuv is done with it (the close callback, a later phase of the loop).
  struct Ctx {
    uv::Handle<uv_timer_t>* owner;
    int* fired;
    bool* closed;
  } ctx{&t, &fired, &closed};
  t->data = &ctx;
  uv_timer_start(
      t.get(),
      [](uv_timer_t* h) {
        auto* c = static_cast<Ctx*>(h->data);
        ++*c->fired;
        c->owner->reset([closed = c->closed] { *closed = true; });
        EXPECT_FALSE(*c->owner);
        EXPECT_FALSE(*c->closed) << "freed only in the close callback";
      },
      1, 1);
  uv_run(&loop_, UV_RUN_DEFAULT);
  EXPECT_EQ(fired, 1) << "no timer callback after reset()";
  EXPECT_TRUE(closed);
}

TEST_F(UvHandleTest, MovesAndClosesWhatItReplaces) {
  int closed = 0;
  uv::Handle<uv_idle_t> a;
  ASSERT_EQ(a.init(&loop_, nullptr, uv_idle_init), 0);
  uv_idle_t* raw = a.get();
  uv::Handle<uv_idle_t> b(std::move(a));
  EXPECT_FALSE(a);
  EXPECT_EQ(b.get(), raw);
  uv::Handle<uv_idle_t> c;
  ASSERT_EQ(c.init(&loop_, nullptr, uv_idle_init), 0);
  c = std::move(b);  // c's own idle handle is closed
  EXPECT_EQ(c.get(), raw);
  {
    uv::Handle<uv_check_t> scoped;
    ASSERT_EQ(scoped.init(&loop_, nullptr, uv_check_init), 0);
    uv_check_start(scoped.get(), [](uv_check_t*) {});
  }  // the destructor closes it
  c.reset([&] { ++closed; });
  a.reset([&] { ++closed; });  // empty: at once
  EXPECT_EQ(closed, 1);
  uv_run(&loop_, UV_RUN_DEFAULT);
  EXPECT_EQ(closed, 2);
}

TEST_F(UvHandleTest, AFailedInitLeavesItEmptyAndFreesTheHandle) {
  uv::Handle<uv_poll_t> p;
  EXPECT_NE(p.init(&loop_, nullptr, uv_poll_init, -1), 0) << "not a file descriptor";
  EXPECT_FALSE(p);
  // uv_spawn registers the handle even when it fails: it is closed, then freed.
  uv::Handle<uv_process_t> child;
  char file[] = "/nonexistent/sirena-no-such-binary";
  char* args[] = {file, nullptr};
  uv_process_options_t opts{};
  opts.file = file;
  opts.args = args;
  EXPECT_NE(child.init(&loop_, nullptr, uv_spawn, &opts), 0);
  EXPECT_FALSE(child);
}

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
