#define H2O_USE_LIBUV 1
#include "daemon/http/server.h"

#include <h2o.h>
#include <h2o/socket/uv-binding.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <prometheus/counter.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "daemon/core/log.h"
#include "daemon/core/number.h"
#include "daemon/core/reason_phrase.h"
#include "daemon/metrics/metrics.h"
#include "daemon/uv/handle.h"

namespace sirena::http {

// Lives in the request's memory pool; h2o calls its dispose when the request dies
// (response finished or client gone), which detaches the Responder.
struct RequestGuard {
  Responder* responder;
};

// The h2o generator of a streamed response; lives in the request's pool.
struct StreamGenerator {
  h2o_generator_t super;
  Responder* owner;
};

namespace {

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%' && i + 2 < s.size() && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hexval(s[i + 1]) * 16 + hexval(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

bool lower_equals(std::string_view a, std::string_view lower) {
  return a.size() == lower.size() && std::equal(a.begin(), a.end(), lower.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == y;
         });
}

// How many times the HTTP/1 request head in `head` (which starts with the request line)
// carries Content-Length and Transfer-Encoding. h2o 2.2.5 keeps neither among
// req->headers (it consumes them to frame the body), so they are counted here from the
// bytes h2o parsed. nullopt when `head` does not start with `method` + ' ' (then h2o's
// buffer is not laid out as expected, and nothing is judged).
struct FramingFields {
  int content_length = 0;
  int transfer_encoding = 0;
};
std::optional<FramingFields> count_framing_fields(std::string_view head, std::string_view method) {
  if (head.size() <= method.size() || head.compare(0, method.size(), method) != 0 ||
      head[method.size()] != ' ')
    return std::nullopt;
  FramingFields f;
  size_t pos = head.find('\n');
  while (pos != std::string_view::npos && pos + 1 < head.size()) {
    size_t start = pos + 1;
    size_t end = head.find('\n', start);
    std::string_view line =
        head.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) return f;  // end of the head
    std::string_view name = line.substr(0, line.find(':'));
    if (lower_equals(name, "content-length")) ++f.content_length;
    if (lower_equals(name, "transfer-encoding")) ++f.transfer_encoding;
    pos = end;
  }
  return std::nullopt;  // no end of head in the buffer
}

}  // namespace

std::optional<std::string_view> Request::header(std::string_view name) const {
  const h2o_headers_t& hs = raw->headers;
  for (size_t i = 0; i < hs.size; ++i) {
    const h2o_header_t& h = hs.entries[i];
    if (h.name->len == name.size() && std::memcmp(h.name->base, name.data(), name.size()) == 0)
      return std::string_view(h.value.base, h.value.len);
  }
  return std::nullopt;
}

std::optional<std::string> Request::query_param(std::string_view name) const {
  std::string_view q = query;
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view pair = q.substr(0, amp);
    size_t eq = pair.find('=');
    if (percent_decode(pair.substr(0, eq)) == name)
      return eq == std::string_view::npos ? std::string() : percent_decode(pair.substr(eq + 1));
    if (amp == std::string_view::npos) break;
    q = q.substr(amp + 1);
  }
  return std::nullopt;
}

Responder::Responder(st_h2o_req_t* req, const Clock& clock, metrics::Metrics& metrics)
    : req_(req), clock_(clock), metrics_(metrics), started_ns_(clock.mono_ns()) {
  guard_ = static_cast<RequestGuard*>(h2o_mem_alloc_shared(&req->pool, sizeof(RequestGuard), [](void* p) {
    auto* g = static_cast<RequestGuard*>(p);
    if (Responder* r = g->responder) {
      r->req_ = nullptr;
      r->guard_ = nullptr;
      r->stream_ = nullptr;
      // Gone before an answer: the client reset the stream or closed the connection.
      if (!r->sent_ && r->on_abandoned_) r->on_abandoned_();
    }
  }));
  guard_->responder = this;
}

