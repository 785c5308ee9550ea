#include "daemon/api/dlr_api.h"

#include <openssl/crypto.h>

#include <charconv>

#include "daemon/api/common.h"
#include "daemon/core/log.h"
#include "daemon/dispatch/dispatcher.h"
#include "daemon/metrics/metrics.h"

namespace sirena::api {
namespace {

bool same_secret(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

const char* type_name(int type) {
  if (type & dispatch::kDlrDelivered) return "delivered";
  if (type & dispatch::kDlrUndelivered) return "undelivered";
  if (type & dispatch::kDlrSmscRejected) return "smsc_rejected";
  if (type & dispatch::kDlrSmscAccepted) return "smsc_accepted";
  if (type & dispatch::kDlrBuffered) return "buffered";
  return "other";
}

}  // namespace

void DlrApi::register_routes(Router& router) {
  for (const char* method : {"GET", "POST"})
    router.add(method, "/v1/dlr/{gateway}", Access::open("dlr_secret"),
               [this](const http::Request& req, auto res, const Call& c) {
                 report(req, std::move(res), c.params[0]);
               });
}

void DlrApi::report(const http::Request& req, std::shared_ptr<http::Responder> res,
                    const std::string& gateway) {
  auto secret = secrets_(gateway);
  if (!secret)
    return res->send_error(make_error(ErrorKind::NotFound, "no_such_gateway",
                                      "no SMS gateway named \"" + gateway + "\" is configured"));
  if (secret->empty())
    return res->send_error(make_error(ErrorKind::Forbidden, "dlr_disabled",
                                      "set gateways." + gateway + ".dlr_secret to accept delivery reports"));
  // Kannel calls back with GET; other providers may POST a form.
  http::Request params = req;
  if (req.method == "POST" && req.query.empty()) params.query = req.body;
  auto given = params.query_param("secret");
  std::string presented = given ? *given : std::string(req.header("x-sirena-dlr-secret").value_or(""));
  if (!same_secret(presented, *secret)) {
    metrics_.sms_dlr(gateway, "-", "unauthorized").Increment();
    return res->send_error(make_error(ErrorKind::Unauthenticated, "bad_dlr_secret",
                                      "the secret does not match gateways." + gateway + ".dlr_secret"));
  }
  std::string fields[4];
  const char* names[4] = {"alert", "t", "r", "to"};
  for (int k = 0; k < 4; ++k) {
    auto v = params.query_param(names[k]);
    if (!v || v->empty())
      return res->send_error(make_error(ErrorKind::BadRequest, "missing_parameter",
                                        std::string("the report has no \"") + names[k] + "\"", names[k]));
    fields[k] = *v;
  }
  auto type_text = params.query_param("type").value_or("");
  int type = 0;
  auto [end, ec] = std::from_chars(type_text.data(), type_text.data() + type_text.size(), type);
  if (ec != std::errc() || end != type_text.data() + type_text.size() || type <= 0)
    return res->send_error(make_error(ErrorKind::BadRequest, "invalid_parameter",
                                      "type must be Kannel's DLR type (1, 2, 4, 8 or 16)", "type"));
  // The number as sent (E.164); a '+' may come back unescaped, i.e. as a space.
  std::string_view raw = fields[3];
  raw.remove_prefix(std::min(raw.size(), raw.find_first_not_of(' ')));
  if (raw.empty())
    return res->send_error(
        make_error(ErrorKind::BadRequest, "missing_parameter", "the report has no number", "to"));
  std::string number = raw.front() == '+' ? std::string(raw) : "+" + std::string(raw);
  dispatcher_.delivery_report(fields[1], fields[0], fields[2], number, type,
                              [this, res, gateway, type](Result<std::string> r) {
                                if (!r) return res->send_error(r.error());
                                metrics_.sms_dlr(gateway, type_name(type), *r).Increment();
                                // Counted in sirena_sms_dlr_total; a flood of them must not flood the log.
                                if (*r == "unknown")
                                  log::debug("dlr_unknown_reference", {{"gateway", gateway}});
                                res->send_json(200, dump({{"result", *r}}));
                              });
}

}  // namespace sirena::api
