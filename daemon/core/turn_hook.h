// Work gathered during one loop turn leaves together: a TurnHook runs its callback once
// after the turn in which schedule() was called, however often it was called in it. The
// SMS gateway coalesces messages into requests with one, the dispatcher delivery reports
// into one Redis script call.
//
// A 0 ms uv_timer_t: it fires in the next turn's timer phase, so everything the I/O
// callbacks of this turn added is there, and the loop does not block in between.
//
// Ownership: the hook owns its timer, freed in the timer's close callback. close() stops it
// for good and runs `done` once the handle is closed (never before close() returns);
// destroying a hook closes it in the background and drops `done`. The callback may
// destroy the hook's owner. All calls on the loop's thread.
#pragma once

#include <uv.h>

#include <functional>

namespace sirena {

class TurnHook {
 public:
  TurnHook(uv_loop_t* loop, std::function<void()> fn);
  ~TurnHook();
  TurnHook(const TurnHook&) = delete;
  TurnHook& operator=(const TurnHook&) = delete;

  // Runs the callback after this loop turn; no-op when already scheduled or closed.
  void schedule();
  // Drops a pending run (the work was taken some other way).
  void cancel();
  bool scheduled() const;
  void close(std::function<void()> done);

 private:
  struct Handle;
  Handle* handle_;  // null once its close callback has run
};

}  // namespace sirena
