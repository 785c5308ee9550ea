// parse_cap_xml on small inline documents: one test per error code and per quirk
// (docs/cap-intake.md).
#include "daemon/alerts/cap_parser.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/alerts/test_util.h"

namespace sirena::alerts {
namespace {

const std::string kValid = R"(<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>SOL-2024-001</identifier>
  <sender>protezionecivile@comune.soliera.mo.it</sender>
  <sent>2024-05-16T14:00:00+02:00</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <language>it-IT</language>
    <category>Met</category>
    <event>Piena del Secchia</event>
    <urgency>Immediate</urgency>
    <severity>Severe</severity>
    <certainty>Observed</certainty>
    <expires>2024-05-17T14:00:00+02:00</expires>
    <headline>Esondazione del Secchia</headline>
    <area>
      <areaDesc>Soliera</areaDesc>
      <polygon>44.74,10.91 44.75,10.93 44.73,10.94 44.74,10.91</polygon>
      <circle>44.7376,10.9245 2.5</circle>
    </area>
  </info>
</alert>
)";

// kValid with the first occurrence of `from` replaced by `to`.
std::string with(std::string from, std::string to, std::string doc = kValid) {
  const size_t p = doc.find(from);
  EXPECT_NE(p, std::string::npos) << from;
  if (p != std::string::npos) doc.replace(p, from.size(), to);
  return doc;
}

Error rejected(const std::string& doc, const ParseLimits& limits = {}) {
  Result<Alert> r = parse_cap_xml(doc, limits);
  EXPECT_FALSE(r.ok()) << "accepted";
  return r.ok() ? Error{} : r.error();
}

Alert accepted(const std::string& doc) {
  Result<Alert> r = parse_cap_xml(doc);
  EXPECT_TRUE(r.ok()) << r.error().code << ": " << r.error().message << " at " << r.error().where;
  return r.ok() ? *r : Alert{};
}

bool has_note(const Alert& a, const std::string& part) {
  for (const std::string& n : a.normalisations) {
    if (n.find(part) != std::string::npos) return true;
  }
  return false;
}

TEST(CapParser, AcceptsAValidAlert) {
  const Alert a = accepted(kValid);
  EXPECT_EQ(a.identifier, "SOL-2024-001");
  EXPECT_EQ(a.status, Status::Actual);
  EXPECT_EQ(a.cap_version, "1.2");
  EXPECT_TRUE(a.normalisations.empty());
  ASSERT_EQ(a.infos.size(), 1u);
  EXPECT_EQ(a.infos[0].language, "it-IT");
  ASSERT_EQ(a.infos[0].areas.size(), 1u);
  EXPECT_EQ(a.infos[0].areas[0].polygons.at(0).points.size(), 4u);
  EXPECT_DOUBLE_EQ(a.infos[0].areas[0].circles.at(0).radius_km, 2.5);
  EXPECT_EQ(a.sent.unix_ms, 1715860800000);  // 2024-05-16T12:00:00Z
}

TEST(CapParser, BodyTooLarge) {
  ParseLimits limits;
  limits.max_bytes = 100;
  const Error e = rejected(kValid, limits);
  EXPECT_EQ(e.kind, ErrorKind::TooLarge);
  EXPECT_EQ(e.code, "body_too_large");
}

TEST(CapParser, TruncatedIsMalformedWithLineAndColumn) {
  const Error e = rejected(kValid.substr(0, 300));
  EXPECT_EQ(e.kind, ErrorKind::BadRequest);
  EXPECT_EQ(e.code, "malformed_xml");
  const size_t colon = e.where.find(':');
  ASSERT_NE(colon, std::string::npos) << e.where;
  EXPECT_EQ(e.where.find_first_not_of("0123456789:"), std::string::npos) << e.where;
  EXPECT_NE(e.where, "0:0");
}

TEST(CapParser, NotXmlIsMalformed) {
  EXPECT_EQ(rejected("{\"identifier\": 1}").code, "malformed_xml");
  EXPECT_EQ(rejected("").code, "malformed_xml");
  EXPECT_EQ(rejected("<alert>").code, "malformed_xml");
}

TEST(CapParser, MismatchedTagGivesItsLine) {
  const Error e = rejected(with("</headline>", "</headlin>"));
  EXPECT_EQ(e.code, "malformed_xml");
  EXPECT_EQ(e.where.substr(0, 3), "17:") << e.where;  // the </headlin> line
}

TEST(CapParser, InvalidUtf8GivesTheByteOffset) {
  const std::string doc = with("Esondazione", "Esondazione \xFF");
  const Error e = rejected(doc);
  EXPECT_EQ(e.kind, ErrorKind::BadRequest);
  EXPECT_EQ(e.code, "invalid_utf8");
  EXPECT_EQ(e.where, "byte " + std::to_string(doc.find('\xFF')));
  // Without an XML declaration UTF-8 is the default; a leading stylesheet PI that
  // mentions an encoding does not count as one.
  const std::string pi =
      "<?xml-stylesheet href=\"x.xsl?encoding='latin1'\"?>" + doc.substr(doc.find("<alert"));
  EXPECT_EQ(rejected(pi).code, "invalid_utf8");
}

TEST(CapParser, DeclaredLatin1IsDecoded) {
  std::string doc = with("encoding=\"UTF-8\"", "encoding=\"ISO-8859-1\"");
  doc = with("Esondazione del Secchia", "Città allagata", doc);
  doc[doc.find("Citt") + 4] = '\xE0';  // à in ISO-8859-1, invalid as UTF-8
  doc.erase(doc.find("Citt") + 5, 1);
  const Alert a = accepted(doc);
  EXPECT_EQ(a.infos.at(0).headline, "Citt\xC3\xA0 allagata");
}

TEST(CapParser, ByteOrderMarkAndUtf16AreRead) {
  accepted("\xEF\xBB\xBF" + kValid);
  std::string utf16 = "\xFF\xFE";
  for (char c : with("encoding=\"UTF-8\"", "encoding=\"UTF-16\"")) {
    utf16 += c;
    utf16 += '\0';
  }
  EXPECT_EQ(accepted(utf16).identifier, "SOL-2024-001");
}

TEST(CapParser, WrongNamespace) {
  Error e = rejected(with("cap:1.2", "alerts:1.2"));
  EXPECT_EQ(e.kind, ErrorKind::Invalid);
  EXPECT_EQ(e.code, "wrong_namespace");
  EXPECT_NE(e.message.find("urn:oasis:names:tc:emergency:cap:1.2"), std::string::npos);
  EXPECT_EQ(rejected(with(R"( xmlns="urn:oasis:names:tc:emergency:cap:1.2")", "")).code, "wrong_namespace");
  EXPECT_EQ(rejected(with("cap:1.2", "cap:1.0")).code, "wrong_namespace");
}

TEST(CapParser, RootThatIsNotAnAlert) {
  const Error e = rejected("<feed xmlns=\"http://www.w3.org/2005/Atom\"/>");
  EXPECT_EQ(e.code, "not_cap");
  EXPECT_NE(e.message.find("<feed>"), std::string::npos);
}

TEST(CapParser, SchemaViolationNamesTheElement) {
  Error e = rejected(with("<urgency>Immediate</urgency>", "<urgency>Now</urgency>"));
  EXPECT_EQ(e.kind, ErrorKind::Invalid);
  EXPECT_EQ(e.code, "schema_violation");
  EXPECT_NE(e.message.find("'urgency'"), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("line 13"), std::string::npos) << e.message;
  EXPECT_EQ(e.where, "/alert/info/urgency");

  e = rejected(with("<identifier>SOL-2024-001</identifier>", ""));
  EXPECT_EQ(e.code, "schema_violation");
  EXPECT_NE(e.message.find("identifier"), std::string::npos) << e.message;

  e = rejected(with("<event>", "<evnt>x</evnt><event>"));
  EXPECT_EQ(e.code, "schema_violation");
  EXPECT_NE(e.message.find("'evnt'"), std::string::npos) << e.message;
}

TEST(CapParser, ReorderingDoesNotHideDuplicatesOrMissingElements) {
  // A second <identifier> after <scope>: reordering puts both together, and the
  // XSD still refuses the duplicate.
  Error e = rejected(with("<scope>Public</scope>", "<scope>Public</scope><identifier>again</identifier>"));
  EXPECT_EQ(e.code, "schema_violation") << e.message;
  e = rejected(with("<category>Met</category>", ""));
  EXPECT_EQ(e.code, "schema_violation") << e.message;
}

TEST(CapParser, OutOfOrderElementsAreReorderedAndNoted) {
  // <headline> moved ahead of <category>: only headline is reported as moved.
  std::string doc = with("    <headline>Esondazione del Secchia</headline>\n", "");
  doc = with("<category>", "<headline>Esondazione del Secchia</headline><category>", doc);
  const Alert a = accepted(doc);
  EXPECT_EQ(a.infos.at(0).headline, "Esondazione del Secchia");
  ASSERT_EQ(a.normalisations.size(), 1u);
  EXPECT_EQ(a.normalisations[0], "reordered <info> children into CAP schema order: headline");
  // <scope> before <identifier> at the alert level.
  doc = with("<scope>Public</scope>", "");
  doc = with("<identifier>", "<scope>Public</scope><identifier>", doc);
  EXPECT_TRUE(has_note(accepted(doc), "reordered <alert> children into CAP schema order: scope"));
}

// sweden.cap minus its non-CAP <Type>/<Polygon> elements: what is left is only out
// of order (senderName after headline, resource after area) and is accepted.
TEST(CapParser, SwedenWithoutForeignElementsIsReordered) {
  std::string doc = test::corpus("real/kelvinn__capparselib/tests/resources/sweden.cap");
  doc = test::erase_spans(doc, "<Type>", "</Type>");
  doc = test::erase_spans(doc, "<Polygon>", "</Polygon>", 2);  // <Polygon><Polygon>...</Polygon></Polygon>
  const Alert a = accepted(doc);
  EXPECT_EQ(a.identifier, "11337sv");
  EXPECT_EQ(a.infos.at(0).sender_name, "Sveriges Radio");
  // headline/senderName swapped: moving either one is a minimal fix; the first
  // longest in-order run keeps senderName. <resource> came after <area>.
  EXPECT_TRUE(has_note(a, "reordered <info> children into CAP schema order: headline resource"))
      << ::testing::PrintToString(a.normalisations);
}

TEST(CapParser, EmptyPolygonAndCircleAreDropped) {
  std::string doc = with("<circle>", "<polygon/><polygon>  </polygon><circle></circle><circle>");
  const Alert a = accepted(doc);
  EXPECT_EQ(a.infos[0].areas[0].polygons.size(), 1u);
  EXPECT_EQ(a.infos[0].areas[0].circles.size(), 1u);
  EXPECT_TRUE(has_note(a, "/infos/0/areas/0: dropped an empty <polygon>"));
  EXPECT_TRUE(has_note(a, "dropped an empty <circle>"));
}

TEST(CapParser, ZuluAndFractionalTimesAreAccepted) {
  std::string doc = with("2024-05-16T14:00:00+02:00", "2024-05-16T12:00:00Z");
  doc = with("2024-05-17T14:00:00+02:00", "2024-05-17T14:00:00.250+02:00", doc);
  const Alert a = accepted(doc);
  EXPECT_EQ(a.sent.text, "2024-05-16T12:00:00Z");  // kept as sent: references match text
  EXPECT_EQ(a.sent.unix_ms, 1715860800000);
  EXPECT_EQ(a.infos[0].expires->unix_ms, 1715947200250);
  EXPECT_TRUE(has_note(a, "/sent: read time zone \"Z\" as +00:00"));
}

TEST(CapParser, ImpossibleDateIsRejected) {
  EXPECT_FALSE(parse_cap_xml(with("2024-05-16T14:00:00", "2023-02-29T14:00:00")).ok());
  EXPECT_FALSE(parse_cap_xml(with("2024-05-16T14:00:00+02:00", "2024-05-16 14:00")).ok());
}

TEST(CapParser, InvalidPolygon) {
  const std::string ring = "44.74,10.91 44.75,10.93 44.73,10.94 44.74,10.91";
  for (const std::string bad : {"44.74,10.91 44.75,10.93 44.74,10.91",              // 3 points
                                "44.74,10.91 44.75,10.93 44.73,10.94 44.70,10.91",  // not closed
                                "94.74,10.91 44.75,10.93 44.73,10.94 94.74,10.91",  // latitude
                                "44.74,190.91 44.75,10.93 44.73,10.94 44.74,190.91",
                                "44.74;10.91 44.75;10.93 44.73;10.94 44.74;10.91",  // not lat,lon
                                "44.74,10.91, 44.75,10.93, 44.73,10.94, 44.74,10.91"}) {
    SCOPED_TRACE(bad);
    const Error e = rejected(with(ring, bad));
    EXPECT_EQ(e.kind, ErrorKind::Invalid);
    EXPECT_EQ(e.code, "invalid_polygon");
    EXPECT_EQ(e.where, "/infos/0/areas/0/polygons/0");
  }
}

TEST(CapParser, InvalidCircle) {
  for (const std::string bad :
       {"44.7376,10.9245 -1", "95,10.9245 2", "44.7376,10.9245", "44.7,10.9 2 3", "a,b 1"}) {
    SCOPED_TRACE(bad);
    const Error e = rejected(with("44.7376,10.9245 2.5", bad));
    EXPECT_EQ(e.code, "invalid_circle");
    EXPECT_EQ(e.where, "/infos/0/areas/0/circles/0");
  }
  EXPECT_EQ(
      accepted(with("44.7376,10.9245 2.5", "+44.7376,-10.9245 0")).infos[0].areas[0].circles[0].center.lon,
      -10.9245);
}

TEST(CapParser, ExpiresBeforeSent) {
  const Error e = rejected(with("2024-05-17T14:00:00+02:00", "2024-05-16T13:59:59+02:00"));
  EXPECT_EQ(e.code, "expires_before_sent");
  EXPECT_EQ(e.where, "/infos/0/expires");
  // Same instant written in another offset is not "after".
  EXPECT_EQ(rejected(with("2024-05-17T14:00:00+02:00", "2024-05-16T12:00:00-00:00")).code,
            "expires_before_sent");
}

TEST(CapParser, References) {
  const std::string update = with("<msgType>Alert</msgType>", "<msgType>Update</msgType>");
  EXPECT_EQ(rejected(update).code, "missing_references");
  EXPECT_EQ(rejected(with("<msgType>Alert</msgType>", "<msgType>Cancel</msgType>")).code,
            "missing_references");
  EXPECT_EQ(
      rejected(with("<scope>Public</scope>", "<scope>Public</scope><references> </references>", update)).code,
      "missing_references");

  const std::string refs =
      "<references>protezionecivile@comune.soliera.mo.it,SOL-2024-000,2024-05-16T13:00:00+02:00\n"
      "  other@x.it,X-1,2024-05-16T12:00:00-00:00</references>";
  const Alert a = accepted(with("<scope>Public</scope>", "<scope>Public</scope>" + refs, update));
  ASSERT_EQ(a.references.size(), 2u);
  EXPECT_EQ(a.references[0].sender, "protezionecivile@comune.soliera.mo.it");
  EXPECT_EQ(a.references[0].identifier, "SOL-2024-000");
  EXPECT_EQ(a.references[0].sent, "2024-05-16T13:00:00+02:00");
  EXPECT_EQ(a.references[1].identifier, "X-1");

  for (const std::string bad : {"a,b", "a,b,c,d", "a,b,yesterday", ",b,2024-05-16T13:00:00+02:00"}) {
    SCOPED_TRACE(bad);
    const Error e =
        rejected(with("<scope>Public</scope>", "<scope>Public</scope><references>" + bad + "</references>"));
    EXPECT_EQ(e.code, "invalid_references");
    EXPECT_EQ(e.where, "/references/0");
  }
}

TEST(CapParser, RestrictedAndPrivateScope) {
  EXPECT_EQ(rejected(with("<scope>Public</scope>", "<scope>Restricted</scope>")).code, "missing_restriction");
  EXPECT_EQ(rejected(with("<scope>Public</scope>", "<scope>Private</scope>")).code, "missing_addresses");
  EXPECT_EQ(
      accepted(with("<scope>Public</scope>", "<scope>Restricted</scope><restriction>staff</restriction>"))
          .scope,
      Scope::Restricted);
  EXPECT_EQ(accepted(with("<scope>Public</scope>", "<scope>Private</scope><addresses>a@b c@d</addresses>"))
                .addresses,
            "a@b c@d");
}

TEST(CapParser, IdentifierWithSpaceIsRejected) {
  const Error e = rejected(with("SOL-2024-001", "SOL 2024"));
  EXPECT_EQ(e.code, "invalid_field");
  EXPECT_EQ(e.where, "/identifier");
}

TEST(CapParser, CeilingNeedsAltitude) {
  EXPECT_EQ(rejected(with("</area>", "<ceiling>100</ceiling></area>")).code, "invalid_altitude");
  const Alert a = accepted(with("</area>", "<altitude>10</altitude><ceiling>100</ceiling></area>"));
  EXPECT_EQ(a.infos[0].areas[0].ceiling, 100.0);
}

TEST(CapParser, DepthLimit) {
  ParseLimits limits;
  limits.max_depth = 3;  // alert/info/area/polygon is 4 deep
  Error e = rejected(kValid, limits);
  EXPECT_EQ(e.code, "too_deep");
  EXPECT_EQ(e.where, "/alert/info/area/areaDesc");
  std::string nest;
  for (int i = 0; i < 100; ++i) nest += "<x>";
  for (int i = 0; i < 100; ++i) nest += "</x>";
  EXPECT_EQ(rejected(with("<scope>Public</scope>", "<scope>Public</scope><note>" + nest + "</note>")).code,
            "too_deep");
}

TEST(CapParser, CountLimits) {
  ParseLimits limits;
  limits.max_infos = 1;
  const std::string two_infos =
      with("</alert>",
           "<info><category>Met</category><event>e</event><urgency>Past</urgency>"
           "<severity>Minor</severity><certainty>Likely</certainty></info></alert>");
  EXPECT_EQ(rejected(two_infos, limits).code, "too_many_infos");
  limits = {};
  limits.max_areas = 0;
  EXPECT_EQ(rejected(kValid, limits).code, "too_many_areas");
  limits = {};
  limits.max_polygon_points = 3;
  EXPECT_EQ(rejected(kValid, limits).code, "too_many_points");
}

TEST(CapParser, DoctypeIsForbidden) {
  Error e = rejected(with("<alert ", "<!DOCTYPE alert>\n<alert "));
  EXPECT_EQ(e.code, "dtd_forbidden");
  EXPECT_EQ(e.where.substr(0, 2), "2:");
  // Billion laughs: refused at the DOCTYPE, before any expansion.
  std::string lol = "<!DOCTYPE alert [<!ENTITY a \"aaaaaaaaaa\">";
  for (char c = 'b'; c <= 'k'; ++c) {
    lol += std::string("<!ENTITY ") + c + " \"" + std::string(10, '&') + "\">";
    std::string refs;
    for (int i = 0; i < 10; ++i) refs += std::string("&") + static_cast<char>(c - 1) + ";";
    lol.replace(lol.rfind(std::string(10, '&')), 10, refs);
  }
  lol += "]>\n";
  EXPECT_EQ(rejected(with("<alert ", lol + "<alert ", with("Soliera</areaDesc>", "&k;</areaDesc>"))).code,
            "dtd_forbidden");
}

TEST(CapParser, EdxlEnvelope) {
  const std::string alert_body = kValid.substr(kValid.find("<alert"));
  auto edxl = [&](int alerts) {
    std::string doc =
        R"(<EDXLDistribution xmlns="urn:oasis:names:tc:emergency:EDXL:DE:1.0"><distributionID>x</distributionID>)";
    for (int i = 0; i < alerts; ++i) {
      doc += "<contentObject><xmlContent><embeddedXMLContent>" + alert_body +
             "</embeddedXMLContent></xmlContent></contentObject>";
    }
    return doc + "</EDXLDistribution>";
  };
  const Alert a = accepted(edxl(1));
  EXPECT_EQ(a.identifier, "SOL-2024-001");
  EXPECT_TRUE(has_note(a, "EDXL-DE"));
  Error e = rejected(edxl(2));
  EXPECT_EQ(e.code, "multiple_alerts");
  EXPECT_NE(e.message.find("holds 2"), std::string::npos);
  EXPECT_EQ(rejected(edxl(0)).code, "not_cap");
}

TEST(CapParser, AlertsWrapper) {
  const std::string alert_body = kValid.substr(kValid.find("<alert"));
  const std::string open = "<alerts xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">";
  const Alert a = accepted(open + alert_body + "</alerts>");
  EXPECT_TRUE(has_note(a, "<alerts> wrapper"));
  const Error e = rejected(open + alert_body + alert_body + alert_body + "</alerts>");
  EXPECT_EQ(e.code, "multiple_alerts");
  EXPECT_NE(e.message.find("holds 3 <alert> elements; post each <alert> as a separate request"),
            std::string::npos);
}

TEST(CapParser, MisplacedSignatureIn12IsMovedLast) {
  const std::string sig = "<Signature xmlns=\"http://www.w3.org/2000/09/xmldsig#\"><SignedInfo/></Signature>";
  const Alert a = accepted(with("<info>", sig + "<info>"));
  EXPECT_TRUE(has_note(a, "CAP schema order: Signature"));
  EXPECT_TRUE(accepted(with("</alert>", sig + "</alert>")).normalisations.empty());
}

TEST(CapParser, Cap11IsAccepted) {
  const Alert a = accepted(with("cap:1.2", "cap:1.1"));
  EXPECT_EQ(a.cap_version, "1.1");
  EXPECT_TRUE(has_note(a, "CAP 1.1"));
  // 1.2-only values fail the 1.1 schema.
  EXPECT_EQ(rejected(with("<certainty>", "<responseType>AllClear</responseType><certainty>",
                          with("cap:1.2", "cap:1.1")))
                .code,
            "schema_violation");
}

TEST(CapParser, CdataCommentsAndStylesheetAreFine) {
  std::string doc = with("<headline>Esondazione del Secchia</headline>",
                         "<headline><![CDATA[Esondazione <del> Secchia]]><!-- c --></headline>");
  doc =
      with("<alert ", "<?xml-stylesheet href=\"http://127.0.0.1:9/x.xsl\" type=\"text/xsl\"?>\n<alert ", doc);
  EXPECT_EQ(accepted(doc).infos[0].headline, "Esondazione <del> Secchia");
}

TEST(CapParser, DerefUriIsNoted) {
  const Alert a = accepted(with("<area>",
                                "<resource><resourceDesc>map</resourceDesc><mimeType>image/png</mimeType>"
                                "<size>3</size><derefUri>AAAA</derefUri></resource><area>"));
  ASSERT_EQ(a.infos[0].resources.size(), 1u);
  EXPECT_EQ(a.infos[0].resources[0].size, 3);
  EXPECT_TRUE(has_note(a, "derefUri"));
}

TEST(CapParser, CanadaReferencesAreSplit) {
  const Result<Alert> r = parse_cap_xml(test::corpus("real/google__cap-library/testdata/canada.cap"));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->references.size(), 2u);
  EXPECT_EQ(r->references[0].sender, "cap@ec.gc.ca");
  EXPECT_EQ(r->references[0].identifier, "2.49.0.1.124.a3f342a4.2012");
  EXPECT_EQ(r->references[0].sent, "2012-05-02T21:45:05-00:00");
}

}  // namespace
}  // namespace sirena::alerts
