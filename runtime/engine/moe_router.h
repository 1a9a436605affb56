#pragma once
// The DeepSeek MoE router: from one token's router logits, the top_k routed experts it goes
// to and the weight of each. A pure function of its inputs; the forward pass runs the gate
// matmul (logits = hidden @ gate_weight^T, in f32) and hands the logits here.
//
// Semantics follow Hugging Face transformers' DeepseekV3TopkRouter / DeepseekV3MoE and
// DeepSeek-V2's remote code (MoEGate), per token:
//   1. scores = sigmoid(logits), or softmax(logits) over the experts (max-subtracted), in f32.
//   2. Expert selection by topk_method:
//      greedy:               the top_k scores over all experts.
//      group_limited_greedy: experts form `groups` consecutive groups of experts / groups;
//                            a group's score is its best expert score; only the topk_groups
//                            best groups are kept; the top_k scores within kept groups.
//      noaux_tc:             choice = scores + correction_bias; a group's score is the sum of
//                            its two best `choice` values (its only one if a group has one
//                            expert); the topk_groups best groups are kept; the top_k
//                            `choice` values within kept groups. The weights are the chosen
//                            experts' ORIGINAL scores (without the bias).
//      Experts outside kept groups are never chosen (DeepSeek's reference inference code
//      masks them with -inf; transformers masks them with 0.0, which differs only when a
//      biased choice value is negative).
//   3. If norm_topk_prob and top_k > 1: weights /= (sum of the top_k weights + 1e-20f).
//   4. Always: weights *= routed_scaling_factor.
// Step 4 is DeepSeek-V3's order. DeepSeek-V2's remote code scales only when it does not
// normalise; every released V2 config has norm_topk_prob = false, where the two agree.
//
// Ties, among groups and among experts alike, go to the lower index, so the result is fully
// determined by the inputs (torch.topk leaves tie order unspecified). NaN scores or choice
// values rank as -inf: the outputs are still top_k distinct expert ids in range (NaN logits,
// or infinite ones under softmax, may then give NaN weights).
//
// Outputs per token: top_k expert ids and their weights, sorted by expert id ascending (so
// the same expert set always has the same layout, whatever the score order).
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/model/config.h"

namespace dsrt::engine {

struct routing_config {
  int experts = 0;                 // routed experts (n_routed_experts), >= 1
  int top_k = 0;                   // experts per token (num_experts_per_tok), in [1, experts]
  int groups = 1;                  // expert groups (n_group); divides experts
  int topk_groups = 1;             // groups a token may route into (topk_group), in [1, groups]
  model::topk_method method = model::topk_method::greedy;
  model::scoring_func scoring = model::scoring_func::softmax;
  bool norm_topk_prob = false;     // renormalise the top_k weights to sum to 1 (top_k > 1)
  float routed_scaling_factor = 1.0f;  // multiplies every weight, finite and > 0
};

// The routing fields of a parsed (hence validated) DeepSeek config.
routing_config routing_from(const model::deepseek_config& d);

// Whether c can be routed: the checks that moe_router asserts, as a message naming the
// first field that fails, or empty when c is valid. (groups / topk_groups are only checked
// for the group methods; greedy ignores them.) parse_config already rejects configs that
// would fail here, so a failure is a programmer error, not bad input.
std::string routing_config_problem(const routing_config& c);

// Routes tokens with scratch buffers sized once, so route() does not allocate. Per token:
// O(experts) for the scores, then a partial selection (insertion into the best top_k, a
// heap past k = 16), no full sort. Thread safety: route() writes the scratch; one
// moe_router per thread.
class moe_router {
 public:
  // REQUIRES: routing_config_problem(c) is empty (asserted).
  explicit moe_router(const routing_config& c);

  // For each of n tokens: logits is [n, experts] f32, row-major. Writes experts[n * top_k]
  // and weights[n * top_k], each token's top_k entries sorted by expert id ascending.
  // correction_bias is [experts] (e_score_correction_bias): REQUIRED non-null for noaux_tc
  // (asserted), ignored by the other methods. REQUIRES: n >= 0; the arrays hold that many
  // elements; outputs do not overlap the inputs.
  void route(const float* logits, std::int64_t n, const float* correction_bias,
             std::int32_t* experts, float* weights);

  const routing_config& config() const { return c_; }

 private:
  // One token: logits [experts] -> out_experts / out_weights [top_k].
  void route_one(const float* logits, const float* correction_bias,
                 std::int32_t* out_experts, float* out_weights);

  routing_config c_;
  bool limit_groups_ = false;           // a group method that drops at least one group;
                                        // the group members below are used only if so
  int group_size_ = 0;                  // experts / groups
  std::vector<float> scores_;           // [experts] sigmoid / softmax scores
  std::vector<float> keys_;             // [experts] what selection ranks: score or choice
  std::vector<float> group_keys_;       // [groups]
  std::vector<std::int32_t> group_ids_; // [groups]
  std::vector<std::int32_t> candidates_;// [experts] experts of kept groups
};

// One-shot form of moe_router::route (allocates its scratch on every call); same contract.
void route(const routing_config& c, const float* logits, std::int64_t n,
           const float* correction_bias, std::int32_t* experts, float* weights);

}  // namespace dsrt::engine
