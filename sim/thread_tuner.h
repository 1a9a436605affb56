#pragma once
// Whether a parallel simulation runs its next windows on all its threads or on one, chosen
// by measured speed: events run per second of wall time, epoch by epoch.
//
// Why: on a shared machine, two threads are not always faster than one. On this project's
// 2-vCPU VM the same two-thread run takes 4.5 s in some phases and 7.5 s in others, while one
// thread takes 6 s in both: in the slow phases each thread runs ~40 % slower whenever both
// run (the vCPUs then behave like two hyperthreads of one core), and the windows' barriers
// make the parallel run slower than one thread. Nothing inside the guest tells the phases
// apart (no steal time, the same topology), so the run measures: it keeps a mode for
// `epochs_between_probes` epochs, or until an epoch is much slower than the one before, then
// runs one epoch in the other mode (a probe) and keeps whichever was faster. Which threads run the windows changes nothing a run computes
// (sim/window_pool.h), so the tuner changes only the wall time.
//
// Time and events are passed in; the tuner reads no clock (tests drive it).
// Thread safety: none; the thread running the windows owns it.
#include <chrono>
#include <cstdint>

namespace dsrt::sim {

class thread_tuner {
 public:
  using clock = std::chrono::steady_clock;
  struct config {
    // Long enough that an epoch's rate is not noise (tens of thousands of windows of the
    // scale run), short enough to follow the machine's phases, which last seconds.
    clock::duration epoch = std::chrono::milliseconds(250);
    // Epochs in the kept mode before one in the other. A probe of the slower mode costs
    // at most one epoch at its speed, so about 1/9 of the difference at 8.
    int epochs_between_probes = 8;
    // A kept mode's epoch this much slower than its last one probes the other mode at once:
    // the machine's phases change within a second. (The simulation's own load changes the
    // rate too; a needless probe costs one epoch.)
    double drop_to_probe = 0.85;
  };
  struct usage {
    clock::duration parallel{}, single{};   // wall time in each mode
    int switches = 0;                       // mode changes, probes included
  };

  // Starts in the parallel mode, with an epoch beginning at `now` after `events` events.
  thread_tuner(const config& c, std::uint64_t events, clock::time_point now);

  // true: the next windows run on all threads; false: on one.
  bool parallel() const { return parallel_; }
  // After some windows: the events run so far (never fewer than before) and the time.
  // Ends the epoch when it is long enough and picks the next mode; returns true when the
  // mode changed.
  bool update(std::uint64_t events, clock::time_point now);
  const usage& used() const { return used_; }

 private:
  config c_;
  bool parallel_ = true;
  bool probing_ = false;       // this epoch runs the mode not kept, once
  int kept_epochs_ = 0;        // epochs in the kept mode since the last probe
  double rate_[2] = {-1, -1};  // events per second in the latest epoch of each mode (single, parallel); < 0: none yet
  std::uint64_t epoch_events_;
  clock::time_point epoch_start_, last_;
  usage used_;
};

}  // namespace dsrt::sim
