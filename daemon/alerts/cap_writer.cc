#include "daemon/alerts/cap_writer.h"

#include <libxml/xmlwriter.h>

#include <ctime>

namespace sirena::alerts {

std::string cap_datetime(int64_t unix_ms) {
  std::time_t secs = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S+00:00", &tm);
  return buf;
}

std::string write_cancel(const CancelSpec& s) {
  xmlBufferPtr buf = xmlBufferCreate();
  xmlTextWriterPtr w = xmlNewTextWriterMemory(buf, 0);
  auto bx = [](const std::string& v) { return reinterpret_cast<const xmlChar*>(v.c_str()); };
  auto el = [&](const char* name, const std::string& value) {
    xmlTextWriterWriteElement(w, BAD_CAST name, bx(value));
  };
  xmlTextWriterSetIndent(w, 1);
  xmlTextWriterStartDocument(w, nullptr, "UTF-8", nullptr);
  xmlTextWriterStartElementNS(w, nullptr, BAD_CAST "alert", BAD_CAST "urn:oasis:names:tc:emergency:cap:1.2");
  el("identifier", s.identifier);
  el("sender", s.sender);
  el("sent", s.sent);
  el("status", s.status);
  el("msgType", "Cancel");
  el("scope", "Public");
  if (!s.note.empty()) el("note", s.note);
  el("references", s.reference);
  xmlTextWriterEndElement(w);
  xmlTextWriterEndDocument(w);
  xmlFreeTextWriter(w);
  std::string out(reinterpret_cast<const char*>(xmlBufferContent(buf)),
                  static_cast<size_t>(xmlBufferLength(buf)));
  xmlBufferFree(buf);
  return out;
}

}  // namespace sirena::alerts
