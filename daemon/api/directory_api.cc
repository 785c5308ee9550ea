#include "daemon/api/directory_api.h"

#include <algorithm>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "daemon/core/log.h"

namespace sirena::api {
namespace {

bool valid_zone_name(const std::string& n) {
  if (n.empty() || n.size() > 64) return false;
  for (char c : n)
    if (!(std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) ||
          c == '-'))
      return false;
  return true;
}

Error too_large(size_t size, size_t limit, const char* key) {
  return make_error(ErrorKind::TooLarge, "body_too_large",
                    "the body has " + std::to_string(size) + " bytes; the limit is " + std::to_string(limit) +
                        " (" + key +
                        "); split larger imports into several requests (`sirena import` does this)");
}

}  // namespace

// An import body is parsed in slices on libuv's thread pool (phone validation costs
// ~12 us a line, so a 64 MiB body is seconds of CPU). Slices are cut at line ends, and
// each parsed slice is written to Redis once every slice before it has been sent: Redis
// stores slice k while the pool parses the next ones, and lines reach Redis in file
// order (the same id twice: the later line wins, as if sent one after the other).
struct ImportJob;
struct ImportSlice {
  uv_work_t work;
  std::string_view text;  // into ImportJob::body
  size_t first_line = 1;
  bool parsed = false;
  std::shared_ptr<const directory::RecipientRules> rules;
  std::vector<std::pair<size_t, directory::Recipient>> good;
  std::vector<std::pair<size_t, Error>> bad;
  ImportJob* job;
};

struct ImportJob {
  std::string body;
  std::string tenant;
  DirectoryApi* api;
  std::shared_ptr<http::Responder> res;
  std::vector<std::unique_ptr<ImportSlice>> slices;
  size_t queued = 0;      // slices handed to the pool
  size_t back = 0;        // slices back from it
  size_t next_write = 0;  // the first slice not yet sent to Redis
  size_t writing = 0;     // writes not yet answered
  bool pumping = false, pump_again = false;
  size_t created = 0, unchanged = 0;
  std::unordered_set<std::string> ids;  // distinct recipients written: "imported"
  nlohmann::json rejected = nlohmann::json::array();
  std::optional<Error> failed;  // the first failed write: later slices are not sent
};

// Small slices let the first write start early; two in the pool at a time keep the parse
// to the machine's cores (four threads would take turns on two cores and fight over
// libphonenumber's regex cache lock) and the slices coming back in order.
constexpr size_t kSliceBytes = 256 << 10;
constexpr size_t kSlicesInPool = 2;

DirectoryApi::DirectoryApi(uv_loop_t* loop, directory::Directory& dir, DirectoryApiOptions options)
    : loop_(loop), dir_(dir), options_(options) {}

void DirectoryApi::register_routes(Router& router) {
  using tenants::Action;
  router.add("POST", "/v1/recipients/import", Access::key(Action::WriteRecipients),
             [this](auto& req, auto res, const Call& c) { import(req, std::move(res), *c.caller); });
  router.add("PUT", "/v1/recipients/{id}", Access::key(Action::WriteRecipients),
             [this](auto& req, auto res, const Call& c) { put_recipient(req, res, *c.caller, c.params[0]); });
  router.add("GET", "/v1/recipients/{id}", Access::key(Action::ReadRecipients),
             [this](auto& req, auto res, const Call& c) { get_recipient(req, res, *c.caller, c.params[0]); });
  router.add(
      "DELETE", "/v1/recipients/{id}", Access::key(Action::WriteRecipients),
      [this](auto& req, auto res, const Call& c) { delete_recipient(req, res, *c.caller, c.params[0]); });
  router.add("GET", "/v1/zones", Access::key(Action::ReadZones),
             [this](auto& req, auto res, const Call& c) { list_zones(req, std::move(res), *c.caller); });
  router.add("PUT", "/v1/zones/{name}", Access::key(Action::WriteZones),
             [this](auto& req, auto res, const Call& c) { put_zone(req, res, *c.caller, c.params[0]); });
  router.add("GET", "/v1/zones/{name}", Access::key(Action::ReadZones),
             [this](auto& req, auto res, const Call& c) { get_zone(req, res, *c.caller, c.params[0]); });
  router.add("DELETE", "/v1/zones/{name}", Access::key(Action::WriteZones),
             [this](auto& req, auto res, const Call& c) { delete_zone(req, res, *c.caller, c.params[0]); });
}

