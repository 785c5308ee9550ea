#include "gateways/push/push_gateway.h"

#include <limits>

#include "daemon/core/number.h"

namespace sirena::push {

PushGateway::PushGateway(uv_loop_t* loop, const Clock& clock, std::string name, dispatch::Channel channel,
                         http2::PoolOptions pool, size_t max_in_flight)
    : loop_(loop),
      clock_(clock),
      name_(std::move(name)),
      channel_(channel),
      pool_(std::make_unique<http2::Pool>(loop, std::move(pool), clock)),
      max_in_flight_(max_in_flight) {}

PushGateway::~PushGateway() = default;

Status PushGateway::start() { return pool_->start(); }

void PushGateway::send(const dispatch::Message& m, Done done) {
  if (!ready(m, done)) return;
  ++in_flight_;
  http2::Request req = build(m);
  req.tag = m.content->alert_id;  // for cancel()
  pool_->submit(std::move(req), [this, done = std::move(done)](const http2::Response* resp, http2::Failure f,
                                                               const std::string& detail) {
    --in_flight_;
    dispatch::SendResult r;
    if (resp) {
      r = classify(*resp);
      r.http_status = resp->status;
    } else if (f == http2::Failure::Cancelled) {
      r.outcome = dispatch::Outcome::Cancelled;  // never left: not a failure of the gateway
      r.reason = "alert cancelled";
    } else {
      // Refused (GOAWAY above last_stream_id, REFUSED_STREAM) was never processed:
      // resend at once. Others may or may not have been; resend after backoff.
      r.outcome = dispatch::Outcome::Retry;
      r.reason = std::string(http2::to_string(f)) + (detail.empty() ? "" : ": " + detail);
      r.retry_after_ms = 0;
    }
    done(r);
  });
}

size_t PushGateway::capacity() const {
  size_t held_now = held();
  if (in_flight_ + held_now >= max_in_flight_) return 0;
  size_t queued = pool_->stats().queued + held_now;
  return queued >= kPoolQueue ? 0 : std::min(kPoolQueue - queued, max_in_flight_ - in_flight_ - held_now);
}

void PushGateway::cancel(const std::string& alert_id) {
  // The held ones first: answered, they may make room that the dispatcher fills at once,
  // but never with this alert's messages (its queues are swept before).
  for (Done& done : drop_held(alert_id)) {
    dispatch::SendResult r;
    r.outcome = dispatch::Outcome::Cancelled;
    r.reason = "alert cancelled";
    done(r);
  }
  pool_->cancel(alert_id);
}

void PushGateway::close(std::function<void()> done) { pool_->close(std::move(done)); }

int64_t PushGateway::retry_after_ms(const http2::Response& r) {
  const std::string* v = r.header("retry-after");
  if (!v) return 0;
  // Bounded so that the milliseconds cannot overflow.
  auto secs = parse_number<int64_t>(*v, 0, std::numeric_limits<int64_t>::max() / 1000);
  return secs ? *secs * 1000 : 0;
}

std::shared_ptr<const http2::SharedPart> RenderCache::find(const dispatch::Content* c, std::string_view variant,
                                                           int64_t stamp) const {
  for (const Entry& e : entries_)
    if (e.content.get() == c && e.stamp == stamp && e.variant == variant) return e.part;
  return nullptr;
}

void RenderCache::put(std::shared_ptr<const dispatch::Content> c, std::string variant, int64_t stamp,
                      std::shared_ptr<const http2::SharedPart> part) {
  // The same Content and variant under an older stamp is replaced, not kept beside it.
  Entry* slot = nullptr;
  for (Entry& e : entries_)
    if (e.content == c && e.variant == variant) slot = &e;
  if (!slot) {
    slot = &entries_[next_];
    next_ = (next_ + 1) % kEntries;
  }
  *slot = Entry{std::move(c), std::move(variant), stamp, std::move(part)};
}

void RenderCache::clear() {
  for (Entry& e : entries_) e = Entry{};
}

std::string cut_utf8(const std::string& text, size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  static const std::string ellipsis = "\xE2\x80\xA6";
  if (max_bytes < ellipsis.size()) return std::string();
  size_t n = max_bytes - ellipsis.size();
  // Back off continuation bytes (10xxxxxx) so the cut lands on a character start.
  while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
  return text.substr(0, n) + ellipsis;
}

}  // namespace sirena::push
