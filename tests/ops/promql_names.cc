#include "tests/ops/promql_names.h"

#include <algorithm>
#include <cctype>

namespace sirena::testing {
namespace {

bool ident_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':'; }
bool ident_char(char c) { return ident_start(c) || std::isdigit(static_cast<unsigned char>(c)); }

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// Words that are never metric names, whatever follows them.
const std::set<std::string>& keywords() {
  static const std::set<std::string> k{
      "and",   "or",     "unless", "by",    "without", "on",       "ignoring", "group_left",   "group_right",
      "bool",  "offset", "inf",    "nan",   "atan2",   "sum",      "min",      "max",          "avg",
      "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile"};
  return k;
}

const std::set<std::string>& label_list_keywords() {
  static const std::set<std::string> k{"by", "without", "on", "ignoring", "group_left", "group_right"};
  return k;
}

class Lexer {
 public:
  explicit Lexer(const std::string& s) : s_(s) {}

  PromqlNames run() {
    std::string last_metric;  // the identifier just before a '{', if it was a metric
    size_t last_metric_at = 0;
    while (skip_space(), i_ < s_.size()) {
      char c = s_[i_];
      if (c == '"' || c == '\'' || c == '`') {
        skip_string();
        last_metric.clear();
      } else if (c == '#') {
        while (i_ < s_.size() && s_[i_] != '\n') ++i_;
      } else if (c == '{') {
        size_t from = last_metric.empty() ? i_ : last_metric_at;
        matchers(last_metric);
        if (!last_metric.empty()) out_.selectors.insert(s_.substr(from, i_ - from));
        last_metric.clear();
      } else if (c == '[') {
        while (i_ < s_.size() && s_[i_] != ']') ++i_;
        ++i_;
      } else if (std::isdigit(static_cast<unsigned char>(c)) || (c == '.' && i_ + 1 < s_.size() &&
                                                                  std::isdigit(static_cast<unsigned char>(s_[i_ + 1])))) {
        while (i_ < s_.size() && (ident_char(s_[i_]) || s_[i_] == '.')) ++i_;  // 1.5, 10m, 1e3, 0x1f
        last_metric.clear();
      } else if (ident_start(c)) {
        size_t at = i_;
        std::string word = ident();
        skip_space();
        bool call = i_ < s_.size() && s_[i_] == '(';
        std::string lw = lower(word);
        last_metric.clear();
        if (label_list_keywords().count(lw) && call) {
          label_list();
        } else if (lw == "label_values" && call) {
          ++i_;  // label_values(metric{...}, label) or label_values(label)
          label_values_call();
        } else if (!call && !keywords().count(lw)) {
          out_.metrics[word];
          last_metric = word;
          last_metric_at = at;
        }
      } else {
        ++i_;
      }
    }
    return out_;
  }

 private:
  void skip_space() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  std::string ident() {
    size_t b = i_;
    while (i_ < s_.size() && ident_char(s_[i_])) ++i_;
    return s_.substr(b, i_ - b);
  }
  std::string skip_string() {
    char q = s_[i_++];
    std::string v;
    while (i_ < s_.size() && s_[i_] != q) {
      if (s_[i_] == '\\' && q != '`' && i_ + 1 < s_.size()) ++i_;
      v += s_[i_++];
    }
    ++i_;
    return v;
  }
  // `{name op "value", ...}`; `metric` is the selector's metric name or empty.
  void matchers(std::string metric) {
    ++i_;
    while (skip_space(), i_ < s_.size() && s_[i_] != '}') {
      if (!ident_start(s_[i_])) {
        if (s_[i_] == '"' || s_[i_] == '\'' || s_[i_] == '`')
          skip_string();
        else
          ++i_;
        continue;
      }
      std::string label = ident();
      skip_space();
      while (i_ < s_.size() && (s_[i_] == '=' || s_[i_] == '!' || s_[i_] == '~')) ++i_;
      skip_space();
      std::string value = i_ < s_.size() && (s_[i_] == '"' || s_[i_] == '\'' || s_[i_] == '`') ? skip_string() : "";
      if (label == "__name__") {
        metric = value;
        out_.metrics[metric];
      } else if (!metric.empty()) {
        out_.metrics[metric].insert(label);
      } else {
        pending_.insert(label);
      }
    }
    ++i_;
    if (!metric.empty()) out_.metrics[metric].insert(pending_.begin(), pending_.end());
    pending_.clear();
  }
  void label_list() {
    ++i_;
    while (skip_space(), i_ < s_.size() && s_[i_] != ')') {
      if (ident_start(s_[i_]))
        out_.grouping_labels.insert(ident());
      else
        ++i_;
    }
    ++i_;
  }
  void label_values_call() {
    // The last identifier before the closing parenthesis (outside braces) is the label.
    size_t depth = 1;
    size_t start = i_;
    size_t close = i_;
    for (size_t j = i_; j < s_.size(); ++j) {
      if (s_[j] == '(') ++depth;
      if (s_[j] == ')' && --depth == 0) {
        close = j;
        break;
      }
    }
    std::string inner = s_.substr(start, close - start);
    size_t comma = std::string::npos;
    int braces = 0;
    for (size_t j = 0; j < inner.size(); ++j) {
      if (inner[j] == '{') ++braces;
      if (inner[j] == '}') --braces;
      if (inner[j] == ',' && braces == 0) comma = j;
    }
    std::string label = comma == std::string::npos ? inner : inner.substr(comma + 1);
    label.erase(0, label.find_first_not_of(" \t\n"));
    label.erase(label.find_last_not_of(" \t\n") + 1);
    out_.grouping_labels.insert(label);
    if (comma != std::string::npos) {
      PromqlNames sub = Lexer(inner.substr(0, comma)).run();
      for (auto& [m, ls] : sub.metrics) out_.metrics[m].insert(ls.begin(), ls.end());
    }
    i_ = close + 1;
  }

  const std::string& s_;
  size_t i_ = 0;
  PromqlNames out_;
  std::set<std::string> pending_;
};

}  // namespace

PromqlNames promql_names(const std::string& expr) { return Lexer(expr).run(); }

}  // namespace sirena::testing
