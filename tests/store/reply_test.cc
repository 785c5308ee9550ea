// store::Reply over replies that hiredis's reader parses from RESP bytes, as the
// connection would hand them to a callback.
#include "daemon/store/reply.h"

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <memory>
#include <string>
#include <vector>

namespace sirena {
namespace {

// One reply parsed from `resp`, freed with the fixture.
class ReplyTest : public ::testing::Test {
 protected:
  store::Reply parse(const std::string& resp) {
    std::unique_ptr<redisReader, decltype(&redisReaderFree)> reader(redisReaderCreate(), redisReaderFree);
    EXPECT_EQ(redisReaderFeed(reader.get(), resp.data(), resp.size()), REDIS_OK);
    void* reply = nullptr;
    EXPECT_EQ(redisReaderGetReply(reader.get(), &reply), REDIS_OK);
    EXPECT_NE(reply, nullptr) << "incomplete RESP: " << resp;
    replies_.emplace_back(reply, freeReplyObject);
    return store::Reply(static_cast<const redisReply*>(reply));
  }

 private:
  std::vector<std::unique_ptr<void, decltype(&freeReplyObject)>> replies_;
};

TEST_F(ReplyTest, NoReplyReadsAsNil) {
  store::Reply none;
  EXPECT_FALSE(none);
  EXPECT_TRUE(none.is_nil());
  EXPECT_FALSE(none.is_error() || none.is_string() || none.is_integer() || none.is_array());
  EXPECT_EQ(none.str(), "");
  EXPECT_EQ(none.string(), "");
  EXPECT_EQ(none.integer(), 0);
  EXPECT_EQ(none.integer(-7), -7);
  EXPECT_EQ(none.size(), 0u);
  EXPECT_FALSE(none[0]);
  EXPECT_TRUE(none.pairs().empty());
  EXPECT_EQ(none.begin(), none.end());
}

TEST_F(ReplyTest, NilIsAReplyButNoString) {
  store::Reply nil = parse("$-1\r\n");
  EXPECT_TRUE(nil);  // Redis answered: the key is absent
  EXPECT_TRUE(nil.is_nil());
  EXPECT_FALSE(nil.is_string());
  EXPECT_EQ(nil.string(), "");
  EXPECT_EQ(nil.integer(5), 5);
  // An empty string is not nil.
  store::Reply empty = parse("$0\r\n\r\n");
  EXPECT_FALSE(empty.is_nil());
  EXPECT_TRUE(empty.is_string());
  EXPECT_EQ(empty.string(), "");
}

TEST_F(ReplyTest, StringsAndStatusKeepTheirBytes) {
  store::Reply s = parse(std::string("$5\r\na\0b\r\n\r\n", 11));
  EXPECT_TRUE(s.is_string());
  EXPECT_EQ(s.str(), std::string_view("a\0b\r\n", 5));  // binary-safe, not NUL-terminated
  EXPECT_EQ(s.string(), std::string("a\0b\r\n", 5));
  EXPECT_EQ(s.size(), 0u);
  EXPECT_FALSE(s[0]);
  store::Reply ok = parse("+OK\r\n");
  EXPECT_TRUE(ok.is_string());
  EXPECT_FALSE(ok.is_error());
  EXPECT_EQ(ok.string(), "OK");
}

TEST_F(ReplyTest, ErrorHasItsMessageButNoString) {
  store::Reply e = parse("-NOSCRIPT No matching script\r\n");
  EXPECT_TRUE(e);
  EXPECT_TRUE(e.is_error());
  EXPECT_FALSE(e.is_string() || e.is_nil() || e.is_array());
  EXPECT_EQ(e.str(), "NOSCRIPT No matching script");
  EXPECT_EQ(e.string(), "");  // an error is never taken for a value
  EXPECT_EQ(e.integer(3), 3);
}

TEST_F(ReplyTest, IntegersAndNumbersHeldAsStrings) {
  store::Reply i = parse(":-42\r\n");
  EXPECT_TRUE(i.is_integer());
  EXPECT_EQ(i.integer(), -42);
  EXPECT_EQ(i.integer(9), -42);
  EXPECT_EQ(i.str(), "");
  EXPECT_EQ(i.string(), "");
  EXPECT_EQ(parse(":9223372036854775807\r\n").integer(), INT64_MAX);
  // HGET of a number: a bulk string, read whole or not at all.
  EXPECT_EQ(parse("$13\r\n1700000000123\r\n").integer(), 1700000000123);
  EXPECT_EQ(parse("+17\r\n").integer(), 17);
  EXPECT_EQ(parse("$2\r\n-3\r\n").integer(), -3);
  EXPECT_EQ(parse("$3\r\n12x\r\n").integer(-1), -1);
  EXPECT_EQ(parse("$3\r\n 12\r\n").integer(-1), -1);
  EXPECT_EQ(parse("$0\r\n\r\n").integer(-1), -1);
  EXPECT_EQ(parse("$20\r\n99999999999999999999\r\n").integer(-1), -1);
}

TEST_F(ReplyTest, ArrayIndexingIsSafePastTheEnd) {
  store::Reply a = parse("*3\r\n:1\r\n$3\r\nfoo\r\n$-1\r\n");
  ASSERT_TRUE(a.is_array());
  EXPECT_FALSE(a.is_nil());
  EXPECT_EQ(a.size(), 3u);
  EXPECT_EQ(a[0].integer(), 1);
  EXPECT_EQ(a[1].string(), "foo");
  EXPECT_TRUE(a[2]);  // an element that is nil (HMGET of a missing field)
  EXPECT_TRUE(a[2].is_nil());
  EXPECT_FALSE(a[3]);  // past the end: no reply at all, read as nil
  EXPECT_TRUE(a[3].is_nil());
  EXPECT_EQ(a[3].string(), "");
  EXPECT_EQ(a[1000][0][5].size(), 0u);
  EXPECT_EQ(a.str(), "");
  EXPECT_EQ(a.string(), "");
  EXPECT_EQ(a.integer(8), 8);
  std::vector<std::string> seen;
  for (store::Reply e : a) seen.push_back(e.is_integer() ? std::to_string(e.integer()) : e.string());
  EXPECT_EQ(seen, (std::vector<std::string>{"1", "foo", ""}));
  store::Reply empty = parse("*0\r\n");
  EXPECT_TRUE(empty.is_array());
  EXPECT_EQ(empty.size(), 0u);
  EXPECT_EQ(empty.begin(), empty.end());
  // A nil array (XREADGROUP with nothing new) is nil, not an empty array.
  store::Reply nil = parse("*-1\r\n");
  EXPECT_TRUE(nil.is_nil());
  EXPECT_FALSE(nil.is_array());
}

TEST_F(ReplyTest, NestedArraysOfAStreamRead) {
  // XREADGROUP: [[stream, [[id, [field, value, ...]], [id, nil]]]], the second entry
  // deleted since it was delivered.
  store::Reply r = parse(
      "*1\r\n*2\r\n$1\r\ns\r\n*2\r\n"
      "*2\r\n$3\r\n1-0\r\n*4\r\n$1\r\na\r\n$2\r\nA1\r\n$1\r\nb\r\n$1\r\n7\r\n"
      "*2\r\n$3\r\n2-0\r\n*-1\r\n");
  ASSERT_EQ(r.size(), 1u);
  store::Reply entries = r[0][1];
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0][0].string(), "1-0");
  EXPECT_EQ(entries[0][1].pairs(),
            (std::vector<std::pair<std::string, std::string>>{{"a", "A1"}, {"b", "7"}}));
  EXPECT_EQ(entries[0][1][3].integer(), 7);
  EXPECT_EQ(entries[1][0].string(), "2-0");
  EXPECT_TRUE(entries[1][1].is_nil());
  EXPECT_FALSE(entries[1][1].is_array());
}

TEST_F(ReplyTest, PairsOfAHashLeaveAnOddFieldOut) {
  EXPECT_EQ(parse("*4\r\n$1\r\nk\r\n$1\r\nv\r\n$1\r\nn\r\n$-1\r\n").pairs(),
            (std::vector<std::pair<std::string, std::string>>{{"k", "v"}, {"n", ""}}));
  EXPECT_EQ(parse("*3\r\n$1\r\nk\r\n$1\r\nv\r\n$1\r\nx\r\n").pairs(),
            (std::vector<std::pair<std::string, std::string>>{{"k", "v"}}));
  EXPECT_TRUE(parse("*0\r\n").pairs().empty());
  EXPECT_TRUE(parse("$1\r\nk\r\n").pairs().empty());
}

}  // namespace
}  // namespace sirena
