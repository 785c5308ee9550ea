// The XXE payload (negative/.../xee.cap) must neither read a file nor open a
// connection. We point its entities at a temp file holding a marker and at a
// listener of our own on 127.0.0.1, and check that the marker never shows, that no
// connection arrived and that libxml2 never even asked for an external resource.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <libxml/parser.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "daemon/alerts/alert_json.h"
#include "daemon/alerts/cap_parser.h"
#include "tests/alerts/test_util.h"

namespace sirena::alerts {
namespace {

// A non-blocking listener on an ephemeral loopback port; connection_arrived()
// accepts whatever is queued. libxml2 fetches synchronously, so any attempt made
// during a parse is in the backlog by the time the parse returns.
class Listener {
 public:
  Listener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(fd_, 16) != 0 || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "cannot listen on 127.0.0.1";
      return;
    }
    port_ = ntohs(addr.sin_port);
  }
  ~Listener() {
    if (fd_ >= 0) ::close(fd_);
  }
  int port() const { return port_; }
  bool connection_arrived() const {
    const int c = ::accept(fd_, nullptr, nullptr);
    if (c >= 0) ::close(c);
    return c >= 0;
  }

 private:
  int fd_ = -1;
  int port_ = 0;
};

class Xxe : public ::testing::Test {
 protected:
  void SetUp() override {
    secret_path_ = std::filesystem::temp_directory_path() /
                   ("sirena-xxe-" + std::to_string(::getpid()) + "-" +
                    ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::ofstream(secret_path_) << marker_ << "\n";
    harden_libxml2();
  }
  void TearDown() override { std::filesystem::remove(secret_path_); }

  // xee.cap with every URL aimed at our listener and the file entities at our file.
  std::string payload() const {
    std::string doc = test::corpus("negative/google__cap-library/testdata/xee.cap");
    const std::string here = "http://127.0.0.1:" + std::to_string(listener_.port());
    doc = test::replace_all(doc, "http://http://localhost:8080", here);
    doc = test::replace_all(doc, "http://localhost:8080", here);
    doc = test::replace_all(doc, "file:///etc/passwd", "file://" + secret_path_.string());
    doc = test::replace_all(doc, "<!ENTITY xxe SYSTEM \"" + here + "/payload3\">",
                            "<!ENTITY xxe SYSTEM \"file://" + secret_path_.string() + "\">");
    return doc;
  }

  void expect_nothing_fetched(const Result<Alert>& r, uint64_t loads_before) {
    const std::string seen = r.ok() ? alert_to_json(*r).dump() : r.error().message + r.error().where;
    EXPECT_EQ(seen.find(marker_), std::string::npos) << seen;
    EXPECT_FALSE(listener_.connection_arrived()) << "the parser opened a connection";
    EXPECT_EQ(refused_external_loads(), loads_before) << "libxml2 asked for an external resource";
  }

  Listener listener_;
  std::filesystem::path secret_path_;
  const std::string marker_ = "SIRENA-XXE-MARKER-7f3a9c";
};

TEST_F(Xxe, PayloadIsRefusedWithoutReadingOrConnecting) {
  const std::string doc = payload();
  ASSERT_NE(doc.find(std::to_string(listener_.port())), std::string::npos);
  ASSERT_NE(doc.find("<!ENTITY xxe SYSTEM \"file://" + secret_path_.string()), std::string::npos);
  ASSERT_NE(doc.find("<!ENTITY % file SYSTEM \"file://" + secret_path_.string()), std::string::npos);
  const uint64_t before = refused_external_loads();
  const Result<Alert> r = parse_cap_xml(doc);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "dtd_forbidden");
  expect_nothing_fetched(r, before);
}

// Without its DOCTYPE the payload still carries an XInclude, an xsi:schemaLocation
// and an xml-stylesheet PI, all aimed at our listener: none may be followed.
TEST_F(Xxe, XIncludeAndSchemaLocationAreNotFollowed) {
  std::string doc = payload();
  doc.erase(doc.find("<!DOCTYPE"), doc.find("]>") + 2 - doc.find("<!DOCTYPE"));
  doc = test::replace_all(doc, "&xxe;", "");
  const uint64_t before = refused_external_loads();
  const Result<Alert> r = parse_cap_xml(doc);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "schema_violation");  // <x> and <y> are not CAP
  expect_nothing_fetched(r, before);

  // The same with the foreign elements gone, so validation runs to the end.
  doc.erase(doc.find("<x "), doc.find("</y>") + 4 - doc.find("<x "));
  doc =
      test::replace_all(doc, "<alert ",
                        "<alert xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:schemaLocation=\""
                        "urn:oasis:names:tc:emergency:cap:1.2 http://127.0.0.1:" +
                            std::to_string(listener_.port()) + "/cap.xsd\" ");
  const Result<Alert> ok = parse_cap_xml(doc);
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  expect_nothing_fetched(ok, before);
}

TEST_F(Xxe, ExternalDtdAloneIsRefused) {
  const std::string doc = "<?xml version=\"1.0\"?>\n<!DOCTYPE alert SYSTEM \"http://127.0.0.1:" +
                          std::to_string(listener_.port()) + "/cap.dtd\">\n<alert/>";
  const uint64_t before = refused_external_loads();
  const Result<Alert> r = parse_cap_xml(doc);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "dtd_forbidden");
  expect_nothing_fetched(r, before);
}

// Defence in depth: even a caller that asks libxml2 for DTD loading and entity
// substitution gets nothing once harden_libxml2() has run; the loader refuses and
// counts.
TEST_F(Xxe, EntityLoaderRefusesEverything) {
  const std::string doc =
      "<!DOCTYPE a [<!ENTITY e SYSTEM \"file://" + secret_path_.string() + "\">]><a>&e;</a>";
  const uint64_t before = refused_external_loads();
  xmlDocPtr d = xmlReadMemory(doc.data(), static_cast<int>(doc.size()), "t.xml", nullptr,
                              XML_PARSE_NOENT | XML_PARSE_DTDLOAD | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
  std::string content;
  if (d) {
    xmlChar* c = xmlNodeGetContent(xmlDocGetRootElement(d));
    content = c ? reinterpret_cast<const char*>(c) : "";
    xmlFree(c);
    xmlFreeDoc(d);
  }
  EXPECT_EQ(content.find(marker_), std::string::npos);
  EXPECT_GT(refused_external_loads(), before);
}

}  // namespace
}  // namespace sirena::alerts
