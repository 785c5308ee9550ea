// Addresses the integration tests give their generated citizens: a valid Italian mobile
// number and a 64-hex-digit APNs token per index, the same in every test.
#pragma once

#include <cstdio>
#include <string>

namespace sirena::testing {

inline std::string phone(int i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "+39333%07d", i);
  return buf;
}

inline std::string apns_token(int i) {
  char buf[65];
  std::snprintf(buf, sizeof buf, "%064x", i + 1);
  return buf;
}

}  // namespace sirena::testing
