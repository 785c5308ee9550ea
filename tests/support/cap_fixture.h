// One builder for the CAP 1.2 alerts the integration tests post: Soliera's sender, an
// Italian info block (and optionally an English one), one polygon.
#pragma once

#include <string>

namespace sirena::testing {

struct TestCap {
  std::string identifier;
  std::string status = "Actual";
  std::string msg_type = "Alert";
  std::string references;  // "sender,identifier,sent ..." or empty
  std::string sent = "2026-11-27T10:00:00+01:00";
  std::string sender = "protezionecivile@comune.soliera.mo.it";
  std::string category = "Met";
  std::string event = "Piena del Secchia";
  std::string urgency = "Immediate";
  std::string severity = "Severe";
  std::string headline = "Secchia in piena";
  std::string instruction = "Salite ai piani alti.";
  std::string polygon = "44.77,10.90 44.77,10.97 44.73,10.97 44.73,10.90 44.77,10.90";
  bool english = false;  // adds an en-GB info with the same area

  std::string xml() const {
    auto info = [&](const std::string& lang, const std::string& ev, const std::string& head, const std::string& instr) {
      return "  <info>\n    <language>" + lang + "</language>\n    <category>" + category +
             "</category>\n    <event>" + ev + "</event>\n    <urgency>" + urgency + "</urgency>\n    <severity>" +
             severity + "</severity>\n    <certainty>Observed</certainty>\n    <headline>" + head +
             "</headline>\n    <instruction>" + instr + "</instruction>\n    <area><areaDesc>Zona</areaDesc><polygon>" +
             polygon + "</polygon></area>\n  </info>\n";
    };
    std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                      "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">\n  <identifier>" + identifier +
                      "</identifier>\n  <sender>" + sender + "</sender>\n  <sent>" + sent + "</sent>\n  <status>" +
                      status + "</status>\n  <msgType>" + msg_type + "</msgType>\n  <scope>Public</scope>\n";
    if (!references.empty()) out += "  <references>" + references + "</references>\n";
    out += info("it-IT", event, headline, instruction);
    if (english) out += info("en-GB", "Alert", "Secchia river alert", "Go upstairs. Do not use underpasses.");
    return out + "</alert>\n";
  }
};

}  // namespace sirena::testing