Responder::~Responder() {
  if (req_ && !sent_) {
    // A handler dropped its responder without answering: never leave a client hanging.
    metrics_.unexpected("http_no_response").Increment();
    send_error(
        make_error(ErrorKind::Internal, "internal_error", "the request was not answered; this is a bug"));
  }
  if (guard_) guard_->responder = nullptr;
  if (stream_ && req_) {
    // Dropped mid-stream: finish the response so the client is not left waiting.
    stream_->owner = nullptr;
    if (!stream_ending_ && !stream_busy_) h2o_send(req_, nullptr, 0, H2O_SEND_STATE_FINAL);
  }
}

void Responder::send(int status, std::string_view content_type, std::string_view body,
                     const std::vector<std::pair<std::string, std::string>>& headers) {
  if (sent_) return;
  sent_ = true;
  metrics_.http_request(route_, status).Increment();
  metrics_.http_duration(route_).Observe(static_cast<double>(clock_.mono_ns() - started_ns_) / 1e9);
  if (!req_) return;  // the client went away
  h2o_req_t* req = req_;
  req->res.status = status;
  req->res.reason = reason_phrase(status);
  // Without a length, h2o 2.2.5 chunks only 200 answers and closes the connection after
  // any other status (every 202, 4xx, 5xx): set it so keep-alive survives.
  req->res.content_length = body.size();
  if (!content_type.empty()) {
    h2o_iovec_t ct = h2o_strdup(&req->pool, content_type.data(), content_type.size());
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, nullptr, ct.base, ct.len);
  }
  for (const auto& [name, value] : headers) {
    h2o_iovec_t n = h2o_strdup(&req->pool, name.data(), name.size());
    h2o_iovec_t v = h2o_strdup(&req->pool, value.data(), value.size());
    h2o_add_header_by_str(&req->pool, &req->res.headers, n.base, n.len, 1, nullptr, v.base, v.len);
  }
  h2o_send_inline(req, body.data(), body.size());
}

void Responder::start_stream(int status, std::string_view content_type) {
  if (sent_) return;
  sent_ = true;
  metrics_.http_request(route_, status).Increment();
  if (!req_) return;
  h2o_req_t* req = req_;
  req->res.status = status;
  req->res.reason = reason_phrase(status);
  h2o_iovec_t ct = h2o_strdup(&req->pool, content_type.data(), content_type.size());
  h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, nullptr, ct.base, ct.len);
  h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, nullptr, H2O_STRLIT("no-cache"));
  stream_ = static_cast<StreamGenerator*>(h2o_mem_alloc_pool(&req->pool, sizeof(StreamGenerator)));
  stream_->owner = this;
  stream_->super.proceed = [](h2o_generator_t* g, h2o_req_t*) {
    auto* sg = reinterpret_cast<StreamGenerator*>(g);
    if (!sg->owner) return;
    sg->owner->stream_busy_ = false;
    sg->owner->flush_stream();
  };
  stream_->super.stop = [](h2o_generator_t* g, h2o_req_t*) {
    reinterpret_cast<StreamGenerator*>(g)->owner = nullptr;
  };
  h2o_start_response(req, &stream_->super);
  // An empty first write sends the headers now, so the client sees the stream open.
  stream_busy_ = true;
  h2o_send(req, nullptr, 0, H2O_SEND_STATE_IN_PROGRESS);
}

void Responder::write(std::string_view chunk) {
  if (!req_ || !stream_ || stream_ending_) return;
  pending_chunks_.emplace_back(chunk);
  flush_stream();
}

void Responder::end() {
  if (!req_ || !stream_ || stream_ending_) return;
  stream_ending_ = true;
  flush_stream();
}

