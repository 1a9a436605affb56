#include "runtime/metrics/registry.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kernels/assert.h"

namespace dsrt::metrics {

// Relaxed atomics on doubles must not fall back to a hidden lock on the hot path.
static_assert(std::atomic<double>::is_always_lock_free);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

namespace {

bool is_name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }

bool valid_metric_name(std::string_view name) {
  if (name.empty() || name.size() > name_bytes_max) return false;
  if (!is_name_start(name[0]) && name[0] != ':') return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return is_name_char(c) || c == ':'; });
}

bool valid_label_key(std::string_view key) {
  if (key.empty() || key.size() > name_bytes_max || !is_name_start(key[0])) return false;
  if (key.starts_with("__")) return false;  // reserved for Prometheus itself
  return std::all_of(key.begin(), key.end(), is_name_char);
}

// Sorted by key so that the caller's order does not create a second series.
label_set normalized(label_set labels, metric_type type) {
  DSRT_ASSERT(labels.size() <= labels_max, "labels={} labels_max={}", labels.size(), labels_max);
  std::sort(labels.begin(), labels.end());
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const auto& [key, value] = labels[i];
    DSRT_ASSERT(valid_label_key(key), "bad label key '{}'", key);
    DSRT_ASSERT(type != metric_type::histogram || key != "le", "'le' is the histogram's own label");
    DSRT_ASSERT(value.size() <= label_value_bytes_max, "label {} value bytes={} max={}", key,
                value.size(), label_value_bytes_max);
    DSRT_ASSERT(i == 0 || labels[i - 1].first != key, "label key '{}' given twice", key);
  }
  return labels;
}

std::string_view type_name(metric_type type) {
  switch (type) {
    case metric_type::counter: return "counter";
    case metric_type::gauge: return "gauge";
    case metric_type::histogram: return "histogram";
  }
  return "untyped";
}

// Prometheus spells the non-finite values +Inf, -Inf and NaN; finite ones round-trip.
std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v);
}

// The exposition format escapes \ and newline in help text, and also " in label values.
std::string escaped(std::string_view text, bool quote) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (quote && c == '"') out += "\\\"";
    else out += c;
  }
  return out;
}

// {k="v",...,le="..."}; empty when there are no labels at all.
std::string label_text(const label_set& labels, std::string_view le = {}) {
  if (labels.empty() && le.empty()) return {};
  std::string out = "{";
  for (const auto& [key, value] : labels) {
    if (out.size() > 1) out += ',';
    out += fmt::format("{}=\"{}\"", key, escaped(value, true));
  }
  if (!le.empty()) out += fmt::format("{}le=\"{}\"", out.size() > 1 ? "," : "", le);
  return out + "}";
}

nlohmann::json label_json(const label_set& labels) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [key, value] : labels) out[key] = value;
  return out;
}

void check_bucket_count(int count) {
  DSRT_ASSERT(count >= 1 && std::size_t(count) <= buckets_max, "count={} buckets_max={}", count,
              buckets_max);
}

}  // namespace

// ---- histogram ---------------------------------------------------------------------------

