#include "daemon/alerts/cap_parser.h"

#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>

#include <atomic>
#include <cctype>
#include <charconv>
#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "daemon/alerts/cap_schema.h"
#include "daemon/alerts/validate.h"

namespace sirena::alerts {
namespace {

constexpr std::string_view kCap12Ns = "urn:oasis:names:tc:emergency:cap:1.2";
constexpr std::string_view kCap11Ns = "urn:oasis:names:tc:emergency:cap:1.1";
constexpr std::string_view kEdxlNs = "urn:oasis:names:tc:emergency:EDXL:DE:1.0";

std::atomic<uint64_t> g_refused_loads{0};

xmlParserInputPtr refuse_external_load(const char*, const char*, xmlParserCtxtPtr) {
  g_refused_loads.fetch_add(1, std::memory_order_relaxed);
  return nullptr;
}

std::vector<xmlNodePtr> element_children(xmlNodePtr parent, std::string_view name) {
  std::vector<xmlNodePtr> out;
  for (xmlNodePtr c = parent->children; c; c = c->next) {
    if (c->type == XML_ELEMENT_NODE && name_of(c) == name) out.push_back(c);
  }
  return out;
}

// ---- Parsing: libxml2 with every door closed -------------------------------------

struct ParseState {
  bool saw_doctype = false;
  bool has_error = false;
  std::string message;
  int line = 0;
  int column = 0;
};

void on_xml_error(void* data, xmlErrorPtr err) {
  // data is the parser context (libxml2 passes ctxt->userData); our state hangs
  // off its _private.
  auto* ctxt = static_cast<xmlParserCtxtPtr>(data);
  auto* state = ctxt ? static_cast<ParseState*>(ctxt->_private) : nullptr;
  if (!state || state->has_error || !err || err->level < XML_ERR_ERROR) return;
  state->has_error = true;
  state->message = err->message ? err->message : "not well-formed";
  while (!state->message.empty() && (state->message.back() == '\n' || state->message.back() == ' ')) {
    state->message.pop_back();
  }
  state->line = err->line;
  state->column = err->int2;  // libxml2 puts the column of parser errors in int2
}

// SAX hook for "<!DOCTYPE ...": CAP never needs a DTD, and a DTD is how XXE and
// entity-expansion attacks get in, so we stop the parser before libxml2 reads the
// internal subset's declarations.
void on_doctype(void* data, const xmlChar*, const xmlChar*, const xmlChar*) {
  auto* ctxt = static_cast<xmlParserCtxtPtr>(data);
  auto* state = static_cast<ParseState*>(ctxt->_private);
  state->saw_doctype = true;
  if (ctxt->input) {
    state->line = ctxt->input->line;
    state->column = ctxt->input->col;
  }
  xmlStopParser(ctxt);
}

struct DocFree {
  void operator()(xmlDocPtr d) const { xmlFreeDoc(d); }
};
using DocPtr = std::unique_ptr<xmlDoc, DocFree>;

// True when the input is to be read as UTF-8: no UTF-16/32 byte order mark and no
// XML declaration naming another encoding (XML 1.0 §4.3.3). Only sniffs the
// declaration; libxml2 does the parsing.
bool read_as_utf8(std::string_view b) {
  if (b.substr(0, 3) == "\xEF\xBB\xBF") b.remove_prefix(3);
  if (b.size() >= 2 && (b[0] == '\0' || b[1] == '\0' || static_cast<unsigned char>(b[0]) >= 0xFE))
    return false;
  // "<?xml" then white space; "<?xml-stylesheet" is a processing instruction.
  if (b.substr(0, 5) != "<?xml" || b.size() < 6 ||
      (b[5] != ' ' && b[5] != '\t' && b[5] != '\r' && b[5] != '\n')) {
    return true;
  }
  const std::string_view decl = b.substr(0, b.find("?>"));
  size_t p = decl.find("encoding");
  if (p == std::string_view::npos) return true;
  p = decl.find_first_of("\"'", p);
  if (p == std::string_view::npos) return true;  // malformed: libxml2 will say so
  const size_t end = decl.find(decl[p], p + 1);
  std::string name(decl.substr(p + 1, end == std::string_view::npos ? 0 : end - p - 1));
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name == "utf-8" || name == "utf8";
}

Result<DocPtr> parse_document(std::string_view bytes) {
  xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
  if (!ctxt) return make_error(ErrorKind::Internal, "internal", "out of memory creating the XML parser");
  ParseState state;
  ctxt->_private = &state;
  ctxt->sax->internalSubset = on_doctype;
  // Routes this thread's libxml2 errors to us for the duration of the parse.
  const xmlStructuredErrorFunc saved_handler = xmlStructuredError;
  void* const saved_context = xmlStructuredErrorContext;
  xmlSetStructuredErrorFunc(ctxt, on_xml_error);
  // NONET: never fetch; no NOENT/DTDLOAD/DTDATTR/XINCLUDE: no entity expansion, no
  // DTD, no inclusion. NOERROR/NOWARNING: nothing on stderr, errors come to us.
  const int options =
      XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA | XML_PARSE_BIG_LINES;
  DocPtr doc(
      xmlCtxtReadMemory(ctxt, bytes.data(), static_cast<int>(bytes.size()), "cap.xml", nullptr, options));
  const bool well_formed = ctxt->wellFormed != 0;
  xmlSetStructuredErrorFunc(saved_context, saved_handler);
  xmlFreeParserCtxt(ctxt);
  if (state.saw_doctype || (doc && (doc->intSubset || doc->extSubset))) {
    return make_error(ErrorKind::Invalid, "dtd_forbidden",
                      "remove the <!DOCTYPE ...> declaration: CAP needs no DTD and we refuse them (XXE)",
                      state.line ? std::to_string(state.line) + ":" + std::to_string(state.column) : "");
  }
  if (!doc || !well_formed) {
    return make_error(
        ErrorKind::BadRequest, "malformed_xml",
        "the body is not well-formed XML: " + (state.has_error ? state.message : "empty document"),
        std::to_string(state.line) + ":" + std::to_string(state.column));
  }
  return doc;
}

// Depth of the element tree below `n` (n itself counts 1); libxml2 caps it at 256
// without XML_PARSE_HUGE, so this recursion is bounded.
const xmlNode* find_too_deep(const xmlNode* n, int depth, int max_depth) {
  if (depth > max_depth) return n;
  for (const xmlNode* c = n->children; c; c = c->next) {
    if (c->type != XML_ELEMENT_NODE) continue;
    if (const xmlNode* hit = find_too_deep(c, depth + 1, max_depth)) return hit;
  }
  return nullptr;
}

// ---- Markup bounds, before libxml2 -------------------------------------------------

// The document's code units as libxml2 will decode them (XML 1.0 Appendix F): 1, 2 or
// 4 bytes, little or big endian. Only ASCII markup characters are compared, so every
// ASCII-compatible encoding (UTF-8, ISO-8859-*, windows-125*) reads as 1-byte units.
struct Units {
  std::string_view b;
  size_t width = 1;
  bool big_endian = false;
  size_t start = 0;  // after a byte order mark

