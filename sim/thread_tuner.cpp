#include "sim/thread_tuner.h"

#include <algorithm>

#include "kernels/assert.h"

namespace dsrt::sim {

thread_tuner::thread_tuner(const config& c, std::uint64_t events, clock::time_point now)
    : c_(c), probe_every_(c.epochs_between_probes), epoch_events_(events), epoch_start_(now), last_(now) {
  DSRT_ASSERT(c.epoch.count() > 0 && c.epochs_between_probes >= 1 && c.epochs_between_probes_max >= c.epochs_between_probes,
              "epoch {} ns, {} to {} epochs between probes", c.epoch.count(), c.epochs_between_probes,
              c.epochs_between_probes_max);
}

bool thread_tuner::update(std::uint64_t events, clock::time_point now) {
  DSRT_ASSERT(events >= epoch_events_ && now >= last_, "events or time went back");
  (parallel_ ? used_.parallel : used_.single) += now - last_;
  last_ = now;
  const auto elapsed = now - epoch_start_;
  if (elapsed < c_.epoch) return false;
  rate_[parallel_] = double(events - epoch_events_) / std::chrono::duration<double>(elapsed).count();
  epoch_events_ = events;
  epoch_start_ = now;
  bool next = parallel_;
  if (probing_) {   // the probe against the kept mode's latest epoch; a tie keeps the kept mode
    probing_ = false;
    kept_epochs_ = 0;
    if (rate_[parallel_] <= rate_[!parallel_]) {   // the kept mode won again: back to it
      next = !parallel_;
      // By far: look less often (the probe was costly). Narrowly: a probe costs little, and
      // the machine's next phase may turn the result.
      probe_every_ = rate_[parallel_] < rate_[!parallel_] * c_.back_off_below
                         ? std::min(probe_every_ * 2, c_.epochs_between_probes_max)
                         : c_.epochs_between_probes;
    } else {   // the probed mode is kept now: look again soon
      probe_every_ = c_.epochs_between_probes;
    }
  } else if (++kept_epochs_ >= probe_every_ || rate_[!parallel_] < 0 ||
             rate_[parallel_] < rate_[!parallel_]) {
    probing_ = true;
    next = !parallel_;
  }
  if (next == parallel_) return false;
  parallel_ = next;
  ++used_.switches;
  return true;
}

}  // namespace dsrt::sim
