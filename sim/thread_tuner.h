#pragma once
// Whether a parallel simulation runs its next windows on all its threads or on one, chosen
// by measured speed: events run per second of wall time, epoch by epoch.
//
// Why: on a shared machine, two threads are not always faster than one. On this project's
// 2-vCPU VM the same two-thread run takes 4.5 s in some phases and 7.5 s in others, while one
// thread takes 6 s in both: in the slow phases each thread runs ~40 % slower whenever both
// run (the vCPUs then behave like two hyperthreads of one core), and the windows' barriers
// make the parallel run slower than one thread. Nothing inside the guest tells the phases
// apart (no steal time, the same topology), so the run measures: it keeps a mode for some
// epochs, then runs one epoch in the other mode (a probe) and keeps whichever was faster.
// Each probe the kept mode wins by far (2x) doubles the epochs before the next (8 up to
// 64), so where the parallel run is far faster (many cores) the probes cost little; where
// the two are close, as on this VM, a probe costs little anyway. An epoch of the kept
// mode slower than the other mode's last measured one probes at once, so a change of
// phase is followed within an epoch or two. Which threads run the windows changes nothing
// a run computes (sim/window_pool.h), so the tuner changes only the wall time.
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
    // Epochs in the kept mode before one in the other, after a switch; doubled by each
    // probe the kept mode wins, up to the max. A probe of the slower mode costs at most one
    // epoch at its speed: about 1/9 of the difference at 8, 1/65 at 64.
    int epochs_between_probes = 8;
    int epochs_between_probes_max = 64;
    // The probed mode ran below this share of the kept mode's speed: the next probe waits
    // twice as long.
    double back_off_below = 0.5;
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
  int probe_every_;            // epochs_between_probes .. epochs_between_probes_max
  double rate_[2] = {-1, -1};  // events per second in the latest epoch of each mode (single, parallel); < 0: none yet
  std::uint64_t epoch_events_;
  clock::time_point epoch_start_, last_;
  usage used_;
};

}  // namespace dsrt::sim
