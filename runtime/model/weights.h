#pragma once
// The weights of a dense (llama / qwen2) model, checked against its config: every tensor
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

// A loaded model directory: config plus mapped, validated weights. The tensor_info
// pointers in `weights` point into `store` and live as long as this object (move-only,
// heap-allocated by load_model_dir so the pointers stay valid).
struct model_files {
  std::filesystem::path dir;
  model_config config;
  weight_store store;
  dense_weights weights;
};

// Loads DIR/config.json and the weights, and checks them against each other.
// Errors (the message names the file and the tensor or field):
//   not_found        missing config.json / weights / shard
//   corrupt_data     malformed file; a tensor whose dtype or shape contradicts the config;
//                    a missing tensor
//   unsupported      unknown architecture
//   invalid_argument config values out of range
result<std::unique_ptr<model_files>> load_model_dir(const std::filesystem::path& dir);

}  // namespace dsrt::model
