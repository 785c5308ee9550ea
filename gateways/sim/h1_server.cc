#include "gateways/sim/h1_server.h"

#include <h2o/socket/uv-binding.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

#include "daemon/core/reason_phrase.h"
#include "gateways/sim/listener.h"

namespace sirena::sim {

namespace {

constexpr size_t kMaxBody = 1 << 20;

std::string peer_key(h2o_conn_t* conn) {
  sockaddr_storage ss{};
  socklen_t len = conn->callbacks->get_peername(conn, reinterpret_cast<sockaddr*>(&ss));
  return std::string(reinterpret_cast<const char*>(&ss), len);
}

}  // namespace

// One accepted TCP connection; `tcp` comes first so the handle h2o closes is the Socket.
struct H1Server::Socket {
  uv_tcp_t tcp;
  H1Server* server;
  std::string peer;
};

// A request whose answer waits in the DelayQueue.
struct H1Server::Pending final : Deferred {
  H1Server* server = nullptr;
  h2o_req_t* req = nullptr;  // nullptr once h2o has disposed of the request
  struct Guard* guard = nullptr;
  Request request;
  Response response;
  void fire() override { server->answer(this); }
};

// Lives in the request's memory pool; h2o calls dispose when the request dies (answered
// or client gone), which detaches the Pending.
struct Guard {
  H1Server::Pending* pending;
};

H1Server::H1Server(uv_loop_t* loop, Simulator& sim, DelayQueue& delays, Mode mode)
    : loop_(loop), sim_(sim), delays_(delays), mode_(mode) {}

H1Server::~H1Server() {
  close();
  if (ssl_ctx_) SSL_CTX_free(ssl_ctx_);
}

void H1Server::dispose() {
  if (!context_ready_ || !idle()) return;  // h2o would free timers its connections still use
  context_ready_ = false;
  h2o_context_dispose(&ctx_);
  h2o_config_dispose(&globalconf_);
}

H1Server::Pending* H1Server::acquire() {
  if (free_.empty()) {
    pending_.push_back(std::make_unique<Pending>());
    pending_.back()->server = this;
    return pending_.back().get();
  }
  Pending* p = free_.back();
  free_.pop_back();
  return p;
}

void H1Server::release(Pending* p) {
  ++p->serial;
  p->req = nullptr;
  p->guard = nullptr;
  free_.push_back(p);
}

int H1Server::on_req(h2o_handler_t* self, h2o_req_t* req) {
  H1Server* server = reinterpret_cast<RouteHandler*>(self)->server;
  Pending* p = server->acquire();
  Request& r = p->request;
  r.clear();
  // Views into h2o's request, which lives until it is answered.
  r.method = std::string_view(req->method.base, req->method.len);
  std::string_view full(req->path.base, req->path.len);
  if (req->query_at != SIZE_MAX) {
    r.path = full.substr(0, req->query_at);
    r.query = full.substr(req->query_at + 1);
  } else {
    r.path = full;
  }
  for (size_t i = 0; i < req->headers.size; ++i) {
    const h2o_header_t& h = req->headers.entries[i];
    r.headers.push_back(
        HeaderView{std::string_view(h.name->base, h.name->len), std::string_view(h.value.base, h.value.len)});
  }
  if (req->entity.base) r.body = std::string_view(req->entity.base, req->entity.len);

  p->req = req;
  p->guard = static_cast<Guard*>(h2o_mem_alloc_shared(&req->pool, sizeof(Guard), [](void* g) {
    Pending* pending = static_cast<Guard*>(g)->pending;
    if (pending) pending->server->release(pending);  // the client went away first
  }));
  p->guard->pending = p;

  uint64_t delay_ms = 0;
  if (server->mode_ == Mode::Admin) {
    p->response.clear();
    if (!server->sim_.serve_admin(r, p->response)) {
      p->response.status = 404;
      p->response.body = "not found: the admin listener serves GET /stats and POST /reset\n";
    }
  } else if (server->sim_.serve(r, p->response, delay_ms) == Simulator::Verdict::Reset) {
    server->reset_connection(req);
    p->response.clear();
    p->response.status = 503;  // never reaches the client: the socket is shut down
  }
  if (delay_ms > 0)
    server->delays_.push(delay_ms, p);
  else
    server->answer(p);
  return 0;
}

void H1Server::answer(Pending* p) {
  h2o_req_t* req = p->req;
  if (!req) return;
  p->guard->pending = nullptr;  // answered: the pool's dispose must not release it again
  const Response& r = p->response;
  req->res.status = r.status;
  req->res.reason = reason_phrase(r.status);
  for (const Header& h : r.headers) {
    h2o_iovec_t n = h2o_strdup(&req->pool, h.name.data(), h.name.size());
    h2o_iovec_t v = h2o_strdup(&req->pool, h.value.data(), h.value.size());
    h2o_add_header_by_str(&req->pool, &req->res.headers, n.base, n.len, 1, nullptr, v.base, v.len);
  }
  // A known length keeps the connection alive whatever the status: h2o 2.2.5 chunks only
  // 200 answers and closes the connection after any other answer of unknown length.
  req->res.content_length = r.body.size();
  sim_.commit(r);
  h2o_send_inline(req, r.body.data(), r.body.size());  // copies the body
  release(p);
}

void H1Server::reset_connection(h2o_req_t* req) {
  auto it = sockets_.find(peer_key(req->conn));
  if (it == sockets_.end()) return;
  uv_os_fd_t fd;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(&it->second->tcp), &fd) == 0) ::shutdown(fd, SHUT_RDWR);
}

