// Every file of the public CAP corpus (tests/data/cap, see SOURCES.txt) is either
// accepted, with a few fields checked, or rejected with its documented code
// (docs/cap-intake.md). The directory is walked, so a new file without an
// expectation here fails.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "daemon/alerts/alert_json.h"
#include "daemon/alerts/cap_parser.h"
#include "tests/alerts/test_util.h"

namespace sirena::alerts {
namespace {

namespace fs = std::filesystem;
using test::cap_dir;

struct Accept {
  std::string identifier;
  std::string sender;
  MsgType msg_type;
  size_t infos;
  size_t references;
  size_t polygons;
  size_t circles;
  std::string cap_version = "1.2";
  std::vector<std::string> notes = {};  // each must be a substring of one normalisation
};

struct Reject {
  int status;
  std::string code;
  std::string message_part;  // substring of the message
};

struct Expectation {
  std::optional<Accept> accept;
  std::optional<Reject> reject;
};

Expectation ok(Accept a) {
  return {std::move(a), std::nullopt};
}
Expectation fails(int status, std::string code, std::string part = "") {
  return {std::nullopt, Reject{status, std::move(code), std::move(part)}};
}

const std::string kUsgs = "http://earthquake.usgs.gov/research/monitoring/anss/neic/";

const std::map<std::string, Expectation>& expectations() {
  static const auto* table = new std::map<std::string, Expectation>{
      // --- negative/ ---
      {"negative/google__cap-library/testdata/invalid.cap",
       fails(422, "schema_violation", "Expected is one of ( source, scope )")},
      {"negative/google__cap-library/testdata/noaa_errors.cap",
       fails(422, "schema_violation", "Element 'urgency'")},
      // XSD-valid, but an Update with an empty <references/>.
      {"negative/google__cap-library/testdata/canada_errors.cap", fails(422, "missing_references")},
      {"negative/google__cap-library/testdata/xee.cap", fails(422, "dtd_forbidden")},
      {"negative/kelvinn__capparselib/tests/resources/invalid_xmlns.cap",
       fails(422, "wrong_namespace", "emergency:alerts:1.2")},
      {"negative/google__cap-library/testdata/no_optional_fields.cap",
       ok({"USGS-earthquakes-us2010apcd.6.20100831T000925.496Z",
           kUsgs,
           MsgType::Alert,
           0,
           0,
           0,
           0,
           "1.1",
           {"CAP 1.1"}})},
      // --- spec_examples/ ---
      {"spec_examples/willglynn__oasiscap/fixtures/v1dot2_appendix_adot1.xml",
       ok({"43b080713727", "hsas@dhs.gov", MsgType::Alert, 1, 0, 0, 0})},
      {"spec_examples/willglynn__oasiscap/fixtures/v1dot2_appendix_adot2.xml",
       ok({"KSTO1055887203", "KSTO@NWS.NOAA.GOV", MsgType::Alert, 1, 0, 1, 0})},
      {"spec_examples/willglynn__oasiscap/fixtures/v1dot2_appendix_adot3.xml",
       ok({"TRI13970876.2", "trinet@caltech.edu", MsgType::Update, 1, 1, 0, 1})},
      {"spec_examples/willglynn__oasiscap/fixtures/v1dot2_appendix_adot4.xml",
       ok({"KAR0-0306112239-SW", "KARO@CLETS.DOJ.CA.GOV", MsgType::Alert, 2, 0, 0, 0})},
      // --- real/ ---
      {"real/google__cap-library/testdata/australia.cap",
       ok({"tag:www.rfs.nsw.gov.au2011-10-06:40184", "webmaster@rfs.nsw.gov.au", MsgType::Alert, 2, 0, 0,
           2})},
      {"real/google__cap-library/testdata/canada.cap",
       ok({"2.49.0.1.124.6bddbc91.2012", "cap@ec.gc.ca", MsgType::Update, 2, 2, 4, 0})},
      {"real/google__cap-library/testdata/canada_signed.cap",
       ok({"2.49.0.1.124.f2c83f5f.2013", "cap-pac@ec.gc.ca", MsgType::Update, 2, 9, 4, 0})},
      {"real/google__cap-library/testdata/earthquake-iso8859-1.cap",
       ok({"USGS-earthquakes-usB000D5T4.3947362.7.20121014T225304.360Z.0", kUsgs, MsgType::Alert, 1, 0, 0,
           1})},
      {"real/google__cap-library/testdata/earthquake.cap",
       ok({"USGS-earthquakes-us2010apcd.6.20100831T000925.496Z",
           kUsgs,
           MsgType::Alert,
           1,
           0,
           0,
           1,
           "1.1",
           {"CAP 1.1"}})},
      {"real/google__cap-library/testdata/earthquake_signed.cap",
       ok({"USGS-earthquakes-nc71635010.28103893.20110906T171538.586Z",
           "http://www.cisn.org/ncmc.html",
           MsgType::Alert,
           1,
           0,
           0,
           1,
           "1.1",
           {"CAP 1.1", "ignored ds:Signature"}})},
      {"real/google__cap-library/testdata/wcatwc-warning.cap",
       ok({"PAAQ-2-lqw6d6", "http://newwcatwc.arh.noaa.gov/tsuPortal/", MsgType::Update, 1, 1, 0, 0})},
      {"real/google__cap-library/testdata/weather.cap",
       ok({"NOAA-NWS-ALERTS-MT20100830100700TFXFlashFloodWatchTFX20100830180000MT",
           "w-nws.webmaster@noaa.gov",
           MsgType::Alert,
           1,
           0,
           0,
           0,
           "1.1",
           {"CAP 1.1"}})},
      {"real/kelvinn__capparselib/tests/resources/CanadaNaad.xml",
       ok({"urn:oid:2.49.0.1.124.3026064006.2019", "cap-pac@canada.ca", MsgType::Alert, 2, 0, 2, 0})},
      {"real/kelvinn__capparselib/tests/resources/australia_bom.cap",
       ok({"AusBoM-IDN21033-2019-01-16T03:15:58+00:00", "CAP.Message@bom.gov.au", MsgType::Alert, 1, 0, 0,
           0})},
      {"real/kelvinn__capparselib/tests/resources/iceland_met_office.cap",
       ok({"is-IMO-2a4c2db8-07fd-4a0f-b372-9667280d46d1", "IMO-Icelandic_Met_Office", MsgType::Alert, 2, 0, 2,
           0})},
      {"real/kelvinn__capparselib/tests/resources/mexico.xml",
       ok({"avisossmn-ciclontropical-4063", "smn.cna.gob.mx", MsgType::Update, 1, 1, 1, 0})},
      {"real/kelvinn__capparselib/tests/resources/no_info_tag.cap",
       ok({"1017033100951096-517189320160225203219800_Cancel", "AtHoc", MsgType::Cancel, 0, 1, 0, 0})},
      {"real/kelvinn__capparselib/tests/resources/ph.cap",
       ok({"103ff55e-b538-49a2-a94a-64470ddea2cc", "PAGASA-DOST", MsgType::Alert, 1, 0, 1, 0})},
      {"real/kelvinn__capparselib/tests/resources/rfs.xml", ok({"2014-05-08T10:31:00-00:00:160068",
                                                                "webmaster@rfs.nsw.gov.au",
                                                                MsgType::Alert,
                                                                1,
                                                                0,
                                                                0,
                                                                1,
                                                                "1.2",
                                                                {"EDXL-DE"}})},
      // 17 alerts in one non-standard <alerts> wrapper.
      {"real/kelvinn__capparselib/tests/resources/smhi.se.alerts.cap",
       fails(422, "multiple_alerts", "holds 17 <alert>")},
      // Not only out of order: <area> holds non-CAP <Type> and <Polygon> elements whose
      // geometry we would lose (see docs/cap-intake.md); the reordering itself is
      // tested in cap_parser_test.cc on this file minus those elements.
      {"real/kelvinn__capparselib/tests/resources/sweden.cap",
       fails(422, "schema_violation", "Element 'Type'")},
      {"real/kelvinn__capparselib/tests/resources/taiwan.cap",
       ok({"WRA_ReservoirWarn_201405142010", "ddmt01@wra.gov.tw", MsgType::Alert, 1, 0, 0, 0})},
      {"real/kelvinn__capparselib/tests/resources/weather.cap",
       ok({"NOAA-NWS-ALERTS-NM125154019200.WindAdvisory.125154105F10NM.ABQNPWABQ."
           "2d2ce3a407282ee33ba256baac0e8f3c",
           "w-nws.webmaster@noaa.gov",
           MsgType::Alert,
           1,
           0,
           0,
           0,
           "1.1",
           {"CAP 1.1", "dropped an empty <polygon>"}})},
      {"real/metno__MetAlert-Search/tests/files/METfare-20210921T070421.cap.xml",
       ok({"2.49.0.1.578.0.210921070421906.1705", "noreply@met.no", MsgType::Alert, 2, 0, 2, 0})},
      {"real/DawsonMacPhee__WSV3-Canadian-Weather-Alerts/cap/T_WOCN11_C_CWHX_202210101814_1032737847.cap",
       ok({"urn:oid:2.49.0.1.124.1032737847.2022", "cap-pac@canada.ca", MsgType::Update, 2, 13, 42, 0})},
      {"real/DawsonMacPhee__WSV3-Canadian-Weather-Alerts/cap/T_WOCN20_C_CWVR_202210101743_2051382770.cap",
       ok({"urn:oid:2.49.0.1.124.2051382770.2022", "cap-pac@canada.ca", MsgType::Update, 4, 21, 8, 0})},
      // --- not messages: the schemas themselves are refused as "not CAP" ---
      {"schema/cap11.xsd", fails(422, "not_cap", "<schema>")},
      {"schema/cap12.xsd", fails(422, "not_cap", "<schema>")},
  };
  return *table;
}

std::vector<std::string> corpus_files() {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(cap_dir())) {
    if (!e.is_regular_file()) continue;
    const std::string rel = fs::relative(e.path(), cap_dir()).generic_string();
    if (rel != "SOURCES.txt") out.push_back(rel);
  }
  std::sort(out.begin(), out.end());
  return out;
}

size_t count_polygons(const Alert& a) {
  size_t n = 0;
  for (const Info& i : a.infos)
    for (const Area& area : i.areas) n += area.polygons.size();
  return n;
}

size_t count_circles(const Alert& a) {
  size_t n = 0;
  for (const Info& i : a.infos)
    for (const Area& area : i.areas) n += area.circles.size();
  return n;
}

TEST(CapCorpus, EveryFileHasAnExpectationAndMeetsIt) {
  const std::vector<std::string> files = corpus_files();
  ASSERT_GE(files.size(), 30u);
  for (const std::string& rel : files) {
    SCOPED_TRACE(rel);
    auto it = expectations().find(rel);
    ASSERT_NE(it, expectations().end()) << "new corpus file without an expectation: " << rel;
    const Result<Alert> r = parse_cap_xml(test::corpus(rel));
    if (const auto& reject = it->second.reject) {
      ASSERT_FALSE(r.ok()) << "accepted, expected " << reject->code;
      EXPECT_EQ(http_status(r.error().kind), reject->status);  // the status a client sees
      EXPECT_EQ(r.error().code, reject->code) << r.error().message;
      EXPECT_NE(r.error().message.find(reject->message_part), std::string::npos) << r.error().message;
      continue;
    }
    ASSERT_TRUE(r.ok()) << r.error().code << ": " << r.error().message << " at " << r.error().where;
    const Accept& want = *it->second.accept;
    EXPECT_EQ(r->identifier, want.identifier);
    EXPECT_EQ(r->sender, want.sender);
    EXPECT_EQ(r->msg_type, want.msg_type);
    EXPECT_EQ(r->infos.size(), want.infos);
    EXPECT_EQ(r->references.size(), want.references);
    EXPECT_EQ(count_polygons(*r), want.polygons);
    EXPECT_EQ(count_circles(*r), want.circles);
    EXPECT_EQ(r->cap_version, want.cap_version);
    for (const std::string& note : want.notes) {
      bool found = false;
      for (const std::string& n : r->normalisations) found = found || n.find(note) != std::string::npos;
      EXPECT_TRUE(found) << "no normalisation mentions \"" << note << "\"";
    }
    if (want.notes.empty()) {
      EXPECT_TRUE(r->normalisations.empty()) << r->normalisations.front();
    }
  }
}

TEST(CapCorpus, EveryExpectationHasItsFile) {
  const std::vector<std::string> files = corpus_files();
  for (const auto& [rel, e] : expectations()) {
    EXPECT_TRUE(std::find(files.begin(), files.end(), rel) != files.end()) << "missing corpus file " << rel;
  }
}

// alert_to_json -> dump -> parse_alert_json gives the same alert, for every accepted
// file; the JSON form loses nothing the model holds.
TEST(CapCorpus, JsonRoundTripOfEveryAcceptedFile) {
  size_t accepted = 0;
  for (const std::string& rel : corpus_files()) {
    SCOPED_TRACE(rel);
    const Result<Alert> xml = parse_cap_xml(test::corpus(rel));
    if (!xml) continue;
    ++accepted;
    const nlohmann::json first = alert_to_json(*xml);
    const Result<Alert> back = parse_alert_json(first.dump());
    ASSERT_TRUE(back.ok()) << back.error().code << ": " << back.error().message << " at "
                           << back.error().where;
    EXPECT_EQ(alert_to_json(*back), first);
    EXPECT_EQ(back->sent.unix_ms, xml->sent.unix_ms);
    EXPECT_EQ(back->normalisations, xml->normalisations);
    const Result<Alert> loaded = alert_from_json(first);
    ASSERT_TRUE(loaded.ok());
    EXPECT_EQ(alert_to_json(*loaded), first);
  }
  EXPECT_EQ(accepted, 25u);
}

TEST(CapCorpus, ParsedFieldsOfTheSpecThunderstorm) {
  const Result<Alert> r =
      parse_cap_xml(test::corpus("spec_examples/willglynn__oasiscap/fixtures/v1dot2_appendix_adot2.xml"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->sent.text, "2003-06-17T14:57:00-07:00");
  EXPECT_EQ(r->sent.unix_ms, 1055887020000);  // 2003-06-17T21:57:00Z
  ASSERT_EQ(r->infos.size(), 1u);
  const Info& info = r->infos[0];
  EXPECT_EQ(info.language, "en-US");  // absent: the §3.2.2 default
  EXPECT_EQ(info.categories, std::vector<std::string>{"Met"});
  EXPECT_EQ(info.urgency, "Immediate");
  ASSERT_EQ(info.areas.size(), 1u);
  const Polygon& p = info.areas[0].polygons.at(0);
  ASSERT_EQ(p.points.size(), 5u);
  EXPECT_DOUBLE_EQ(p.points[0].lat, 38.47);
  EXPECT_DOUBLE_EQ(p.points[0].lon, -120.14);
  EXPECT_EQ(info.areas[0].geocodes.size(), 3u);
  ASSERT_TRUE(info.expires.has_value());
  EXPECT_EQ(info.expires->text, "2003-06-17T16:00:00-07:00");
}

TEST(CapCorpus, Iso88591IsDecodedToUtf8) {
  const Result<Alert> r =
      parse_cap_xml(test::corpus("real/google__cap-library/testdata/earthquake-iso8859-1.cap"));
  ASSERT_TRUE(r.ok());
  // Whatever the input encoding, the model holds UTF-8 (it is dumped as JSON).
  EXPECT_NO_THROW((void)alert_to_json(*r).dump());
}

}  // namespace
}  // namespace sirena::alerts
