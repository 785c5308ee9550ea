#include "daemon/alerts/cap_schema.h"

#include <libxml/xmlschemas.h>
#include <libxml/xmlschemastypes.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

#include "daemon/alerts/validate.h"

namespace sirena::alerts {
namespace embedded {
extern const unsigned char kcap12_xsd[];
extern const size_t kcap12_xsd_size;
extern const unsigned char kcap11_xsd[];
extern const size_t kcap11_xsd_size;
}  // namespace embedded

namespace {

constexpr std::string_view kDsigNs = "http://www.w3.org/2000/09/xmldsig#";

// Child order of each CAP container, from the XSD's <sequence>s (identical in 1.1
// and 1.2; CAP 1.2 §3.2 and the CAP 1.2 schema).
struct Order {
  std::string_view parent;
  std::array<std::string_view, 21> children;  // unused slots are empty
};
constexpr std::array<Order, 7> kOrders = {{
    {"alert",
     {"identifier", "sender", "sent", "status", "msgType", "source", "scope", "restriction", "addresses",
      "code", "note", "references", "incidents", "info"}},
    {"info",
     {"language",    "category",    "event",     "responseType", "urgency",   "severity",   "certainty",
      "audience",    "eventCode",   "effective", "onset",        "expires",   "senderName", "headline",
      "description", "instruction", "web",       "contact",      "parameter", "resource",   "area"}},
    {"resource", {"resourceDesc", "mimeType", "size", "uri", "derefUri", "digest"}},
    {"area", {"areaDesc", "polygon", "circle", "geocode", "altitude", "ceiling"}},
    {"eventCode", {"valueName", "value"}},
    {"parameter", {"valueName", "value"}},
    {"geocode", {"valueName", "value"}},
}};
constexpr int kUnknown = -1;
constexpr int kLast = 100;  // ds:Signature goes after every CAP element of <alert>

const Order* order_for(std::string_view parent) {
  for (const Order& o : kOrders) {
    if (o.parent == parent) return &o;
  }
  return nullptr;
}

int rank_of(const Order& order, const xmlNode* child, std::string_view cap_ns) {
  if (order.parent == "alert" && ns_of(child) == kDsigNs && name_of(child) == "Signature") return kLast;
  if (ns_of(child) != cap_ns) return kUnknown;
  for (size_t i = 0; i < order.children.size() && !order.children[i].empty(); ++i) {
    if (order.children[i] == name_of(child)) return static_cast<int>(i);
  }
  return kUnknown;
}

// The XSD's pattern wants exactly "...ss+hh:mm"; we also read "Z" and fractions.
void canonicalise_date(xmlNodePtr n) {
  const std::string t = text_of(n);
  if (!parse_cap_datetime(t)) return;  // leave it for the XSD to reject
  std::string canon = t.substr(0, 19) + (t.back() == 'Z' ? "+00:00" : t.substr(t.size() - 6));
  if (canon != t) xmlNodeSetContent(n, reinterpret_cast<const xmlChar*>(canon.c_str()));
}

// Names of the elements that must move to restore schema order: those outside a
// longest non-decreasing run of ranks (so one misplaced <senderName> is reported
// as that, not as everything after it). O(n log n): areas can hold many geocodes.
std::vector<std::string> misplaced(const std::vector<std::pair<int, xmlNodePtr>>& known) {
  std::vector<size_t> tails;  // index of the last element of the best run of each length
  std::vector<size_t> prev(known.size(), SIZE_MAX);  // predecessor in that run
  for (size_t i = 0; i < known.size(); ++i) {
    auto pos = std::upper_bound(tails.begin(), tails.end(), known[i].first,
                                [&](int rank, size_t t) { return rank < known[t].first; });
    if (pos != tails.begin()) prev[i] = *(pos - 1);
    if (pos == tails.end())
      tails.push_back(i);
    else
      *pos = i;
  }
  std::vector<bool> in_order(known.size(), false);
  for (size_t i = tails.empty() ? SIZE_MAX : tails.back(); i != SIZE_MAX; i = prev[i]) in_order[i] = true;
  std::vector<std::string> out;
  for (size_t i = 0; i < known.size(); ++i) {
    const std::string name(name_of(known[i].second));
    if (!in_order[i] && std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
  }
  return out;
}

void canonicalise(xmlNodePtr parent, std::string_view cap_ns, CapVersion version,
                  std::vector<std::string>* notes) {
  const Order* order = order_for(name_of(parent));
  if (!order) return;
  std::vector<std::pair<int, xmlNodePtr>> known;
  for (xmlNodePtr c = parent->children; c; c = c->next) {
    if (c->type != XML_ELEMENT_NODE) continue;
    const int rank = rank_of(*order, c, cap_ns);
    if (rank != kUnknown) known.emplace_back(rank, c);
  }
  const std::vector<std::string> moved = misplaced(known);
  if (!moved.empty()) {
    std::string note = "reordered <" + std::string(name_of(parent)) + "> children into CAP schema order:";
    for (const std::string& m : moved) note += " " + m;
    notes->push_back(std::move(note));
    // Unknown elements stay where they are, so the XSD still reports them.
    std::stable_sort(known.begin(), known.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto& [rank, node] : known) {
      xmlUnlinkNode(node);
      xmlAddChild(parent, node);
    }
  }
  for (auto& [rank, node] : known) {
    const std::string_view name = name_of(node);
    if (rank == kLast) {
      if (version == CapVersion::k11) {
        // The CAP 1.1 XSD has no slot for an enveloped signature; the raw bytes keep
        // it, so it stays verifiable. We only take it out of what the XSD sees.
        notes->push_back("ignored ds:Signature during CAP 1.1 schema validation");
        xmlUnlinkNode(node);
        xmlFreeNode(node);
      }
      continue;
    }
    if ((name == "polygon" || name == "circle") && text_of(node).empty()) {
      xmlUnlinkNode(node);  // noted by the field reader, which skips it too
      xmlFreeNode(node);
      continue;
    }
    if (name == "sent" || name == "effective" || name == "onset" || name == "expires") {
      canonicalise_date(node);
      continue;
    }
    canonicalise(node, cap_ns, version, notes);
  }
}

void ignore_error(void*, xmlErrorPtr) {}

xmlSchemaPtr compile(const unsigned char* data, size_t size) {
  xmlSchemaParserCtxtPtr p =
      xmlSchemaNewMemParserCtxt(reinterpret_cast<const char*>(data), static_cast<int>(size));
  if (!p) return nullptr;
  xmlSchemaSetParserStructuredErrors(p, ignore_error, nullptr);
  xmlSchemaPtr schema = xmlSchemaParse(p);
  xmlSchemaFreeParserCtxt(p);
  return schema;
}

// One compiled copy per thread (the loop and each thread-pool thread that parses),
// kept for the thread's life. libxml2 documents that a validation context must not
// be shared; that a compiled schema may be is not promised for 2.9, and the schema
// keeps a dictionary. A few milliseconds per thread buy not having to rely on it.
struct Schemas {
  xmlSchemaPtr cap12 = compile(embedded::kcap12_xsd, embedded::kcap12_xsd_size);
  xmlSchemaPtr cap11 = compile(embedded::kcap11_xsd, embedded::kcap11_xsd_size);
  Schemas() = default;
  Schemas(const Schemas&) = delete;
  Schemas& operator=(const Schemas&) = delete;
  ~Schemas() {
    if (cap12) xmlSchemaFree(cap12);
    if (cap11) xmlSchemaFree(cap11);
  }
};

// Each thread's copy is made once and kept for the process's life: the loop and the
// thread pool's threads live as long as the process. They stay reachable from here, so
// a thread that ends (a test's) leaves no leak behind for LeakSanitizer to report.
xmlSchemaPtr schema_for(CapVersion v) {
  static std::mutex mutex;
  static std::vector<std::unique_ptr<Schemas>>* all = new std::vector<std::unique_ptr<Schemas>>;
  // libxml2 builds its table of XSD built-in types on first use, unguarded: threads that
  // compile their first schema at once race on it (and leak what the loser built).
  static std::once_flag types_once;
  std::call_once(types_once, [] { xmlSchemaInitTypes(); });
  thread_local Schemas* schemas = [] {
    auto made = std::make_unique<Schemas>();
    std::lock_guard<std::mutex> lock(mutex);
    all->push_back(std::move(made));
    return all->back().get();
  }();
  return v == CapVersion::k12 ? schemas->cap12 : schemas->cap11;
}

struct FirstError {
  bool set = false;
  std::string message;
  std::string where;
};

void on_validity_error(void* data, xmlErrorPtr err) {
  auto* first = static_cast<FirstError*>(data);
  if (first->set || !err || err->level < XML_ERR_ERROR) return;
  first->set = true;
  std::string msg = err->message ? err->message : "schema validity error";
  // "{urn:oasis:names:tc:emergency:cap:1.2}urgency" reads better as "urgency".
  for (size_t open; (open = msg.find("{urn:oasis:names:tc:emergency:cap:")) != std::string::npos;) {
    const size_t close = msg.find('}', open);
    if (close == std::string::npos) break;
    msg.erase(open, close - open + 1);
  }
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  first->message = "line " + std::to_string(err->line) + ": " + msg;
  if (err->node) first->where = element_path(static_cast<const xmlNode*>(err->node));
}

}  // namespace

std::string_view name_of(const xmlNode* n) {
  return reinterpret_cast<const char*>(n->name);
}
std::string_view ns_of(const xmlNode* n) {
  return n->ns && n->ns->href ? std::string_view(reinterpret_cast<const char*>(n->ns->href))
                              : std::string_view();
}

std::string text_of(xmlNodePtr n) {
  xmlChar* c = xmlNodeGetContent(n);
  std::string s = c ? reinterpret_cast<const char*>(c) : "";
  xmlFree(c);
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

void canonicalise_for_schema(xmlNodePtr alert, CapVersion version, std::vector<std::string>* notes) {
  canonicalise(alert, ns_of(alert), version, notes);
}

sirena::Status validate_against_xsd(xmlNodePtr alert, CapVersion version) {
  xmlSchemaPtr schema = schema_for(version);
  xmlSchemaValidCtxtPtr v = schema ? xmlSchemaNewValidCtxt(schema) : nullptr;
  if (!v)
    return make_error(ErrorKind::Internal, "schema_unavailable",
                      "the embedded CAP schema could not be loaded");
  FirstError first;
  xmlSchemaSetValidStructuredErrors(v, on_validity_error, &first);
  const int rc = xmlSchemaValidateOneElement(v, alert);
  xmlSchemaFreeValidCtxt(v);
  if (rc == 0) return Ok{};
  if (!first.set) first.message = "the alert does not match the CAP schema";
  return make_error(ErrorKind::Invalid, "schema_violation", std::move(first.message), std::move(first.where));
}

std::string element_path(const xmlNode* node) {
  std::string path;
  for (const xmlNode* n = node; n && n->type == XML_ELEMENT_NODE; n = n->parent) {
    int index = 0, same = 0;
    for (const xmlNode* s = n->parent ? n->parent->children : nullptr; s; s = s->next) {
      if (s->type != XML_ELEMENT_NODE || !xmlStrEqual(s->name, n->name)) continue;
      ++same;
      if (s == n) index = same;
    }
    std::string step = "/" + std::string(name_of(n));
    if (same > 1) step += "[" + std::to_string(index) + "]";
    path.insert(0, step);
  }
  return path;
}

}  // namespace sirena::alerts
