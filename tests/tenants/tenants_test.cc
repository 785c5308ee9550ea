#include "daemon/tenants/tenants.h"

#include <gtest/gtest.h>

namespace sirena::tenants {
namespace {

Tenants make() {
  std::map<std::string, config::Tenant> m;
  config::Tenant t;
  t.id = "soliera";
  t.senders = {"pc@soliera.it", "*@comune.soliera.mo.it"};
  t.keys = {{"op", config::Role::Operator, config::sha256_hex("k-op")},
            {"ap", config::Role::Approver, config::sha256_hex("k-ap")},
            {"app", config::Role::CitizenApp, config::sha256_hex("k-app")}};
  m["soliera"] = t;
  return Tenants(m);
}

TEST(Tenants, AuthenticatesBearerKeysByHash) {
  auto t = make();
  auto p = t.authenticate("Bearer k-op");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->tenant->id, "soliera");
  EXPECT_EQ(p->key->id, "op");
  EXPECT_TRUE(t.authenticate("bearer k-op")) << "the scheme is case-insensitive";
  EXPECT_EQ(t.authenticate(std::nullopt).error().code, "missing_api_key");
  EXPECT_EQ(t.authenticate("Basic abc").error().code, "missing_api_key");
  EXPECT_EQ(t.authenticate("Bearer nope").error().code, "invalid_api_key");
  EXPECT_EQ(t.authenticate("Bearer nope").error().kind, ErrorKind::Unauthenticated);
}

TEST(Tenants, RolesAllowOnlyTheirActions) {
  auto t = make();
  auto op = *t.authenticate("Bearer k-op");
  auto ap = *t.authenticate("Bearer k-ap");
  auto app = *t.authenticate("Bearer k-app");
  EXPECT_TRUE(Tenants::authorize(op, Action::SubmitAlert));
  EXPECT_FALSE(Tenants::authorize(op, Action::ApproveAlert));
  EXPECT_TRUE(Tenants::authorize(ap, Action::ApproveAlert));
  EXPECT_FALSE(Tenants::authorize(ap, Action::SubmitAlert));
  EXPECT_EQ(Tenants::authorize(app, Action::ReadAlerts).error().kind, ErrorKind::Forbidden);
}

// The citizen-app key ships inside the public app: it may read or change nobody's data
// (issue 14 finding 4). Open311, its only use, has no /v1 route yet.
TEST(Tenants, CitizenAppKeyMayDoNoApiAction) {
  auto t = make();
  auto app = *t.authenticate("Bearer k-app");
  for (int a = 0; a <= static_cast<int>(Action::ReadZones); ++a) {
    auto action = static_cast<Action>(a);
    EXPECT_FALSE(Tenants::allows(config::Role::CitizenApp, action)) << to_string(action);
    auto e = Tenants::authorize(app, action);
    ASSERT_FALSE(e) << to_string(action);
    EXPECT_EQ(e.error().kind, ErrorKind::Forbidden);
    EXPECT_EQ(e.error().code, "forbidden_role");
    EXPECT_TRUE(Tenants::allows(config::Role::Admin, action)) << to_string(action);
  }
}

TEST(Tenants, SenderMustBeAllowed) {
  auto t = make();
  auto op = *t.authenticate("Bearer k-op");
  EXPECT_TRUE(Tenants::check_sender(op, "pc@soliera.it"));
  EXPECT_TRUE(Tenants::check_sender(op, "sindaco@comune.soliera.mo.it"));
  EXPECT_FALSE(Tenants::check_sender(op, "x@comune.soliera.mo.it.evil.org"));
  auto e = Tenants::check_sender(op, "someone@else.it");
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, "sender_not_allowed");
}

}  // namespace
}  // namespace sirena::tenants
