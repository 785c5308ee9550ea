#include "daemon/api/router.h"

namespace sirena::api {
namespace {

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '/') {
      ++i;
      continue;
    }
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    out.push_back(path.substr(i, j - i));
    i = j;
  }
  return out;
}

}  // namespace

void Router::add(std::string method, std::string pattern, RouteHandler handler) {
  Route r{std::move(method), pattern, {}, std::move(handler)};
  for (auto s : split_path(pattern)) r.segments.emplace_back(s);
  routes_.push_back(std::move(r));
}

void Router::dispatch(const http::Request& req, std::shared_ptr<http::Responder> res) const {
  auto segs = split_path(req.path);
  bool path_matched = false;
  for (const auto& r : routes_) {
    if (r.segments.size() != segs.size()) continue;
    Params params;
    bool ok = true;
    for (size_t i = 0; i < segs.size() && ok; ++i) {
      const auto& s = r.segments[i];
      if (s.size() > 2 && s.front() == '{' && s.back() == '}')
        params.emplace_back(segs[i]);
      else
        ok = s == segs[i];
    }
    if (!ok) continue;
    path_matched = true;
    if (r.method != req.method && !(r.method == "GET" && req.method == "HEAD")) continue;
    res->set_route(r.pattern);
    r.handler(req, std::move(res), params);
    return;
  }
  if (path_matched) {
    res->send_error(make_error(405, "method_not_allowed",
                               std::string(req.method) + " is not allowed on " + std::string(req.path)));
  } else {
    res->send_error(make_error(404, "no_such_route", "no API route " + std::string(req.path)));
  }
}

}  // namespace sirena::api
