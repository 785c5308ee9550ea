// Helpers shared by the alerts tests: reading corpus files.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace sirena::alerts::test {

inline std::filesystem::path cap_dir() {
  return std::filesystem::path(SIRENA_TEST_DATA) / "cap";
}

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::string corpus(const std::string& relative) {
  return read_file(cap_dir() / relative);
}

// Plain string edits (std::regex trips GCC 12's -Wmaybe-uninitialized under ASan).
inline std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = 0; (p = s.find(from, p)) != std::string::npos; p += to.size())
    s.replace(p, from.size(), to);
  return s;
}

// Removes every span from `open` to the `closings`-th following `close`, inclusive.
inline std::string erase_spans(std::string s, const std::string& open, const std::string& close,
                               int closings = 1) {
  for (size_t p; (p = s.find(open)) != std::string::npos;) {
    size_t q = p;
    for (int i = 0; i < closings && q != std::string::npos; ++i) q = s.find(close, q + 1);
    if (q == std::string::npos) break;
    s.erase(p, q + close.size() - p);
  }
  return s;
}

// The JSON example in docs/alert-json.md, so the documentation cannot drift.
inline std::string documented_json_example() {
  const std::string md = read_file(std::filesystem::path(SIRENA_TEST_DATA) / "../../docs/alert-json.md");
  const size_t start = md.find("```json\n");
  const size_t end = md.find("```", start + 8);
  EXPECT_NE(start, std::string::npos);
  return md.substr(start + 8, end - start - 8);
}

}  // namespace sirena::alerts::test