void DirectoryApi::put_recipient(const http::Request& req, Res res, const Caller& who,
                                 const std::string& id) {
  if (!dir_.loaded()) return res->send_error(directory_loading());
  if (req.body.size() > options_.max_body_bytes)
    return res->send_error(too_large(req.body.size(), options_.max_body_bytes, "http.max_body_bytes"));
  auto rules = dir_.rules(who->tenant->id);
  auto r = directory::parse_recipient(req.body, *rules, id);
  if (!r) return res->send_error(r.error());
  dir_.put(who->tenant->id, *r, [res, rid = r->id](Result<bool> created) {
    if (!created) return res->send_error(created.error());
    res->send_json(*created ? 201 : 200, dump({{"id", rid}, {"created", *created}}));
  });
}

void DirectoryApi::get_recipient(const http::Request& /*req*/, Res res, const Caller& who,
                                 const std::string& id) {
  if (!dir_.loaded()) return res->send_error(directory_loading());
  dir_.get(who->tenant->id, id, [res](Result<std::optional<std::string>> doc) {
    if (!doc) return res->send_error(doc.error());
    // Another tenant's recipient is indistinguishable from a missing one.
    if (!*doc) return res->send_error(make_error(ErrorKind::NotFound, "not_found", "no such recipient"));
    res->send_json(200, **doc);
  });
}

void DirectoryApi::delete_recipient(const http::Request& /*req*/, Res res, const Caller& who,
                                    const std::string& id) {
  if (!dir_.loaded()) return res->send_error(directory_loading());
  dir_.remove(who->tenant->id, id, [res](Result<bool> existed) {
    if (!existed) return res->send_error(existed.error());
    if (!*existed) return res->send_error(make_error(ErrorKind::NotFound, "not_found", "no such recipient"));
    res->send(204, "", "");
  });
}

void DirectoryApi::import(const http::Request& req, Res res, const Caller& who) {
  if (!dir_.loaded()) return res->send_error(directory_loading());
  // Over the limit: refused whole, before anything is parsed or stored.
  if (req.body.size() > options_.import_max_bytes)
    return res->send_error(
        too_large(req.body.size(), options_.import_max_bytes, "directory.import_max_bytes"));
  auto* job = new ImportJob;
  job->body.assign(req.body);
  job->api = this;
  job->tenant = who->tenant->id;
  job->res = std::move(res);
  auto rules = dir_.rules(job->tenant);
  // Cut into slices at line ends, counting lines so every slice knows its first number.
  std::string_view all(job->body);
  size_t line = 1;
  while (!all.empty()) {
    size_t cut = std::min(all.size(), kSliceBytes);
    if (cut < all.size()) {
      size_t nl = all.find('\n', cut);
      cut = nl == std::string_view::npos ? all.size() : nl + 1;
    }
    auto slice = std::make_unique<ImportSlice>();
    slice->text = all.substr(0, cut);
    slice->first_line = line;
    slice->rules = rules;
    slice->job = job;
    slice->work.data = slice.get();
    line += static_cast<size_t>(std::count(slice->text.begin(), slice->text.end(), '\n'));
    job->slices.push_back(std::move(slice));
    all.remove_prefix(cut);
  }
  pump(job);
}

// Moves an import on: sends the parsed slices whose predecessors were sent, keeps the
// pool busy, and answers once everything sent was answered. Re-entered from a write
// answered at once (an error), it only asks the running call to go round again.
void DirectoryApi::pump(ImportJob* job) {
  if (job->pumping) {
    job->pump_again = true;
    return;
  }
  job->pumping = true;
  const size_t n = job->slices.size();
  do {
    job->pump_again = false;
    while (!job->failed && job->next_write < n && job->slices[job->next_write]->parsed)
      write_slice(job, *job->slices[job->next_write++]);
    while (!job->failed && job->queued < n && job->queued - job->back < kSlicesInPool)
      queue_slice(*job->slices[job->queued++]);
  } while (job->pump_again);
  job->pumping = false;
  if (job->queued != job->back || job->writing > 0 || (!job->failed && job->next_write < n)) return;

  std::unique_ptr<ImportJob> done(job);
  dir_.settle(job->tenant);
  if (job->failed)
    return job->res->send_error(*job->failed);  // what was written stays: an import is idempotent
  log::info("recipients_imported", {{"tenant", job->tenant},
                                    {"imported", job->ids.size()},
                                    {"created", job->created},
                                    {"unchanged", job->unchanged},
                                    {"rejected", job->rejected.size()}});
  job->res->send_json(200, dump({{"imported", job->ids.size()},
                                 {"created", job->created},
                                 {"unchanged", job->unchanged},
                                 {"rejected", std::move(job->rejected)}}));
}

