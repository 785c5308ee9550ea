#include "daemon/core/json_strict.h"

#include <cmath>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

namespace sirena {
namespace {

using nlohmann::json;

// RFC 6901: "~" and "/" in a key are escaped as "~0" and "~1".
void append_token(std::string* out, std::string_view key) {
  for (char c : key) {
    if (c == '~')
      *out += "~0";
    else if (c == '/')
      *out += "~1";
    else
      *out += c;
  }
}

// A SAX handler that builds nothing: it tracks where it is (for the pointer in an
// error) and stops at the first problem. Each key is hashed once, so the pass is
// linear in the document.
class Checker : public nlohmann::json_sax<json> {
 public:
  explicit Checker(int max_depth) : max_depth_(max_depth) {}

  bool null() override { return scalar(); }
  bool boolean(bool) override { return scalar(); }
  bool number_integer(number_integer_t) override { return scalar(); }
  bool number_unsigned(number_unsigned_t) override { return scalar(); }
  bool number_float(number_float_t v, const string_t&) override {
    if (!std::isfinite(v)) return out_of_range();
    return scalar();
  }
  bool string(string_t&) override { return scalar(); }
  bool binary(binary_t&) override { return scalar(); }

  bool start_object(std::size_t) override {
    if (!enter()) return false;
    frames_.push_back(Frame{true, {}, 0, {}});
    return true;
  }
  bool key(string_t& k) override {
    Frame& f = frames_.back();
    if (!f.keys.insert(k).second) {
      std::string where = pointer_of_parent();
      where += '/';
      append_token(&where, k);
      return fail(make_error(ErrorKind::Invalid, "duplicate_key",
                             "the key \"" + k.substr(0, 64) +
                                 "\" appears twice in one object: send each key once (readers disagree on "
                                 "which one counts)",
                             std::move(where)));
    }
    f.key = k;
    return true;
  }
  bool end_object() override { return leave(); }
  bool start_array(std::size_t) override {
    if (!enter()) return false;
    frames_.push_back(Frame{false, {}, 0, {}});
    return true;
  }
  bool end_array() override { return leave(); }

  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& ex) override {
    // nlohmann reports a number that overflows a double as out_of_range.406 through
    // this same call (json::parse throws it, and it is no parse_error: that was the 500).
    if (ex.id == 406) return out_of_range();
    std::string what = ex.what();
    if (const size_t p = what.find("] "); p != std::string::npos) what.erase(0, p + 2);
    // position counts from 1; `where` gives the 0-based offset, as invalid_utf8 does.
    const size_t offset = position > 0 ? position - 1 : 0;
    return fail(make_error(ErrorKind::BadRequest, "malformed_json", "the body is not valid JSON: " + what,
                           "byte " + std::to_string(offset)));
  }

  std::optional<Error> take_error() { return std::move(error_); }

 private:
  struct Frame {
    bool object;
    std::string key;  // the current key (objects)
    size_t index;     // the current element (arrays)
    std::unordered_set<std::string> keys;
  };

  bool fail(Error e) {
    if (!error_) error_ = std::move(e);
    return false;
  }

  bool out_of_range() {
    return fail(make_error(
        ErrorKind::Invalid, "number_out_of_range",
        "a number is too large for a double (largest about 1.8e308): send a number in range", pointer()));
  }

  bool deeper_than_allowed() const { return static_cast<int>(frames_.size()) > max_depth_; }

  bool too_deep() {
    return fail(make_error(ErrorKind::Invalid, "too_deep",
                           "values are nested more than " + std::to_string(max_depth_) + " deep", ""));
  }

  bool scalar() {
    if (deeper_than_allowed()) return too_deep();
    next();
    return true;
  }
  bool enter() {
    if (deeper_than_allowed()) return too_deep();
    return true;
  }
  bool leave() {
    frames_.pop_back();
    next();
    return true;
  }
  // A value of the enclosing array is done: the next one has the next index.
  void next() {
    if (!frames_.empty() && !frames_.back().object) ++frames_.back().index;
  }

  // The pointer of the value being read.
  std::string pointer() const {
    std::string out = pointer_of_parent();
    if (frames_.empty()) return out;
    out += '/';
    const Frame& f = frames_.back();
    if (f.object)
      append_token(&out, f.key);
    else
      out += std::to_string(f.index);
    return out;
  }
  // The pointer of the innermost open container.
  std::string pointer_of_parent() const {
    std::string out;
    for (size_t i = 0; i + 1 < frames_.size(); ++i) {
      out += '/';
      if (frames_[i].object)
        append_token(&out, frames_[i].key);
      else
        out += std::to_string(frames_[i].index);
    }
    return out;
  }

  int max_depth_;
  std::vector<Frame> frames_;
  std::optional<Error> error_;
};

}  // namespace

Status parse_json_strict(std::string_view bytes, int max_depth, nlohmann::json* out) {
  Checker checker(max_depth);
  json::sax_parse(bytes.begin(), bytes.end(), &checker);
  if (std::optional<Error> e = checker.take_error()) return std::move(*e);
  // Checked: well-formed, bounded depth, so this parse neither fails nor recurses deep.
  *out = json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
  if (out->is_discarded())
    return make_error(ErrorKind::BadRequest, "malformed_json", "the body is not valid JSON", "");
  return Ok{};
}

}  // namespace sirena
