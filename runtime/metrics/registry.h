#pragma once
// Named counters, gauges and histograms, exported as Prometheus text (exposition format
// 0.0.4) and as JSON. The serving actors (router, batcher, supervisor) update them from
// CAF worker threads; an HTTP handler exports them from another.
//
// Ownership: the registry owns every metric it hands out; a returned reference stays valid
// for the registry's lifetime. Metrics never move and are never removed.
// Thread safety: counter, gauge and histogram updates are lock-free (relaxed atomics) and
// may come from any thread. Registration and export take the registry's mutex, so callers
// register once (at actor start) and keep the reference instead of looking it up per event.
// Registration is a programmer act: a bad name, a type clash or too many series is a
// DSRT_ASSERT, not an error value.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace dsrt::metrics {

// Series (one name plus one label set) a registry holds. Far above what the runtime
// registers (tens of families times replicas); a loop registering per request trips it.
inline constexpr std::size_t metrics_max = 4096;
// Label pairs on one series; label values are bounded so a series line stays short.
inline constexpr std::size_t labels_max = 8;
inline constexpr std::size_t label_value_bytes_max = 256;
inline constexpr std::size_t name_bytes_max = 200;
// Finite upper bounds of one histogram (the +Inf bucket comes on top).
inline constexpr std::size_t buckets_max = 64;

// Label pairs given at registration, e.g. {{"replica", "0"}}. Order does not matter:
// the registry sorts them by key, so {a, b} and {b, a} name the same series.
using label = std::pair<std::string, std::string>;
using label_set = std::vector<label>;

enum class metric_type { counter, gauge, histogram };

// A monotonically increasing count (requests, tokens, restarts).
class counter {
 public:
  void inc(std::uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

// A value that goes up and down (queue depth, free KV blocks, replicas alive).
class gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void add(double delta) { value_.fetch_add(delta, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Observations counted into buckets with fixed upper bounds (Prometheus "le": a value v
// goes into the first bucket with v <= bound; values above the last bound go to +Inf).
// observe() is lock-free: one atomic per bucket plus an atomic sum. A reader racing with
// observe() may see a sum that lags the counts by the observations in flight; count() is
// the sum of the bucket counts, so _count always equals the +Inf bucket.
class histogram {
 public:
  // REQUIRES: 1 <= bounds.size() <= buckets_max, all finite and strictly increasing.
  explicit histogram(std::vector<double> bounds);

  // REQUIRES: v is not NaN (a NaN would land in no bucket and poison the sum).
  void observe(double v);

  const std::vector<double>& bounds() const { return bounds_; }
  // Per bucket, not cumulative: bounds().size() + 1 entries, the last one is +Inf.
  std::vector<std::uint64_t> bucket_counts() const;
  std::uint64_t count() const;
  double sum() const { return sum_.load(std::memory_order_relaxed); }

  // The q-quantile estimated as Prometheus's histogram_quantile does: find the bucket
  // holding rank q * count and interpolate linearly inside it (the lowest bucket starts
  // at 0). Ranks in the +Inf bucket return the last finite bound. NaN when empty.
  // The estimate is exact only up to the width of the bucket it falls in.
  // REQUIRES: 0 <= q <= 1.
  double quantile(double q) const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;  // bounds_.size() + 1
  std::atomic<double> sum_{0.0};
};

// Bucket bounds. REQUIRES (all): count >= 1 and count <= buckets_max.
// start, start + width, ... (count bounds). REQUIRES: width > 0.
std::vector<double> linear_buckets(double start, double width, int count);
// start, start * factor, ... (count bounds). REQUIRES: start > 0, factor > 1.
std::vector<double> exponential_buckets(double start, double factor, int count);
// 1 ms .. 60 s in 1-2.5-5 steps: covers a decode step (ms) up to a long prefill or a
// queueing stall (tens of seconds), with human-readable "le" labels.
std::vector<double> latency_buckets_seconds();

class registry {
 public:
  registry();
  ~registry();
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;

  // Returns the series for name + labels, creating it on first use; the same name and
  // labels always return the same object.
  // REQUIRES: name matches [a-zA-Z_:][a-zA-Z0-9_:]*; label keys match [a-zA-Z_][a-zA-Z0-9_]*,
  // are unique, do not start with "__" (and are not "le" for histograms); a name keeps
  // one type and one help text; fewer than metrics_max series exist before a new one.
  // Names follow Prometheus conventions: counters end in _total, units last (_seconds).
  metrics::counter& counter(std::string_view name, std::string_view help, label_set labels = {});
  metrics::gauge& gauge(std::string_view name, std::string_view help, label_set labels = {});
  // REQUIRES as above, and bounds as histogram's constructor requires; a series registered
  // again must name the same bounds.
  metrics::histogram& histogram(std::string_view name, std::string_view help,
                                std::vector<double> bounds, label_set labels = {});

  // Series registered so far.
  std::size_t size() const;

  // Families sorted by name, series by labels: "# HELP" and "# TYPE" once per family;
  // histograms as cumulative _bucket{le="..."} lines ending in le="+Inf", then _sum and
  // _count. Label values and help text are escaped as the format requires.
  std::string prometheus_text() const;

  // {"<name>": {"type": "counter"|"gauge"|"histogram", "help": "...",
  //   "series": [{"labels": {"k": "v"}, ...values}]}}, where values are
  // counter: "value" (integer); gauge: "value"; histogram: "count", "sum", "bounds"
  // (finite upper bounds), "bucket_counts" (per bucket, not cumulative, last is +Inf) and,
  // when count > 0, "quantiles": {"0.5": .., "0.9": .., "0.99": ..}.
  nlohmann::json to_json() const;

 private:
  struct family;  // one name: its type, help and series (registry.cpp)

  // REQUIRES: mutex_ held.
  family& family_for(std::string_view name, std::string_view help, metric_type type);

  mutable std::mutex mutex_;  // guards families_ and series_count_, not metric values
  std::map<std::string, std::unique_ptr<family>, std::less<>> families_;
  std::size_t series_count_ = 0;
};

}  // namespace dsrt::metrics
