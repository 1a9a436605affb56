#include "runtime/model/weights.h"

#include <string>

#include "runtime/model/tensor_checker.h"

namespace dsrt::model {
namespace {

using detail::tensor_checker;

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

result<std::unique_ptr<model_files>> load_model_dir(const std::filesystem::path& dir,
                                                    const load_options& options) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return make_error(error_code::not_found, "{}: model directory does not exist",
                      dir.string());
  }
  auto config = load_config(dir / "config.json");
  if (!config) return config.err();
  auto store = weight_store::open(dir, options.memory);
  if (!store) return store.err();

  auto files = std::make_unique<model_files>();
  files->dir = dir;
  files->config = std::move(config.value());
  files->store = std::move(store.value());
  const model_config& c = files->config;
  tensor_checker check(dir, files->store);
  if (c.arch == architecture::deepseek_v3) {
    DSRT_TRY(detail::bind_deepseek(check, c, files->deepseek));
    return files;
  }
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
