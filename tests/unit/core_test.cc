// Small pieces with no sockets: ids, Redis URLs, the router, the CAP Cancel writer, the
// loop-turn hook, numbers from text, the libuv handle owner.
#include <gtest/gtest.h>
#include <uv.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "daemon/alerts/alert_json.h"
#include "daemon/alerts/cap_parser.h"
#include "daemon/alerts/cap_writer.h"
#include "daemon/core/ids.h"
#include "daemon/core/log.h"
#include "daemon/core/number.h"
#include "daemon/core/turn_hook.h"
#include "daemon/store/redis.h"
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
  for (const char* junk : {"redis://host:6379x", "redis://host:63 79", "redis://host:/0", "redis://host:1/2x",
                           "unix:///r.sock?db=1x", "redis://host:99999999999999999999"})
    EXPECT_FALSE(store::parse_redis_url(junk)) << junk;
}

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

// The Cancel that POST /v1/alerts/{id}/cancel writes for a stored alert, as the API
// builds it from the stored sender, identifier, sent and status.
Result<alerts::Alert> cancel_of(const alerts::Alert& a) {
  alerts::CancelSpec spec{a.sender,
                          "sirena-cancel-" + make_ulid(1'764'230'400'000),
                          alerts::cap_datetime(1'764'230'400'000),
                          alerts::to_string(a.status),
                          a.sender + "," + a.identifier + "," + a.sent.text,
                          "Cancelled through Sirena by k-operator"};
  return alerts::parse_cap_xml(alerts::write_cancel(spec));
}

// Issue 14 finding 5: an accepted alert can always be cancelled. Every corpus alert
// that intake accepts, and JSON alerts whose identifier and sender hold every kind of
// character intake lets through, get a Cancel that parses.
TEST(CapWriter, EveryAcceptedAlertsCancelParses) {
  size_t accepted = 0;
  const auto dir = std::filesystem::path(SIRENA_SOURCE_DIR) / "tests/data/cap";
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (entry.path().extension() != ".xml" && entry.path().extension() != ".cap") continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::stringstream bytes;
    bytes << in.rdbuf();
    auto alert = alerts::parse_cap_xml(bytes.str());
    if (!alert) continue;
    ++accepted;
    auto cancel = cancel_of(*alert);
    EXPECT_TRUE(cancel) << entry.path() << ": " << cancel.error().code << " " << cancel.error().message;
  }
  EXPECT_GT(accepted, 20u);

  // JSON escapes, spliced into JSON text.
  const std::string odd[] = {R"(\u007f)",       R"(\u0085)", R"(\u00a0)", R"(\u2028)", R"(\ufffd)",
                             R"(\ud83c\udf0a)", R"(\ufeff)", "]]>",       R"(\")",     "'",
                             R"(\\)",           "%26amp;"};
  for (const std::string& c : odd) {
    const std::string doc = R"({"identifier": "id-)" + c + R"(-1", "sender": "pc)" + c + R"(@soliera.it",
        "sent": "2026-11-27T10:00:00+01:00", "status": "Actual", "msg_type": "Alert", "scope": "Public"})";
    auto alert = alerts::parse_alert_json(doc);
    if (!alert) continue;  // refused at intake: nothing to cancel
    ++accepted;
    auto cancel = cancel_of(*alert);
    ASSERT_TRUE(cancel) << c << ": " << cancel.error().code << " " << cancel.error().message;
    EXPECT_EQ(cancel->references.at(0).identifier, alert->identifier);
  }
  // What intake refuses could not have been stored.
  for (const char* c : {R"(\u0000)", R"(\u000b)", R"(\ufffe)", R"(\uffff)", R"(\u001f)"}) {
    auto alert = alerts::parse_alert_json(std::string(R"({"identifier": "id-)") + c + R"(", "sender": "pc",
        "sent": "2026-11-27T10:00:00+01:00", "status": "Actual", "msg_type": "Alert", "scope": "Public"})");
    ASSERT_FALSE(alert) << c;
    EXPECT_EQ(alert.error().code, "invalid_character");
  }
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
