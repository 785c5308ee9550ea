#include "daemon/dispatch/scripts.h"

#include "daemon/alerts/lifecycle.h"
#include "daemon/dispatch/lua_scripts.h"  // generated from lua/*.lua

namespace sirena::dispatch::scripts {

// Built once: the store keys scripts by their text's SHA-1.
const std::string& plan() {
  static const std::string s =
      alerts::state_names_lua() + std::string(lua::batch_lib) + std::string(lua::plan);
  return s;
}
const std::string& load() {
  static const std::string s = std::string(lua::batch_lib) + std::string(lua::load);
  return s;
}
const std::string& flush() {
  static const std::string s = alerts::state_names_lua() + std::string(lua::flush);
  return s;
}
const std::string& accepted_page() {
  static const std::string s = std::string(lua::batch_lib) + std::string(lua::accepted_page);
  return s;
}
const std::string& dlr() {
  static const std::string s(lua::dlr);
  return s;
}

std::vector<std::string> PlanArgs::head() const {
  std::vector<std::string> v{id,
                             tenant,
                             std::to_string(batches),
                             std::to_string(recipients),
                             std::to_string(priority),
                             stream,
                             consumer,
                             std::to_string(claim),
                             std::to_string(now_ms),
                             std::to_string(first),
                             last ? "1" : "0",
                             std::to_string(planned.size())};
  v.insert(v.end(), planned.begin(), planned.end());
  return v;
}

}  // namespace sirena::dispatch::scripts
