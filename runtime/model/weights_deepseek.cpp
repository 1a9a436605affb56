// Binds DeepSeek-V2/V3 tensors (MLA attention, dense or MoE feed-forward, FP8 block scales)
// to their roles, each checked against the shape config.json implies. Names: weights.h.
#include <charconv>
#include <string>

#include "runtime/model/tensor_checker.h"
#include "runtime/model/weights.h"

namespace dsrt::model::detail {
namespace {

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

class deepseek_binder {
 public:
  deepseek_binder(const tensor_checker& check, const model_config& c)
      : check_(check), c_(c), d_(*c.deepseek) {}

  // NAME.weight (any weight dtype; f8_e4m3 needs the quantization_config and a scale).
  result<linear_weights> linear(const std::string& name, std::int64_t rows, std::int64_t cols) {
    linear_weights out;
    auto w = check_.required(name + ".weight", {rows, cols}, /*allow_fp8=*/true);
    if (!w) return w.err();
    out.weight = *w;
    if (out.weight->type != dtype::f8_e4m3) return out;
    if (!d_.quantization) {
      return make_error(error_code::corrupt_data,
                        "{}: tensor '{}.weight' is f8_e4m3 but config.json has no fp8 "
                        "quantization_config (weight_block_size)",
                        out.weight->file.string(), name);
    }
    const auto& q = *d_.quantization;
    auto s = check_.required_f32(name + ".weight_scale_inv",
                                 {ceil_div(rows, q.block_rows), ceil_div(cols, q.block_cols)});
    if (!s) return s.err();
    out.scale = *s;
    return out;
  }

  result<mlp_weights> mlp(const std::string& prefix, std::int64_t ffn) {
    const std::int64_t hidden = c_.hidden_size;
    mlp_weights m;
    auto gate = linear(prefix + "gate_proj", ffn, hidden);
    if (!gate) return gate.err();
    auto up = linear(prefix + "up_proj", ffn, hidden);
    if (!up) return up.err();
    auto down = linear(prefix + "down_proj", hidden, ffn);
    if (!down) return down.err();
    m.gate = *gate;
    m.up = *up;
    m.down = *down;
    return m;
  }

  result<const tensor_info*> vector(const std::string& name, std::int64_t size) {
    return check_.required(name, {size});
  }

  status layer(int i, deepseek_layer_weights& l) {
    const std::string p = fmt::format("model.layers.{}.", i);
    const std::string a = p + "self_attn.";
    const std::int64_t hidden = c_.hidden_size, heads = c_.num_attention_heads;
    const std::int64_t qk_head = std::int64_t(d_.qk_nope_head_dim) + d_.qk_rope_head_dim;
    DSRT_TRY(assign(l.input_norm, vector(p + "input_layernorm.weight", hidden)));
    DSRT_TRY(assign(l.post_norm, vector(p + "post_attention_layernorm.weight", hidden)));
    if (d_.q_lora_rank > 0) {
      DSRT_TRY(assign(l.q_a, linear(a + "q_a_proj", d_.q_lora_rank, hidden)));
      DSRT_TRY(assign(l.q_a_norm, vector(a + "q_a_layernorm.weight", d_.q_lora_rank)));
      DSRT_TRY(assign(l.q_b, linear(a + "q_b_proj", heads * qk_head, d_.q_lora_rank)));
    } else {
      DSRT_TRY(assign(l.q, linear(a + "q_proj", heads * qk_head, hidden)));
    }
    DSRT_TRY(assign(l.kv_a, linear(a + "kv_a_proj_with_mqa",
                                   std::int64_t(d_.kv_lora_rank) + d_.qk_rope_head_dim, hidden)));
    DSRT_TRY(assign(l.kv_a_norm, vector(a + "kv_a_layernorm.weight", d_.kv_lora_rank)));
    DSRT_TRY(assign(l.kv_b, linear(a + "kv_b_proj",
                                   heads * (std::int64_t(d_.qk_nope_head_dim) + d_.v_head_dim),
                                   d_.kv_lora_rank)));
    DSRT_TRY(assign(l.o, linear(a + "o_proj", hidden, heads * d_.v_head_dim)));

    l.moe = is_moe_layer(d_, i);
    if (!l.moe) return assign(l.dense, mlp(p + "mlp.", c_.intermediate_size));
    DSRT_TRY(assign(l.router, check_.required(p + "mlp.gate.weight", {d_.n_routed_experts, hidden})));
    if (d_.topk == topk_method::noaux_tc) {
      DSRT_TRY(assign(l.router_bias,
                      vector(p + "mlp.gate.e_score_correction_bias", d_.n_routed_experts)));
    }
    l.experts.resize(std::size_t(d_.n_routed_experts));
    for (int e = 0; e < d_.n_routed_experts; ++e) {
      DSRT_TRY(assign(l.experts[std::size_t(e)],
                      mlp(fmt::format("{}mlp.experts.{}.", p, e), d_.moe_intermediate_size)));
    }
    if (d_.n_shared_experts > 0) {
      DSRT_TRY(assign(l.shared, mlp(p + "mlp.shared_experts.",
                                    std::int64_t(d_.moe_intermediate_size) * d_.n_shared_experts)));
    }
    return ok_status();
  }

