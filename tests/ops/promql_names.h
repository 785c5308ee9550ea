// Just enough of a PromQL lexer to say which metric names and label names an expression
// uses, so that ops_test can check them against what a real Prometheus scraped from sirenad.
// Prometheus itself checks the syntax (the test sends every expression to /api/v1/query).
#pragma once

#include <map>
#include <set>
#include <string>

namespace sirena::testing {

struct PromqlNames {
  // Metric name -> the label names its selectors match on (`metric{label=~"..."}`).
  std::map<std::string, std::set<std::string>> metrics;
  // Label names in by/without/on/ignoring/group_left/group_right lists and in the label
  // argument of label_values(metric, label).
  std::set<std::string> grouping_labels;
  // Each `metric{...}` selector as written (without range or offset): sirenad's series must
  // match it, or a label value is misspelt (`result="faild"`, `le="5.0"`).
  std::set<std::string> selectors;
};

PromqlNames promql_names(const std::string& expr);

}  // namespace sirena::testing