void Responder::flush_stream() {
  if (!req_ || !stream_ || stream_busy_) return;
  h2o_req_t* req = req_;
  if (!pending_chunks_.empty()) {
    std::string all;
    for (auto& c : pending_chunks_) all += c;
    pending_chunks_.clear();
    h2o_iovec_t buf = h2o_strdup(&req->pool, all.data(), all.size());
    stream_busy_ = true;
    h2o_send(req, &buf, 1, stream_ending_ ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
    return;
  }
  if (stream_ending_) {
    stream_busy_ = true;
    h2o_send(req, nullptr, 0, H2O_SEND_STATE_FINAL);
  }
}

void Responder::send_json(int status, const std::string& json_text) {
  send(status, "application/json", json_text);
}

void Responder::send_error(const Error& e) {
  nlohmann::json body = {{"error", {{"code", e.code}, {"message", e.message}}}};
  if (!e.where.empty()) body["error"]["where"] = e.where;
  std::vector<std::pair<std::string, std::string>> headers;
  if (e.kind == ErrorKind::Unavailable) headers.emplace_back("retry-after", "1");
  if (e.kind == ErrorKind::Unauthenticated) headers.emplace_back("www-authenticate", "Bearer");
  send(http_status(e.kind), "application/json",
       body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), headers);
}

struct Server::Impl {
  struct RouteHandler {
    h2o_handler_t super;
    Server::Impl* impl;
  };

  // One accepted connection: its libuv handle (h2o owns its `data`) and how many of its
  // requests were abandoned in the current 10 s window. Freed in the handle's close callback.
  struct ConnSlot {
    uv_tcp_t tcp;
    Impl* impl;
    int fd = -1;
    int64_t window_start_ms = 0;
    int64_t abandoned = 0;
    bool shut = false;
  };
  static constexpr int64_t kResetWindowMs = 10'000;

  // A request h2o handed over, waiting for the check phase (see server.h).
  struct Pending {
    Request request;
    std::shared_ptr<Responder> responder;
  };

  uv_loop_t* loop;
  config::HttpConfig cfg;
  const Clock& clock;
  metrics::Metrics& metrics;
  Handler handler;
  Server* owner;
  h2o_globalconf_t globalconf{};
  h2o_context_t ctx{};
  h2o_accept_ctx_t accept_ctx{};
  SSL_CTX* ssl_ctx = nullptr;
  uv::Handle<uv_tcp_t> listener;
  bool context_ready = false;
  std::unordered_map<int, ConnSlot*> conns;  // by file descriptor
  std::vector<Pending> pending;
  uv::Handle<uv_check_t> check;
  uv::Handle<uv_idle_t> idle;  // active while `pending` is not empty: the poll must not block
  prometheus::Counter* abandoned_queued;
  prometheus::Counter* abandoned_running;
  prometheus::Counter* closed_for_resets;
  prometheus::Counter* refused_duplicate_length;
  prometheus::Counter* refused_length_and_chunked;
  prometheus::Counter* refused_duplicate_authorization;

  Impl(uv_loop_t* l, const config::HttpConfig& c, const Clock& ck, metrics::Metrics& m, Handler h, Server* o)
      : loop(l), cfg(c), clock(ck), metrics(m), handler(std::move(h)), owner(o) {
    // The server owns its counters; the registry only collects them.
    auto& abandoned = prometheus::BuildCounter()
                          .Name("sirena_http_abandoned_total")
                          .Help(
                              "Requests the client reset or dropped before the answer; stage=queued: before "
                              "any handler ran (no work done), running: while it worked")
                          .Register(m.registry());
    abandoned_queued = &abandoned.Add({{"stage", "queued"}});
    abandoned_running = &abandoned.Add({{"stage", "running"}});
    closed_for_resets = &prometheus::BuildCounter()
                             .Name("sirena_http_connections_closed_total")
                             .Help(
                                 "Connections the server closed: reason=resets (more abandoned requests than "
                                 "http.limits.max_resets_per_connection in 10 s)")
                             .Register(m.registry())
                             .Add({{"reason", "resets"}});
    auto& refused = prometheus::BuildCounter()
                        .Name("sirena_http_ambiguous_requests_total")
                        .Help("Requests refused with 400 for ambiguous framing or credentials")
                        .Register(m.registry());
    refused_duplicate_length = &refused.Add({{"reason", "duplicate_content_length"}});
    refused_length_and_chunked = &refused.Add({{"reason", "content_length_and_transfer_encoding"}});
    refused_duplicate_authorization = &refused.Add({{"reason", "duplicate_authorization"}});
  }

