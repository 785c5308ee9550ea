#include "gateways/sms/curl_engine.h"

#include <curl/curl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <deque>
#include <unordered_map>
#include <unordered_set>

#include "daemon/core/log.h"
#include "daemon/uv/handle.h"

namespace sirena::sms {
namespace {

constexpr size_t kMaxReplyBody = 1 << 20;  // provider answers are short; refuse anything huge

// curl_global_init is not thread-safe in libcurl < 7.84 (Debian 12 has 7.88, others may
// differ): a function-local static runs it once, whichever thread creates the first engine.
bool global_init() {
  static const bool ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  return ok;
}

}  // namespace

const std::string* HttpReply::header(std::string_view name) const {
  for (const auto& [n, v] : headers)
    if (n == name) return &v;
  return nullptr;
}

std::string url_escape(std::string_view text) {
  char* escaped = curl_easy_escape(nullptr, text.data(), static_cast<int>(text.size()));
  std::string out = escaped ? escaped : "";
  curl_free(escaped);
  return out;
}

struct CurlEngine::Impl {
  struct Transfer {
    HttpRequest request;
    ReplyCallback done;
    HttpReply reply;
    curl_slist* headers = nullptr;
    char error[CURL_ERROR_SIZE] = {};
  };

  // One poll handle per socket libcurl watches.
  //  - A connection socket, opened by on_open_socket(), keeps its handle until libcurl
  //    closes it through on_close_socket(), so a kept-alive connection is not registered
  //    with the loop again for every request. It is found by its descriptor, which is
  //    closed only in the handle's close callback: while the handle exists, the number
  //    cannot be given to another socket. Except that libcurl 7.88 to 8.1 close a socket
  //    whose connect was abandoned without calling on_close_socket() (curl issue 11439):
  //    such a record is retired when its number comes back, and its inode is checked
  //    whenever libcurl takes the socket up again.
  //  - Any other socket libcurl watches (a resolver's) gets a handle from its first report
  //    to CURL_POLL_REMOVE, handed back by libcurl as `socketp`.
  struct Socket {
    uv_poll_t poll;
    curl_socket_t fd;
    Impl* engine;
    bool connection;       // opened by on_open_socket()
    bool close_fd;         // the close callback closes `fd` (ours and not closed by libcurl)
    ino_t inode = 0;       // of a connection socket
    bool watched = false;  // libcurl watches it (IN/OUT reported, no REMOVE since)
    int events = 0;        // what the handle polls for; 0 = stopped
  };

  enum class State { Open, Closing, Closed };

  uv_loop_t* loop_;
  EngineOptions options_;
  CURLM* multi_ = nullptr;
  uv::Handle<uv_timer_t> timer_;
  std::unordered_map<CURL*, std::unique_ptr<Transfer>> active_;
  std::deque<std::unique_ptr<Transfer>> queue_;
  std::vector<CURL*> spare_;                                // easy handles ready for the next request
  std::unordered_set<Socket*> sockets_;                     // open poll handles
  std::unordered_map<curl_socket_t, Socket*> connections_;  // connection sockets by descriptor
  size_t closing_handles_ = 0;                              // uv_close() calls whose callback has not run yet
  State state_ = State::Open;
  bool abandoned_ = false;  // the owner is gone: drop callbacks, delete self when closed
  std::vector<std::function<void()>> close_waiters_;

  Impl(uv_loop_t* loop, EngineOptions options) : loop_(loop), options_(options) {}

