#include "sim/shrink.h"

#include <algorithm>

namespace dsrt::sim {

std::optional<shrink_result> shrink_faults(const sim_config& config, const planted_bugs& bugs, int runs_max) {
  return shrink_faults(config, [&](const sim_config& c) { return run_simulation(c, bugs); }, runs_max);
}

std::optional<shrink_result> shrink_faults(const sim_config& config,
                                           const std::function<sim_report(const sim_config&)>& run, int runs_max) {
  shrink_result out;
  auto failing = [&](const std::vector<std::size_t>& kept) -> std::optional<std::string> {
    auto c = config;
    c.faults_kept = kept;
    ++out.runs;
    const auto r = run(c);
    if (r.violations.empty()) return std::nullopt;
    return r.violations.front();
  };
  out.kept = kept_fault_indices(config, draw_faults(config).size());
  auto first = failing(out.kept);
  if (!first) return std::nullopt;
  out.violation = *first;
  for (std::size_t chunk = std::max<std::size_t>(out.kept.size() / 2, 1); chunk >= 1; chunk /= 2) {
    bool dropped = true;
    while (dropped && out.runs < runs_max) {
      dropped = false;
      for (std::size_t at = 0; at < out.kept.size() && out.runs < runs_max; at += chunk) {
        std::vector<std::size_t> without(out.kept.begin(), out.kept.begin() + std::ptrdiff_t(at));
        without.insert(without.end(), out.kept.begin() + std::ptrdiff_t(std::min(at + chunk, out.kept.size())),
                       out.kept.end());
        if (auto v = failing(without)) {
          out.kept = std::move(without);
          out.violation = *v;
          dropped = true;
          break;
        }
      }
    }
    if (chunk == 1) break;
  }
  return out;
}

}  // namespace dsrt::sim
