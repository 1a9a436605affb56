#include "runtime/policy/replica_choice.h"

#include <algorithm>

#include "runtime/token_hash.h"

namespace dsrt::policy {

namespace {

// Replica i's rendezvous score for a prefix: the folded 128-bit product of the prefix hash
// (salted per replica) and a constant, as wyhash mixes (one multiply instruction). The router
// scores every replica for every request; splitmix64 took two multiplies and a dozen
// other instructions each, 128 times per request in the scale simulation.
std::uint64_t rendezvous_score(std::uint64_t prefix_hash, int replica) {
  const unsigned __int128 product =
      static_cast<unsigned __int128>(prefix_hash ^ (std::uint64_t(replica) * 0x9e3779b97f4a7c15ull)) *
      0xe7037ed1a0b428dbull;
  return std::uint64_t(product) ^ std::uint64_t(product >> 64);
}

}  // namespace

std::optional<int> choose_replica(std::span<const replica_view> replicas,
                                  std::span<const std::int32_t> prompt,
                                  const replica_choice_config& config) {
  // Rendezvous hashing: the home is the available replica with the highest score for
  // (prefix, replica), so removing one replica moves only its own prefixes.
  const std::size_t n = std::min(prompt.size(), std::size_t(std::max<std::int64_t>(config.affinity_prefix_tokens, 0)));
  const std::uint64_t prefix_hash = hash_tokens(prompt.first(n), 0x51ed270b27bd6c19ull);
  // One pass for both: the least loaded (first of equals) and the home (first of equal scores).
  int least = -1, home = -1;
  std::int64_t least_tokens = 0;
  std::uint64_t best = 0;
  for (int i = 0; i < int(replicas.size()); ++i) {
    const auto& r = replicas[std::size_t(i)];
    if (!r.available) continue;
    if (least < 0 || r.outstanding_tokens < least_tokens) {
      least = i;
      least_tokens = r.outstanding_tokens;
    }
    if (n == 0) continue;
    const std::uint64_t h = rendezvous_score(prefix_hash, i);
    if (home < 0 || h > best) {
      home = i;
      best = h;
    }
  }
  if (least < 0) return std::nullopt;
  if (n > 0 && replicas[std::size_t(home)].outstanding_tokens <= least_tokens + config.affinity_load_slack_tokens)
    return home;
  return least;
}

}  // namespace dsrt::policy
