#include "runtime/serving/step_executor.h"

#include <algorithm>

#include "runtime/engine/sampler.h"

namespace dsrt::serving {

result<std::vector<std::int32_t>> model_executor::run(const batching::step_plan& plan) {
  DSRT_TRY(tables_.apply(plan));
  if (!plan.copies.empty()) model_.copy_blocks(plan.copies);
  step_.clear();
  for (const auto& p : plan.sequences)
    step_.push_back({p.tokens, p.first_position, tables_.table(p.id), /*all_logits=*/false});
  std::vector<std::int32_t> sampled;
  // When every sample is greedy the backend picks the tokens where the logits are.
  const bool all_greedy = std::all_of(plan.sequences.begin(), plan.sequences.end(), [](const auto& p) {
    return !p.sample || engine::is_greedy(p.sampling);
  });
  if (all_greedy) {
    DSRT_TRY(model_.forward_greedy(step_, greedy_ids_));
    for (std::size_t i = 0; i < plan.sequences.size(); ++i)
      if (plan.sequences[i].sample) sampled.push_back(greedy_ids_[i]);
    return sampled;
  }
  DSRT_TRY(model_.forward(step_, logits_));
  // forward() returns one row per sequence (its last token); only some want a sample.
  const std::size_t vocab = std::size_t(model_.config().vocab_size);
  for (std::size_t i = 0; i < plan.sequences.size(); ++i) {
    const auto& p = plan.sequences[i];
    if (!p.sample) continue;
    engine::sampler s(p.sampling);
    sampled.push_back(s.sample(std::span(logits_).subspan(i * vocab, vocab), std::uint64_t(p.draw_index)));
  }
  return sampled;
}

result<std::vector<std::int32_t>> null_executor::run(const batching::step_plan& plan) {
  std::vector<std::int32_t> sampled;
  const std::int64_t range = vocab_ - first_token_;
  for (const auto& p : plan.sequences) {
    if (!p.sample) continue;
    const std::int64_t mixed = std::int64_t(p.tokens.back()) * 31 + p.draw_index * 17 + 7;
    sampled.push_back(std::int32_t(first_token_ + mixed % range));
  }
  return sampled;
}

}  // namespace dsrt::serving