  size_t size() const { return (b.size() - start) / width; }
  uint32_t operator[](size_t i) const {
    const auto* p = reinterpret_cast<const unsigned char*>(b.data()) + start + i * width;
    if (width == 1) return p[0];
    uint32_t v = 0;
    for (size_t k = 0; k < width; ++k) v |= uint32_t{p[big_endian ? width - 1 - k : k]} << (8 * k);
    return v;
  }
};

std::optional<Units> units_of(std::string_view b) {
  auto starts = [&](std::string_view prefix) { return b.substr(0, prefix.size()) == prefix; };
  using namespace std::string_view_literals;
  if (starts("\x00\x00\xFE\xFF"sv)) return Units{b, 4, true, 4};
  if (starts("\xFF\xFE\x00\x00"sv)) return Units{b, 4, false, 4};
  if (starts("\xFE\xFF"sv)) return Units{b, 2, true, 2};
  if (starts("\xFF\xFE"sv)) return Units{b, 2, false, 2};
  if (starts("\xEF\xBB\xBF"sv)) return Units{b, 1, false, 3};
  if (starts("\x00\x00\x00\x3C"sv)) return Units{b, 4, true, 0};
  if (starts("\x3C\x00\x00\x00"sv)) return Units{b, 4, false, 0};
  if (starts("\x00\x3C\x00\x3F"sv)) return Units{b, 2, true, 0};
  if (starts("\x3C\x00\x3F\x00"sv)) return Units{b, 2, false, 0};
  if (starts("\x4C\x6F\xA7\x94"sv)) return std::nullopt;  // EBCDIC: not scanned, so not parsed
  return Units{b, 1, false, 0};
}

// One pass over the markup: counts elements, attributes per element (each quoted
// value is one attribute), nesting and the length of each text run, and stops at the
// first bound exceeded. It reads only as much syntax as it needs to stay in step
// (comments, CDATA, processing instructions, quoted values); anything malformed is
// left for libxml2 to report. At a DOCTYPE (before the root) it stops: parse_document
// stops libxml2 there too.
sirena::Status check_markup(std::string_view bytes, const ParseLimits& limits) {
  const std::optional<Units> units = units_of(bytes);
  if (!units) {
    return make_error(ErrorKind::Invalid, "unsupported_encoding",
                      "send CAP in UTF-8 (or UTF-16); EBCDIC is not accepted", "1:1");
  }
  const Units& u = *units;
  const size_t n = u.size();
  size_t line = 1;
  auto at = [&](size_t i, std::string_view s) {
    if (i + s.size() > n) return false;
    for (size_t k = 0; k < s.size(); ++k) {
      if (u[i + k] != static_cast<unsigned char>(s[k])) return false;
    }
    return true;
  };
  // The index just past the next `s` at or after i (counting lines), or n.
  auto past = [&](size_t i, std::string_view s) {
    for (; i < n; ++i) {
      if (at(i, s)) return i + s.size();
      if (u[i] == '\n') ++line;
    }
    return n;
  };
  auto where = [&] { return "line " + std::to_string(line); };
  std::vector<std::string> path;  // local names of the open elements, for too_deep
  size_t elements = 0, text = 0;
  auto text_grew = [&](size_t more) -> sirena::Status {
    text += more;
    if (text <= limits.max_text_bytes) return Ok{};
    return make_error(ErrorKind::Invalid, "text_too_large",
                      "a text node is longer than " + std::to_string(limits.max_text_bytes) +
                          " characters; shorten it (or link large content with a resource uri)",
                      where());
  };
  for (size_t i = 0; i < n;) {
    if (u[i] != '<') {
      if (u[i] == '\n') ++line;
      if (sirena::Status s = text_grew(1); !s) return s;
      ++i;
      continue;
    }
    if (at(i, "<!--")) {
      i = past(i + 4, "-->");
    } else if (at(i, "<![CDATA[")) {
      const size_t from = i + 9;
      const size_t to = past(from, "]]>");
      if (sirena::Status s = text_grew(to - from); !s) return s;
      i = to;
    } else if (at(i, "<!") && elements == 0) {
      return Ok{};  // a DOCTYPE: the parser is stopped as soon as it reads one
    } else if (at(i, "<!")) {
      i = past(i + 2, ">");  // not well-formed here; libxml2 stops at it
    } else if (at(i, "<?")) {
      i = past(i + 2, "?>");
    } else if (at(i, "</")) {
      text = 0;
      if (!path.empty()) path.pop_back();
      i = past(i + 2, ">");
    } else {
      text = 0;
      if (++elements > limits.max_elements) {
        return make_error(ErrorKind::Invalid, "too_many_elements",
                          "the document has more than " + std::to_string(limits.max_elements) + " elements",
                          where());
      }
      std::string name;
      size_t j = i + 1;
      for (;
           j < n && u[j] != '>' && u[j] != '/' && u[j] != ' ' && u[j] != '\t' && u[j] != '\r' && u[j] != '\n';
           ++j) {
        if (u[j] == ':')
          name.clear();  // local name: after the prefix
        else if (name.size() < 64)
          name += u[j] < 0x80 ? static_cast<char>(u[j]) : '?';
      }
      size_t attributes = 0;
      for (; j < n && u[j] != '>'; ++j) {
        if (u[j] == '\n') ++line;
        if (u[j] == '"' || u[j] == '\'') {
          if (++attributes > limits.max_attributes) {
            return make_error(ErrorKind::Invalid, "too_many_attributes",
                              "<" + name + "> has more than " + std::to_string(limits.max_attributes) +
                                  " attributes (namespace declarations included)",
                              where());
          }
          const uint32_t quote = u[j];
          for (++j; j < n && u[j] != quote; ++j) {
            if (u[j] == '\n') ++line;
          }
          if (j == n) return Ok{};  // unterminated: libxml2 says where
        }
      }
      if (j == n) return Ok{};
      if (u[j - 1] != '/') {
        path.push_back(std::move(name));
        if (path.size() > static_cast<size_t>(limits.max_depth)) {
          std::string p;
          for (const std::string& step : path) p += "/" + step;
          return make_error(ErrorKind::Invalid, "too_deep",
                            "elements are nested more than " + std::to_string(limits.max_depth) + " deep", p);
        }
      }
      i = j + 1;
    }
  }
  return Ok{};
}

// ---- Locating the <alert> ---------------------------------------------------------

Result<xmlNodePtr> only_alert(const std::vector<xmlNodePtr>& alerts, const char* container) {
  if (alerts.size() == 1) return alerts.front();
  if (alerts.empty()) {
    return make_error(ErrorKind::Invalid, "not_cap",
                      std::string("the ") + container + " holds no CAP <alert>", "");
  }
  return make_error(ErrorKind::Invalid, "multiple_alerts",
                    std::string("the ") + container + " holds " + std::to_string(alerts.size()) +
                        " <alert> elements; post each <alert> as a separate request",
                    "");
}

// The root is normally <alert>. Two wrappers seen in real feeds are unwrapped when
// they hold exactly one alert: an EDXL-DE 1.0 envelope (contentObject/xmlContent/
// embeddedXMLContent/alert) and SMHI's non-standard <alerts>.
Result<xmlNodePtr> locate_alert(xmlNodePtr root, std::vector<std::string>* notes) {
  const std::string_view name = name_of(root);
  if (name == "EDXLDistribution" && ns_of(root) == kEdxlNs) {
    std::vector<xmlNodePtr> alerts;
    for (xmlNodePtr content : element_children(root, "contentObject")) {
      for (xmlNodePtr xml : element_children(content, "xmlContent")) {
        for (xmlNodePtr embedded : element_children(xml, "embeddedXMLContent")) {
          for (xmlNodePtr a : element_children(embedded, "alert")) alerts.push_back(a);
        }
      }
    }
    Result<xmlNodePtr> alert = only_alert(alerts, "EDXL-DE envelope");
    if (alert) notes->push_back("unwrapped the CAP alert from its EDXL-DE 1.0 envelope");
    return alert;
  }
  if (name == "alerts" && (ns_of(root) == kCap12Ns || ns_of(root) == kCap11Ns)) {
    Result<xmlNodePtr> alert = only_alert(element_children(root, "alert"), "<alerts> wrapper");
    if (alert) notes->push_back("unwrapped the single <alert> from a non-standard <alerts> wrapper");
    return alert;
  }
  if (name == "alert") return root;
  return make_error(ErrorKind::Invalid, "not_cap",
                    "the root element is <" + std::string(name) +
                        ">; post a CAP 1.2 <alert> (or an EDXL-DE envelope holding one)",
                    element_path(root));
}

// ---- Reading fields (order-insensitive) -------------------------------------------

template <typename T>
std::optional<T> parse_number(std::string_view s) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);  // xs:decimal allows a sign
  T v{};
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  if constexpr (std::is_floating_point_v<T>) {
    if (!std::isfinite(v)) return std::nullopt;
  }
  return v;
}

