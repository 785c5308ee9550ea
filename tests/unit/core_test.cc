// Small pieces with no sockets: ids, Redis URLs, the router, the CAP Cancel writer, the
// loop-turn hook.
#include <gtest/gtest.h>
#include <uv.h>

#include <memory>

#include "daemon/alerts/cap_parser.h"
#include "daemon/alerts/cap_writer.h"
#include "daemon/core/ids.h"
#include "daemon/core/turn_hook.h"
#include "daemon/store/redis.h"

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

TEST(RedisUrl, ParsesTcpUnixDbAndPassword) {
  auto a = store::parse_redis_url("redis://127.0.0.1:16379/2");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 16379);
  EXPECT_EQ(a->db, 2);
  auto b = store::parse_redis_url("redis://:s3cret@localhost:6380");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->password, "s3cret");
  EXPECT_EQ(b->port, 6380);
  auto c = store::parse_redis_url("unix:///var/run/redis.sock?db=1");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->unix_path, "/var/run/redis.sock");
  EXPECT_EQ(c->db, 1);
  EXPECT_FALSE(store::parse_redis_url("http://x"));
  EXPECT_FALSE(store::parse_redis_url("redis://host:99999"));
  EXPECT_FALSE(store::parse_redis_url("unix://relative"));
}

TEST(CapWriter, CancelIsValidCapReferencingTheAlert) {
  alerts::CancelSpec spec{"pc@soliera.it", "sirena-cancel-1", alerts::cap_datetime(1'764'230'400'000), "Test",
                          "pc@soliera.it,flood-1,2026-11-27T10:00:00+01:00", "note with <markup> & ampersand"};
  std::string xml = alerts::write_cancel(spec);
  auto parsed = alerts::parse_cap_xml(xml);
  ASSERT_TRUE(parsed) << parsed.error().message << "\n" << xml;
  EXPECT_EQ(parsed->msg_type, alerts::MsgType::Cancel);
  EXPECT_EQ(parsed->status, alerts::Status::Test);
  ASSERT_EQ(parsed->references.size(), 1u);
  EXPECT_EQ(parsed->references[0].identifier, "flood-1");
  EXPECT_EQ(parsed->note, "note with <markup> & ampersand");
  EXPECT_EQ(spec.sent, "2025-11-27T08:00:00+00:00");
}

}  // namespace
}  // namespace sirena
