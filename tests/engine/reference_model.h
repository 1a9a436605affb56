#pragma once
// A straightforward double-precision forward pass of llama / qwen2, written from the
// Hugging Face modeling code and sharing nothing with the engine: it reads tensors by
// their checkpoint names through load_as_f32 and computes every position of one sequence.
// The variant fields break it on purpose, so a test can show its comparison would notice
// each kind of mistake.
#include <cstdint>
#include <vector>

#include "runtime/model/weights.h"

namespace dsrt::engine::test_util {

struct reference_variant {
  bool kv_bf16 = true;        // keys (after RoPE) and values rounded to bf16, as the cache holds them
  bool rotate_half = true;    // false: rotate interleaved pairs (GPT-J style) instead
  double theta = 0;           // 0: rope_theta from the config
  bool causal = true;
  bool biases = true;         // q/k/v biases when the config has them
  bool norm_weights = true;   // false: RMSNorm without its gamma
  bool grouped_kv = true;     // false: query head h reads KV head h % kv_heads
};

// Logits [tokens, vocab] for tokens at positions 0, 1, ... REQUIRES: files loaded and the
// tensors present (load_model_dir checked them).
std::vector<double> reference_logits(const model::model_files& files,
                                     const std::vector<std::int32_t>& tokens,
                                     const reference_variant& variant = {});

}  // namespace dsrt::engine::test_util
