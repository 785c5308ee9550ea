// The dispatcher's Redis scripts: daemon/dispatch/lua/*.lua, embedded at build time.
// Each file's header says what it takes and returns; the scripts that read batches
// begin with lua/batch_lib.lua, and those that read or write an alert's state with the
// table S of its names (alerts::state_names_lua()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace sirena::dispatch::scripts {

const std::string& plan();           // writes (part of) a plan and queues its batches
const std::string& load();           // a batch and its recipients' contacts
const std::string& flush();          // outcomes, counters and acknowledgements, together
const std::string& accepted_page();  // a page of first-attempt records, for the listing
const std::string& dlr();            // SMS delivery reports, group-committed

// plan.lua's arguments by name; head() lists them in the script's order (its batch
// texts follow them, appended by the caller without a copy).
struct PlanArgs {
  std::string id, tenant;
  size_t batches = 0;  // of the whole plan
  size_t recipients = 0;
  int priority = 0;
  std::string stream, consumer;
  size_t claim = 0;  // stream entries to claim for `consumer` with this call
  int64_t now_ms = 0;
  size_t first = 0;                  // this call's first batch
  bool last = false;                 // this call ends the plan
  std::vector<std::string> planned;  // "planned:<channel>", count pairs

  std::vector<std::string> head() const;
};

}  // namespace sirena::dispatch::scripts