void DirectoryApi::queue_slice(ImportSlice& slice) {
  uv_queue_work(
      loop_, &slice.work,
      [](uv_work_t* w) {
        auto* s = static_cast<ImportSlice*>(w->data);
        directory::parse_ndjson(s->text, *s->rules, [s](size_t n, Result<directory::Recipient>&& r) {
          if (r)
            s->good.emplace_back(s->first_line + n - 1, std::move(r).value());
          else
            s->bad.emplace_back(s->first_line + n - 1, r.error());
        });
      },
      [](uv_work_t* w, int) {
        auto* s = static_cast<ImportSlice*>(w->data);
        s->parsed = true;
        ++s->job->back;
        s->job->api->pump(s->job);
      });
}

void DirectoryApi::write_slice(ImportJob* job, ImportSlice& slice) {
  for (auto& [n, e] : slice.bad) {
    nlohmann::json item = {{"line", n}, {"reason", e.message}, {"code", e.code}};
    if (!e.where.empty()) item["where"] = e.where;
    job->rejected.push_back(std::move(item));
  }
  auto batch = std::make_shared<std::vector<directory::Recipient>>();
  batch->reserve(slice.good.size());
  for (auto& [n, r] : slice.good) {
    job->ids.insert(r.id);
    batch->push_back(std::move(r));
  }
  slice.good = {};
  slice.bad = {};
  if (batch->empty()) return;
  ++job->writing;
  dir_.import(job->tenant, std::move(batch), [this, job](Result<directory::ImportOutcome> o) {
    --job->writing;
    if (!o) {
      if (!job->failed) job->failed = o.error();
    } else {
      job->created += o->created;
      job->unchanged += o->unchanged;
    }
    pump(job);
  });
}

void DirectoryApi::put_zone(const http::Request& req, Res res, const Caller& who, const std::string& name) {
  if (!dir_.loaded()) return res->send_error(directory_loading());
  if (!valid_zone_name(name))
    return res->send_error(make_error(ErrorKind::Invalid, "invalid_zone_name",
                                      "zone names use a-z, 0-9 and '-', at most 64", "name"));
  if (req.body.size() > options_.max_body_bytes)
    return res->send_error(too_large(req.body.size(), options_.max_body_bytes, "http.max_body_bytes"));
  auto area = dir_.parse_zone(std::string(req.body));
  if (!area) return res->send_error(area.error());
  std::string tenant = who->tenant->id;
  // A new name must fit under the per-tenant cap; replacing a zone always may.
  const std::vector<std::string> names = dir_.zone_names(tenant);
  if (names.size() >= options_.max_zones_per_tenant &&
      std::find(names.begin(), names.end(), name) == names.end())
    return res->send_error(make_error(ErrorKind::Invalid, "too_many_zones",
                                      "the tenant has " + std::to_string(names.size()) +
                                          " zones, the limit "
                                          "(directory.max_zones_per_tenant): delete one or raise the limit",
                                      "name"));
  dir_.put_zone(tenant, name, std::string(req.body), std::move(area).value(),
                [res, name, tenant](Result<bool> c) {
                  if (!c) return res->send_error(c.error());
                  log::info("zone_stored", {{"tenant", tenant}, {"zone", name}});
                  res->send_json(*c ? 201 : 200, dump({{"name", name}, {"created", *c}}));
                });
}

void DirectoryApi::get_zone(const http::Request& /*req*/, Res res, const Caller& who,
                            const std::string& name) {
  if (!dir_.loaded()) return res->send_error(directory_loading());
  auto geo = dir_.zone_geojson(who->tenant->id, name);
  if (!geo) return res->send_error(make_error(ErrorKind::NotFound, "not_found", "no such zone"));
  res->send(200, "application/geo+json", *geo);
}

void DirectoryApi::delete_zone(const http::Request& /*req*/, Res res, const Caller& who,
                               const std::string& name) {
  if (!dir_.loaded()) return res->send_error(directory_loading());
  dir_.delete_zone(who->tenant->id, name, [res](Result<bool> existed) {
    if (!existed) return res->send_error(existed.error());
    if (!*existed)
      return res->send_error(
          make_error(ErrorKind::NotFound, "not_found", "no zone of that name was stored over the API"));
    res->send(204, "", "");
  });
}

void DirectoryApi::list_zones(const http::Request& /*req*/, Res res, const Caller& who) {
  if (!dir_.loaded()) return res->send_error(directory_loading());
  res->send_json(200, dump({{"items", dir_.zone_names(who->tenant->id)}}));
}

}  // namespace sirena::api
