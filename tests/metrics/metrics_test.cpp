#include "runtime/metrics/registry.h"

#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace dsrt::metrics {
namespace {

TEST(Counter, CountsUpFromZero) {
  counter c;
  EXPECT_EQ(c.value(), 0u);
  c.inc();
  c.inc(41);
  EXPECT_EQ(c.value(), 42u);
}

TEST(Gauge, SetsAndAdds) {
  gauge g;
  EXPECT_EQ(g.value(), 0.0);
  g.set(3.5);
  g.add(-1.25);
  EXPECT_EQ(g.value(), 2.25);
  g.set(-7);
  EXPECT_EQ(g.value(), -7.0);
}

TEST(Histogram, CountsIntoLeBuckets) {
  histogram h({1, 2, 4});
  for (double v : {0.5, 1.0, 1.5, 2.0, 3.0, 100.0}) h.observe(v);
  // A value equal to a bound belongs to that bound's bucket (Prometheus "le").
  EXPECT_EQ(h.bucket_counts(), (std::vector<std::uint64_t>{2, 2, 1, 1}));
  EXPECT_EQ(h.count(), 6u);
  EXPECT_EQ(h.sum(), 108.0);
}

TEST(Histogram, QuantileInterpolatesInsideTheBucket) {
  histogram h(linear_buckets(10, 10, 10));  // 10, 20, ..., 100
  // 100 values spread evenly over (0, 100]: the estimate is exact at bucket edges and
  // within one bucket width (10) of the true quantile everywhere.
  for (int i = 1; i <= 100; ++i) h.observe(i);
  EXPECT_DOUBLE_EQ(h.quantile(0.5), 50.0);
  EXPECT_DOUBLE_EQ(h.quantile(0.25), 25.0);
  for (double q : {0.01, 0.1, 0.33, 0.5, 0.77, 0.9, 0.99, 1.0}) {
    EXPECT_NEAR(h.quantile(q), q * 100, 10.0) << " at q=" << q;
  }
}

TEST(Histogram, QuantileStaysInsideTheBucketHoldingTheRank) {
  histogram h(latency_buckets_seconds());
  // 90 fast requests at 4 ms, 10 slow ones at 700 ms.
  for (int i = 0; i < 90; ++i) h.observe(0.004);
  for (int i = 0; i < 10; ++i) h.observe(0.7);
  const double p50 = h.quantile(0.5);
  EXPECT_GT(p50, 0.0025);  // the bucket (0.0025, 0.005] holds 0.004
  EXPECT_LE(p50, 0.005);
  const double p99 = h.quantile(0.99);
  EXPECT_GT(p99, 0.5);  // the bucket (0.5, 1] holds 0.7
  EXPECT_LE(p99, 1.0);
}

TEST(Histogram, QuantileEdgeCases) {
  histogram h({1, 2});
  EXPECT_TRUE(std::isnan(h.quantile(0.5))) << "empty histogram";
  h.observe(1.5);
  EXPECT_EQ(h.quantile(0.0), 1.0) << "q=0 is the lower edge of the first non-empty bucket";
  h.observe(50);
  EXPECT_EQ(h.quantile(1.0), 2.0) << "the +Inf bucket reports the last finite bound";
}

TEST(Histogram, BucketHelpers) {
  EXPECT_EQ(linear_buckets(1, 0.5, 3), (std::vector<double>{1, 1.5, 2}));
  EXPECT_EQ(exponential_buckets(1, 2, 4), (std::vector<double>{1, 2, 4, 8}));
  const auto latency = latency_buckets_seconds();
  EXPECT_EQ(latency.front(), 0.001);
  EXPECT_EQ(latency.back(), 60.0);
  for (std::size_t i = 1; i < latency.size(); ++i) EXPECT_LT(latency[i - 1], latency[i]);
}

TEST(Registry, SameNameAndLabelsReturnTheSameObject) {
  registry r;
  auto& a = r.counter("dsrt_requests_total", "Requests.", {{"replica", "0"}});
  auto& b = r.counter("dsrt_requests_total", "Requests.", {{"replica", "0"}});
  EXPECT_EQ(&a, &b);
  auto& h1 = r.histogram("dsrt_ttft_seconds", "TTFT.", latency_buckets_seconds());
  auto& h2 = r.histogram("dsrt_ttft_seconds", "TTFT.", latency_buckets_seconds());
  EXPECT_EQ(&h1, &h2);
  // Label order is not part of a series' identity.
  auto& x = r.gauge("dsrt_blocks", "Blocks.", {{"replica", "0"}, {"kind", "free"}});
  auto& y = r.gauge("dsrt_blocks", "Blocks.", {{"kind", "free"}, {"replica", "0"}});
  EXPECT_EQ(&x, &y);
  EXPECT_EQ(r.size(), 3u);
}

TEST(Registry, DifferentLabelsAreDifferentSeries) {
  registry r;
  auto& a = r.counter("dsrt_requests_total", "Requests.", {{"replica", "0"}});
  auto& b = r.counter("dsrt_requests_total", "Requests.", {{"replica", "1"}});
  auto& none = r.counter("dsrt_requests_total", "Requests.");
  EXPECT_NE(&a, &b);
  EXPECT_NE(&a, &none);
  a.inc(2);
  EXPECT_EQ(b.value(), 0u);
  EXPECT_EQ(r.size(), 3u);
}

TEST(Registry, PrometheusTextGolden) {
  registry r;
  r.counter("dsrt_requests_total", "Requests finished.", {{"replica", "1"}}).inc(5);
  r.counter("dsrt_requests_total", "Requests finished.", {{"replica", "0"}}).inc(2);
  r.gauge("dsrt_queue_depth", "Requests waiting.\nPer router.").set(3.5);
  r.gauge("dsrt_model_info", "Loaded model.", {{"path", "C:\\m \"v3\""}}).set(1);
  auto& h = r.histogram("dsrt_ttft_seconds", "Time to first token.", {0.1, 1}, {{"replica", "0"}});
  for (double v : {0.0625, 0.5, 4.0}) h.observe(v);
  EXPECT_EQ(r.prometheus_text(),
            "# HELP dsrt_model_info Loaded model.\n"
            "# TYPE dsrt_model_info gauge\n"
            "dsrt_model_info{path=\"C:\\\\m \\\"v3\\\"\"} 1\n"
            "# HELP dsrt_queue_depth Requests waiting.\\nPer router.\n"
            "# TYPE dsrt_queue_depth gauge\n"
            "dsrt_queue_depth 3.5\n"
            "# HELP dsrt_requests_total Requests finished.\n"
            "# TYPE dsrt_requests_total counter\n"
            "dsrt_requests_total{replica=\"0\"} 2\n"
            "dsrt_requests_total{replica=\"1\"} 5\n"
            "# HELP dsrt_ttft_seconds Time to first token.\n"
            "# TYPE dsrt_ttft_seconds histogram\n"
            "dsrt_ttft_seconds_bucket{replica=\"0\",le=\"0.1\"} 1\n"
            "dsrt_ttft_seconds_bucket{replica=\"0\",le=\"1\"} 2\n"
            "dsrt_ttft_seconds_bucket{replica=\"0\",le=\"+Inf\"} 3\n"
            "dsrt_ttft_seconds_sum{replica=\"0\"} 4.5625\n"
            "dsrt_ttft_seconds_count{replica=\"0\"} 3\n");
}

TEST(Registry, JsonRoundTripKeepsEveryField) {
  registry r;
  r.counter("dsrt_tokens_total", "Tokens.", {{"replica", "0"}}).inc(7);
  r.gauge("dsrt_free_blocks", "Free KV blocks.").set(12);
  auto& h = r.histogram("dsrt_itl_seconds", "Inter-token latency.", {0.01, 0.1});
  h.observe(0.005);
  h.observe(0.05);
  r.histogram("dsrt_e2e_seconds", "End to end.", {1});  // empty: no quantiles

  const auto j = nlohmann::json::parse(r.to_json().dump());
  const auto& c = j.at("dsrt_tokens_total");
  EXPECT_EQ(c.at("type"), "counter");
  EXPECT_EQ(c.at("help"), "Tokens.");
  EXPECT_EQ(c.at("series").at(0).at("labels"), (nlohmann::json{{"replica", "0"}}));
  EXPECT_EQ(c.at("series").at(0).at("value").get<std::uint64_t>(), 7u);
  EXPECT_EQ(j.at("dsrt_free_blocks").at("type"), "gauge");
  EXPECT_EQ(j.at("dsrt_free_blocks").at("series").at(0).at("value").get<double>(), 12.0);
  EXPECT_EQ(j.at("dsrt_free_blocks").at("series").at(0).at("labels"), nlohmann::json::object());

  const auto& s = j.at("dsrt_itl_seconds").at("series").at(0);
  EXPECT_EQ(j.at("dsrt_itl_seconds").at("type"), "histogram");
  EXPECT_EQ(s.at("count").get<std::uint64_t>(), 2u);
  EXPECT_DOUBLE_EQ(s.at("sum").get<double>(), 0.055);
  EXPECT_EQ(s.at("bounds").get<std::vector<double>>(), (std::vector<double>{0.01, 0.1}));
  EXPECT_EQ(s.at("bucket_counts").get<std::vector<std::uint64_t>>(),
            (std::vector<std::uint64_t>{1, 1, 0}));
  EXPECT_DOUBLE_EQ(s.at("quantiles").at("0.5").get<double>(), h.quantile(0.5));
  EXPECT_FALSE(j.at("dsrt_e2e_seconds").at("series").at(0).contains("quantiles"));
}

TEST(Registry, ConcurrentUpdatesAreAllCounted) {
  constexpr int threads_total = 4;
  constexpr int increments_per_thread = 100000;
  registry r;
  auto& c = r.counter("dsrt_events_total", "Events.");
  auto& g = r.gauge("dsrt_inflight", "In flight.");
  auto& h = r.histogram("dsrt_step_seconds", "Step.", {0.5, 1.5});
  std::vector<std::thread> workers;
  for (int t = 0; t < threads_total; ++t) {
    workers.emplace_back([&] {
      for (int i = 0; i < increments_per_thread; ++i) {
        c.inc();
        g.add(1);
        h.observe(1);
      }
    });
  }
  for (auto& w : workers) w.join();
  const std::uint64_t total = std::uint64_t(threads_total) * increments_per_thread;
  EXPECT_EQ(c.value(), total);
  EXPECT_EQ(g.value(), double(total));  // whole numbers below 2^53 add exactly
  EXPECT_EQ(h.count(), total);
  EXPECT_EQ(h.bucket_counts()[1], total);
  EXPECT_EQ(h.sum(), double(total));
}

TEST(RegistryDeathTest, RegistrationMistakesAreProgrammerErrors) {
  registry r;
  r.counter("dsrt_x_total", "X.");
  EXPECT_DEATH(r.gauge("dsrt_x_total", "X."), "registered as counter and as gauge");
  EXPECT_DEATH(r.counter("dsrt_x_total", "Other help."), "two help texts");
  EXPECT_DEATH(r.counter("dsrt-bad", "X."), "bad metric name");
  EXPECT_DEATH(r.histogram("dsrt_h", "H.", {1}, {{"le", "1"}}), "'le'");
  EXPECT_DEATH(r.counter("dsrt_y_total", "Y.", {{"a", "1"}, {"a", "2"}}), "given twice");
  EXPECT_DEATH(histogram({2, 1}), "not increasing");
  EXPECT_DEATH(
      {
        for (std::size_t i = 0; i <= metrics_max; ++i) {
          r.counter("dsrt_many_total", "Many.", {{"i", std::to_string(i)}});
        }
      },
      "metrics_max");
}

}  // namespace
}  // namespace dsrt::metrics
