// The thread tuner keeps the faster mode, probes the other one now and then, and follows
// the machine when the faster one changes. Time is simulated here: each step reports the
// events a mode would have run in it.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>

#include "sim/thread_tuner.h"

namespace dsrt::sim {
namespace {

using namespace std::chrono_literals;
using clock = thread_tuner::clock;

// Drives a tuner in steps of 10 ms, at `parallel_rate` / `single_rate` events per step.
struct drive {
  thread_tuner::config config{.epoch = 100ms, .epochs_between_probes = 4, .epochs_between_probes_max = 4};
  clock::time_point now{};
  std::uint64_t events = 0;
  thread_tuner tuner{config, events, now};
  int parallel_steps = 0, single_steps = 0;

  void steps(int n, std::uint64_t parallel_rate, std::uint64_t single_rate) {
    for (int i = 0; i < n; ++i) {
      (tuner.parallel() ? parallel_steps : single_steps) += 1;
      events += tuner.parallel() ? parallel_rate : single_rate;
      now += 10ms;
      tuner.update(events, now);
    }
  }
};

TEST(ThreadTuner, KeepsTheParallelModeWhenItIsFasterAndProbesTheOtherNowAndThen) {
  drive d;
  d.steps(1000, 1300, 1000);
  EXPECT_TRUE(d.tuner.parallel());
  // Four kept epochs, then one probe: a fifth of the time in the slower mode, no more.
  EXPECT_GT(d.single_steps, 0) << "never measured one thread";
  EXPECT_LE(d.single_steps, 1000 / 5 + 10);
  EXPECT_EQ(d.tuner.used().single, d.single_steps * 10ms);
  EXPECT_EQ(d.tuner.used().parallel, d.parallel_steps * 10ms);
}

TEST(ThreadTuner, SettlesOnOneThreadWhenTheParallelRunIsSlower) {
  drive d;
  d.steps(1000, 800, 1000);
  EXPECT_FALSE(d.tuner.parallel());
  EXPECT_GE(d.single_steps, 1000 * 4 / 5 - 20);
}

TEST(ThreadTuner, FollowsTheMachineWhenTheFasterModeChanges) {
  drive d;
  d.steps(300, 1300, 1000);
  EXPECT_TRUE(d.tuner.parallel());
  const int single_before = d.single_steps;
  d.steps(300, 700, 1000);   // a slow phase for two threads begins
  EXPECT_FALSE(d.tuner.parallel());
  EXPECT_GE(d.single_steps - single_before, 300 * 3 / 5) << "did not move to one thread within a probe period";
  const int parallel_before = d.parallel_steps;
  d.steps(300, 1400, 1000);  // and ends
  EXPECT_TRUE(d.tuner.parallel());
  EXPECT_GE(d.parallel_steps - parallel_before, 300 * 3 / 5);
  EXPECT_GE(d.tuner.used().switches, 4);
}

TEST(ThreadTuner, ASuddenSlowdownOfTheKeptModeProbesTheOtherAtOnce) {
  drive d;
  d.steps(80, 1300, 1000);    // eight epochs: two probes, then one kept epoch of the four before the next
  ASSERT_TRUE(d.tuner.parallel());
  const int switches = d.tuner.used().switches;
  d.steps(10, 1100, 1000);    // an epoch slower than the last one, still faster than one thread
  EXPECT_TRUE(d.tuner.parallel()) << "probed one thread though two were still faster";
  EXPECT_EQ(d.tuner.used().switches, switches);
  d.steps(10, 700, 1000);     // an epoch slower than one thread was, before the regular probe
  EXPECT_FALSE(d.tuner.parallel()) << "waited for the regular probe";
  EXPECT_EQ(d.tuner.used().switches, switches + 1);
}

// On a machine where the parallel run is far faster, the probes of one thread back off.
TEST(ThreadTuner, ProbesBackOffWhileTheKeptModeKeepsWinning) {
  drive fixed, backing_off;
  backing_off.config.epochs_between_probes_max = 32;
  backing_off.tuner = thread_tuner(backing_off.config, 0, backing_off.now);
  fixed.steps(4000, 8000, 1000);
  backing_off.steps(4000, 8000, 1000);
  EXPECT_TRUE(backing_off.tuner.parallel());
  EXPECT_GT(backing_off.single_steps, 0);
  // 400 epochs: a probe every 5 epochs without the back-off, about one per 33 with it.
  EXPECT_GE(fixed.single_steps, 4000 / 5 - 20);
  EXPECT_LE(backing_off.single_steps, 4000 / 20) << "the probes did not back off";
  // Two modes close in speed keep being compared every few epochs: the next phase of the
  // machine may turn the result, and such a probe costs little.
  drive close;
  close.config.epochs_between_probes_max = 32;
  close.tuner = thread_tuner(close.config, 0, close.now);
  close.steps(4000, 1300, 1000);
  EXPECT_GE(close.single_steps, 4000 / 5 - 20);
  // After a switch the probes come often again.
  const int switches = backing_off.tuner.used().switches;
  backing_off.steps(200, 500, 1000);
  EXPECT_FALSE(backing_off.tuner.parallel());
  EXPECT_GT(backing_off.tuner.used().switches, switches);
}

TEST(ThreadTuner, AnEpochEndsOnlyWhenItIsLongEnough) {
  drive d;
  d.steps(9, 1000, 1000000);   // 90 ms: the first epoch has not ended, however fast one thread would be
  EXPECT_TRUE(d.tuner.parallel());
  EXPECT_EQ(d.tuner.used().switches, 0);
  d.steps(1, 1000, 1000000);   // 100 ms: it ends, and one thread is probed
  EXPECT_FALSE(d.tuner.parallel());
}

}  // namespace
}  // namespace dsrt::sim
