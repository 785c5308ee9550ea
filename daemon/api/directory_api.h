// /v1/recipients and /v1/zones: the tenant's citizens and named zones.
//
// Import bodies are parsed and validated on libuv's thread pool (a 64 MiB NDJSON body
// is ~250k lines of work that must not stall the loop); each parsed slice is stored from
// the loop while the pool parses the next.
#pragma once

#include <uv.h>

#include "daemon/api/common.h"
#include "daemon/api/router.h"
#include "daemon/directory/directory.h"

namespace sirena::api {

struct ImportJob;
struct ImportSlice;

struct DirectoryApiOptions {
  size_t max_body_bytes = 1 << 20;     // PUT bodies
  size_t import_max_bytes = 64 << 20;  // one import request
  size_t max_zones_per_tenant = 1000;  // PUT /v1/zones refuses a new name beyond it
};

class DirectoryApi {
 public:
  DirectoryApi(uv_loop_t* loop, directory::Directory& dir, DirectoryApiOptions options);
  void register_routes(Router& router);

 private:
  using Res = std::shared_ptr<http::Responder>;
  // Each route's handler; the router has admitted `who` (router.h).
  void put_recipient(const http::Request& req, Res res, const Caller& who, const std::string& id);
  void get_recipient(const http::Request& req, Res res, const Caller& who, const std::string& id);
  void delete_recipient(const http::Request& req, Res res, const Caller& who, const std::string& id);
  void import(const http::Request& req, Res res, const Caller& who);
  void pump(ImportJob* job);
  void queue_slice(ImportSlice& slice);
  void write_slice(ImportJob* job, ImportSlice& slice);
  void put_zone(const http::Request& req, Res res, const Caller& who, const std::string& name);
  void get_zone(const http::Request& req, Res res, const Caller& who, const std::string& name);
  void delete_zone(const http::Request& req, Res res, const Caller& who, const std::string& name);
  void list_zones(const http::Request& req, Res res, const Caller& who);

  uv_loop_t* loop_;
  directory::Directory& dir_;
  DirectoryApiOptions options_;
};

}  // namespace sirena::api
