#include "transport/hop_trace.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

#include "runtime/error.h"

namespace dsrt::transport::hop_trace {
namespace {

using steady = std::chrono::steady_clock;

struct record_t {
  std::uint64_t ticks;
  stage s;
};

std::vector<record_t> records;                 // sized by start(); written below `written`
std::atomic<std::size_t> written{0};
std::atomic<std::size_t> dropped{0};
std::atomic<std::thread::id> writer{};
steady::time_point started_at;
std::uint64_t started_ticks = 0;

std::uint64_t now_ticks() {
#if defined(__x86_64__) || defined(__i386__)
  return __rdtsc();
#else
  return std::uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now().time_since_epoch()).count());
#endif
}

double quantile(std::vector<double>& v, double q) {
  const auto k = std::size_t(q * double(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + std::ptrdiff_t(k), v.end());
  return v[k];
}

}  // namespace

namespace detail {

std::atomic<bool> on{false};

void record(stage s) {
  if (!on.load(std::memory_order_acquire)) return;   // start()'s buffer and counts are visible
  const auto me = std::this_thread::get_id();
  auto w = writer.load(std::memory_order_acquire);
  if (w != me && !(w == std::thread::id{} && writer.compare_exchange_strong(w, me))) {
    dropped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const std::size_t n = written.load(std::memory_order_relaxed);
  if (n >= records.size()) {
    dropped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  records[n] = {now_ticks(), s};
  written.store(n + 1, std::memory_order_release);   // summary() reads what is below
}

}  // namespace detail

const char* stage_name(stage s) {
  switch (s) {
    case stage::arrived: return "arrived";
    case stage::queued: return "queued";
    case stage::handling: return "handling";
    case stage::decoding: return "decoding";
    case stage::delivering: return "delivering";
    case stage::delivered: return "delivered";
    case stage::callbacks: return "callbacks";
    case stage::handler: return "handler";
    case stage::sending: return "sending";
    case stage::posting: return "posting";
    case stage::posted: return "posted";
  }
  return "unknown";
}

void start(std::size_t capacity) {
  DSRT_ASSERT(capacity > 0, "capacity={}", capacity);
  detail::on.store(false);
  records.assign(capacity, record_t{});   // touched now, not while measuring
  written.store(0);
  dropped.store(0);
  writer.store(std::thread::id{});
  started_at = steady::now();
  started_ticks = now_ticks();
  detail::on.store(true);
}

void stop() { detail::on.store(false); }

summary_t summary(double share) {
  summary_t out;
  const std::size_t n = written.load(std::memory_order_acquire);
  out.marks = n;
  out.dropped = dropped.load(std::memory_order_relaxed);
  const double elapsed_ns = std::chrono::duration<double, std::nano>(steady::now() - started_at).count();
  const std::uint64_t elapsed_ticks = now_ticks() - started_ticks;
  const double ns_per_tick = elapsed_ticks > 0 ? elapsed_ns / double(elapsed_ticks) : 1.0;
  std::map<std::pair<stage, stage>, std::vector<double>> gaps;   // ordered: path order
  for (std::size_t i = 1; i < n; ++i) {
    // A counter that went back (the thread moved to a core whose counter lags) counts as 0.
    const auto ticks = records[i].ticks > records[i - 1].ticks ? records[i].ticks - records[i - 1].ticks : 0;
    gaps[{records[i - 1].s, records[i].s}].push_back(double(ticks) * ns_per_tick);
  }
  std::size_t most = 0;
  for (const auto& [key, v] : gaps) most = std::max(most, v.size());
  for (auto& [key, v] : gaps) {
    if (double(v.size()) < share * double(most)) continue;
    out.steps.push_back({key.first, key.second, v.size(), quantile(v, 0.5), quantile(v, 0.9)});
  }
  return out;
}

}  // namespace dsrt::transport::hop_trace