  Status start() {
    if (!global_init()) return make_error(ErrorKind::Config, "invalid_config", "curl_global_init failed");
    multi_ = curl_multi_init();
    if (!multi_) return make_error(ErrorKind::Config, "invalid_config", "curl_multi_init failed");
    curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &Impl::on_socket);
    curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &Impl::on_timer_change);
    curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
    long per_host = static_cast<long>(options_.max_host_connections ? options_.max_host_connections
                                                                    : options_.max_in_flight);
    long cache = static_cast<long>(options_.max_connects ? options_.max_connects : options_.max_in_flight);
    curl_multi_setopt(multi_, CURLMOPT_MAX_HOST_CONNECTIONS, per_host);
    curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, cache);
    timer_.init(loop_, this, uv_timer_init);
    return Ok{};
  }

  // ----- requests

  void submit(HttpRequest request, ReplyCallback done) {
    auto t = std::make_unique<Transfer>();
    t->request = std::move(request);
    t->done = std::move(done);
    if (state_ != State::Open) return fail(std::move(t), "engine closed");
    queue_.push_back(std::move(t));
    start_queued();
  }

  size_t cancel(std::string_view tag) {
    std::vector<std::unique_ptr<Transfer>> dropped;
    for (auto it = queue_.begin(); it != queue_.end();) {
      if ((*it)->request.tag == tag) {
        dropped.push_back(std::move(*it));
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
    // Answered after the queue is consistent again: a callback may submit or cancel more.
    for (auto& t : dropped) {
      t->reply.cancelled = true;
      fail(std::move(t), "cancelled before it started");
    }
    return dropped.size();
  }

  void start_queued() {
    while (state_ == State::Open && active_.size() < options_.max_in_flight && !queue_.empty()) {
      auto t = std::move(queue_.front());
      queue_.pop_front();
      start(std::move(t));
    }
  }

  void start(std::unique_ptr<Transfer> t) {
    CURL* easy = nullptr;
    if (!spare_.empty()) {
      easy = spare_.back();
      spare_.pop_back();
      curl_easy_reset(easy);  // options only: the multi keeps the connections
    } else {
      easy = curl_easy_init();
    }
    if (!easy) return fail(std::move(t), "curl_easy_init failed");
    const HttpRequest& r = t->request;
    curl_easy_setopt(easy, CURLOPT_URL, r.url.c_str());
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, t->error);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &Impl::on_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, t.get());
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &Impl::on_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, t.get());
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS,
                     static_cast<long>(r.timeout_ms > 0 ? r.timeout_ms : options_.timeout_ms));
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout_ms));
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, &Impl::on_open_socket);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, this);
    // Copied into the connection, which may be closed later through another easy handle.
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, &Impl::on_close_socket);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, this);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, options_.verify_peer ? 1L : 0L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, options_.verify_peer ? 2L : 0L);
    if (r.method == "GET") {
      curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
    } else {
      if (r.method != "POST") curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, r.method.c_str());
      // Not copied by libcurl: the body lives in the Transfer as long as the easy is active.
      curl_easy_setopt(easy, CURLOPT_POSTFIELDS, r.body.data());
      curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
      // No "Expect: 100-continue" round trip before the body.
      t->headers = curl_slist_append(t->headers, "Expect:");
    }
    for (const auto& h : r.headers) t->headers = curl_slist_append(t->headers, h.c_str());
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, t->headers);

    Transfer* raw = t.get();
    active_.emplace(easy, std::move(t));
    if (CURLMcode rc = curl_multi_add_handle(multi_, easy); rc != CURLM_OK) {
      auto it = active_.find(easy);
      auto back = std::move(it->second);
      active_.erase(it);
      curl_easy_cleanup(easy);
      curl_slist_free_all(raw->headers);
      raw->headers = nullptr;
      fail(std::move(back), curl_multi_strerror(rc));
    }
  }

  // Answers a request that never reached libcurl (or was taken back from it).
  void fail(std::unique_ptr<Transfer> t, const std::string& error) {
    if (abandoned_) return;
    t->reply.status = 0;
    t->reply.error = error;
    t->done(t->reply);
  }

  static size_t on_body(char* data, size_t size, size_t n, void* p) {
    auto* t = static_cast<Transfer*>(p);
    size_t len = size * n;
    if (t->reply.body.size() + len > kMaxReplyBody) return 0;  // CURLE_WRITE_ERROR
    t->reply.body.append(data, len);
    return len;
  }

  static size_t on_header(char* data, size_t size, size_t n, void* p) {
    auto* t = static_cast<Transfer*>(p);
    size_t len = size * n;
    std::string_view line(data, len);
    if (line.starts_with("HTTP/")) {
      t->reply.headers.clear();  // a new response head (after a 1xx)
      return len;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return len;
    std::string name(line.substr(0, colon));
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    std::string_view value = line.substr(colon + 1);
    size_t first = value.find_first_not_of(" \t");
    size_t last = value.find_last_not_of(" \t\r\n");
    value = first == std::string_view::npos ? std::string_view() : value.substr(first, last - first + 1);
    t->reply.headers.emplace_back(std::move(name), std::string(value));
    return len;
  }

  // ----- libcurl <-> libuv

  static int on_timer_change(CURLM*, long timeout_ms, void* userp) {
    auto* e = static_cast<Impl*>(userp);
    if (e->state_ != State::Open) return 0;  // the timer is closing
    if (timeout_ms < 0) {
      uv_timer_stop(e->timer_.get());
    } else {
      // 0 means "as soon as possible", but never from inside this callback: next loop turn.
      uv_timer_start(
          e->timer_.get(),
          [](uv_timer_t* t) { static_cast<Impl*>(t->data)->socket_action(CURL_SOCKET_TIMEOUT, 0); },
          static_cast<uint64_t>(timeout_ms), 0);
    }
    return 0;
  }

  static curl_socket_t on_open_socket(void* clientp, curlsocktype, curl_sockaddr* addr) {
    auto* e = static_cast<Impl*>(clientp);
    curl_socket_t fd = ::socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
    if (fd == CURL_SOCKET_BAD) return fd;
    // A record for this number is one libcurl closed without telling: the number came back.
    // uv_close() stops watching the number before the new handle starts.
    if (auto it = e->connections_.find(fd); it != e->connections_.end()) e->retire(it->second);
    auto* s = new Socket{};
    struct stat st {};
    fstat(fd, &st);
    s->inode = st.st_ino;
    if (int rc = uv_poll_init_socket(e->loop_, &s->poll, fd); rc != 0) {
      // libcurl fails this connect (the request is answered with the error and retried).
      log::warn("sms_curl_poll_init_failed", {{"error", uv_strerror(rc)}});
      delete s;
      ::close(fd);
      return CURL_SOCKET_BAD;
    }
    s->poll.data = s;
    s->fd = fd;
    s->engine = e;
    s->connection = true;
    s->close_fd = true;
    e->sockets_.insert(s);
    e->connections_.emplace(fd, s);
    return fd;
  }

  static int on_close_socket(void* clientp, curl_socket_t fd) {
    auto* e = static_cast<Impl*>(clientp);
    auto it = e->connections_.find(fd);
    if (it == e->connections_.end()) return ::close(fd);
    Socket* s = it->second;
    e->connections_.erase(it);
    e->close_socket(s);  // the descriptor is closed in the close callback
    return 0;
  }

  // A connection socket libcurl closed without on_close_socket(): the handle goes, the
  // descriptor is not ours to close.
  void retire(Socket* s) {
    connections_.erase(s->fd);
    s->close_fd = false;
    close_socket(s);
  }

  static int on_socket(CURL*, curl_socket_t fd, int what, void* userp, void* socketp) {
    auto* e = static_cast<Impl*>(userp);
    // A connection socket by its descriptor (never assigned: a socket libcurl closed
    // without telling would leave its `socketp` behind); any other by `socketp`.
    Socket* s = nullptr;
    if (auto it = e->connections_.find(fd); it != e->connections_.end()) {
      s = it->second;
      // Taken up (again): is the number still the socket opened?
      struct stat st {};
      if (!s->watched && what != CURL_POLL_REMOVE && (fstat(fd, &st) != 0 || st.st_ino != s->inode)) {
        e->retire(s);
        s = nullptr;
      }
    }
    if (!s) s = static_cast<Socket*>(socketp);
    if (what == CURL_POLL_REMOVE) {
      if (!s) return 0;
      if (!s->connection) {
        // libcurl forgets `socketp` after this call, so a later socket with the same
        // number gets a fresh handle even while this one's uv_close is pending (libuv
        // stops watching the fd inside uv_close, not in its callback).
        e->close_socket(s);
        return 0;
      }
      s->watched = false;
      // An idle kept-alive connection stays watched for reading, so that the next request
      // on it costs the loop nothing (uv_poll_start always re-registers the descriptor):
      // it becomes readable only when the server closes it, and on_poll stops it then.
      if (s->events != UV_READABLE) e->poll(s, 0);
      return 0;
    }
    if (e->state_ != State::Open) return 0;
    if (!s) {
      s = new Socket{};
      s->fd = fd;
      s->engine = e;
      if (int rc = uv_poll_init_socket(e->loop_, &s->poll, fd); rc != 0) {
        // Returning -1 would make the whole multi handle unusable; the transfer's own
        // timeout ends it instead.
        log::warn("sms_curl_poll_init_failed", {{"error", uv_strerror(rc)}});
        delete s;
        return 0;
      }
      s->poll.data = s;
      e->sockets_.insert(s);
      curl_multi_assign(e->multi_, fd, s);
    }
    s->watched = true;
    int events = 0;
    if (what & CURL_POLL_IN) events |= UV_READABLE;
    if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
    e->poll(s, events);
    return 0;
  }

  // Polls `s` for `events` (0: stops it); nothing to do when it already does.
  void poll(Socket* s, int events) {
    if (s->events == events) return;
    s->events = events;
    if (events == 0)
      uv_poll_stop(&s->poll);
    else
      uv_poll_start(&s->poll, events, &Impl::on_poll);
  }

  static void on_poll(uv_poll_t* h, int status, int events) {
    auto* s = static_cast<Socket*>(h->data);
    if (status < 0) s->events = 0;  // libuv has stopped the handle
    if (!s->watched) {
      // An idle connection that became readable: the server closed it (or sent what
      // nobody asked for). libcurl finds out when it next looks at the connection.
      s->engine->poll(s, 0);
      return;
    }
    int flags = 0;
    if (status < 0) {
      flags = CURL_CSELECT_ERR;  // libcurl decides what follows
    } else {
      if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
      if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    }
    s->engine->socket_action(s->fd, flags);  // may close `s` (freed later, in its close callback)
  }

  void socket_action(curl_socket_t fd, int flags) {
    if (state_ != State::Open) return;
    int running = 0;
    curl_multi_socket_action(multi_, fd, flags, &running);
    drain();
  }

  // Reads every finished transfer. A reply callback may submit more or close the engine.
  void drain() {
    int left = 0;
    while (state_ == State::Open) {
      CURLMsg* msg = curl_multi_info_read(multi_, &left);
      if (!msg) break;
      if (msg->msg == CURLMSG_DONE) finish(msg->easy_handle, msg->data.result);
    }
  }

  void finish(CURL* easy, CURLcode rc) {
    auto it = active_.find(easy);
    if (it == active_.end()) return;
    std::unique_ptr<Transfer> t = std::move(it->second);
    active_.erase(it);
    HttpReply& reply = t->reply;
    curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME, &reply.seconds);
    curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &reply.connects);
    if (rc == CURLE_OK) {
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &reply.status);
    } else {
      reply.status = 0;
      reply.error = t->error[0] ? t->error : curl_easy_strerror(rc);
    }
    curl_multi_remove_handle(multi_, easy);
    curl_slist_free_all(t->headers);
    t->headers = nullptr;
    if (spare_.size() < options_.max_in_flight)
      spare_.push_back(easy);
    else
      curl_easy_cleanup(easy);
    start_queued();
    t->done(reply);
  }

  // ----- closing

  void close_socket(Socket* s) {
    sockets_.erase(s);
    ++closing_handles_;
    uv_close(reinterpret_cast<uv_handle_t*>(&s->poll), [](uv_handle_t* h) {
      auto* sock = static_cast<Socket*>(h->data);
      Impl* e = sock->engine;
      if (sock->close_fd) ::close(sock->fd);
      delete sock;
      e->handle_closed();
    });
  }

  void close(std::function<void()> done) {
    if (done) close_waiters_.push_back(std::move(done));
    if (state_ == State::Closed) {
      auto waiters = std::move(close_waiters_);
      for (auto& w : waiters) w();
      return;
    }
    if (state_ == State::Closing) return;
    state_ = State::Closing;

    std::vector<std::unique_ptr<Transfer>> aborted;
    for (auto& [easy, t] : active_) {
      curl_multi_remove_handle(multi_, easy);
      curl_easy_cleanup(easy);
      curl_slist_free_all(t->headers);
      t->headers = nullptr;
      aborted.push_back(std::move(t));
    }
    active_.clear();
    for (auto& t : queue_) aborted.push_back(std::move(t));
    queue_.clear();
    for (CURL* easy : spare_) curl_easy_cleanup(easy);
    spare_.clear();
    // Closes the cached connections; libcurl reports their sockets with CURL_POLL_REMOVE
    // and closes them through on_close_socket().
    curl_multi_cleanup(multi_);
    multi_ = nullptr;
    // What is left libcurl closed without telling (see Socket).
    for (auto& [fd, s] : connections_) s->close_fd = false;
    connections_.clear();
    for (Socket* s : std::vector<Socket*>(sockets_.begin(), sockets_.end())) close_socket(s);
    ++closing_handles_;
    timer_.reset([this] { handle_closed(); });
    // Last, so a callback that submits again finds the engine closed.
    for (auto& t : aborted) fail(std::move(t), "engine closed");
  }

  void handle_closed() {
    if (--closing_handles_ > 0 || state_ != State::Closing) return;
    state_ = State::Closed;
    if (abandoned_) {
      delete this;
      return;
    }
    auto waiters = std::move(close_waiters_);
    for (auto& w : waiters) w();  // may destroy the engine: nothing touches `this` after
  }
};

