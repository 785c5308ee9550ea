// ErrorKind at the edges: the HTTP status each kind is answered with and the exit code
// a process stops with. Both are public contracts (clients, scripts, --check-config),
// so every kind is pinned here.
#include "daemon/core/error.h"

#include <gtest/gtest.h>

#include <iterator>

#include "daemon/core/result.h"

namespace sirena {
namespace {

struct Edge {
  ErrorKind kind;
  int http;
  int exit;
};

// One row per kind; a kind added to the enum without a row here fails AllKindsListed.
constexpr Edge kEdges[] = {
    {ErrorKind::BadRequest, 400, 1},
    {ErrorKind::Unauthenticated, 401, 1},
    {ErrorKind::Forbidden, 403, 1},
    {ErrorKind::NotFound, 404, 1},
    {ErrorKind::MethodNotAllowed, 405, 1},
    {ErrorKind::NotAcceptable, 406, 1},
    {ErrorKind::Conflict, 409, 1},
    {ErrorKind::TooLarge, 413, 1},
    {ErrorKind::UnsupportedMediaType, 415, 1},
    {ErrorKind::Invalid, 422, 1},
    {ErrorKind::Internal, 500, 1},
    {ErrorKind::BadGateway, 502, 1},
    {ErrorKind::Unavailable, 503, 1},
    // Start-up kinds never reach a client: if one did, it is our bug, a 500.
    {ErrorKind::Config, 500, 2},
    {ErrorKind::Usage, 500, 2},
    {ErrorKind::Help, 500, 0},
};

TEST(ErrorKind, MapsToItsHttpStatusAndExitCode) {
  for (const Edge& e : kEdges) {
    SCOPED_TRACE(static_cast<int>(e.kind));
    EXPECT_EQ(http_status(e.kind), e.http);
    EXPECT_EQ(exit_code(e.kind), e.exit);
  }
}

TEST(ErrorKind, AllKindsListed) {
  // The kinds are consecutive from BadRequest to Help; the table lists each once, in order.
  ASSERT_EQ(std::size(kEdges), static_cast<size_t>(ErrorKind::Help) + 1);
  for (size_t i = 0; i < std::size(kEdges); ++i) EXPECT_EQ(static_cast<size_t>(kEdges[i].kind), i);
}

TEST(ErrorKind, MakeErrorKeepsKindAndCode) {
  Error e = make_error(ErrorKind::Unavailable, "redis_unavailable", "retry shortly", "redis.url");
  EXPECT_EQ(e.kind, ErrorKind::Unavailable);
  EXPECT_EQ(e.code, "redis_unavailable");
  EXPECT_EQ(e.message, "retry shortly");
  EXPECT_EQ(e.where, "redis.url");
  EXPECT_EQ(Error{}.kind, ErrorKind::Internal) << "an Error nobody classified is our bug";
}

}  // namespace
}  // namespace sirena
