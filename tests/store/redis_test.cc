// The Redis wrapper's pieces that need no server: URL parsing.
#include "daemon/store/redis.h"

#include <gtest/gtest.h>

namespace sirena {
namespace {

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

}  // namespace
}  // namespace sirena
