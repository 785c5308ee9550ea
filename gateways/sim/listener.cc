#include "gateways/sim/listener.h"

#include <netinet/in.h>

namespace sirena::sim {

Result<int> open_listener(uv_loop_t* loop, const Endpoint& at, uv_connection_cb on_connection, void* data,
                          uv::Handle<uv_tcp_t>* out) {
  sockaddr_storage addr{};
  if (uv_ip4_addr(at.host.c_str(), at.port, reinterpret_cast<sockaddr_in*>(&addr)) != 0 &&
      uv_ip6_addr(at.host.c_str(), at.port, reinterpret_cast<sockaddr_in6*>(&addr)) != 0)
    return make_error(ErrorKind::Usage, "usage", "\"" + at.host + "\" is not an IP address");
  uv::Handle<uv_tcp_t> tcp;
  tcp.init(loop, data, uv_tcp_init);
  int rc = uv_tcp_bind(tcp.get(), reinterpret_cast<sockaddr*>(&addr), 0);
  // A deep backlog: a benchmark opens its connections all at once.
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(tcp.get()), 4096, on_connection);
  if (rc != 0)
    return make_error(ErrorKind::Config, "listen_failed",
                      at.host + ":" + std::to_string(at.port) + ": " + uv_strerror(rc));
  sockaddr_storage bound{};
  int len = sizeof bound;
  uv_tcp_getsockname(tcp.get(), reinterpret_cast<sockaddr*>(&bound), &len);
  *out = std::move(tcp);
  return static_cast<int>(ntohs(bound.ss_family == AF_INET6
                                    ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                    : reinterpret_cast<sockaddr_in*>(&bound)->sin_port));
}

}  // namespace sirena::sim
