// Helpers shared by the alerts tests: reading corpus files.
#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace sirena::alerts::test {

inline std::filesystem::path cap_dir() { return std::filesystem::path(SIRENA_TEST_DATA) / "cap"; }

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::string corpus(const std::string& relative) { return read_file(cap_dir() / relative); }

}  // namespace sirena::alerts::test
