// One HTTP exchange as the transports (HTTP/2 core, HTTP/1.1 server) hand it to the
// protocol handlers. Both objects are reused from request to request: clear() keeps
// the capacity, so a warmed-up server allocates nothing per request for them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sirena::sim {

struct Header {
  std::string name;  // lower case
  std::string value;
};

// A vector whose elements survive clear(), so their strings keep their buffers.
template <typename T>
class ReusableList {
 public:
  T& add() {
    if (size_ == items_.size()) items_.emplace_back();
    return items_[size_++];
  }
  void clear() { size_ = 0; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const T* begin() const { return items_.data(); }
  const T* end() const { return items_.data() + size_; }
  T& operator[](size_t i) { return items_[i]; }
  const T& operator[](size_t i) const { return items_[i]; }

 private:
  std::vector<T> items_;
  size_t size_ = 0;
};

// A request as views into the transport's own buffers (nghttp2 header buffers, h2o's
// request pool): valid while the Simulator serves it, which is all a Service may rely on.
struct HeaderView {
  std::string_view name;  // lower case (RFC 9113 §8.2.1; h2o lower-cases HTTP/1.1 names)
  std::string_view value;
};

struct Request {
  std::string_view method;
  std::string_view path;   // without the query
  std::string_view query;  // after '?', still percent-encoded
  std::vector<HeaderView> headers;
  std::string_view body;
  bool body_truncated = false;  // the body was longer than the transport keeps

  void clear() {
    method = path = query = body = {};
    headers.clear();  // trivially destructible: keeps its capacity
    body_truncated = false;
  }
  // The first header with that (lower-case) name.
  std::optional<std::string_view> header(std::string_view name) const {
    for (const auto& h : headers)
      if (h.name == name) return h.value;
    return std::nullopt;
  }
};

// One message a success answer hands over: what --record and the duplicate count see.
struct Delivery {
  std::string recipient;  // device token or phone number
  std::string alert_id;   // empty when the request named none
  uint64_t text_hash = 0;
};

struct Response {
  int status = 0;
  ReusableList<Header> headers;
  std::string body;
  ReusableList<Delivery> deliveries;  // accepted messages, committed when the answer is sent
  uint64_t rejected_messages = 1;     // how many messages a 4xx/5xx answer refuses (Kannel: one per number)
  uint64_t partly_rejected = 0;       // numbers refused inside an accepted multi-recipient request
  int partly_rejected_status = 0;     // ... and the status a request for them alone would get
  bool counted = false;               // a message request: goes into /stats

  void clear() {
    status = 0;
    headers.clear();
    body.clear();
    deliveries.clear();
    rejected_messages = 1;
    partly_rejected = 0;
    partly_rejected_status = 0;
    counted = false;
  }
  void add_header(std::string_view name, std::string_view value) {
    Header& h = headers.add();
    h.name.assign(name);
    h.value.assign(value);
  }
  void add_delivery(std::string_view recipient, std::string_view alert_id, uint64_t text_hash) {
    Delivery& d = deliveries.add();
    d.recipient.assign(recipient);
    d.alert_id.assign(alert_id);
    d.text_hash = text_hash;
  }
};

}  // namespace sirena::sim
