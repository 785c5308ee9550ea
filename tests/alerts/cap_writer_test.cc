// The CAP documents Sirena writes itself (cap_writer.h): a Cancel is valid CAP 1.2 that
// references the alert, for every alert intake accepts. No sockets.
#include "daemon/alerts/cap_writer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "daemon/alerts/alert_json.h"
#include "daemon/alerts/cap_parser.h"
#include "daemon/core/ids.h"

namespace sirena {
namespace {

TEST(CapWriter, CancelIsValidCapReferencingTheAlert) {
  alerts::CancelSpec spec{"pc@soliera.it",
                          "sirena-cancel-1",
                          alerts::cap_datetime(1'764'230'400'000),
                          "Test",
                          "pc@soliera.it,flood-1,2026-11-27T10:00:00+01:00",
                          "note with <markup> & ampersand"};
  std::string xml = alerts::write_cancel(spec);
  auto parsed = alerts::parse_cap_xml(xml);
  ASSERT_TRUE(parsed) << parsed.error().message << "\n" << xml;
  EXPECT_EQ(parsed->msg_type, alerts::MsgType::Cancel);
  EXPECT_EQ(parsed->status, alerts::Status::Test);
  ASSERT_EQ(parsed->references.size(), 1u);
  EXPECT_EQ(parsed->references[0].identifier, "flood-1");
  EXPECT_EQ(parsed->note, "note with <markup> & ampersand");
  EXPECT_EQ(spec.sent, "2025-11-27T08:00:00+00:00");
}

// The Cancel that POST /v1/alerts/{id}/cancel writes for a stored alert, as the API
// builds it from the stored sender, identifier, sent and status.
Result<alerts::Alert> cancel_of(const alerts::Alert& a) {
  alerts::CancelSpec spec{a.sender,
                          "sirena-cancel-" + make_ulid(1'764'230'400'000),
                          alerts::cap_datetime(1'764'230'400'000),
                          alerts::to_string(a.status),
                          a.sender + "," + a.identifier + "," + a.sent.text,
                          "Cancelled through Sirena by k-operator"};
  return alerts::parse_cap_xml(alerts::write_cancel(spec));
}

// Issue 14 finding 5: an accepted alert can always be cancelled. Every corpus alert
// that intake accepts, and JSON alerts whose identifier and sender hold every kind of
// character intake lets through, get a Cancel that parses.
TEST(CapWriter, EveryAcceptedAlertsCancelParses) {
  size_t accepted = 0;
  const auto dir = std::filesystem::path(SIRENA_TEST_DATA) / "cap";
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (entry.path().extension() != ".xml" && entry.path().extension() != ".cap") continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::stringstream bytes;
    bytes << in.rdbuf();
    auto alert = alerts::parse_cap_xml(bytes.str());
    if (!alert) continue;
    ++accepted;
    auto cancel = cancel_of(*alert);
    EXPECT_TRUE(cancel) << entry.path() << ": " << cancel.error().code << " " << cancel.error().message;
  }
  EXPECT_GT(accepted, 20u);

  // JSON escapes, spliced into JSON text.
  const std::string odd[] = {R"(\u007f)",       R"(\u0085)", R"(\u00a0)", R"(\u2028)", R"(\ufffd)",
                             R"(\ud83c\udf0a)", R"(\ufeff)", "]]>",       R"(\")",     "'",
                             R"(\\)",           "%26amp;"};
  for (const std::string& c : odd) {
    const std::string doc = R"({"identifier": "id-)" + c + R"(-1", "sender": "pc)" + c + R"(@soliera.it",
        "sent": "2026-11-27T10:00:00+01:00", "status": "Actual", "msg_type": "Alert", "scope": "Public"})";
    auto alert = alerts::parse_alert_json(doc);
    if (!alert) continue;  // refused at intake: nothing to cancel
    ++accepted;
    auto cancel = cancel_of(*alert);
    ASSERT_TRUE(cancel) << c << ": " << cancel.error().code << " " << cancel.error().message;
    EXPECT_EQ(cancel->references.at(0).identifier, alert->identifier);
  }
  // What intake refuses could not have been stored.
  for (const char* c : {R"(\u0000)", R"(\u000b)", R"(\ufffe)", R"(\uffff)", R"(\u001f)"}) {
    auto alert = alerts::parse_alert_json(std::string(R"({"identifier": "id-)") + c + R"(", "sender": "pc",
        "sent": "2026-11-27T10:00:00+01:00", "status": "Actual", "msg_type": "Alert", "scope": "Public"})");
    ASSERT_FALSE(alert) << c;
    EXPECT_EQ(alert.error().code, "invalid_character");
  }
}

}  // namespace
}  // namespace sirena
