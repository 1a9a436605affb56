// The MoE feed-forward of deepseek_model: route, group tokens by expert, run each routed
// expert once over its tokens, add the weighted outputs to the shared experts' output.
#include <algorithm>

#include "runtime/engine/deepseek_model.h"

namespace dsrt::engine {

std::int64_t deepseek_model::moe(const layer_refs& l, std::int64_t n, const float* h) {
  const auto& c = config();
  const auto& d = *c.deepseek;
  auto& b = backend();
  const std::int64_t hidden = c.hidden_size, experts = d.n_routed_experts;
  const int top_k = d.num_experts_per_tok;

  // Route on the host: scores are small (n x experts) and the choice is control flow.
  b.matmul(h, n, l.router, {}, router_logits_);
  router_logits_host_.resize(std::size_t(n * experts));
  b.copy_to_host(router_logits_host_.data(), router_logits_,
                 router_logits_host_.size() * sizeof(float));
  route_experts_.resize(std::size_t(n * top_k));
  route_weights_.resize(route_experts_.size());
  router_->route(router_logits_host_.data(), n,
                 l.router_bias.empty() ? nullptr : l.router_bias.data(), route_experts_.data(),
                 route_weights_.data());

  // Group the (token, weight) pairs by expert, tokens in row order within an expert.
  expert_offsets_.assign(std::size_t(experts + 1), 0);
  for (std::int32_t e : route_experts_) ++expert_offsets_[std::size_t(e) + 1];
  for (std::int64_t e = 0; e < experts; ++e)
    expert_offsets_[std::size_t(e + 1)] += expert_offsets_[std::size_t(e)];
  expert_rows_.resize(route_experts_.size());
  expert_row_weights_.resize(route_experts_.size());
  expert_cursor_.assign(expert_offsets_.begin(), expert_offsets_.end() - 1);
  for (std::int64_t t = 0; t < n; ++t) {
    for (int k = 0; k < top_k; ++k) {
      const std::size_t i = std::size_t(t * top_k + k);
      const std::size_t at = std::size_t(expert_cursor_[std::size_t(route_experts_[i])]++);
      expert_rows_[at] = std::int32_t(t);
      expert_row_weights_[at] = route_weights_[i];
    }
  }

  // The tokens of every routed expert, gathered in expert order into one block: expert e's
  // rows are [expert_offsets_[e], expert_offsets_[e + 1]). The block holds step_tokens_max
  // rows, so the experts go in chunks of whole experts (one chunk unless a step routes more
  // than step_tokens_max tokens in all; an expert never serves more than n rows).
  // Each chunk is two batched products (gate/up of every expert, then down), so the
  // gathering costs two dispatches per layer, not two per expert. The shared experts ride
  // in the first chunk's batches. Their output is moe_out_; the routed outputs are added to
  // it per token in ascending expert order, the same order whatever else is in the batch.
  const std::int64_t inter = d.moe_intermediate_size;
  const std::int64_t shared_inter = inter * d.n_shared_experts;
  if (d.n_shared_experts == 0) {
    zeros_.assign(std::size_t(n * hidden), 0.0f);
    b.copy_to_device(moe_out_, zeros_.data(), zeros_.size() * sizeof(float));
  }
  std::int64_t bytes = 0;
  bool shared_done = d.n_shared_experts == 0;
  std::int64_t first = 0;  // first expert of the chunk
  while (first < experts || !shared_done) {
    std::int64_t last = first;
    const std::int64_t row0 = first < experts ? expert_offsets_[std::size_t(first)] : 0;
    while (last < experts && expert_offsets_[std::size_t(last + 1)] - row0 <= step_tokens_max())
      ++last;
    DSRT_ASSERT(last > first || first == experts, "expert {} serves more than {} rows", first,
                step_tokens_max());
    const std::int64_t rows = last > first ? expert_offsets_[std::size_t(last)] - row0 : 0;
    const auto chunk_rows =
        std::span<const std::int32_t>(expert_rows_).subspan(std::size_t(row0), std::size_t(rows));
    const auto chunk_weights =
        std::span<const float>(expert_row_weights_).subspan(std::size_t(row0), std::size_t(rows));
    b.gather_rows(h, hidden, chunk_rows, expert_in_);
    gate_up_tasks_.clear();
    down_tasks_.clear();
    if (!shared_done) {
      gate_up_tasks_.push_back({h, n, l.shared.gate, gate_});
      gate_up_tasks_.push_back({h, n, l.shared.up, up_});
      down_tasks_.push_back({gate_, n, l.shared.down, moe_out_});
    }
    for (std::int64_t e = first; e < last; ++e) {
      const std::int64_t begin = expert_offsets_[std::size_t(e)] - row0;
      const std::int64_t count = expert_offsets_[std::size_t(e + 1)] - row0 - begin;
      if (count == 0) continue;
      const mlp_refs& m = l.experts[std::size_t(e)];
      const float* in = expert_in_ + begin * hidden;
      gate_up_tasks_.push_back({in, count, m.gate, expert_gate_ + begin * inter});
      gate_up_tasks_.push_back({in, count, m.up, expert_up_ + begin * inter});
      down_tasks_.push_back(
          {expert_gate_ + begin * inter, count, m.down, expert_out_ + begin * hidden});
      bytes += m.bytes;
      ++last_step_experts_;
    }
    b.matmul_batch(gate_up_tasks_);
    if (!shared_done) b.swiglu(gate_, up_, n * shared_inter, gate_);
    b.swiglu(expert_gate_, expert_up_, rows * inter, expert_gate_);
    b.matmul_batch(down_tasks_);
    shared_done = true;
    b.scatter_add_rows(moe_out_, hidden, chunk_rows, chunk_weights, expert_out_);
    first = last;
  }
  return bytes;
}

}  // namespace dsrt::engine
