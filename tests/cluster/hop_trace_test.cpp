// The hop trace (transport/hop_trace.h): one writer thread, its capacity, stopping, the
// steps it summarises; and a ping-pong between two transports on loopback, whose frames pass
// every stage in the order the transport's code takes them.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "tests/cluster/transport_recorder.h"
#include "transport/hop_trace.h"
#include "transport/ucx_transport.h"
#include "transport/wire.h"

namespace dsrt::transport {
namespace {

using hop_trace::stage;

const hop_trace::step* find_step(const hop_trace::summary_t& s, stage from, stage to) {
  for (const auto& step : s.steps)
    if (step.from == from && step.to == to) return &step;
  return nullptr;
}

TEST(HopTrace, RecordsTheFirstMarkingThreadAndSummarisesItsSteps) {
  hop_trace::start(1000);
  for (int i = 0; i < 20; ++i) {
    hop_trace::mark(stage::arrived);
    hop_trace::mark(stage::queued);
  }
  std::thread other([] {
    for (int i = 0; i < 7; ++i) hop_trace::mark(stage::posted);   // not the writer: dropped
  });
  other.join();
  hop_trace::stop();
  hop_trace::mark(stage::posting);   // stopped: not recorded, not counted
  const auto s = hop_trace::summary();
  EXPECT_EQ(s.marks, 40u);
  EXPECT_EQ(s.dropped, 7u);
  ASSERT_EQ(s.steps.size(), 2u);   // in path order
  EXPECT_EQ(s.steps[0].from, stage::arrived);
  EXPECT_EQ(s.steps[0].to, stage::queued);
  EXPECT_EQ(s.steps[0].count, 20u);
  EXPECT_EQ(s.steps[1].from, stage::queued);
  EXPECT_EQ(s.steps[1].to, stage::arrived);
  EXPECT_EQ(s.steps[1].count, 19u);
  for (const auto& step : s.steps) EXPECT_GE(step.p90_ns, step.p50_ns);
}

// The cycle counter's ticks come out as steady_clock's nanoseconds: a step lies between
// what steady_clock saw inside and outside its two marks (a 10 % margin for the rate).
TEST(HopTrace, AStepAgreesWithSteadyClockAroundItsMarks) {
  using steady = std::chrono::steady_clock;
  hop_trace::start(10);
  const auto outer_start = steady::now();
  hop_trace::mark(stage::sending);
  const auto inner_start = steady::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(2));   // a span far above the clocks' resolution
  const auto inner_end = steady::now();
  hop_trace::mark(stage::posting);
  const auto outer_end = steady::now();
  hop_trace::stop();
  const auto s = hop_trace::summary();
  ASSERT_EQ(s.steps.size(), 1u);
  const auto ns = [](steady::duration d) { return double(std::chrono::nanoseconds(d).count()); };
  EXPECT_GE(s.steps[0].p50_ns, 0.9 * ns(inner_end - inner_start));
  EXPECT_LE(s.steps[0].p50_ns, 1.1 * ns(outer_end - outer_start));
}

TEST(HopTrace, DropsMarksPastItsCapacityAndStartsAfresh) {
  hop_trace::start(3);
  for (int i = 0; i < 5; ++i) hop_trace::mark(stage::sending);
  hop_trace::stop();
  auto s = hop_trace::summary();
  EXPECT_EQ(s.marks, 3u);
  EXPECT_EQ(s.dropped, 2u);
  ASSERT_EQ(s.steps.size(), 1u);
  EXPECT_EQ(s.steps[0].count, 2u);

  hop_trace::start(10);   // earlier marks and writer forgotten: another thread may write now
  std::thread([] { hop_trace::mark(stage::decoding); }).join();
  hop_trace::stop();
  s = hop_trace::summary();
  EXPECT_EQ(s.marks, 1u);
  EXPECT_EQ(s.dropped, 0u);
  EXPECT_TRUE(s.steps.empty());   // one mark is no step
}

TEST(HopTrace, LeavesOutStepsRarerThanTheShareAsked) {
  hop_trace::start(1000);
  for (int i = 0; i < 100; ++i) {
    hop_trace::mark(stage::posting);
    hop_trace::mark(stage::posted);
  }
  hop_trace::mark(stage::callbacks);   // posted -> callbacks once, then callbacks -> posting
  hop_trace::mark(stage::posting);
  hop_trace::stop();
  EXPECT_EQ(hop_trace::summary(0.05).steps.size(), 2u);   // posting -> posted, posted -> posting
  EXPECT_EQ(hop_trace::summary(0.0).steps.size(), 4u);
}

TEST(HopTrace, EveryStageHasAName) {
  for (std::size_t i = 0; i < hop_trace::stage_count; ++i)
    EXPECT_STRNE(hop_trace::stage_name(stage(i)), "unknown") << i;
}

// Replies to every Cancel below `round_trips` with the next id, from the callback (on the
// progress thread), as dsbench transport --no-actors does.
class ponger : public test::recorder {
 public:
  explicit ponger(std::uint64_t round_trips) : round_trips_(round_trips) {}
  std::atomic<ucx_transport*> transport{nullptr};
  void on_frame(peer_id peer, decoded_frame frame) override {
    if (auto id = decode_cancel(frame); id && *id < round_trips_)
      if (auto* t = transport.load()) (void)t->send(peer, encode_cancel(frame_type::cancel, *id + 1));
    recorder::on_frame(peer, std::move(frame));
  }

