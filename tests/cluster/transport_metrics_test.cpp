// transport_metrics: the transport's counters in a node's registry.
#include <gtest/gtest.h>

#include "actors/transport_metrics.h"

namespace dsrt::actors {
namespace {

// Totals grow by what each update adds (never back); what is held now is set as it is;
// every series names its node.
TEST(TransportMetrics, CountersAddWhatGrewAndGaugesTakeTheValueOfNow) {
  metrics::registry registry;
  const metrics::label_set node3 = {{"node", "3"}};
  transport_metrics m(registry, 3);
  // The series as the registry holds them (asked with the same help, as registration requires).
  const auto sent = [&] { return registry.counter("dsrt_transport_frames_sent_total", "frames handed to UCX", node3).value(); };
  const auto stuck = [&] {
    return registry.gauge("dsrt_transport_sends_stuck",
                          "sends of gone connections UCX has not finished (peers not reading, or gone)", node3).value();
  };
  transport::transport_stats s;
  s.frames_sent = 10;
  s.sends_stuck = 7;
  s.data_workers = 2;
  m.update(s);
  EXPECT_EQ(sent(), 10u);
  EXPECT_EQ(stuck(), 7.0);
  s.frames_sent = 25;
  s.sends_stuck = 0;
  m.update(s);
  EXPECT_EQ(sent(), 25u);
  EXPECT_EQ(stuck(), 0.0);
  s.frames_sent = 5;   // lower: another transport's count; adds nothing
  m.update(s);
  s.frames_sent = 8;   // from there on, growth counts again
  m.update(s);
  EXPECT_EQ(sent(), 28u);
  const auto text = registry.prometheus_text();
  EXPECT_NE(text.find("# TYPE dsrt_transport_frames_sent_total counter"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE dsrt_transport_data_workers gauge"), std::string::npos) << text;
  EXPECT_NE(text.find("dsrt_transport_data_workers{node=\"3\"} 2"), std::string::npos) << text;
}

}  // namespace
}  // namespace dsrt::actors
