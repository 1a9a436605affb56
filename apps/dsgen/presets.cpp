#include "apps/dsgen/presets.h"

#include <fmt/format.h>

namespace dsrt::dsgen {

const std::vector<preset>& presets() {
  // name, family, vocab, hidden, layers, heads, kv heads, head dim, ffn, tied, q/k/v bias
  static const std::vector<preset> table = {
      {"tiny-llama", family::llama, 512, 64, 2, 4, 2, 0, 128, false, false, "unit tests"},
      {"tiny-qwen2", family::qwen2, 512, 64, 2, 4, 2, 0, 128, true, true, "unit tests"},
      {"bench-125m", family::llama, 32000, 768, 12, 12, 4, 64, 2048, false, false,
       "CPU benchmarks"},
      {"bench-1b", family::llama, 128256, 2048, 16, 32, 8, 0, 8192, false, false,
       "GPU benchmarks"},
      // DeepSeek: heads and KV heads are equal (MLA); head_dim is qk_rope_head_dim, written
      // by the config as the transformers config computes it.
      {"tiny-dsv3", family::deepseek_v3, 512, 256, 4, 4, 4, 0, 512, false, false, "unit tests",
       deepseek_shape{128, 64, 32, 16, 32, 16, 1, 4, 4, 2, 128, 1, 1}},
      {"bench-dsv3-1b", family::deepseek_v3, 129280, 1024, 8, 16, 16, 0, 2816, false, false,
       "DeepSeek-shaped benchmarks",
       deepseek_shape{384, 256, 64, 32, 64, 64, 1, 6, 8, 4, 512, 1, 0}},
  };
  return table;
}

const preset* find_preset(std::string_view name) {
  for (const auto& p : presets()) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

std::string preset_names() {
  std::string names;
  for (const auto& p : presets()) {
    if (!names.empty()) names += ", ";
    names += p.name;
  }
  return names;
}

std::string_view family_name(family f) {
  switch (f) {
    case family::llama: return "llama";
    case family::qwen2: return "qwen2";
    case family::deepseek_v3: return "deepseek_v3";
  }
  return "?";
}

// Llama 3, Qwen2 and DeepSeek-V3 release values, so RoPE code sees realistic frequencies.
double rope_theta(family f) {
  switch (f) {
    case family::llama: return 500000.0;
    case family::qwen2: return 1000000.0;
    case family::deepseek_v3: return 10000.0;
  }
  return 10000.0;
}
double rms_norm_eps(family f) { return f == family::llama ? 1e-5 : 1e-6; }

std::int64_t tensor_plan::elements() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

namespace {

std::string_view torch_dtype_name(dtype t) {
  switch (t) {
    case dtype::f32: return "float32";
    case dtype::f16: return "float16";
    case dtype::bf16: return "bfloat16";
    case dtype::f8_e4m3: return "bfloat16";  // fp8 checkpoints keep bf16 as torch_dtype
  }
  return "bfloat16";
}

}  // namespace

std::string_view torch_dtype_of(dtype t) { return torch_dtype_name(t); }

nlohmann::ordered_json eos_value(const special_ids& ids) {
  if (ids.eos.size() == 1) return ids.eos[0];
  return ids.eos;
}

nlohmann::ordered_json bos_value(const special_ids& ids) {
  if (ids.bos < 0) return nullptr;
  return ids.bos;
}

nlohmann::ordered_json make_config(const preset& p, int vocab_size, dtype type,
                                   const special_ids& ids, bool fp8) {
  if (p.arch == family::deepseek_v3) return make_deepseek_config(p, vocab_size, type, ids, fp8);
  // Keys in the order transformers writes them (sorted).
  nlohmann::ordered_json c;
  const bool qwen2 = p.arch == family::qwen2;
  c["architectures"] = {qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM"};
  if (!qwen2) c["attention_bias"] = p.attention_bias;
  c["attention_dropout"] = 0.0;
  c["bos_token_id"] = bos_value(ids);
  c["eos_token_id"] = eos_value(ids);
  if (p.head_dim > 0) c["head_dim"] = p.head_dim;
  c["hidden_act"] = "silu";
  c["hidden_size"] = p.hidden_size;
  c["initializer_range"] = 0.02;
  c["intermediate_size"] = p.intermediate_size;
  c["max_position_embeddings"] = max_position_embeddings;
  if (qwen2) {
    c["max_window_layers"] = p.num_hidden_layers;
  } else {
    c["mlp_bias"] = false;
  }
  c["model_type"] = std::string(family_name(p.arch));
  c["num_attention_heads"] = p.num_attention_heads;
  c["num_hidden_layers"] = p.num_hidden_layers;
  c["num_key_value_heads"] = p.num_key_value_heads;
  if (!qwen2) c["pretraining_tp"] = 1;
  c["rms_norm_eps"] = rms_norm_eps(p.arch);
  c["rope_scaling"] = nullptr;
  c["rope_theta"] = rope_theta(p.arch);
  if (qwen2) c["sliding_window"] = max_position_embeddings;
  c["tie_word_embeddings"] = p.tie_word_embeddings;
  c["torch_dtype"] = std::string(torch_dtype_name(type));
  c["transformers_version"] = "4.44.0";
  c["use_cache"] = true;
  if (qwen2) c["use_sliding_window"] = false;
  c["vocab_size"] = vocab_size;
  return c;
}

nlohmann::ordered_json make_generation_config(const special_ids& ids) {
  nlohmann::ordered_json g;
  g["_from_model_config"] = true;
  g["bos_token_id"] = bos_value(ids);
  g["eos_token_id"] = eos_value(ids);
  g["transformers_version"] = "4.44.0";
  return g;
}

std::vector<tensor_plan> plan_tensors(const preset& p, int vocab_size, bool fp8) {
  if (p.arch == family::deepseek_v3) return plan_deepseek_tensors(p, vocab_size, fp8);
  const std::int64_t hidden = p.hidden_size;
  const std::int64_t head_dim = p.head_dim > 0 ? p.head_dim : hidden / p.num_attention_heads;
  const std::int64_t q_rows = p.num_attention_heads * head_dim;
  const std::int64_t kv_rows = p.num_key_value_heads * head_dim;
  const std::int64_t ffn = p.intermediate_size;
  // Norm weights are 1.0, as transformers initialises them: with random norm weights the
  // activations drift and a random model's logits stop being numerically sane.
  std::vector<tensor_plan> t;
  t.push_back({"model.embed_tokens.weight", {vocab_size, hidden}, init::normal});
  for (int i = 0; i < p.num_hidden_layers; ++i) {
    const std::string l = fmt::format("model.layers.{}.", i);
    t.push_back({l + "input_layernorm.weight", {hidden}, init::ones});
    t.push_back({l + "self_attn.q_proj.weight", {q_rows, hidden}, init::normal});
    t.push_back({l + "self_attn.k_proj.weight", {kv_rows, hidden}, init::normal});
    t.push_back({l + "self_attn.v_proj.weight", {kv_rows, hidden}, init::normal});
    if (p.attention_bias) {
      t.push_back({l + "self_attn.q_proj.bias", {q_rows}, init::normal});
      t.push_back({l + "self_attn.k_proj.bias", {kv_rows}, init::normal});
      t.push_back({l + "self_attn.v_proj.bias", {kv_rows}, init::normal});
    }
    t.push_back({l + "self_attn.o_proj.weight", {hidden, q_rows}, init::normal});
    t.push_back({l + "post_attention_layernorm.weight", {hidden}, init::ones});
    t.push_back({l + "mlp.gate_proj.weight", {ffn, hidden}, init::normal});
    t.push_back({l + "mlp.up_proj.weight", {ffn, hidden}, init::normal});
    t.push_back({l + "mlp.down_proj.weight", {hidden, ffn}, init::normal});
  }
  t.push_back({"model.norm.weight", {hidden}, init::ones});
  if (!p.tie_word_embeddings) t.push_back({"lm_head.weight", {vocab_size, hidden}, init::normal});
  return t;
}

}  // namespace dsrt::dsgen