  ConnSlot* slot_of(h2o_req_t* req) {
    if (!req->conn->callbacks->get_socket) return nullptr;
    h2o_socket_t* sock = req->conn->callbacks->get_socket(req->conn);
    if (!sock) return nullptr;
    auto it = conns.find(h2o_socket_get_fd(sock));
    return it == conns.end() ? nullptr : it->second;
  }

  // Counts an abandoned request against its connection; past the limit the connection is
  // shut down (h2o then reads EOF and closes it, disposing of what it still holds).
  void abandoned(ConnSlot* slot, bool handled) {
    (handled ? abandoned_running : abandoned_queued)->Increment();
    if (!slot || slot->shut) return;
    int64_t now = clock.now_ms();
    if (now - slot->window_start_ms > kResetWindowMs) {
      slot->window_start_ms = now;
      slot->abandoned = 0;
    }
    if (++slot->abandoned <= cfg.max_resets_per_connection) return;
    slot->shut = true;
    closed_for_resets->Increment();
    log::warn(
        "http_connection_closed",
        {{"reason", "resets"}, {"abandoned", slot->abandoned}, {"limit", cfg.max_resets_per_connection}});
    shutdown(slot->fd, SHUT_RDWR);
  }

  // Ambiguous requests (server.h): nullopt when the request may go on.
  std::optional<Error> ambiguity(h2o_req_t* req, std::string_view method) {
    int authorization = 0;
    for (size_t i = 0; i < req->headers.size; ++i)
      if (req->headers.entries[i].name == &H2O_TOKEN_AUTHORIZATION->buf) ++authorization;
    if (authorization > 1) {
      refused_duplicate_authorization->Increment();
      return make_error(ErrorKind::BadRequest, "duplicate_header",
                        "send one Authorization header, not " + std::to_string(authorization),
                        "authorization");
    }
    if (req->version >= 0x200) return std::nullopt;  // HTTP/2 frames bodies itself (RFC 9113 §8.1.1)
    h2o_socket_t* sock =
        req->conn->callbacks->get_socket ? req->conn->callbacks->get_socket(req->conn) : nullptr;
    if (!sock || !sock->input) return std::nullopt;
    // h2o 2.2.5 keeps the request being served at the start of the socket's input buffer
    // (it consumes it only once the response is done); the head is checked from there.
    auto fields = count_framing_fields(std::string_view(sock->input->bytes, sock->input->size), method);
    if (!fields) {
      metrics.unexpected("http1_head_not_found").Increment();
      return std::nullopt;
    }
    if (fields->content_length > 1) {
      refused_duplicate_length->Increment();
      return make_error(ErrorKind::BadRequest, "ambiguous_framing",
                        "send one Content-Length header (RFC 9112 §6.3)", "content-length");
    }
    if (fields->content_length > 0 && fields->transfer_encoding > 0) {
      refused_length_and_chunked->Increment();
      return make_error(ErrorKind::BadRequest, "ambiguous_framing",
                        "send Content-Length or Transfer-Encoding, not both (RFC 9112 §6.1)",
                        "transfer-encoding");
    }
    return std::nullopt;
  }

