#pragma once
// The router's replica choice: the least outstanding tokens, with prefix affinity — a
// prompt goes to the replica its first block of tokens hashes to (rendezvous hashing), as
// long as that replica is not much busier than the least loaded one, so requests that
// share a prefix tend to meet the same prefix cache. Pure function; no state.
#include <cstdint>
#include <optional>
#include <span>

namespace dsrt::policy {

struct replica_choice_config {
  std::int64_t affinity_prefix_tokens = 64;        // tokens of the prompt that pick the home replica
  std::int64_t affinity_load_slack_tokens = 4096;  // extra outstanding tokens the home may carry
};

struct replica_view {
  bool available = false;                // up, healthy, and its breaker lets the request through
  std::int64_t outstanding_tokens = 0;   // prompt + max_tokens of the requests it holds
};

// The replica to use, or nullopt when none is available. Ties go to the lower index.
std::optional<int> choose_replica(std::span<const replica_view> replicas,
                                  std::span<const std::int32_t> prompt,
                                  const replica_choice_config& config);

}  // namespace dsrt::policy
