// The read models of an alert's fan-out, for the API: its progress per channel and the
// listing of its per-recipient deliveries, read from what the dispatcher writes (keys in
// dispatcher.h). Plain structs: api/ turns them into JSON. All calls on the loop.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "daemon/core/result.h"
#include "daemon/dispatch/gateway.h"

namespace sirena::store {
class Redis;
}

namespace sirena::dispatch {

struct ChannelProgress {
  int64_t planned = 0, accepted = 0, delivered = 0, failed = 0, expired = 0, cancelled = 0, skipped = 0;
  int64_t pending = 0;  // planned minus those in a final state, at least 0
};
using Progress = std::map<std::string, ChannelProgress>;  // by channel name

struct Delivery {
  std::string tenant;  // the recipient's
  std::string channel, state, error;
  int64_t attempts = 0;
  std::optional<std::string> recipient;  // the recipient's id, when the directory still has it
};

struct DeliveryPage {
  std::vector<Delivery> items;
  std::optional<std::string> next;  // the cursor of the next page; none at the end
};

class ProgressReader {
 public:
  explicit ProgressReader(store::Redis& redis) : redis_(redis) {}

  // Counts per channel of `channels`, planned and by state.
  void progress(const std::string& tenant, const std::string& alert_id, std::vector<Channel> channels,
                std::function<void(Result<Progress>)> done);

  // Up to `limit` deliveries in `state` (all when empty) from `cursor` ("" first). Two
  // phases: the deliv hash (cursor "" or HSCAN's), then, for state "" or "accepted", the
  // first-attempt records batch by batch (cursor "a<batch>.<skip>"); the page that ends
  // the first phase is filled up from the second. A cursor this listing did not give is
  // 400 invalid_parameter.
  void deliveries(const std::string& tenant, const std::string& alert_id, const std::string& state,
                  const std::string& cursor, size_t limit, std::function<void(Result<DeliveryPage>)> done);

 private:
  using Pairs = std::vector<std::pair<std::string, std::string>>;  // (deliv field, value)
  using PageDone = std::function<void(Result<DeliveryPage>)>;
  void scan(const std::string& tenant, const std::string& alert_id, const std::string& state,
            const std::string& cursor, size_t limit, Pairs pairs, size_t scanned, PageDone done);
  void accepted_page(const std::string& tenant, const std::string& alert_id, int64_t batch, int64_t skip,
                     size_t limit, Pairs pairs, PageDone done);
  void page(Pairs pairs, std::optional<std::string> next, PageDone done);

  store::Redis& redis_;
};

}  // namespace sirena::dispatch
