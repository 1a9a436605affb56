#pragma once
// A straightforward double-precision forward pass of DeepSeek-V3, written from Hugging
// Face's modeling_deepseek_v3.py and sharing nothing with the engine. Attention is the
// naive form: the full keys and values of every head are materialised from the latent
// (k_nope, v = kv_b_proj(latent)), not the absorbed form the engine runs. fp8 weights are
// dequantised with their block scales. The variant fields break it on purpose, so a test
// can show its comparison would notice each kind of mistake.
#include <cstdint>
#include <vector>

#include "runtime/model/weights.h"

namespace dsrt::engine::test_util {

struct deepseek_variant {
  bool cache_bf16 = true;        // latent and RoPE key rounded to bf16, as the cache holds them
  bool interleaved_rope = true;  // false: rotate halves (Llama style)
  bool yarn_mscale = true;       // false: softmax scale without YaRN's mscale^2
  bool correction_bias = true;   // false: noaux_tc without e_score_correction_bias
  bool routed_scaling = true;    // false: routed weights not multiplied by the factor
  bool shared_experts = true;    // false: shared experts left out
  bool kv_norm = true;           // false: latent not normalised (kv_a_layernorm skipped)
  // fp8 weights dequantised to bf16 (value * scale rounded), as DeepSeek's weight_dequant
  // and the engine do; false: kept exact.
  bool fp8_dequant_bf16 = true;
};

// How close each position's routing came to a tie: the smallest gap, over its MoE layers,
// between the last chosen and the first rejected expert (in the biased choice values) and
// between the last kept and the first dropped group. A computation whose rounding moves
// scores by more than that may legitimately route the token differently.
struct routing_margins {
  std::vector<double> per_position;
};

// Logits [tokens, vocab] for tokens at positions 0, 1, ...
// REQUIRES: files.config.deepseek set, tensors present (load_model_dir checked them).
std::vector<double> reference_deepseek_logits(const model::model_files& files,
                                              const std::vector<std::int32_t>& tokens,
                                              const deepseek_variant& variant = {},
                                              routing_margins* margins = nullptr);

}  // namespace dsrt::engine::test_util
