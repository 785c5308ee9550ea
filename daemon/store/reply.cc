#include "daemon/store/reply.h"

#include <hiredis/hiredis.h>

#include "daemon/core/number.h"

namespace sirena::store {

bool Reply::is_nil() const {
  return !r_ || r_->type == REDIS_REPLY_NIL;
}

bool Reply::is_error() const {
  return r_ && r_->type == REDIS_REPLY_ERROR;
}

bool Reply::is_string() const {
  return r_ && (r_->type == REDIS_REPLY_STRING || r_->type == REDIS_REPLY_STATUS);
}

bool Reply::is_integer() const {
  return r_ && r_->type == REDIS_REPLY_INTEGER;
}

bool Reply::is_array() const {
  return r_ && r_->type == REDIS_REPLY_ARRAY;
}

std::string_view Reply::str() const {
  if (!is_string() && !is_error()) return {};
  return {r_->str, r_->len};
}

std::string Reply::string() const {
  return is_string() ? std::string(str()) : std::string();
}

int64_t Reply::integer(int64_t fallback) const {
  if (is_integer()) return r_->integer;
  if (!is_string()) return fallback;
  return parse_number<int64_t>(str()).value_or(fallback);
}

size_t Reply::size() const {
  return is_array() ? r_->elements : 0;
}

Reply Reply::operator[](size_t i) const {
  return Reply(i < size() ? r_->element[i] : nullptr);
}

std::vector<std::pair<std::string, std::string>> Reply::pairs() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (size_t i = 0; i + 1 < size(); i += 2) out.emplace_back((*this)[i].string(), (*this)[i + 1].string());
  return out;
}

}  // namespace sirena::store
