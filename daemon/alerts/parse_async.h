// Alert intake off the event loop: the CAP XML or JSON parse of a posted body runs on
// libuv's thread pool, so a costly body (a megabyte of polygons, a schema check)
// delays no other request and no dispatch.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <string>

#include "daemon/alerts/alert.h"
#include "daemon/alerts/cap_parser.h"
#include "daemon/core/result.h"

namespace sirena::alerts {

enum class AlertFormat { CapXml, Json };

using ParseDone = std::function<void(Result<Alert>&&)>;
// More work on the alert while still on the pool thread, after a successful parse (the
// API builds the alert's geometry there). It must touch nothing the loop uses.
using AfterParse = std::function<void(const Alert&)>;

// Parses `body` with parse_cap_xml or parse_alert_json on `loop`'s thread pool and
// calls `done` on the loop's thread with the result (never from inside this call);
// `after`, when given, runs on the worker right after a successful parse.
// The body is shared with the worker thread and must not change. Call on the loop's
// thread; it installs the libxml2 hardening there first (harden_libxml2).
void parse_alert_async(uv_loop_t* loop, AlertFormat format, std::shared_ptr<const std::string> body,
                       const ParseLimits& limits, ParseDone done, AfterParse after = {});

}  // namespace sirena::alerts