  static int on_req(h2o_handler_t* self, h2o_req_t* req) {
    auto* impl = reinterpret_cast<RouteHandler*>(self)->impl;
    Request r;
    r.raw = req;
    r.method = std::string_view(req->method.base, req->method.len);
    std::string_view full(req->path.base, req->path.len);
    if (req->query_at != SIZE_MAX) {
      r.path = full.substr(0, req->query_at);
      r.query = full.substr(req->query_at + 1);
    } else {
      r.path = full;
    }
    if (req->entity.base) r.body = std::string_view(req->entity.base, req->entity.len);
    sockaddr_storage ss{};
    socklen_t len = req->conn->callbacks->get_peername(req->conn, reinterpret_cast<sockaddr*>(&ss));
    if (len > 0) {
      char buf[INET6_ADDRSTRLEN] = {0};
      if (ss.ss_family == AF_INET)
        uv_ip4_name(reinterpret_cast<sockaddr_in*>(&ss), buf, sizeof buf);
      else if (ss.ss_family == AF_INET6)
        uv_ip6_name(reinterpret_cast<sockaddr_in6*>(&ss), buf, sizeof buf);
      r.remote = buf;
    }
    ++impl->owner->in_flight_;
    // The in-flight count drops when the responder goes away (answered or abandoned).
    auto* owner = impl->owner;
    std::shared_ptr<Responder> responder(new Responder(req, impl->clock, impl->metrics),
                                         [owner](Responder* p) {
                                           delete p;
                                           --owner->in_flight_;
                                         });
    if (auto bad = impl->ambiguity(req, r.method)) {
      // What follows this head on the connection cannot be trusted: close it after the answer.
      req->http1_is_persistent = 0;
      responder->send_error(*bad);
      return 0;
    }
    Responder* raw = responder.get();
    ConnSlot* slot = impl->slot_of(req);
    raw->on_abandoned([impl, slot, raw] { impl->abandoned(slot, raw->handled()); });
    if (impl->pending.empty()) uv_idle_start(impl->idle.get(), [](uv_idle_t*) {});
    impl->pending.push_back(Pending{std::move(r), std::move(responder)});
    return 0;
  }

  // The check phase: runs the requests h2o handed over in this loop turn, except those
  // whose client has reset them meanwhile.
  void run_pending() {
    std::vector<Pending> batch;
    batch.swap(pending);
    for (auto& p : batch) {
      if (!p.responder->alive()) continue;  // counted as abandoned (queued) when h2o disposed of it
      p.responder->set_handled();
      handler(p.request, std::move(p.responder));
    }
    if (pending.empty()) uv_idle_stop(idle.get());
  }

  static void on_connection(uv_stream_t* listener, int status) {
    auto* impl = static_cast<Impl*>(listener->data);
    if (status != 0) {
      impl->metrics.unexpected("http_accept_error").Increment();
      return;
    }
    auto* slot = new ConnSlot;
    slot->impl = impl;
    uv_tcp_init(impl->loop, &slot->tcp);
    auto close_slot = [](uv_handle_t* h) {
      auto* s = reinterpret_cast<ConnSlot*>(h);
      if (s->fd >= 0) {
        auto it = s->impl->conns.find(s->fd);
        if (it != s->impl->conns.end() && it->second == s) s->impl->conns.erase(it);
      }
      delete s;
    };
    if (uv_accept(listener, reinterpret_cast<uv_stream_t*>(&slot->tcp)) != 0) {
      uv_close(reinterpret_cast<uv_handle_t*>(&slot->tcp), close_slot);
      return;
    }
    uv_os_fd_t fd;
    if (uv_fileno(reinterpret_cast<uv_handle_t*>(&slot->tcp), &fd) == 0) {
      slot->fd = fd;
      impl->conns[fd] = slot;
    }
    uv_tcp_nodelay(&slot->tcp, 1);
    h2o_socket_t* sock = h2o_uv_socket_create(reinterpret_cast<uv_stream_t*>(&slot->tcp), close_slot);
    h2o_accept(&impl->accept_ctx, sock);
  }
};

Server::Server(uv_loop_t* loop, const config::HttpConfig& cfg, const Clock& clock, metrics::Metrics& metrics,
               Handler handler)
    : impl_(std::make_unique<Impl>(loop, cfg, clock, metrics, std::move(handler), this)) {}

Server::~Server() {
  if (impl_->ssl_ctx) SSL_CTX_free(impl_->ssl_ctx);
}