Result<std::unique_ptr<CurlEngine>> CurlEngine::create(uv_loop_t* loop, EngineOptions options) {
  if (options.max_in_flight == 0)
    return make_error(ErrorKind::Config, "invalid_config", "max_in_flight must be at least 1");
  auto impl = std::make_unique<Impl>(loop, options);
  if (auto s = impl->start(); !s) return std::move(s).take_error();
  return std::unique_ptr<CurlEngine>(new CurlEngine(std::move(impl)));
}

CurlEngine::CurlEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

CurlEngine::~CurlEngine() {
  if (!impl_ || impl_->state_ == Impl::State::Closed) return;
  // Closed in the background; the Impl deletes itself in its last close callback.
  impl_->abandoned_ = true;
  impl_->close_waiters_.clear();
  impl_->close(nullptr);
  (void)impl_.release();
}

void CurlEngine::submit(HttpRequest request, ReplyCallback done) {
  impl_->submit(std::move(request), std::move(done));
}
size_t CurlEngine::in_flight() const {
  return impl_->active_.size();
}
size_t CurlEngine::queued() const {
  return impl_->queue_.size();
}
size_t CurlEngine::cancel(std::string_view tag) {
  return impl_->cancel(tag);
}
void CurlEngine::close(std::function<void()> done) {
  impl_->close(std::move(done));
}

}  // namespace sirena::sms