histogram::histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<std::uint64_t>[bounds_.size() + 1]) {
  DSRT_ASSERT(!bounds_.empty() && bounds_.size() <= buckets_max, "bounds={} buckets_max={}",
              bounds_.size(), buckets_max);
  for (std::size_t i = 0; i < bounds_.size(); ++i) {
    DSRT_ASSERT(std::isfinite(bounds_[i]), "bound {} is {}", i, bounds_[i]);
    DSRT_ASSERT(i == 0 || bounds_[i - 1] < bounds_[i], "bounds not increasing at {}: {} then {}",
                i, bounds_[i - 1], bounds_[i]);
  }
  for (std::size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void histogram::observe(double v) {
  DSRT_ASSERT(!std::isnan(v), "observe(NaN)");
  // lower_bound: the first bound >= v, which is Prometheus's "le" (v <= bound) rule.
  const auto bucket = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

std::vector<std::uint64_t> histogram::bucket_counts() const {
  std::vector<std::uint64_t> out(bounds_.size() + 1);
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = counts_[i].load(std::memory_order_relaxed);
  return out;
}

std::uint64_t histogram::count() const {
  std::uint64_t total = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) total += counts_[i].load(std::memory_order_relaxed);
  return total;
}

double histogram::quantile(double q) const {
  DSRT_ASSERT(q >= 0.0 && q <= 1.0, "q={}", q);
  // One snapshot, so the rank and the bucket walk agree while observers keep writing.
  const auto counts = bucket_counts();
  std::uint64_t total = 0;
  for (auto c : counts) total += c;
  if (total == 0) return std::numeric_limits<double>::quiet_NaN();
  const double rank = q * double(total);
  std::uint64_t before = 0;
  for (std::size_t b = 0; b < counts.size(); ++b) {
    // counts[b] > 0 makes q = 0 land in the first non-empty bucket, not an empty one.
    if (counts[b] == 0 || double(before + counts[b]) < rank) {
      before += counts[b];
      continue;
    }
    if (b == bounds_.size()) return bounds_.back();  // +Inf: nothing to interpolate toward
    if (b == 0 && bounds_[0] <= 0) return bounds_[0];
    const double lower = b == 0 ? 0.0 : bounds_[b - 1];
    const double upper = bounds_[b];
    return lower + (upper - lower) * ((rank - double(before)) / double(counts[b]));
  }
  return bounds_.back();  // unreachable: the last non-empty bucket reaches rank <= total
}

std::vector<double> linear_buckets(double start, double width, int count) {
  check_bucket_count(count);
  DSRT_ASSERT(width > 0, "width={}", width);
  std::vector<double> out;
  for (int i = 0; i < count; ++i) out.push_back(start + width * i);
  return out;
}

std::vector<double> exponential_buckets(double start, double factor, int count) {
  check_bucket_count(count);
  DSRT_ASSERT(start > 0 && factor > 1, "start={} factor={}", start, factor);
  std::vector<double> out;
  double bound = start;
  for (int i = 0; i < count; ++i, bound *= factor) out.push_back(bound);
  return out;
}

std::vector<double> latency_buckets_seconds() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

// ---- registry ----------------------------------------------------------------------------

struct registry::family {
  metric_type type;
  std::string help;
  // Only the map of `type` is used. unique_ptr: metrics are handed out by reference and
  // must not move when the map grows.
  std::map<label_set, std::unique_ptr<metrics::counter>> counters;
  std::map<label_set, std::unique_ptr<metrics::gauge>> gauges;
  std::map<label_set, std::unique_ptr<metrics::histogram>> histograms;
};

registry::registry() = default;
registry::~registry() = default;

registry::family& registry::family_for(std::string_view name, std::string_view help,
                                       metric_type type) {
  DSRT_ASSERT(valid_metric_name(name), "bad metric name '{}'", name);
  auto it = families_.find(name);
  if (it == families_.end()) {
    auto f = std::make_unique<family>();
    f->type = type;
    f->help = std::string(help);
    it = families_.emplace(std::string(name), std::move(f)).first;
  }
  family& f = *it->second;
  DSRT_ASSERT(f.type == type, "metric {} registered as {} and as {}", name, type_name(f.type),
              type_name(type));
  DSRT_ASSERT(f.help == help, "metric {} registered with two help texts", name);
  return f;
}

// Finds or creates the series of `labels` in one of a family's maps.
template <class Map, class Make>
static auto& series_in(Map& series, label_set labels, std::size_t& series_count, Make make) {
  auto it = series.find(labels);
  if (it == series.end()) {
    DSRT_ASSERT(series_count < metrics_max, "more than metrics_max={} series", metrics_max);
    it = series.emplace(std::move(labels), make()).first;
    ++series_count;
  }
  return *it->second;
}

metrics::counter& registry::counter(std::string_view name, std::string_view help,
                                    label_set labels) {
  std::lock_guard lock(mutex_);
  auto& f = family_for(name, help, metric_type::counter);
  return series_in(f.counters, normalized(std::move(labels), metric_type::counter), series_count_,
                   [] { return std::make_unique<metrics::counter>(); });
}

metrics::gauge& registry::gauge(std::string_view name, std::string_view help, label_set labels) {
  std::lock_guard lock(mutex_);
  auto& f = family_for(name, help, metric_type::gauge);
  return series_in(f.gauges, normalized(std::move(labels), metric_type::gauge), series_count_,
                   [] { return std::make_unique<metrics::gauge>(); });
}

metrics::histogram& registry::histogram(std::string_view name, std::string_view help,
                                        std::vector<double> bounds, label_set labels) {
  std::lock_guard lock(mutex_);
  auto& f = family_for(name, help, metric_type::histogram);
  auto& h = series_in(f.histograms, normalized(std::move(labels), metric_type::histogram),
                      series_count_, [&] { return std::make_unique<metrics::histogram>(bounds); });
  DSRT_ASSERT(h.bounds() == bounds, "histogram {} registered again with other bounds", name);
  return h;
}

std::size_t registry::size() const {
  std::lock_guard lock(mutex_);
  return series_count_;
}

std::string registry::prometheus_text() const {
  std::lock_guard lock(mutex_);
  std::string out;
  for (const auto& [name, f] : families_) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, escaped(f->help, false), name,
                       type_name(f->type));
    for (const auto& [labels, c] : f->counters) {
      out += fmt::format("{}{} {}\n", name, label_text(labels), c->value());
    }
    for (const auto& [labels, g] : f->gauges) {
      out += fmt::format("{}{} {}\n", name, label_text(labels), format_value(g->value()));
    }
    for (const auto& [labels, h] : f->histograms) {
      const auto counts = h->bucket_counts();
      std::uint64_t cumulative = 0;
      for (std::size_t b = 0; b < counts.size(); ++b) {
        cumulative += counts[b];
        const std::string le = b < h->bounds().size() ? format_value(h->bounds()[b]) : "+Inf";
        out += fmt::format("{}_bucket{} {}\n", name, label_text(labels, le), cumulative);
      }
      out += fmt::format("{}_sum{} {}\n", name, label_text(labels), format_value(h->sum()));
      out += fmt::format("{}_count{} {}\n", name, label_text(labels), cumulative);
    }
  }
  return out;
}

