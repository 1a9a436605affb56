#pragma once
// The weights of a model, checked against its config: every tensor
// present, with the shape the config implies and a supported dtype (f32, f16, bf16).
// Tensor names are Hugging Face's:
//   model.embed_tokens.weight                       [vocab, hidden]
//   model.layers.{i}.input_layernorm.weight         [hidden]
//   model.layers.{i}.self_attn.q_proj.weight        [heads*head_dim, hidden]   (+ .bias [heads*head_dim] when attention_bias)
//   model.layers.{i}.self_attn.k_proj.weight        [kv_heads*head_dim, hidden] (+ .bias)
//   model.layers.{i}.self_attn.v_proj.weight        [kv_heads*head_dim, hidden] (+ .bias)
//   model.layers.{i}.self_attn.o_proj.weight        [hidden, heads*head_dim]
//   model.layers.{i}.post_attention_layernorm.weight [hidden]
//   model.layers.{i}.mlp.gate_proj.weight           [intermediate, hidden]
//   model.layers.{i}.mlp.up_proj.weight             [intermediate, hidden]
//   model.layers.{i}.mlp.down_proj.weight           [hidden, intermediate]
//   model.norm.weight                               [hidden]
//   lm_head.weight                                  [vocab, hidden]  (absent when tied: embed_tokens is used)
#include <filesystem>
#include <vector>

#include "runtime/model/config.h"
#include "runtime/model/safetensors.h"

namespace dsrt::model {

struct layer_weights {
  const tensor_info* input_norm = nullptr;
  const tensor_info* q = nullptr;
  const tensor_info* k = nullptr;
  const tensor_info* v = nullptr;
  const tensor_info* q_bias = nullptr;   // nullptr unless attention_bias
  const tensor_info* k_bias = nullptr;
  const tensor_info* v_bias = nullptr;
  const tensor_info* o = nullptr;
  const tensor_info* post_norm = nullptr;
  const tensor_info* gate = nullptr;
  const tensor_info* up = nullptr;
  const tensor_info* down = nullptr;
};

struct dense_weights {
  const tensor_info* embed = nullptr;
  std::vector<layer_weights> layers;
  const tensor_info* final_norm = nullptr;
  const tensor_info* lm_head = nullptr;   // == embed when tie_word_embeddings
};

// --- DeepSeek-V2/V3 (MLA + MoE), Hugging Face names under model.layers.{i}. ---------------
//   input_layernorm.weight, post_attention_layernorm.weight          [hidden]
//   self_attn.q_a_proj.weight [q_lora, hidden], self_attn.q_a_layernorm.weight [q_lora],
//   self_attn.q_b_proj.weight [heads*(nope+rope), q_lora]     (q_lora_rank > 0), or
//   self_attn.q_proj.weight [heads*(nope+rope), hidden]         (q_lora_rank == 0)
//   self_attn.kv_a_proj_with_mqa.weight [kv_lora+rope, hidden], self_attn.kv_a_layernorm.weight [kv_lora]
//   self_attn.kv_b_proj.weight [heads*(nope+v), kv_lora], self_attn.o_proj.weight [hidden, heads*v]
//   dense layers: mlp.{gate,up,down}_proj.weight with intermediate_size
//   MoE layers:   mlp.gate.weight [experts, hidden] (the router), mlp.gate.e_score_correction_bias
//                 [experts] (noaux_tc), mlp.experts.{e}.{gate,up,down}_proj.weight with
//                 moe_intermediate_size, mlp.shared_experts.{gate,up,down}_proj.weight with
//                 moe_intermediate_size * n_shared_experts
// Every projection ("linear") may be f8_e4m3 when config.json has the fp8 quantization_config;
// then NAME.weight_scale_inv (f32 [ceil(rows/block_rows), ceil(cols/block_cols)]) is required.
// Layers num_hidden_layers ... + num_nextn_predict_layers - 1 are V3's multi-token-prediction
// layers: they are skipped (counted in mtp_tensors_skipped), never bound as decoder layers.

struct linear_weights {
  const tensor_info* weight = nullptr;
  const tensor_info* scale = nullptr;  // weight_scale_inv, when weight is f8_e4m3
};

struct mlp_weights {
  linear_weights gate, up, down;
};

struct deepseek_layer_weights {
  const tensor_info* input_norm = nullptr;
  linear_weights q_a, q_b;                  // q_lora_rank > 0
  const tensor_info* q_a_norm = nullptr;
  linear_weights q;                         // q_lora_rank == 0
  linear_weights kv_a, kv_b, o;
  const tensor_info* kv_a_norm = nullptr;
  const tensor_info* post_norm = nullptr;
  bool moe = false;
  mlp_weights dense;                        // !moe
  const tensor_info* router = nullptr;      // moe
  const tensor_info* router_bias = nullptr; // moe with noaux_tc
  std::vector<mlp_weights> experts;         // moe
  mlp_weights shared;                       // moe with n_shared_experts > 0
};

struct deepseek_weights {
  const tensor_info* embed = nullptr;
  std::vector<deepseek_layer_weights> layers;
  const tensor_info* final_norm = nullptr;
  const tensor_info* lm_head = nullptr;
  std::int64_t mtp_tensors_skipped = 0;
};

// A loaded model directory: config plus mapped, validated weights. The tensor_info
// pointers in `weights` point into `store` and live as long as this object (move-only,
// heap-allocated by load_model_dir so the pointers stay valid).
struct model_files {
  std::filesystem::path dir;
  model_config config;
  weight_store store;
  dense_weights weights;      // llama, qwen2
  deepseek_weights deepseek;  // deepseek_v3 (and v2)
};

// Loads DIR/config.json and the weights, and checks them against each other.
// Errors (the message names the file and the tensor or field):
//   not_found        missing config.json / weights / shard
//   corrupt_data     malformed file; a tensor whose dtype or shape contradicts the config;
//                    a missing tensor
//   unsupported      unknown architecture
//   invalid_argument config values out of range
struct load_options {
  weights_memory memory = weights_memory::huge_pages;
};
result<std::unique_ptr<model_files>> load_model_dir(const std::filesystem::path& dir,
                                                    const load_options& options = {});

}  // namespace dsrt::model
