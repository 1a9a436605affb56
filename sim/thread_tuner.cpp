#include "sim/thread_tuner.h"

#include "kernels/assert.h"

namespace dsrt::sim {

thread_tuner::thread_tuner(const config& c, std::uint64_t events, clock::time_point now)
    : c_(c), epoch_events_(events), epoch_start_(now), last_(now) {
  DSRT_ASSERT(c.epoch.count() > 0 && c.epochs_between_probes >= 1, "epoch {} ns, {} epochs between probes",
              c.epoch.count(), c.epochs_between_probes);
}

bool thread_tuner::update(std::uint64_t events, clock::time_point now) {
  DSRT_ASSERT(events >= epoch_events_ && now >= last_, "events or time went back");
  (parallel_ ? used_.parallel : used_.single) += now - last_;
  last_ = now;
  const auto elapsed = now - epoch_start_;
  if (elapsed < c_.epoch) return false;
  const double previous = rate_[parallel_];
  rate_[parallel_] = double(events - epoch_events_) / std::chrono::duration<double>(elapsed).count();
  epoch_events_ = events;
  epoch_start_ = now;
  bool next = parallel_;
  if (probing_) {   // the probe against the kept mode's latest epoch; a tie keeps the kept mode
    probing_ = false;
    kept_epochs_ = 0;
    if (rate_[parallel_] <= rate_[!parallel_]) next = !parallel_;
  } else if (++kept_epochs_ >= c_.epochs_between_probes || rate_[!parallel_] < 0 ||
             rate_[parallel_] < previous * c_.drop_to_probe) {
    probing_ = true;
    next = !parallel_;
  }
  if (next == parallel_) return false;
  parallel_ = next;
  ++used_.switches;
  return true;
}

}  // namespace dsrt::sim