nlohmann::json registry::to_json() const {
  std::lock_guard lock(mutex_);
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [name, f] : families_) {
    nlohmann::json series = nlohmann::json::array();
    for (const auto& [labels, c] : f->counters) {
      series.push_back({{"labels", label_json(labels)}, {"value", c->value()}});
    }
    for (const auto& [labels, g] : f->gauges) {
      series.push_back({{"labels", label_json(labels)}, {"value", g->value()}});
    }
    for (const auto& [labels, h] : f->histograms) {
      // count from the same snapshot as bucket_counts, so the two always agree.
      const auto counts = h->bucket_counts();
      std::uint64_t count = 0;
      for (auto c : counts) count += c;
      nlohmann::json s = {{"labels", label_json(labels)}, {"count", count}, {"sum", h->sum()},
                          {"bounds", h->bounds()}, {"bucket_counts", counts}};
      if (count > 0) {
        s["quantiles"] = {{"0.5", h->quantile(0.5)}, {"0.9", h->quantile(0.9)},
                          {"0.99", h->quantile(0.99)}};
      }
      series.push_back(std::move(s));
    }
    out[name] = {{"type", type_name(f->type)}, {"help", f->help}, {"series", std::move(series)}};
  }
  return out;
}

}  // namespace dsrt::metrics