 private:
  std::uint64_t round_trips_;
};

TEST(HopTrace, AFrameThroughATransportPassesEveryStageInOrder) {
  constexpr std::uint64_t round_trips = 200;
  cluster_secret secret;
  secret.fill(std::byte{7});
  ponger head_p(round_trips), worker_p(round_trips);
  transport_config head_c;
  auto head = ucx_transport::start(head_c, secret, {node_role::head, 0, 1}, head_p);
  transport_config worker_c;
  worker_c.listen = false;
  auto worker = ucx_transport::start(worker_c, secret, {node_role::worker, 1, 1}, worker_p);
  ASSERT_TRUE(head.ok() && worker.ok());
  head_p.transport = head->get();
  worker_p.transport = worker->get();
  const peer_id to_head = (*worker)->connect("127.0.0.1", (*head)->port());
  ASSERT_TRUE(worker_p.wait([&](test::recorder& r) { return r.up_.count(to_head) > 0; }));

  hop_trace::start(100000);   // the first progress thread to mark is the writer
  ASSERT_TRUE((*worker)->send(to_head, encode_cancel(frame_type::cancel, 0)).ok());
  ASSERT_TRUE(head_p.wait([&](test::recorder& r) {
    for (const auto& [peer, ids] : r.ids_)
      if (!ids.empty() && ids.back() >= std::int64_t(round_trips) - 1) return true;
    return false;
  }));
  hop_trace::stop();
  const auto s = hop_trace::summary();
  EXPECT_GT(s.dropped, 0u);   // the other progress thread's marks
  // One frame at a time: each arrives alone in its turn, and the reply goes out from the
  // callback, before the turn's after_callbacks.
  const std::vector<stage> path = {stage::arrived,  stage::queued,  stage::handling, stage::decoding,
                                   stage::delivering, stage::sending, stage::posting, stage::posted,
                                   stage::delivered, stage::callbacks};
  for (std::size_t i = 0; i + 1 < path.size(); ++i) {
    const auto* step = find_step(s, path[i], path[i + 1]);
    ASSERT_NE(step, nullptr) << hop_trace::stage_name(path[i]) << " -> " << hop_trace::stage_name(path[i + 1]);
    EXPECT_GE(step->count, round_trips / 2 - 10) << hop_trace::stage_name(path[i]);
  }
}

}  // namespace
}  // namespace dsrt::transport