Status Server::start(size_t max_body_bytes) {
  Impl& i = *impl_;
  h2o_config_init(&i.globalconf);
  i.globalconf.max_request_entity_size = max_body_bytes;
  // Requests run at once per HTTP/2 connection; h2o keeps the others waiting (and refuses
  // streams beyond its advertised SETTINGS_MAX_CONCURRENT_STREAMS of 100).
  i.globalconf.http2.max_concurrent_requests_per_connection =
      static_cast<size_t>(i.cfg.max_concurrent_streams);
  h2o_hostconf_t* host =
      h2o_config_register_host(&i.globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
  h2o_pathconf_t* path = h2o_config_register_path(host, "/", 0);
  auto* rh = reinterpret_cast<Impl::RouteHandler*>(h2o_create_handler(path, sizeof(Impl::RouteHandler)));
  rh->super.on_req = &Impl::on_req;
  rh->impl = &i;
  h2o_context_init(&i.ctx, i.loop, &i.globalconf);
  i.context_ready = true;
  i.check.init(i.loop, &i, uv_check_init);
  uv_check_start(i.check.get(), [](uv_check_t* h) { static_cast<Impl*>(h->data)->run_pending(); });
  uv_unref(i.check.base());  // runs every turn; never keeps the loop alive alone
  i.idle.init(i.loop, &i, uv_idle_init);
  i.accept_ctx.ctx = &i.ctx;
  i.accept_ctx.hosts = i.globalconf.hosts;

  if (!i.cfg.tls_cert.empty()) {
    i.ssl_ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_min_proto_version(i.ssl_ctx, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(i.ssl_ctx, i.cfg.tls_cert.c_str()) != 1)
      return make_error(ErrorKind::Config, "invalid_config", "http.tls.cert: cannot load " + i.cfg.tls_cert,
                        "http.tls.cert");
    if (SSL_CTX_use_PrivateKey_file(i.ssl_ctx, i.cfg.tls_key.c_str(), SSL_FILETYPE_PEM) != 1)
      return make_error(ErrorKind::Config, "invalid_config", "http.tls.key: cannot load " + i.cfg.tls_key,
                        "http.tls.key");
    static char h2[] = "h2", h1[] = "http/1.1";
    static const h2o_iovec_t protocols[] = {{h2, 2}, {h1, 8}, {nullptr, 0}};
    h2o_ssl_register_alpn_protocols(i.ssl_ctx, protocols);
    i.accept_ctx.ssl_ctx = i.ssl_ctx;
  }

  std::string listen = i.cfg.listen;
  auto colon = listen.rfind(':');
  std::string host_part = listen.substr(0, colon);
  if (host_part.size() >= 2 && host_part.front() == '[')
    host_part = host_part.substr(1, host_part.size() - 2);
  auto parsed_port = parse_number<int>(std::string_view(listen).substr(colon + 1), 0, 65535);
  if (!parsed_port)
    return make_error(ErrorKind::Config, "invalid_config", "http.listen: \"" + listen + "\" is not IP:PORT",
                      "http.listen");
  int port = *parsed_port;
  sockaddr_storage addr{};
  if (uv_ip4_addr(host_part.c_str(), port, reinterpret_cast<sockaddr_in*>(&addr)) != 0 &&
      uv_ip6_addr(host_part.c_str(), port, reinterpret_cast<sockaddr_in6*>(&addr)) != 0)
    return make_error(ErrorKind::Config, "invalid_config", "http.listen: \"" + listen + "\" is not IP:PORT",
                      "http.listen");

  i.listener.init(i.loop, &i, uv_tcp_init);
  int rc = uv_tcp_bind(i.listener.get(), reinterpret_cast<sockaddr*>(&addr), 0);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(i.listener.get()), 1024, &Impl::on_connection);
  if (rc != 0) {
    i.listener.reset();
    return make_error(ErrorKind::Config, "listen_failed", "http.listen " + listen + ": " + uv_strerror(rc),
                      "http.listen");
  }
  sockaddr_storage bound{};
  int namelen = sizeof bound;
  uv_tcp_getsockname(i.listener.get(), reinterpret_cast<sockaddr*>(&bound), &namelen);
  port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  log::info("http_listening", {{"address", host_part}, {"port", port_}, {"tls", i.ssl_ctx != nullptr}});
  return Ok{};
}

void Server::stop_accepting() {
  Impl& i = *impl_;
  i.listener.reset();
  if (i.context_ready) h2o_context_request_shutdown(&i.ctx);
}

}  // namespace sirena::http
