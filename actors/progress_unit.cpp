#include "actors/progress_unit.h"

namespace dsrt::actors {

void progress_unit::set_link(const caf::actor& link, std::size_t messages_per_turn) {
  if (!link || messages_per_turn == 0) return;
  system_ = &link->home_system();
  link_ = dynamic_cast<caf::resumable*>(caf::actor_cast<caf::abstract_actor*>(link));
  messages_per_turn_ = messages_per_turn;
}

void progress_unit::exec_later(caf::resumable* job) {
  // CAF added a reference for the job; whoever runs it releases it.
  if (job == link_) {   // once until it runs: CAF wakes an idle actor once
    link_pending_ = true;
    return;
  }
  system().scheduler().enqueue(job);
}

void progress_unit::run_pending() {
  if (!link_pending_) return;
  link_pending_ = false;
  switch (link_->resume(this, messages_per_turn_)) {
    case caf::resumable::resume_later:   // more than a turn's worth: a scheduler thread goes on
      system().scheduler().enqueue(link_);
      break;
    case caf::resumable::awaiting_message:
    case caf::resumable::done:
    case caf::resumable::shutdown_execution_unit:
      caf::intrusive_ptr_release(link_);
      break;
  }
}

}  // namespace dsrt::actors
