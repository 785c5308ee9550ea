// The listening socket both transports use: bind HOST:PORT (IPv4 or IPv6), listen, and
// report the port the kernel gave when PORT was 0.
#pragma once

#include <uv.h>

#include "daemon/core/result.h"
#include "gateways/sim/options.h"

namespace sirena::sim {

// On success *out is a listening handle with data = `data` and the bound port is returned.
// The handle is heap-allocated; close_listener() closes and frees it.
Result<int> open_listener(uv_loop_t* loop, const Endpoint& at, uv_connection_cb on_connection, void* data,
                          uv_tcp_t** out);
// Closes *listener (if any) and sets it to nullptr; the memory goes in the close callback.
void close_listener(uv_tcp_t** listener);

}  // namespace sirena::sim
