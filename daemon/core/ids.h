// Alert ids: ULIDs (48-bit millisecond time + 80 random bits, Crockford base32).
// They sort by creation time, which gives newest-first listing for free.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace sirena {

std::string make_ulid(int64_t now_ms);
bool looks_like_ulid(std::string_view s);

}  // namespace sirena
