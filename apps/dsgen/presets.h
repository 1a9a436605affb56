#pragma once
// dsgen's model presets (the table in design/PERFORMANCE.md) and what follows from one:
// the config.json Hugging Face writes for it and the list of tensors to generate.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/dtype.h"

namespace dsrt::dsgen {

// Model families dsgen writes; everything else keys off the family.
enum class family { llama, qwen2, deepseek_v3 };

// The MLA / MoE sizes of a DeepSeek-V3 preset. Routing is V3's: noaux_tc over sigmoid
// scores with a correction bias, normalised top-k, scaled by 2.5; RoPE is YaRN.
struct deepseek_shape {
  int q_lora_rank, kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim;
  int n_routed_experts, n_shared_experts, num_experts_per_tok, n_group, topk_group;
  int moe_intermediate_size;
  int first_k_dense_replace;
  int num_nextn_predict_layers;   // MTP layers written after the decoder layers
};

struct preset {
  std::string_view name;
  family arch;
  int vocab_size;
  int hidden_size;
  int num_hidden_layers;
  int num_attention_heads;
  int num_key_value_heads;
  int head_dim;            // 0: hidden_size / num_attention_heads, not written to config
  int intermediate_size;
  bool tie_word_embeddings;
  bool attention_bias;     // q/k/v biases (qwen2 always)
  std::string_view use;    // one line for --list
  std::optional<deepseek_shape> deepseek = std::nullopt;   // family::deepseek_v3
};

const std::vector<preset>& presets();
const preset* find_preset(std::string_view name);
std::string preset_names();  // "a, b, c" for error messages

std::string_view family_name(family f);
double rope_theta(family f);
double rms_norm_eps(family f);
inline constexpr int max_position_embeddings = 4096;

// Token ids config.json names; they come from the tokenizer dsgen writes.
struct special_ids {
  int bos = -1;              // -1: none
  std::vector<int> eos;
};

// FP8 checkpoints (--fp8): DeepSeek-V3's scheme, e4m3 weights with one f32 scale per
// fp8_block x fp8_block block.
inline constexpr int fp8_block = 128;

// One tensor of the model and how to fill it.
//   normal      N(0, 0.02) values, stored in the model dtype (or `type` when set)
//   ones        1.0 (norm weights)
//   fp8_weight  the normal values this tensor would have in bf16, quantised to e4m3 per
//               fp8_block x fp8_block block (value / scale, scale = block amax / 448)
//   fp8_scales  the f32 scales ("weight_scale_inv") of the fp8_weight named `source`
enum class init { normal, ones, fp8_weight, fp8_scales };
struct tensor_plan {
  std::string name;
  std::vector<std::int64_t> shape;
  init fill = init::normal;
  std::optional<dtype> type = std::nullopt;   // nullopt: the model dtype
  std::string source;                         // fp8_scales: the weight's tensor_plan name
  std::vector<std::int64_t> source_shape;     // fp8_scales: the weight's shape
  std::int64_t elements() const;
};

// config.json as transformers writes it for this architecture. vocab_size may differ from
// the preset's when a real tokenizer decides it. fp8: DeepSeek presets only.
nlohmann::ordered_json make_config(const preset& p, int vocab_size, dtype type,
                                   const special_ids& ids, bool fp8 = false);
nlohmann::ordered_json make_generation_config(const special_ids& ids);

// Every tensor, in the names transformers uses (runtime/model/weights.h lists them).
// fp8: every projection of the decoder layers as fp8_weight plus its fp8_scales.
std::vector<tensor_plan> plan_tensors(const preset& p, int vocab_size, bool fp8 = false);

// Pieces of config.json shared by the families: "torch_dtype" for a dtype, and the token
// id values (null / an int / a list, as transformers writes them).
std::string_view torch_dtype_of(dtype t);
nlohmann::ordered_json bos_value(const special_ids& ids);
nlohmann::ordered_json eos_value(const special_ids& ids);

// The DeepSeek-V3 parts (presets_deepseek.cpp).
nlohmann::ordered_json make_deepseek_config(const preset& p, int vocab_size, dtype type,
                                            const special_ids& ids, bool fp8);
std::vector<tensor_plan> plan_deepseek_tensors(const preset& p, int vocab_size, bool fp8);

}  // namespace dsrt::dsgen
