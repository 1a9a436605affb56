// The CUDA backend's step-graph bookkeeping (kernels/cuda/step_graphs.h) with fake graphs: a
// "graph" here is a recorded list of the launches its capture issued, and launching it
// replays that list, so every test checks the launches that would reach the GPU, in order.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernels/cuda/step_graphs.h"

namespace dsrt::kernels::cuda {
namespace {

struct fake_gpu {
  std::vector<std::string> issued;               // what ran on the "stream", in order
  std::vector<std::vector<std::string>*> graphs;
  bool fail_captures = false;
  std::vector<std::string>* capturing = nullptr;
  int destroyed = 0;

  step_recorder::hooks hooks() {
    return {[this](const std::function<void()>& run_all) -> void* {
              auto* g = new std::vector<std::string>;
              capturing = g;
              run_all();
              capturing = nullptr;
              if (fail_captures) {
                delete g;
                return nullptr;
              }
              graphs.push_back(g);
              return g;
            },
            [this](void* g) {
              for (const auto& s : *static_cast<std::vector<std::string>*>(g)) issued.push_back(s);
            },
            [this](void* g) {
              ++destroyed;
              delete static_cast<std::vector<std::string>*>(g);
            }};
  }
  // A launch named `name` whose parameters are `param`.
  void record(step_recorder& r, const std::string& name, long param) {
    launch_key key;
    key.add_all(name.size(), param);
    for (char c : name) key.add(c);
    r.record(key.bytes(), [this, name, param] {
      const std::string what = name + "(" + std::to_string(param) + ")";
      if (capturing) {
        capturing->push_back(what);  // captured, not run
      } else {
        issued.push_back(what);
      }
    });
  }
};

std::vector<std::string> step(fake_gpu& gpu, step_recorder& r, long position) {
  gpu.issued.clear();
  gpu.record(r, "embed", 0);
  gpu.record(r, "rope", position % 1);  // same key every step: the data moves, not the params
  gpu.record(r, "attention", 16);
  r.flush();
  return gpu.issued;
}

TEST(StepGraphs, ARepeatedStepRunsEagerlyThenIsCapturedThenReplayed) {
  fake_gpu gpu;
  step_recorder r(gpu.hooks(), true);
  const std::vector<std::string> expected = {"embed(0)", "rope(0)", "attention(16)"};
  for (long s = 0; s < 5; ++s) EXPECT_EQ(step(gpu, r, s), expected) << "step " << s;
  EXPECT_EQ(r.stats().eager_segments, 1u);
  EXPECT_EQ(r.stats().captures, 1u);
  EXPECT_EQ(r.stats().graph_launches, 4u);
  EXPECT_EQ(r.sequences(), 1u);
}

TEST(StepGraphs, ADifferentParameterIsADifferentSequence) {
  fake_gpu gpu;
  step_recorder r(gpu.hooks(), true);
  gpu.record(r, "attention", 16);
  r.flush();
  gpu.record(r, "attention", 16);
  r.flush();                            // captured
  gpu.issued.clear();
  gpu.record(r, "attention", 32);       // another parameter: never replays the 16 graph
  r.flush();
  EXPECT_EQ(gpu.issued, std::vector<std::string>{"attention(32)"});
  EXPECT_EQ(r.stats().graph_launches, 1u);
  EXPECT_EQ(r.sequences(), 2u);
  // Keys cannot run into each other: ("ab", "c") is not ("a", "bc").
  step_recorder r2(gpu.hooks(), true);
  gpu.record(r2, "ab", 1);
  gpu.record(r2, "c", 1);
  r2.flush();
  gpu.record(r2, "a", 1);
  gpu.record(r2, "bc", 1);
  r2.flush();
  EXPECT_EQ(r2.sequences(), 2u);
}

TEST(StepGraphs, NothingRunsBeforeAFlushAndSegmentsFlushThemselves) {
  fake_gpu gpu;
  step_recorder r(gpu.hooks(), true, step_graphs_max, /*segment_launches=*/3,
                  /*first_segment_launches=*/2);
  gpu.record(r, "a", 1);
  EXPECT_TRUE(gpu.issued.empty());
  EXPECT_TRUE(r.pending());
  gpu.record(r, "b", 2);                // the first segment is 2 launches long
  EXPECT_EQ(gpu.issued, (std::vector<std::string>{"a(1)", "b(2)"}));
  gpu.record(r, "c", 3);
  gpu.record(r, "d", 4);
  EXPECT_EQ(gpu.issued.size(), 2u);     // later ones are 3 long
  gpu.record(r, "e", 5);
  EXPECT_EQ(gpu.issued.size(), 5u);
  EXPECT_FALSE(r.pending());
  // After the device went idle the next segment is a first one again.
  gpu.record(r, "f", 6);
  r.idle();
  EXPECT_EQ(gpu.issued.size(), 6u);
  gpu.record(r, "g", 7);
  gpu.record(r, "h", 8);
  EXPECT_EQ(gpu.issued.size(), 8u);
}

TEST(StepGraphs, DisabledIssuesEveryLaunchAtOnce) {
  fake_gpu gpu;
  step_recorder r(gpu.hooks(), false);
  gpu.record(r, "a", 1);
  EXPECT_EQ(gpu.issued, std::vector<std::string>{"a(1)"});
  EXPECT_FALSE(r.pending());
  for (int i = 0; i < 3; ++i) step(gpu, r, i);
  EXPECT_EQ(r.stats().captures, 0u);
}

TEST(StepGraphs, AFailedCaptureRunsEagerlyAndIsNotRetried) {
  fake_gpu gpu;
  gpu.fail_captures = true;
  step_recorder r(gpu.hooks(), true);
  const std::vector<std::string> expected = {"embed(0)", "rope(0)", "attention(16)"};
  for (long s = 0; s < 4; ++s) EXPECT_EQ(step(gpu, r, s), expected) << "step " << s;
  EXPECT_EQ(r.stats().capture_failures, 1u);
  EXPECT_EQ(r.stats().eager_segments, 4u);
}

TEST(StepGraphs, TheLeastRecentlyUsedSequenceIsEvictedAndItsGraphDestroyed) {
  fake_gpu gpu;
  {
    step_recorder r(gpu.hooks(), true, /*graphs_max=*/2);
    for (int round = 0; round < 2; ++round)
      for (long p : {1, 2}) {
        gpu.record(r, "x", p);
        r.flush();
      }
    EXPECT_EQ(r.stats().captures, 2u);
    gpu.record(r, "x", 1);                // touch 1: 2 is now the oldest
    r.flush();
    gpu.record(r, "x", 3);                // a third sequence evicts 2
    r.flush();
    EXPECT_EQ(r.stats().evictions, 1u);
    EXPECT_EQ(gpu.destroyed, 1);
    EXPECT_EQ(r.sequences(), 2u);
    gpu.issued.clear();
    gpu.record(r, "x", 1);                // still a graph
    r.flush();
    EXPECT_EQ(r.stats().graph_launches, 4u);  // x1 and x2 captured, x1 touched, x1 again
    EXPECT_EQ(gpu.issued, std::vector<std::string>{"x(1)"});
  }
  EXPECT_EQ(gpu.destroyed, 2);            // the rest go with the recorder
}

}  // namespace
}  // namespace dsrt::kernels::cuda
