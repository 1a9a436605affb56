#include "apps/dsbench/fault_schedule.h"

#include <algorithm>
#include <charconv>

namespace dsrt::apps {
namespace {

bool parse_int(std::string_view s, std::int64_t& out) {
  const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size() && out >= 0;
}

}  // namespace

result<std::vector<fault_event>> parse_faults(const std::vector<std::string>& specs, std::int32_t replicas) {
  std::vector<fault_event> events;
  for (const auto& spec : specs) {
    auto bad = [&](std::string_view why) {
      return make_error(error_code::invalid_argument,
                        "--fault {}: {} (kill-shard:R@T, fail-steps:R@T[-U], slow:R:S@T[-U])", spec, why);
    };
    const auto colon = spec.find(':');
    const auto at = spec.find('@');
    if (colon == std::string::npos || at == std::string::npos || at < colon) return bad("bad syntax");
    const std::string_view name = std::string_view(spec).substr(0, colon);
    std::string_view args = std::string_view(spec).substr(colon + 1, at - colon - 1);
    std::string_view when = std::string_view(spec).substr(at + 1);
    std::int64_t replica = 0, slow = 0, from = 0, until = -1;
    if (name == "slow") {
      const auto c2 = args.find(':');
      if (c2 == std::string_view::npos || !parse_int(args.substr(c2 + 1), slow) || slow < 1)
        return bad("slow needs R:S with S >= 1 ms");
      args = args.substr(0, c2);
    }
    if (!parse_int(args, replica) || replica < 0) return bad("a replica is a number from 0");
    if (replica >= replicas) return bad(fmt::format("replica outside 0..{} (the runtime's replicas)", replicas - 1));
    if (const auto dash = when.find('-'); dash != std::string_view::npos) {
      if (!parse_int(when.substr(dash + 1), until)) return bad("bad end time");
      when = when.substr(0, dash);
    }
    if (!parse_int(when, from) || (until >= 0 && until <= from)) return bad("bad time");
    const auto r = std::int32_t(replica);
    if (name == "kill-shard") {
      if (until >= 0) return bad("kill-shard takes no end time");
      events.push_back({from, fault_event::kind::kill_shard, r, 0});
    } else if (name == "fail-steps") {
      events.push_back({from, fault_event::kind::fail_steps_on, r, 0});
      if (until >= 0) events.push_back({until, fault_event::kind::fail_steps_off, r, 0});
    } else if (name == "slow") {
      events.push_back({from, fault_event::kind::slow_on, r, slow});
      if (until >= 0) events.push_back({until, fault_event::kind::slow_off, r, 0});
    } else {
      return bad("unknown fault");
    }
  }
  std::stable_sort(events.begin(), events.end(), [](const auto& a, const auto& b) { return a.at_ms < b.at_ms; });
  return events;
}

void apply_fault(actors::local_runtime& runtime, const fault_event& e) {
  switch (e.what) {
    case fault_event::kind::kill_shard: runtime.kill_shard(e.replica); break;
    case fault_event::kind::fail_steps_on: runtime.faults(e.replica).fail_steps = true; break;
    case fault_event::kind::fail_steps_off: runtime.faults(e.replica).fail_steps = false; break;
    case fault_event::kind::slow_on: runtime.faults(e.replica).slow_step_ms = e.slow_ms; break;
    case fault_event::kind::slow_off: runtime.faults(e.replica).slow_step_ms = 0; break;
  }
}

}  // namespace dsrt::apps
