// The listening socket both transports use: bind HOST:PORT (IPv4 or IPv6), listen, and
// report the port the kernel gave when PORT was 0.
#pragma once

#include <uv.h>

#include "daemon/core/result.h"
#include "daemon/uv/handle.h"
#include "gateways/sim/options.h"

namespace sirena::sim {

// On success *out owns a listening handle with data = `data` and the bound port is
// returned; out->reset() closes it.
Result<int> open_listener(uv_loop_t* loop, const Endpoint& at, uv_connection_cb on_connection, void* data,
                          uv::Handle<uv_tcp_t>* out);

}  // namespace sirena::sim
