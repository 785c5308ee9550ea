// What kind of failure an Error is, and how each edge of a process reports it.
//
// Code below the edges says what went wrong and nothing about how it is reported: it
// returns an Error carrying an ErrorKind. Only the edges translate a kind, each in one
// place: the HTTP layer answers with http_status(kind) (daemon/http/server.cc,
// Responder::send_error), and a process's main() exits with exit_code(kind). The
// snake_case Error::code stays the precise, public reason; a kind groups the codes
// that a client or a shell script treats alike.
//
// Header-only and dependency-free, so that every layer and every main() can use it.
#pragma once

namespace sirena {

enum class ErrorKind {
  // The request cannot be read: unparsable syntax (malformed XML or JSON, invalid UTF-8),
  // a bad query parameter or cursor, ambiguous HTTP framing. HTTP 400. The gateways'
  // URL and option checks use it too (a caller passed something unusable).
  BadRequest,
  // No credentials, or credentials nobody knows (a missing or unknown API key, a wrong
  // DLR secret). HTTP 401, answered with "WWW-Authenticate: Bearer".
  Unauthenticated,
  // The caller is known but may not do this: its role, its tenant's allowed senders,
  // the two-person rule, a feature switched off for it. HTTP 403.
  Forbidden,
  // The thing named does not exist, or belongs to another tenant (which must not be
  // told apart from "does not exist"), or there is no such route. HTTP 404.
  NotFound,
  // The route exists but not with this method. HTTP 405.
  MethodNotAllowed,
  // The resource exists but not in the representation asked for (the CAP bytes of an
  // alert that was posted as JSON). HTTP 406.
  NotAcceptable,
  // The request is valid but the resource's state forbids it now (approving an alert
  // that is not pending approval; starting a pool twice). HTTP 409.
  Conflict,
  // The body is over the configured size limit. HTTP 413. (Per-field and per-document
  // limits found while parsing, such as too_deep, are Invalid.)
  TooLarge,
  // The Content-Type is not one the route accepts. HTTP 415.
  UnsupportedMediaType,
  // Well-formed but semantically wrong: a CAP schema violation, a bad field, an
  // invalid recipient or zone, a document over a parsing limit. HTTP 422.
  Invalid,
  // A bug or a broken invariant on our side: an unexpected storage reply, a failed
  // allocation or signature, a request nobody answered. HTTP 500.
  Internal,
  // An upstream service answered wrongly or not at all (e.g. the FCM token server).
  // HTTP 502.
  BadGateway,
  // Temporarily unable; the same request may succeed later: Redis is down or behind,
  // the directory is still loading, the daemon is shutting down. HTTP 503, answered
  // with "Retry-After: 1".
  Unavailable,
  // The configuration is invalid, or start-up failed because of it (a file that cannot
  // be read, an address that cannot be bound, a key that cannot be loaded). Exit code 2.
  Config,
  // The command line is wrong (an unknown option, a malformed value). Exit code 2.
  Usage,
  // The command line asked for help; Error::message holds the text. Exit code 0.
  Help,
};

// The HTTP status the API answers with. Config, Usage and Help only happen at start-up
// and never reach a client; if one did, it would be our bug, hence 500.
constexpr int http_status(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::BadRequest:
      return 400;
    case ErrorKind::Unauthenticated:
      return 401;
    case ErrorKind::Forbidden:
      return 403;
    case ErrorKind::NotFound:
      return 404;
    case ErrorKind::MethodNotAllowed:
      return 405;
    case ErrorKind::NotAcceptable:
      return 406;
    case ErrorKind::Conflict:
      return 409;
    case ErrorKind::TooLarge:
      return 413;
    case ErrorKind::UnsupportedMediaType:
      return 415;
    case ErrorKind::Invalid:
      return 422;
    case ErrorKind::Internal:
      return 500;
    case ErrorKind::BadGateway:
      return 502;
    case ErrorKind::Unavailable:
      return 503;
    case ErrorKind::Config:
    case ErrorKind::Usage:
    case ErrorKind::Help:
      return 500;
  }
  return 500;  // not reached: -Wswitch makes every kind appear above
}

// The exit code of a process that stops on this error: 0 for Help, 2 for a bad
// configuration or command line (what `sirenad --check-config` and scripts test for),
// 1 for any other failure.
constexpr int exit_code(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::Help:
      return 0;
    case ErrorKind::Config:
    case ErrorKind::Usage:
      return 2;
    default:
      return 1;
  }
}

}  // namespace sirena
