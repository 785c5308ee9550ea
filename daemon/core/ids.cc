#include "daemon/core/ids.h"

#include <openssl/rand.h>

#include <mutex>
#include <random>

namespace sirena {
namespace {
constexpr char kAlphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
}

std::string make_ulid(int64_t now_ms) {
  // Monotonic within a millisecond (and across a clock step back): the random part of
  // the previous id plus one, so ids made in one process always sort in creation order.
  static std::mutex mu;
  static int64_t last_ms = -1;
  static uint64_t last_hi = 0, last_lo = 0;  // 40 bits each
  uint64_t hi = 0, lo = 0;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (now_ms <= last_ms) {
      now_ms = last_ms;
      lo = (last_lo + 1) & ((uint64_t{1} << 40) - 1);
      hi = last_hi + (lo == 0 ? 1 : 0);
    } else {
      unsigned char rnd[10];
      if (RAND_bytes(rnd, sizeof rnd) != 1) {
        static std::mt19937_64 fallback{std::random_device{}()};
        for (auto& b : rnd) b = static_cast<unsigned char>(fallback());
      }
      for (int i = 0; i < 5; ++i) hi = (hi << 8) | rnd[i];
      for (int i = 5; i < 10; ++i) lo = (lo << 8) | rnd[i];
      // Keep headroom so that increments do not overflow the 80 bits.
      hi &= (uint64_t{1} << 39) - 1;
    }
    last_ms = now_ms;
    last_hi = hi;
    last_lo = lo;
  }
  std::string out(26, '0');
  uint64_t t = static_cast<uint64_t>(now_ms);
  for (int i = 9; i >= 0; --i) {
    out[i] = kAlphabet[t & 31];
    t >>= 5;
  }
  for (int i = 17; i >= 10; --i) {
    out[i] = kAlphabet[hi & 31];
    hi >>= 5;
  }
  for (int i = 25; i >= 18; --i) {
    out[i] = kAlphabet[lo & 31];
    lo >>= 5;
  }
  return out;
}

bool looks_like_ulid(std::string_view s) {
  if (s.size() != 26) return false;
  for (char c : s)
    if (std::string_view(kAlphabet).find(c) == std::string_view::npos) return false;
  return true;
}

}  // namespace sirena