// "lat,lon" (§3.2.4, WGS 84).
std::optional<Point> parse_point(std::string_view s) {
  const size_t comma = s.find(',');
  if (comma == std::string_view::npos) return std::nullopt;
  auto lat = parse_number<double>(s.substr(0, comma));
  auto lon = parse_number<double>(s.substr(comma + 1));
  if (!lat || !lon) return std::nullopt;
  return Point{*lat, *lon};
}

std::vector<std::string_view> split_ws(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
    const size_t start = i;
    while (i < s.size() && !(s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
    if (i > start) out.push_back(s.substr(start, i - start));
  }
  return out;
}

// Reads the CAP tree into an Alert. Keeps only the first error, so that callers can
// report an XSD violation (more basic) ahead of it.
class FieldReader {
 public:
  FieldReader(std::string_view cap_ns, std::vector<std::string>* notes) : ns_(cap_ns), notes_(notes) {}

  Alert read_alert(xmlNodePtr node) {
    Alert a;
    for (xmlNodePtr c : cap_children(node)) {
      const std::string_view n = name_of(c);
      if (n == "identifier")
        a.identifier = text_of(c);
      else if (n == "sender")
        a.sender = text_of(c);
      else if (n == "sent")
        a.sent = datetime(c, "/sent");
      else if (n == "status")
        a.status = enumerated(parse_status, c, "/status").value_or(Status::Actual);
      else if (n == "msgType")
        a.msg_type = enumerated(parse_msg_type, c, "/msg_type").value_or(MsgType::Alert);
      else if (n == "source")
        a.source = text_of(c);
      else if (n == "scope")
        a.scope = enumerated(parse_scope, c, "/scope").value_or(Scope::Public);
      else if (n == "restriction")
        a.restriction = text_of(c);
      else if (n == "addresses")
        a.addresses = text_of(c);
      else if (n == "code")
        a.codes.push_back(text_of(c));
      else if (n == "note")
        a.note = text_of(c);
      else if (n == "references")
        references(c, &a.references);
      else if (n == "incidents")
        a.incidents = text_of(c);
      else if (n == "info")
        a.infos.push_back(read_info(c, "/infos/" + std::to_string(a.infos.size())));
    }
    return a;
  }

  std::optional<Error> take_error() { return std::move(error_); }

 private:
  Info read_info(xmlNodePtr node, const std::string& at) {
    Info info;
    for (xmlNodePtr c : cap_children(node)) {
      const std::string_view n = name_of(c);
      if (n == "language")
        info.language = text_of(c);
      else if (n == "category")
        info.categories.push_back(text_of(c));
      else if (n == "event")
        info.event = text_of(c);
      else if (n == "responseType")
        info.response_types.push_back(text_of(c));
      else if (n == "urgency")
        info.urgency = text_of(c);
      else if (n == "severity")
        info.severity = text_of(c);
      else if (n == "certainty")
        info.certainty = text_of(c);
      else if (n == "audience")
        info.audience = text_of(c);
      else if (n == "eventCode")
        info.event_codes.push_back(name_value(c));
      else if (n == "effective")
        info.effective = datetime(c, at + "/effective");
      else if (n == "onset")
        info.onset = datetime(c, at + "/onset");
      else if (n == "expires")
        info.expires = datetime(c, at + "/expires");
      else if (n == "senderName")
        info.sender_name = text_of(c);
      else if (n == "headline")
        info.headline = text_of(c);
      else if (n == "description")
        info.description = text_of(c);
      else if (n == "instruction")
        info.instruction = text_of(c);
      else if (n == "web")
        info.web = text_of(c);
      else if (n == "contact")
        info.contact = text_of(c);
      else if (n == "parameter")
        info.parameters.push_back(name_value(c));
      else if (n == "resource")
        info.resources.push_back(
            read_resource(c, at + "/resources/" + std::to_string(info.resources.size())));
      else if (n == "area")
        info.areas.push_back(read_area(c, at + "/areas/" + std::to_string(info.areas.size())));
    }
    return info;
  }

  Resource read_resource(xmlNodePtr node, const std::string& at) {
    Resource r;
    for (xmlNodePtr c : cap_children(node)) {
      const std::string_view n = name_of(c);
      if (n == "resourceDesc")
        r.desc = text_of(c);
      else if (n == "mimeType")
        r.mime_type = text_of(c);
      else if (n == "size")
        r.size = number<int64_t>(c, at + "/size");
      else if (n == "uri")
        r.uri = text_of(c);
      else if (n == "digest")
        r.digest = text_of(c);
      else if (n == "derefUri") {
        // The model has no slot for inline content; the stored raw bytes keep it.
        notes_->push_back(at + ": derefUri (inline resource content) is kept only in the original document");
      }
    }
    return r;
  }

  Area read_area(xmlNodePtr node, const std::string& at) {
    Area area;
    for (xmlNodePtr c : cap_children(node)) {
      const std::string_view n = name_of(c);
      if (n == "areaDesc") {
        area.desc = text_of(c);
      } else if (n == "polygon" || n == "circle") {
        const std::string text = text_of(c);
        if (text.empty()) {
          // Seen in NWS feeds: an empty <polygon/> carries nothing; dropping it loses nothing.
          notes_->push_back(at + ": dropped an empty <" + std::string(n) + ">");
        } else if (n == "polygon") {
          area.polygons.push_back(polygon(text, at + "/polygons/" + std::to_string(area.polygons.size())));
        } else {
          area.circles.push_back(circle(text, at + "/circles/" + std::to_string(area.circles.size())));
        }
      } else if (n == "geocode") {
        area.geocodes.push_back(name_value(c));
      } else if (n == "altitude") {
        area.altitude = number<double>(c, at + "/altitude");
      } else if (n == "ceiling") {
        area.ceiling = number<double>(c, at + "/ceiling");
      }
    }
    return area;
  }

  Polygon polygon(const std::string& text, const std::string& at) {
    Polygon p;
    for (std::string_view token : split_ws(text)) {
      std::optional<Point> point = parse_point(token);
      if (!point) {
        fail("invalid_polygon",
             "polygon point " + std::to_string(p.points.size()) + " (\"" + std::string(token.substr(0, 40)) +
                 "\") is not \"lat,lon\"; separate points with spaces",
             at);
        break;
      }
      p.points.push_back(*point);
    }
    return p;
  }

  Circle circle(const std::string& text, const std::string& at) {
    const std::vector<std::string_view> parts = split_ws(text);
    std::optional<Point> centre = parts.size() == 2 ? parse_point(parts[0]) : std::nullopt;
    std::optional<double> radius = parts.size() == 2 ? parse_number<double>(parts[1]) : std::nullopt;
    if (!centre || !radius) {
      fail("invalid_circle", "a circle is \"lat,lon radius_km\", e.g. \"44.73,10.92 5\"", at);
      return {};
    }
    return Circle{*centre, *radius};
  }

  NameValue name_value(xmlNodePtr node) {
    NameValue nv;
    for (xmlNodePtr c : cap_children(node)) {
      if (name_of(c) == "valueName")
        nv.name = text_of(c);
      else if (name_of(c) == "value")
        nv.value = text_of(c);
    }
    return nv;
  }

  Timestamp datetime(xmlNodePtr node, const std::string& at) {
    Result<Timestamp> ts = read_cap_datetime(text_of(node), at, notes_);
    if (ts) return std::move(ts).value();
    if (!error_) error_ = std::move(ts).take_error();
    return {};
  }

  template <typename E>
  std::optional<E> enumerated(std::optional<E> (*parse)(std::string_view), xmlNodePtr node, const char* at) {
    const std::string text = text_of(node);
    std::optional<E> v = parse(text);
    if (!v) fail("invalid_enum", "\"" + text.substr(0, 40) + "\" is not a valid value here", at);
    return v;
  }

  template <typename T>
  std::optional<T> number(xmlNodePtr node, const std::string& at) {
    const std::string text = text_of(node);
    std::optional<T> v = parse_number<T>(text);
    if (!v) fail("invalid_field", "\"" + text.substr(0, 40) + "\" is not a number in range", at);
    return v;
  }

  void references(xmlNodePtr node, std::vector<Reference>* out) {
    Result<std::vector<Reference>> refs = read_references(text_of(node), "/references");
    if (refs)
      *out = std::move(refs).value();
    else if (!error_)
      error_ = std::move(refs).take_error();
  }

  std::vector<xmlNodePtr> cap_children(xmlNodePtr parent) const {
    std::vector<xmlNodePtr> out;
    for (xmlNodePtr c = parent->children; c; c = c->next) {
      if (c->type == XML_ELEMENT_NODE && ns_of(c) == ns_) out.push_back(c);
    }
    return out;
  }

  void fail(const char* code, std::string message, std::string where) {
    if (!error_) error_ = make_error(ErrorKind::Invalid, code, std::move(message), std::move(where));
  }

  std::string_view ns_;
  std::vector<std::string>* notes_;
  std::optional<Error> error_;
};

}  // namespace