 private:
  template <class T>
  static status assign(T& dst, result<T> r) {
    if (!r) return r.err();
    dst = std::move(*r);
    return ok_status();
  }

  const tensor_checker& check_;
  const model_config& c_;
  const deepseek_config& d_;
};

// The layer index of a "model.layers.{i}." tensor name, or -1.
int layer_of(const std::string& name) {
  static constexpr std::string_view prefix = "model.layers.";
  if (name.compare(0, prefix.size(), prefix) != 0) return -1;
  int layer = -1;
  const char* begin = name.data() + prefix.size();
  auto [end, ec] = std::from_chars(begin, name.data() + name.size(), layer);
  return ec == std::errc() && end != begin && *end == '.' ? layer : -1;
}

}  // namespace

status bind_deepseek(const tensor_checker& check, const model_config& c, deepseek_weights& w) {
  const std::vector<std::int64_t> vocab_by_hidden = {c.vocab_size, c.hidden_size};
  auto embed = check.required("model.embed_tokens.weight", vocab_by_hidden);
  if (!embed) return embed.err();
  w.embed = *embed;
  deepseek_binder bind(check, c);
  w.layers.resize(std::size_t(c.num_hidden_layers));
  for (int i = 0; i < c.num_hidden_layers; ++i) DSRT_TRY(bind.layer(i, w.layers[std::size_t(i)]));
  auto norm = check.required("model.norm.weight", {c.hidden_size});
  if (!norm) return norm.err();
  w.final_norm = *norm;
  if (c.tie_word_embeddings) {
    w.lm_head = w.embed;
  } else {
    auto head = check.required("lm_head.weight", vocab_by_hidden);
    if (!head) return head.err();
    w.lm_head = *head;
  }
  // Multi-token-prediction layers follow the decoder layers; anything past them is not a
  // layer this config describes.
  const int mtp_end = c.num_hidden_layers + c.deepseek->num_nextn_predict_layers;
  for (const auto& [name, t] : check.store().all()) {
    const int layer = layer_of(name);
    if (layer < c.num_hidden_layers) continue;
    if (layer >= mtp_end) {
      return make_error(error_code::corrupt_data,
                        "{}: tensor '{}' belongs to layer {}, but config.json has {} layers "
                        "and {} multi-token-prediction layers",
                        t->file.string(), name, layer, c.num_hidden_layers,
                        c.deepseek->num_nextn_predict_layers);
    }
    ++w.mtp_tensors_skipped;
  }
  return ok_status();
}

}  // namespace dsrt::model::detail