void H1Server::on_connection(uv_stream_t* listener, int status) {
  auto* self = static_cast<H1Server*>(listener->data);
  if (status != 0) return;
  auto* s = new Socket;
  s->server = self;
  uv_tcp_init(self->loop_, &s->tcp);
  auto free_socket = [](uv_handle_t* h) {
    auto* sock = reinterpret_cast<Socket*>(h);
    if (!sock->peer.empty()) {
      auto it = sock->server->sockets_.find(sock->peer);
      if (it != sock->server->sockets_.end() && it->second == sock) sock->server->sockets_.erase(it);
    }
    delete sock;
  };
  if (uv_accept(listener, reinterpret_cast<uv_stream_t*>(&s->tcp)) != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(&s->tcp), free_socket);
    return;
  }
  uv_tcp_nodelay(&s->tcp, 1);
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getpeername(&s->tcp, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    s->peer.assign(reinterpret_cast<const char*>(&ss), static_cast<size_t>(len));
    self->sockets_[s->peer] = s;
  }
  h2o_socket_t* sock = h2o_uv_socket_create(reinterpret_cast<uv_stream_t*>(&s->tcp), free_socket);
  h2o_accept(&self->accept_ctx_, sock);
}

Result<int> H1Server::listen(const Endpoint& at, const std::string& cert, const std::string& key) {
  h2o_config_init(&globalconf_);
  globalconf_.max_request_entity_size = kMaxBody;
  h2o_hostconf_t* host = h2o_config_register_host(&globalconf_, h2o_iovec_init(H2O_STRLIT("default")), 65535);
  h2o_pathconf_t* path = h2o_config_register_path(host, "/", 0);
  auto* rh = reinterpret_cast<RouteHandler*>(h2o_create_handler(path, sizeof(RouteHandler)));
  rh->super.on_req = on_req;
  rh->server = this;
  h2o_context_init(&ctx_, loop_, &globalconf_);
  context_ready_ = true;
  accepting_ = true;
  accept_ctx_.ctx = &ctx_;
  accept_ctx_.hosts = globalconf_.hosts;
  if (!cert.empty()) {
    ssl_ctx_ = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_min_proto_version(ssl_ctx_, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ssl_ctx_, cert.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(ssl_ctx_, key.c_str(), SSL_FILETYPE_PEM) != 1)
      return make_error(ErrorKind::Config, "tls", "--tls: cannot load " + cert + " / " + key);
    static char h1[] = "http/1.1";
    static const h2o_iovec_t protocols[] = {{h1, 8}, {nullptr, 0}};
    h2o_ssl_register_alpn_protocols(ssl_ctx_, protocols);
    accept_ctx_.ssl_ctx = ssl_ctx_;
  }

  return open_listener(loop_, at, on_connection, this, &listener_);
}

void H1Server::close() {
  listener_.reset();
  accepting_ = false;
  // Idle keep-alive connections would hold the loop open: end them the way a reset does,
  // and h2o closes each when it sees the EOF.
  for (auto& [peer, socket] : sockets_) {
    uv_os_fd_t fd;
    if (uv_fileno(reinterpret_cast<uv_handle_t*>(&socket->tcp), &fd) == 0) ::shutdown(fd, SHUT_RDWR);
  }
}

}  // namespace sirena::sim