void harden_libxml2() {
  static const bool done = [] {
    xmlInitParser();
    xmlSetExternalEntityLoader(refuse_external_load);
    return true;
  }();
  (void)done;
}

uint64_t refused_external_loads() {
  return g_refused_loads.load(std::memory_order_relaxed);
}

namespace {

Result<Alert> parse_cap_xml_unguarded(std::string_view bytes, const ParseLimits& limits) {
  // UTF-8 is checked here only when the document is to be read as UTF-8; libxml2
  // decodes (and checks) declared encodings.
  if (sirena::Status s = check_body(bytes, limits, read_as_utf8(bytes)); !s) return std::move(s).take_error();
  if (sirena::Status s = check_markup(bytes, limits); !s) return std::move(s).take_error();
  harden_libxml2();
  Result<DocPtr> doc = parse_document(bytes);
  if (!doc) return std::move(doc).take_error();
  xmlNodePtr root = xmlDocGetRootElement(doc->get());
  if (!root)
    return make_error(ErrorKind::BadRequest, "malformed_xml", "the document has no root element", "1:1");
  if (const xmlNode* deep = find_too_deep(root, 1, limits.max_depth)) {
    return make_error(ErrorKind::Invalid, "too_deep",
                      "elements are nested more than " + std::to_string(limits.max_depth) + " deep",
                      element_path(deep));
  }

  std::vector<std::string> notes;
  Result<xmlNodePtr> located = locate_alert(root, &notes);
  if (!located) return std::move(located).take_error();
  xmlNodePtr node = *located;
  CapVersion version;
  if (ns_of(node) == kCap12Ns) {
    version = CapVersion::k12;
  } else if (ns_of(node) == kCap11Ns) {
    version = CapVersion::k11;
    notes.push_back("read as CAP 1.1 (validated against the CAP 1.1 schema)");
  } else {
    return make_error(
        ErrorKind::Invalid, "wrong_namespace",
        "<alert> is in namespace \"" + std::string(ns_of(node)) +
            "\"; CAP 1.2 needs xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\" (CAP 1.1 is accepted too)",
        element_path(node));
  }

  // Fields first (they need the dates as sent), then the schema check on a
  // canonicalised tree; a schema violation is reported ahead of a field error.
  FieldReader reader(ns_of(node), &notes);
  Alert alert = reader.read_alert(node);
  std::optional<Error> field_error = reader.take_error();
  std::vector<std::string> schema_notes;
  canonicalise_for_schema(node, version, &schema_notes);
  if (sirena::Status s = validate_against_xsd(node, version); !s) return std::move(s).take_error();
  if (field_error) return std::move(*field_error);
  if (sirena::Status s = check_limits(alert, limits); !s) return std::move(s).take_error();
  if (sirena::Status s = validate_semantics(alert); !s) return std::move(s).take_error();

  alert.cap_version = version == CapVersion::k12 ? "1.2" : "1.1";
  alert.normalisations = std::move(notes);
  alert.normalisations.insert(alert.normalisations.end(), schema_notes.begin(), schema_notes.end());
  return alert;
}

}  // namespace

Result<Alert> parse_cap_xml(std::string_view bytes, const ParseLimits& limits) {
  try {
    return parse_cap_xml_unguarded(bytes, limits);
  } catch (const std::exception& e) {  // std::bad_alloc; nothing else is thrown
    return make_error(ErrorKind::Internal, "internal", std::string("CAP intake failed: ") + e.what(), "");
  }
}

}  // namespace sirena::alerts
