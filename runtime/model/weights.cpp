#include "runtime/model/weights.h"

#include <string>

namespace dsrt::model {
namespace {

std::string shape_string(const std::vector<std::int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

// Looks tensors up in the store and checks each against the shape the config implies.
class tensor_checker {
 public:
  tensor_checker(const std::filesystem::path& dir, const weight_store& store)
      : dir_(dir), store_(store) {}

  // The tensor, or nullptr when absent (callers decide whether absence is an error).
  result<const tensor_info*> optional(const std::string& name,
                                      const std::vector<std::int64_t>& expected) const {
    const tensor_info* t = store_.find(name);
    if (!t) return static_cast<const tensor_info*>(nullptr);
    // The dtype enum only holds types we compute in today. No default case: a new enum
    // value (fp8, say) becomes a -Wswitch warning here instead of a tensor silently accepted.
    bool accepted = false;
    switch (t->type) {
      case dtype::f32:
      case dtype::f16:
      case dtype::bf16:
        accepted = true;
        break;
    }
    if (!accepted) {
      return make_error(error_code::corrupt_data,
                        "{}: tensor '{}' has dtype {}; weights must be f32, f16 or bf16",
                        t->file.string(), name, dtype_name(t->type));
    }
    if (t->shape != expected) {
      return make_error(error_code::corrupt_data,
                        "{}: tensor '{}' has shape {} but config.json implies {}",
                        t->file.string(), name, shape_string(t->shape), shape_string(expected));
    }
    return t;
  }

  result<const tensor_info*> required(const std::string& name,
                                      const std::vector<std::int64_t>& expected) const {
    auto t = optional(name, expected);
    if (!t) return t.err();
    if (!*t) {
      return make_error(error_code::corrupt_data, "{}: tensor '{}' (shape {}) is missing",
                        dir_.string(), name, shape_string(expected));
    }
    return t;
  }

 private:
  const std::filesystem::path& dir_;
  const weight_store& store_;
};

status bind_layer(const tensor_checker& check, const model_config& c, int i,
                  layer_weights& layer) {
  const std::int64_t hidden = c.hidden_size;
  const std::int64_t q_rows = std::int64_t(c.num_attention_heads) * c.head_dim;
  const std::int64_t kv_rows = std::int64_t(c.num_key_value_heads) * c.head_dim;
  const std::int64_t ffn = c.intermediate_size;
  const std::string p = fmt::format("model.layers.{}.", i);
  struct slot {
    const tensor_info** out;
    std::string name;
    std::vector<std::int64_t> shape;
  };
  std::vector<slot> slots = {
      {&layer.input_norm, p + "input_layernorm.weight", {hidden}},
      {&layer.q, p + "self_attn.q_proj.weight", {q_rows, hidden}},
      {&layer.k, p + "self_attn.k_proj.weight", {kv_rows, hidden}},
      {&layer.v, p + "self_attn.v_proj.weight", {kv_rows, hidden}},
      {&layer.o, p + "self_attn.o_proj.weight", {hidden, q_rows}},
      {&layer.post_norm, p + "post_attention_layernorm.weight", {hidden}},
      {&layer.gate, p + "mlp.gate_proj.weight", {ffn, hidden}},
      {&layer.up, p + "mlp.up_proj.weight", {ffn, hidden}},
      {&layer.down, p + "mlp.down_proj.weight", {hidden, ffn}},
  };
  if (c.attention_bias) {
    slots.push_back({&layer.q_bias, p + "self_attn.q_proj.bias", {q_rows}});
    slots.push_back({&layer.k_bias, p + "self_attn.k_proj.bias", {kv_rows}});
    slots.push_back({&layer.v_bias, p + "self_attn.v_proj.bias", {kv_rows}});
  }
  for (auto& s : slots) {
    auto t = check.required(s.name, s.shape);
    if (!t) return t.err();
    *s.out = *t;
  }
  return ok_status();
}

}  // namespace

result<std::unique_ptr<model_files>> load_model_dir(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return make_error(error_code::not_found, "{}: model directory does not exist",
                      dir.string());
  }
  auto config = load_config(dir / "config.json");
  if (!config) return config.err();
  // The tensor binding below knows only dense llama / qwen2 layers.
  if (config->arch == architecture::deepseek_v3) {
    return make_error(error_code::unsupported,
                      "{}: deepseek_v3 weights are not supported yet (MLA/MoE land with the "
                      "DeepSeek-V3 issue)",
                      dir.string());
  }
  auto store = weight_store::open(dir);
  if (!store) return store.err();

  auto files = std::make_unique<model_files>();
  files->dir = dir;
  files->config = std::move(config.value());
  files->store = std::move(store.value());
  const model_config& c = files->config;
  tensor_checker check(dir, files->store);
  dense_weights& w = files->weights;

  const std::vector<std::int64_t> vocab_by_hidden = {c.vocab_size, c.hidden_size};
  auto embed = check.required("model.embed_tokens.weight", vocab_by_hidden);
  if (!embed) return embed.err();
  w.embed = *embed;
  w.layers.resize(std::size_t(c.num_hidden_layers));
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    DSRT_TRY(bind_layer(check, c, i, w.layers[std::size_t(i)]));
  }
  auto norm = check.required("model.norm.weight", {c.hidden_size});
  if (!norm) return norm.err();
  w.final_norm = *norm;
  // Tied checkpoints usually omit lm_head; some store a copy anyway. transformers then ties
  // the head to the embedding and ignores the copy, so we do the same.
  auto head = c.tie_word_embeddings ? check.optional("lm_head.weight", vocab_by_hidden)
                                    : check.required("lm_head.weight", vocab_by_hidden);
  if (!head) return head.err();
  w.lm_head = c.tie_word_embeddings ? w.embed : *head;
  return files;
}

}  // namespace dsrt::model
