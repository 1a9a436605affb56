// dsgen's DeepSeek-V3 presets: config.json as transformers' DeepseekV3Config writes it, and
// the tensors of MLA + DeepSeekMoE layers (optionally FP8 with 128x128 block scales).
#include <fmt/format.h>

#include "apps/dsgen/presets.h"

namespace dsrt::dsgen {
namespace {

// DeepSeek-V3's YaRN settings, with the context scaled down to the presets' 4096 positions.
constexpr double yarn_factor = 4.0;
constexpr int yarn_original_max_position_embeddings = max_position_embeddings / 4;

}  // namespace

nlohmann::ordered_json make_deepseek_config(const preset& p, int vocab_size, dtype type,
                                            const special_ids& ids, bool fp8) {
  const deepseek_shape& d = *p.deepseek;
  nlohmann::ordered_json c;
  c["architectures"] = {"DeepseekV3ForCausalLM"};
  c["attention_bias"] = false;
  c["attention_dropout"] = 0.0;
  c["bos_token_id"] = bos_value(ids);
  c["eos_token_id"] = eos_value(ids);
  c["first_k_dense_replace"] = d.first_k_dense_replace;
  c["hidden_act"] = "silu";
  c["hidden_size"] = p.hidden_size;
  c["initializer_range"] = 0.02;
  c["intermediate_size"] = p.intermediate_size;
  c["kv_lora_rank"] = d.kv_lora_rank;
  c["max_position_embeddings"] = max_position_embeddings;
  c["model_type"] = "deepseek_v3";
  c["moe_intermediate_size"] = d.moe_intermediate_size;
  c["moe_layer_freq"] = 1;
  c["n_group"] = d.n_group;
  c["n_routed_experts"] = d.n_routed_experts;
  c["n_shared_experts"] = d.n_shared_experts;
  c["norm_topk_prob"] = true;
  c["num_attention_heads"] = p.num_attention_heads;
  c["num_experts_per_tok"] = d.num_experts_per_tok;
  c["num_hidden_layers"] = p.num_hidden_layers;
  c["num_key_value_heads"] = p.num_key_value_heads;
  c["num_nextn_predict_layers"] = d.num_nextn_predict_layers;
  c["q_lora_rank"] = d.q_lora_rank;
  c["qk_nope_head_dim"] = d.qk_nope_head_dim;
  c["qk_rope_head_dim"] = d.qk_rope_head_dim;
  if (fp8) {
    c["quantization_config"] = {{"activation_scheme", "dynamic"},
                                {"fmt", "e4m3"},
                                {"quant_method", "fp8"},
                                {"weight_block_size", {fp8_block, fp8_block}}};
  }
  c["rms_norm_eps"] = rms_norm_eps(p.arch);
  c["rope_interleave"] = true;
  c["rope_scaling"] = {{"beta_fast", 32},
                       {"beta_slow", 1},
                       {"factor", yarn_factor},
                       {"mscale", 1.0},
                       {"mscale_all_dim", 1.0},
                       {"original_max_position_embeddings", yarn_original_max_position_embeddings},
                       {"type", "yarn"}};
  c["rope_theta"] = rope_theta(p.arch);
  c["routed_scaling_factor"] = 2.5;
  c["scoring_func"] = "sigmoid";
  c["tie_word_embeddings"] = p.tie_word_embeddings;
  c["topk_group"] = d.topk_group;
  c["topk_method"] = "noaux_tc";
  c["torch_dtype"] = std::string(torch_dtype_of(type));
  c["transformers_version"] = "4.46.0";
  c["use_cache"] = true;
  c["v_head_dim"] = d.v_head_dim;
  c["vocab_size"] = vocab_size;
  return c;
}

std::vector<tensor_plan> plan_deepseek_tensors(const preset& p, int vocab_size, bool fp8) {
  const deepseek_shape& d = *p.deepseek;
  const std::int64_t hidden = p.hidden_size, heads = p.num_attention_heads;
  std::vector<tensor_plan> t;
  // A projection: bf16 (the model dtype), or fp8 with its block scales.
  auto linear = [&](const std::string& name, std::int64_t rows, std::int64_t cols) {
    if (!fp8) {
      t.push_back({name + ".weight", {rows, cols}, init::normal});
      return;
    }
    t.push_back({name + ".weight", {rows, cols}, init::fp8_weight, dtype::f8_e4m3});
    t.push_back({name + ".weight_scale_inv",
                 {(rows + fp8_block - 1) / fp8_block, (cols + fp8_block - 1) / fp8_block},
                 init::fp8_scales, dtype::f32, name + ".weight", {rows, cols}});
  };
  auto mlp = [&](const std::string& prefix, std::int64_t ffn) {
    linear(prefix + "gate_proj", ffn, hidden);
    linear(prefix + "up_proj", ffn, hidden);
    linear(prefix + "down_proj", hidden, ffn);
  };
  auto layer = [&](int i) {
    const std::string l = fmt::format("model.layers.{}.", i);
    const std::string a = l + "self_attn.";
    t.push_back({l + "input_layernorm.weight", {hidden}, init::ones});
    t.push_back({l + "post_attention_layernorm.weight", {hidden}, init::ones});
    linear(a + "q_a_proj", d.q_lora_rank, hidden);
    t.push_back({a + "q_a_layernorm.weight", {d.q_lora_rank}, init::ones});
    linear(a + "q_b_proj", heads * (d.qk_nope_head_dim + d.qk_rope_head_dim), d.q_lora_rank);
    linear(a + "kv_a_proj_with_mqa", d.kv_lora_rank + d.qk_rope_head_dim, hidden);
    t.push_back({a + "kv_a_layernorm.weight", {d.kv_lora_rank}, init::ones});
    linear(a + "kv_b_proj", heads * (d.qk_nope_head_dim + d.v_head_dim), d.kv_lora_rank);
    linear(a + "o_proj", hidden, heads * d.v_head_dim);
    if (i < d.first_k_dense_replace) {
      mlp(l + "mlp.", p.intermediate_size);
      return;
    }
    // The router stays in the model dtype (as in V3 checkpoints); its correction bias is f32.
    t.push_back({l + "mlp.gate.weight", {d.n_routed_experts, hidden}, init::normal});
    t.push_back({l + "mlp.gate.e_score_correction_bias", {d.n_routed_experts}, init::normal,
                 dtype::f32});
    for (int e = 0; e < d.n_routed_experts; ++e)
      mlp(fmt::format("{}mlp.experts.{}.", l, e), d.moe_intermediate_size);
    if (d.n_shared_experts > 0)
      mlp(l + "mlp.shared_experts.", std::int64_t(d.moe_intermediate_size) * d.n_shared_experts);
  };

  t.push_back({"model.embed_tokens.weight", {vocab_size, hidden}, init::normal});
  for (int i = 0; i < p.num_hidden_layers; ++i) layer(i);
  // Multi-token-prediction layers, as V3 checkpoints carry them after the decoder layers: a
  // full layer plus the MTP projections. Inference does not use them (the loader skips
  // them); they are here so that path is exercised.
  for (int m = 0; m < d.num_nextn_predict_layers; ++m) {
    const int i = p.num_hidden_layers + m;
    const std::string l = fmt::format("model.layers.{}.", i);
    layer(i);
    t.push_back({l + "enorm.weight", {hidden}, init::ones});
    t.push_back({l + "hnorm.weight", {hidden}, init::ones});
    t.push_back({l + "eh_proj.weight", {hidden, 2 * hidden}, init::normal});
    t.push_back({l + "shared_head.norm.weight", {hidden}, init::ones});
  }
  t.push_back({"model.norm.weight", {hidden}, init::ones});
  if (!p.tie_word_embeddings) t.push_back({"lm_head.weight", {vocab_size, hidden}, init::normal});
  return t;
}

}  // namespace dsrt::dsgen
