// Text to numbers without exceptions, locale or errno (std::from_chars), for what comes from
// Redis, configuration files and the network. std::stoll and friends throw on junk and on
// overflow, which must never happen on the loop's path (STYLE.md habit 5).
//
// parse_number() takes the whole text or nothing: "12", "-3", "2.5" (for floating types),
// never " 12", "12abc", "", "0x1f" or a value outside [min, max]. Returns nullopt then.
#pragma once

#include <charconv>
#include <cmath>
#include <limits>
#include <optional>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace sirena {

template <typename T>
std::optional<T> parse_number(std::string_view text, T min = std::numeric_limits<T>::lowest(),
                              T max = std::numeric_limits<T>::max()) {
  static_assert(std::is_arithmetic_v<T> && !std::is_same_v<T, bool>);
  T v{};
  const char* end = text.data() + text.size();
  std::from_chars_result r;
  if constexpr (std::is_floating_point_v<T>) {
    r = std::from_chars(text.data(), end, v);
    if (r.ec == std::errc() && !std::isfinite(v)) return std::nullopt;
  } else {
    r = std::from_chars(text.data(), end, v, 10);
  }
  if (r.ec != std::errc() || r.ptr != end || v < min || v > max) return std::nullopt;
  return v;
}

}  // namespace sirena
