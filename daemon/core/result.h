// Result and error types shared by every layer.
//
// Code on the loop's path does not throw: a call that can fail returns Result<T>,
// which holds either a value or an Error. Error::code is the stable snake_case
// reason clients see in {"error": {"code": ...}}; kind says what sort of failure it
// is, and the edges map it to an HTTP status or an exit code (daemon/core/error.h).
#pragma once

#include <string>
#include <utility>
#include <variant>

#include "daemon/core/error.h"

namespace sirena {

struct Error {
  ErrorKind kind = ErrorKind::Internal;
  std::string code;     // snake_case reason, part of the public contract
  std::string message;  // what the user should fix
  std::string where;    // "line:col", a JSON pointer, a field or "file:line:key"; may be empty
};

inline Error make_error(ErrorKind kind, std::string code, std::string message, std::string where = {}) {
  return Error{kind, std::move(code), std::move(message), std::move(where)};
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT: implicit by design

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const { return std::get<1>(v_); }
  Error&& take_error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

// Result<void> equivalent.
struct Ok {};
using Status = Result<Ok>;

}  // namespace sirena
