// A reusable simdjson DOM parser for request bodies and JWT parts. simdjson reads up to
// SIMDJSON_PADDING bytes past the input, so the text is copied into a scratch buffer
// whose capacity covers that; after warm-up neither buffer allocates.
//
// The element returned by parse() lives until the next parse() on the same reader.
#pragma once

#include <simdjson.h>

#include <optional>
#include <string>
#include <string_view>

namespace sirena::sim {

class JsonReader {
 public:
  // nullopt when `text` is not JSON.
  std::optional<simdjson::dom::element> parse(std::string_view text) {
    scratch_.reserve(text.size() + simdjson::SIMDJSON_PADDING);
    scratch_.assign(text);
    simdjson::dom::element root;
    if (parser_.parse(scratch_.data(), scratch_.size(), false).get(root) != simdjson::SUCCESS)
      return std::nullopt;
    return root;
  }

 private:
  simdjson::dom::parser parser_;
  std::string scratch_;
};

// Small typed getters that answer "absent or wrong type" with nullopt.
inline std::optional<std::string_view> json_string(simdjson::dom::element e, std::string_view key) {
  std::string_view v;
  if (e[key].get(v) != simdjson::SUCCESS) return std::nullopt;
  return v;
}

inline std::optional<double> json_number(simdjson::dom::element e, std::string_view key) {
  double v;
  if (e[key].get(v) != simdjson::SUCCESS) return std::nullopt;
  return v;
}

inline std::optional<simdjson::dom::object> json_object(simdjson::dom::element e, std::string_view key) {
  simdjson::dom::object v;
  if (e[key].get(v) != simdjson::SUCCESS) return std::nullopt;
  return v;
}

}  // namespace sirena::sim
