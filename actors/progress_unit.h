#pragma once
// A CAF execution unit on the transport's progress thread, for the node's link actor
// (transport_bridge.h). The bridge hands each frame to the link with this unit as the
// sender's context, so when the link is idle CAF gives it to exec_later here instead of to a
// scheduler thread; the bridge runs it from the transport's after_callbacks, on the same
// thread: a frame is handled without waking another thread, and what the link sends a peer
// goes out on the progress thread's next turn (CAF's I/O brokers run on their multiplexer
// the same way). Everything else woken from here (the router, a batcher: whatever the link
// messages) goes to CAF's scheduler as usual.
//
// A turn runs the link for at most `messages_per_turn` messages; a link with more left moves
// to the scheduler, so the progress thread (heartbeats, every other peer) is never held
// long. 0 turns this off: the link always runs on the scheduler.
//
// The bridge passes this unit as the context of its enqueues although no actor of the unit
// is running then: CAF 0.17's enqueue uses the context only to call exec_later.
//
// Thread safety: exec_later is called only on the progress thread (by the bridge, and by
// actors this unit runs, whose context it is); run_pending too.
#include <caf/all.hpp>

#include <cstddef>

namespace dsrt::actors {

class progress_unit final : public caf::execution_unit {
 public:
  progress_unit() = default;
  progress_unit(const progress_unit&) = delete;
  progress_unit& operator=(const progress_unit&) = delete;
  // No link is left pending: the transport runs after_callbacks as it stops, before the
  // bridge (and this unit) go.
  ~progress_unit() override = default;

  // Before the first exec_later. A null link (or 0 messages) runs nothing here.
  void set_link(const caf::actor& link, std::size_t messages_per_turn);
  // The context to enqueue the link's messages with: this unit, or null when it is off.
  caf::execution_unit* context() { return link_ != nullptr ? this : nullptr; }

  void exec_later(caf::resumable* job) override;
  // Runs the link if a message woke it since the last call.
  void run_pending();

 private:
  caf::resumable* link_ = nullptr;   // compared only; the bridge holds the actor
  std::size_t messages_per_turn_ = 0;
  bool link_pending_ = false;        // exec_later took the link (and its reference)
};

}  // namespace dsrt::actors
