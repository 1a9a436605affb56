// The simulator's event queue: time order, and at one instant by origin, then by the order
// the origin scheduled or sent — whatever order the events reached the queue in.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "sim/event_queue.h"

namespace dsrt::sim {
namespace {

TEST(EventQueue, OneInstantRunsByOriginThenByTheOrderTheOriginGave) {
  event_queue q(/*origin=*/1);
  std::vector<std::string> ran;
  const clock_time t = clock_time{} + milliseconds(5);
  // Messages that arrive out of their senders' order, around the queue's own events.
  q.at_from(t, 2, 7, [&] { ran.push_back("from 2, #7"); });
  q.at(t, [&] { ran.push_back("own #0"); });
  q.at_from(t, 0, 3, [&] { ran.push_back("from 0, #3"); });
  q.at_from(t, 2, 1, [&] { ran.push_back("from 2, #1"); });
  q.at(t, [&] { ran.push_back("own #1"); });
  q.at_from(t - milliseconds(1), 2, 9, [&] { ran.push_back("earlier"); });
  EXPECT_EQ(q.run(clock_time::max(), 100), 6u);
  EXPECT_EQ(ran, (std::vector<std::string>{"earlier", "from 0, #3", "own #0", "own #1", "from 2, #1", "from 2, #7"}));
}

TEST(EventQueue, RunBeforeStopsAtTheWindowsEnd) {
  event_queue q;
  int ran = 0;
  for (int ms : {1, 2, 3}) q.at(clock_time{} + milliseconds(ms), [&] { ++ran; });
  EXPECT_EQ(q.run_before(clock_time{} + milliseconds(3), clock_time::max(), 100), 2u);
  EXPECT_EQ(ran, 2);
  EXPECT_EQ(q.next_at(), clock_time{} + milliseconds(3));
  EXPECT_EQ(q.run(clock_time::max(), 100), 1u);
  EXPECT_TRUE(q.empty());
}

}  // namespace
}  // namespace dsrt::sim
