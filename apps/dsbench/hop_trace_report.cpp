#include "apps/dsbench/hop_trace_report.h"

#include <cstdio>
#include <string>

namespace dsrt::apps {

namespace hop_trace = transport::hop_trace;

namespace {

// From "arrived", the most taken step out of each stage, until "posted": a frame's way in
// and its reply's way out on the common path.
double arrival_to_posted_ns(const hop_trace::summary_t& s) {
  auto at = hop_trace::stage::arrived;
  double total = 0;
  for (std::size_t hops = 0; hops < hop_trace::stage_count; ++hops) {
    const hop_trace::step* next = nullptr;
    for (const auto& step : s.steps)
      if (step.from == at && (!next || step.count > next->count)) next = &step;
    if (!next) return 0;
    total += next->p50_ns;
    at = next->to;
    if (at == hop_trace::stage::posted) return total;
  }
  return 0;   // a cycle that never reaches "posted"
}

}  // namespace

nlohmann::json hop_trace_json(const hop_trace::summary_t& summary) {
  nlohmann::json j;
  j["marks"] = summary.marks;
  j["dropped"] = summary.dropped;
  j["steps"] = nlohmann::json::array();
  for (const auto& s : summary.steps)
    j["steps"].push_back({{"from", hop_trace::stage_name(s.from)},
                          {"to", hop_trace::stage_name(s.to)},
                          {"count", s.count},
                          {"p50_ns", s.p50_ns},
                          {"p90_ns", s.p90_ns}});
  j["arrival_to_posted_ns"] = arrival_to_posted_ns(summary);
  return j;
}

void print_hop_trace(const std::string& who, const nlohmann::json& trace) {
  std::printf("hop trace, %s (%zu marks, %zu dropped):\n", who.c_str(), trace.value("marks", std::size_t{0}),
              trace.value("dropped", std::size_t{0}));
  for (const auto& s : trace.value("steps", nlohmann::json::array())) {
    const std::string step = s.value("from", "?") + " -> " + s.value("to", "?");
    std::printf("  %-26s p50 %6.0f ns  p90 %6.0f ns  (%zu)\n", step.c_str(), s.value("p50_ns", 0.0),
                s.value("p90_ns", 0.0), s.value("count", std::size_t{0}));
  }
  std::printf("  arrived -> posted along the common steps: %.0f ns (sum of p50s)\n",
              trace.value("arrival_to_posted_ns", 0.0));
}

}  // namespace dsrt::apps
