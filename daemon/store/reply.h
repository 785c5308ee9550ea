// A read-only view of one Redis reply, so that hiredis's redisReply stays inside store/.
//
// A Reply is one pointer: cheap to copy, owning nothing. It is valid only as long as the
// reply it views, which for a Redis::Callback is the duration of the callback. A null
// Reply stands for "no reply" (a failed command, an element past the end of an array):
// every accessor answers as for a nil reply, so reading a malformed reply returns empty
// values instead of crashing.
//
// Only store/ includes hiredis; reply.cc converts its types here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct redisReply;

namespace sirena::store {

class Reply {
 public:
  Reply() = default;
  explicit Reply(const redisReply* r) : r_(r) {}

  // There is a reply (possibly a nil one).
  explicit operator bool() const { return r_ != nullptr; }

  bool is_nil() const;      // a nil reply, or none at all
  bool is_error() const;    // "-ERR ..."
  bool is_string() const;   // a bulk string or a status ("+OK")
  bool is_integer() const;  // ":42"
  bool is_array() const;

  // The bytes of a string, status or error; empty for other types.
  std::string_view str() const;
  // The bytes of a string or status only; empty for other types (an error, nil).
  std::string string() const;
  // An integer reply, or a string or status holding a whole decimal number (HGET of a
  // counter); `fallback` for anything else.
  int64_t integer(int64_t fallback = 0) const;

  // Elements of an array; 0 for other types.
  size_t size() const;
  // Element `i` of an array; a null Reply past the end or for other types.
  Reply operator[](size_t i) const;
  // An array of alternating field/value strings (HGETALL, HSCAN) as pairs; a last field
  // without its value is left out.
  std::vector<std::pair<std::string, std::string>> pairs() const;

  // The elements of an array, in order (none for other types).
  class Iterator;
  Iterator begin() const;
  Iterator end() const;

 private:
  const redisReply* r_ = nullptr;
};

class Reply::Iterator {
 public:
  using iterator_category = std::input_iterator_tag;
  using value_type = Reply;
  using difference_type = std::ptrdiff_t;
  using pointer = void;
  using reference = Reply;

  Iterator(Reply parent, size_t i) : parent_(parent), i_(i) {}
  Reply operator*() const { return parent_[i_]; }
  Iterator& operator++() {
    ++i_;
    return *this;
  }
  bool operator==(const Iterator& o) const { return i_ == o.i_; }

 private:
  Reply parent_;
  size_t i_;
};

inline Reply::Iterator Reply::begin() const {
  return {*this, 0};
}
inline Reply::Iterator Reply::end() const {
  return {*this, size()};
}

}  // namespace sirena::store
