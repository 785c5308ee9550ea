#include "daemon/dispatch/gateway_lane.h"

#include <prometheus/gauge.h>
#include <prometheus/histogram.h>

namespace sirena::dispatch {

void set_gauge(prometheus::Gauge* g, double v) {
  if (g) g->Set(v);
}

void observe(prometheus::Histogram* h, double v) {
  if (h) h->Observe(v);
}

}  // namespace sirena::dispatch
