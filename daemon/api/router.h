// Maps "METHOD /path/with/{params}" to handlers and sets the metrics route label.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "daemon/http/server.h"

namespace sirena::api {

using Params = std::vector<std::string>;  // the {param} segments, in order
using RouteHandler = std::function<void(const http::Request&, std::shared_ptr<http::Responder>, const Params&)>;

class Router {
 public:
  // `pattern` is a path whose segments are literals or "{name}".
  void add(std::string method, std::string pattern, RouteHandler handler);
  // Answers 404 `no_such_route` or 405 `method_not_allowed` itself.
  void dispatch(const http::Request& req, std::shared_ptr<http::Responder> res) const;

 private:
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<std::string> segments;
    RouteHandler handler;
  };
  std::vector<Route> routes_;
};

}  // namespace sirena::api
