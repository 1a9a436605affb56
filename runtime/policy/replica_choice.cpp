#include "runtime/policy/replica_choice.h"

#include <algorithm>

#include "runtime/random.h"
#include "runtime/token_hash.h"

namespace dsrt::policy {

std::optional<int> choose_replica(std::span<const replica_view> replicas,
                                  std::span<const std::int32_t> prompt,
                                  const replica_choice_config& config) {
  // Rendezvous hashing: the home is the available replica with the highest hash of
  // (prefix, replica), so removing one replica moves only its own prefixes.
  const std::size_t n = std::min(prompt.size(), std::size_t(std::max<std::int64_t>(config.affinity_prefix_tokens, 0)));
  const std::uint64_t prefix_hash = hash_tokens(prompt.first(n), 0x51ed270b27bd6c19ull);
  // One pass for both: the least loaded (first of equals) and the home (first of equal hashes).
  std::optional<int> least, home;
  std::uint64_t best = 0;
  for (int i = 0; i < int(replicas.size()); ++i) {
    const auto& r = replicas[std::size_t(i)];
    if (!r.available) continue;
    if (!least || r.outstanding_tokens < replicas[std::size_t(*least)].outstanding_tokens) least = i;
    if (n == 0) continue;
    std::uint64_t key = prefix_hash ^ (std::uint64_t(i) * 0x9e3779b97f4a7c15ull);
    const std::uint64_t h = splitmix64(key);
    if (!home || h > best) {
      home = i;
      best = h;
    }
  }
  if (!least) return std::nullopt;
  const auto load = [&](int i) { return replicas[std::size_t(i)].outstanding_tokens; };
  if (n > 0 && load(*home) <= load(*least) + config.affinity_load_slack_tokens) return home;
  return least;
}

}  // namespace dsrt::policy
