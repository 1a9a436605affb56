#include "runtime/engine/moe_router.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "kernels/assert.h"

namespace dsrt::engine {
namespace {

// NaN would break the strict ordering selection needs: it ranks with -inf.
float rank_key(float v) { return std::isnan(v) ? -INFINITY : v; }

// Above this k, selection switches from insertion (O(count x k) worst case, O(count) on
// typical data) to a heap (O(count x log k)). Every released DeepSeek config is far below.
constexpr int insertion_k_max = 16;

// Rewrites ids so its first k entries are the k best by (key descending, id ascending):
// ties go to the lower id. The entries after the first k are left unspecified.
// REQUIRES: 1 <= k <= count; ids ascending; keys hold no NaN.
void select_best(const float* keys, std::int32_t* ids, int count, int k) {
  if (k > insertion_k_max) {
    std::partial_sort(ids, ids + k, ids + count, [keys](std::int32_t a, std::int32_t b) {
      return keys[a] != keys[b] ? keys[a] > keys[b] : a < b;
    });
    return;
  }
  // ids[0, filled) is the best so far, in rank order. Ids arrive ascending, so a newcomer
  // equal to an entry ranks after it: it enters only when strictly better than the worst.
  float best[insertion_k_max];
  int filled = 0;
  for (int i = 0; i < count; ++i) {
    const std::int32_t id = ids[i];
    const float key = keys[id];
    if (filled == k) {
      if (!(key > best[k - 1])) continue;
    } else {
      ++filled;
    }
    int j = filled - 1;
    for (; j > 0 && best[j - 1] < key; --j) {
      best[j] = best[j - 1];
      ids[j] = ids[j - 1];
    }
    best[j] = key;
    ids[j] = id;
  }
}

}  // namespace

routing_config routing_from(const model::deepseek_config& d) {
  return routing_config{
      .experts = d.n_routed_experts,
      .top_k = d.num_experts_per_tok,
      .groups = d.n_group,
      .topk_groups = d.topk_group,
      .method = d.topk,
      .scoring = d.scoring,
      .norm_topk_prob = d.norm_topk_prob,
      .routed_scaling_factor = float(d.routed_scaling_factor),
  };
}

std::string routing_config_problem(const routing_config& c) {
  if (c.experts < 1) return fmt::format("experts ({}) must be >= 1", c.experts);
  if (c.top_k < 1 || c.top_k > c.experts)
    return fmt::format("top_k ({}) is not in [1, experts ({})]", c.top_k, c.experts);
  if (!(std::isfinite(c.routed_scaling_factor) && c.routed_scaling_factor > 0.0f))
    return fmt::format("routed_scaling_factor ({}) must be finite and > 0", c.routed_scaling_factor);
  if (c.method == model::topk_method::greedy) return {};
  if (c.groups < 1 || c.experts % c.groups != 0)
    return fmt::format("groups ({}) must be >= 1 and divide experts ({})", c.groups, c.experts);
  if (c.topk_groups < 1 || c.topk_groups > c.groups)
    return fmt::format("topk_groups ({}) is not in [1, groups ({})]", c.topk_groups, c.groups);
  if (c.top_k > c.topk_groups * (c.experts / c.groups))
    return fmt::format("top_k ({}) exceeds the {} experts in topk_groups ({}) groups of {}",
                       c.top_k, c.topk_groups * (c.experts / c.groups), c.topk_groups,
                       c.experts / c.groups);
  return {};
}

moe_router::moe_router(const routing_config& c) : c_(c) {
  const std::string problem = routing_config_problem(c);
  DSRT_ASSERT(problem.empty(), "invalid routing_config: {}", problem);
  // Greedy ignores the group fields; keeping every group is the same as not grouping.
  limit_groups_ = c.method != model::topk_method::greedy && c.topk_groups < c.groups;
  scores_.resize(std::size_t(c.experts));
  keys_.resize(std::size_t(c.experts));
  candidates_.resize(std::size_t(c.experts));
  if (limit_groups_) {
    group_size_ = c.experts / c.groups;
    group_keys_.resize(std::size_t(c.groups));
    group_ids_.resize(std::size_t(c.groups));
  }
}

void moe_router::route(const float* logits, std::int64_t n, const float* correction_bias,
                       std::int32_t* experts, float* weights) {
  DSRT_ASSERT(n >= 0, "n={}", n);
  DSRT_ASSERT(c_.method != model::topk_method::noaux_tc || correction_bias != nullptr,
              "noaux_tc routing needs e_score_correction_bias");
  for (std::int64_t t = 0; t < n; ++t) {
    route_one(logits + t * c_.experts, correction_bias, experts + t * c_.top_k,
              weights + t * c_.top_k);
  }
}

void moe_router::route_one(const float* logits, const float* correction_bias,
                           std::int32_t* out_experts, float* out_weights) {
  const int e = c_.experts;
  float* scores = scores_.data();
  float* keys = keys_.data();
  if (c_.scoring == model::scoring_func::sigmoid) {
    for (int i = 0; i < e; ++i) scores[i] = 1.0f / (1.0f + std::exp(-logits[i]));
  } else {
    float max = -INFINITY;
    for (int i = 0; i < e; ++i) max = std::max(max, logits[i]);
    float sum = 0.0f;
    for (int i = 0; i < e; ++i) sum += (scores[i] = std::exp(logits[i] - max));
    for (int i = 0; i < e; ++i) scores[i] /= sum;
  }
  const bool biased = c_.method == model::topk_method::noaux_tc;
  for (int i = 0; i < e; ++i) keys[i] = rank_key(biased ? scores[i] + correction_bias[i] : scores[i]);

  // The experts selection may choose from: all of them, or those of the kept groups.
  std::int32_t* candidates = candidates_.data();
  int count = 0;
  if (!limit_groups_) {
    for (int i = 0; i < e; ++i) candidates[i] = i;
    count = e;
  } else {
    const int g = c_.groups, size = group_size_;
    for (int group = 0; group < g; ++group) {
      const float* k = keys + group * size;
      float best = k[0], second = -INFINITY;
      for (int i = 1; i < size; ++i) {
        if (k[i] > best) {
          second = best;
          best = k[i];
        } else if (k[i] > second) {
          second = k[i];
        }
      }
      // noaux_tc: the sum of the group's two best (-inf + inf would be NaN: rank it last).
      const float key = !biased ? best : size == 1 ? best : rank_key(best + second);
      group_keys_[std::size_t(group)] = key;
      group_ids_[std::size_t(group)] = group;
    }
    select_best(group_keys_.data(), group_ids_.data(), g, c_.topk_groups);
    // Kept groups in ascending order, so candidates are in ascending expert order, as
    // select_best requires.
    std::sort(group_ids_.begin(), group_ids_.begin() + c_.topk_groups);
    for (int j = 0; j < c_.topk_groups; ++j) {
      const int first = group_ids_[std::size_t(j)] * size;
      for (int i = 0; i < size; ++i) candidates[count++] = first + i;
    }
  }
  const int top_k = c_.top_k;
  select_best(keys, candidates, count, top_k);
  std::sort(candidates, candidates + top_k);

  float sum = 0.0f;
  for (int j = 0; j < top_k; ++j) {
    out_experts[j] = candidates[j];
    sum += (out_weights[j] = scores[candidates[j]]);
  }
  if (c_.norm_topk_prob && top_k > 1) {
    const float denominator = sum + 1e-20f;
    for (int j = 0; j < top_k; ++j) out_weights[j] /= denominator;
  }
  for (int j = 0; j < top_k; ++j) out_weights[j] *= c_.routed_scaling_factor;
}

void route(const routing_config& c, const float* logits, std::int64_t n,
           const float* correction_bias, std::int32_t* experts, float* weights) {
  moe_router(c).route(logits, n, correction_bias, experts, weights);
}

}  // namespace dsrt::engine
