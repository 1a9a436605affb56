#include "runtime/engine/deepseek_model.h"

#include <cmath>

#include "runtime/engine/rope.h"

namespace dsrt::engine {
namespace {

std::int64_t bytes_of(const model::tensor_info* t) { return t ? std::int64_t(t->size_bytes) : 0; }
std::int64_t bytes_of(const model::linear_weights& w) { return bytes_of(w.weight) + bytes_of(w.scale); }
std::int64_t elements_of(const model::tensor_info* t) { return t ? t->elements() : 0; }
std::int64_t elements_of(const model::linear_weights& w) { return elements_of(w.weight); }

// Element (row, col) of a projection as f32, its fp8 block scale applied.
float weight_value(const model::linear_weights& w, const model::fp8_block_quantization* q,
                   std::int64_t row, std::int64_t col) {
  const model::tensor_info& t = *w.weight;
  const std::int64_t cols = t.shape[1];
  if (t.type != dtype::f8_e4m3) return load_as_f32(t.data, t.type, std::size_t(row * cols + col));
  const std::int64_t scale_cols = w.scale->shape[1];
  const float scale = static_cast<const float*>(
      w.scale->data)[(row / q->block_rows) * scale_cols + col / q->block_cols];
  return f8_e4m3_to_f32(static_cast<const std::uint8_t*>(t.data)[row * cols + col]) * scale;
}

}  // namespace

result<std::unique_ptr<causal_lm>> deepseek_model::create(std::unique_ptr<model::model_files> files,
                                                          kernels::backend& backend,
                                                          const model_options& options) {
  DSRT_TRY(check_options(options));
  DSRT_ASSERT(files->config.deepseek.has_value(), "{} is not a DeepSeek model", files->dir.string());
  std::unique_ptr<deepseek_model> m(new deepseek_model(std::move(files), backend, options));
  DSRT_TRY(m->allocate());
  return std::unique_ptr<causal_lm>(std::move(m));
}

std::int64_t deepseek_model::weight_elements_per_token() const {
  std::int64_t total = static_elements_;
  const int top_k = config().deepseek->num_experts_per_tok;
  for (const auto& l : layers_)
    if (l.moe && !l.experts.empty()) total += top_k * l.experts[0].elements;
  return total;
}

kernels::weight_ref deepseek_model::own_weight(std::vector<std::uint16_t> bf16, std::int64_t rows,
                                               std::int64_t cols) {
  owned_bf16_.push_back(std::move(bf16));
  return backend().upload_weight({owned_bf16_.back().data(), dtype::bf16, rows, cols});
}

kernels::weight_ref deepseek_model::own_weight(std::vector<float> f32, std::int64_t rows,
                                               std::int64_t cols) {
  owned_f32_.push_back(std::move(f32));
  return backend().upload_weight({owned_f32_.back().data(), dtype::f32, rows, cols});
}

result<deepseek_model::mlp_refs> deepseek_model::bind_mlp(const model::mlp_weights& w) {
  mlp_refs m;
  for (auto [dst, src] : {std::pair{&m.gate, &w.gate}, {&m.up, &w.up}, {&m.down, &w.down}}) {
    auto r = upload(*src);
    if (!r) return r.err();
    *dst = *r;
    m.bytes += bytes_of(*src);
    m.elements += elements_of(*src);
  }
  return m;
}

status deepseek_model::bind_layer(const model::deepseek_layer_weights& w, layer_refs& r) {
  const auto& c = config();
  const auto& d = *c.deepseek;
  const auto* quant = d.quantization ? &*d.quantization : nullptr;
  auto take = [&](kernels::weight_ref& dst, auto&& src) -> status {
    auto ref = upload(src);
    if (!ref) return ref.err();
    dst = *ref;
    return ok_status();
  };
  DSRT_TRY(take(r.input_norm, w.input_norm));
  DSRT_TRY(take(r.post_norm, w.post_norm));
  DSRT_TRY(take(r.kv_a_norm, w.kv_a_norm));
  if (d.q_lora_rank > 0) {
    DSRT_TRY(take(r.q_a, w.q_a));
    DSRT_TRY(take(r.q_a_norm, w.q_a_norm));
    DSRT_TRY(take(r.q_b, w.q_b));
  } else {
    DSRT_TRY(take(r.q, w.q));
  }
  kernels::weight_ref kv_a;
  DSRT_TRY(take(kv_a, w.kv_a));
  r.kv_a_latent = kernels::rows_view(kv_a, 0, d.kv_lora_rank);
  r.kv_a_rope = kernels::rows_view(kv_a, d.kv_lora_rank, kv_a.rows);
  DSRT_TRY(take(r.o, w.o));

  // kv_b_proj [heads * (nope + v), kv_lora]: per head, nope rows of W_UK then v rows of W_UV.
  const std::int64_t heads = c.num_attention_heads, nope = d.qk_nope_head_dim,
                     v = d.v_head_dim, latent = d.kv_lora_rank;
  std::vector<std::uint16_t> uk_t(std::size_t(heads * latent * nope));
  std::vector<std::uint16_t> uv(std::size_t(heads * v * latent));
  for (std::int64_t h = 0; h < heads; ++h) {
    const std::int64_t row0 = h * (nope + v);
    for (std::int64_t i = 0; i < nope; ++i)
      for (std::int64_t l = 0; l < latent; ++l)
        uk_t[std::size_t((h * latent + l) * nope + i)] =
            f32_to_bf16(weight_value(w.kv_b, quant, row0 + i, l));
    for (std::int64_t i = 0; i < v; ++i)
      for (std::int64_t l = 0; l < latent; ++l)
        uv[std::size_t((h * v + i) * latent + l)] =
            f32_to_bf16(weight_value(w.kv_b, quant, row0 + nope + i, l));
  }
  r.w_uk_t = own_weight(std::move(uk_t), heads * latent, nope);
  r.w_uv = own_weight(std::move(uv), heads * v, latent);
  const std::int64_t attention_bytes = bytes_of(w.input_norm) + bytes_of(w.post_norm) +
                                       bytes_of(w.kv_a_norm) + bytes_of(w.q_a) + bytes_of(w.q_a_norm) +
                                       bytes_of(w.q_b) + bytes_of(w.q) + bytes_of(w.kv_a) +
                                       bytes_of(w.o) + 2 * (r.w_uk_t.rows * nope + r.w_uv.rows * latent);
  static_bytes_ += attention_bytes;
  static_elements_ += elements_of(w.q_a) + elements_of(w.q_b) + elements_of(w.q) +
                      elements_of(w.kv_a) + elements_of(w.o) + heads * latent * nope +
                      heads * v * latent;

  r.moe = w.moe;
  if (!w.moe) {
    auto dense = bind_mlp(w.dense);
    if (!dense) return dense.err();
    r.dense = *dense;
    static_bytes_ += r.dense.bytes;
    static_elements_ += r.dense.elements;
    return ok_status();
  }
  // The router in f32: routing decisions are discrete, so they are computed at full
  // precision, as transformers does (it upcasts the gate to f32).
  const std::int64_t experts = d.n_routed_experts, hidden = c.hidden_size;
  std::vector<float> router(std::size_t(experts * hidden));
  for (std::size_t i = 0; i < router.size(); ++i)
    router[i] = load_as_f32(w.router->data, w.router->type, i);
  r.router = own_weight(std::move(router), experts, hidden);
  static_bytes_ += experts * hidden * std::int64_t(sizeof(float));
  static_elements_ += experts * hidden;
  if (w.router_bias) {
    r.router_bias.resize(std::size_t(experts));
    for (std::size_t i = 0; i < r.router_bias.size(); ++i)
      r.router_bias[i] = load_as_f32(w.router_bias->data, w.router_bias->type, i);
  }
  for (const auto& e : w.experts) {
    auto m = bind_mlp(e);
    if (!m) return m.err();
    r.experts.push_back(*m);
  }
  if (d.n_shared_experts > 0) {
    auto shared = bind_mlp(w.shared);
    if (!shared) return shared.err();
    r.shared = *shared;
    static_bytes_ += r.shared.bytes;
    static_elements_ += r.shared.elements;
  }
  return ok_status();
}

status deepseek_model::allocate() {
  const auto& c = config();
  const auto& d = *c.deepseek;
  const auto& w = files().deepseek;
  DSRT_TRY(allocate_common(w.embed, w.final_norm, w.lm_head));
  static_bytes_ = bytes_of(w.final_norm) + bytes_of(w.lm_head);
  static_elements_ = elements_of(w.lm_head);
  layers_.resize(w.layers.size());
  for (std::size_t i = 0; i < w.layers.size(); ++i) DSRT_TRY(bind_layer(w.layers[i], layers_[i]));
  last_step_bytes_ = static_bytes_;
  router_.emplace(routing_from(d));

  rope_ = make_rope_table(c);
  // softmax scale: 1 / sqrt(q/k head size), times mscale^2 under YaRN with mscale_all_dim
  // (transformers' DeepseekV3Attention).
  attention_scale_ = float(1.0 / std::sqrt(double(d.qk_nope_head_dim + d.qk_rope_head_dim)));
  if (c.rope.type == model::rope_scaling_type::yarn && c.rope.mscale_all_dim != 0.0) {
    const double m = yarn_get_mscale(c.rope.factor, c.rope.mscale_all_dim);
    attention_scale_ = float(attention_scale_ * m * m);
  }

  const std::int64_t entry = std::int64_t(d.kv_lora_rank) + d.qk_rope_head_dim;
  DSRT_TRY(allocate_cache(std::int64_t(options().kv_block_tokens) * entry *
                              std::int64_t(sizeof(std::uint16_t)),
                          c.num_hidden_layers));
  for (int layer = 0; layer < c.num_hidden_layers; ++layer)
    cache_.push_back({static_cast<std::uint16_t*>(cache_arrays()[std::size_t(layer)]),
                      options().kv_block_tokens, d.kv_lora_rank, d.qk_rope_head_dim});

  const std::int64_t heads = c.num_attention_heads;
  const std::int64_t ffn = std::max<std::int64_t>(
      c.intermediate_size, std::int64_t(d.moe_intermediate_size) * d.n_shared_experts);
  const std::int64_t widths[] = {
      std::max(d.q_lora_rank, 1), heads * (d.qk_nope_head_dim + d.qk_rope_head_dim),
      d.kv_lora_rank, d.qk_rope_head_dim, heads * d.kv_lora_rank, heads * d.kv_lora_rank,
      heads * d.v_head_dim, ffn, ffn, d.n_routed_experts, c.hidden_size,
      d.moe_intermediate_size, d.moe_intermediate_size, c.hidden_size, c.hidden_size};
  float** buffers[] = {&qa_, &q_, &ckv_, &kpe_, &q_latent_, &o_latent_, &o_v_, &gate_, &up_,
                       &router_logits_, &expert_in_, &expert_gate_, &expert_up_, &expert_out_,
                       &moe_out_};
  static_assert(std::size(widths) == std::size(buffers));
  for (std::size_t i = 0; i < std::size(buffers); ++i) {
    auto p = allocate_buffer(widths[i]);
    if (!p) return p.err();
    *buffers[i] = *p;
  }
  return ok_status();
}

void deepseek_model::mla(std::size_t layer, std::int64_t n, const float* h, float* out) {
  const auto& c = config();
  const auto& d = *c.deepseek;
  const auto& l = layers_[layer];
  auto& b = backend();
  const float eps = float(c.rms_norm_eps);
  const int heads = c.num_attention_heads;
  const std::int64_t qk_head = std::int64_t(d.qk_nope_head_dim) + d.qk_rope_head_dim;
  if (d.q_lora_rank > 0) {
    const kernels::matmul_part parts[] = {
        {l.q_a, {}, qa_}, {l.kv_a_latent, {}, ckv_}, {l.kv_a_rope, {}, kpe_}};
    b.matmul_group(h, n, parts);
    b.rms_norm(qa_, n, l.q_a_norm, eps, qa_);
    b.matmul(qa_, n, l.q_b, {}, q_);
  } else {
    const kernels::matmul_part parts[] = {
        {l.q, {}, q_}, {l.kv_a_latent, {}, ckv_}, {l.kv_a_rope, {}, kpe_}};
    b.matmul_group(h, n, parts);
  }
  b.rms_norm(ckv_, n, l.kv_a_norm, eps, ckv_);
  float* q_rope = q_ + d.qk_nope_head_dim;
  b.rope(q_rope, n, heads, d.qk_rope_head_dim, qk_head, positions(), rope_);
  b.rope(kpe_, n, 1, d.qk_rope_head_dim, d.qk_rope_head_dim, positions(), rope_);
  b.latent_kv_write(cache_[layer], attention(), ckv_, kpe_);
  // Absorbed: q_latent[t, h] = W_UK[h]^T q_nope[t, h]; attention over the latents; then
  // o[t, h] = W_UV[h] o_latent[t, h].
  b.matmul_heads(q_, n, heads, qk_head, l.w_uk_t, q_latent_, d.kv_lora_rank);
  b.latent_attention(q_latent_, q_rope, qk_head, heads, cache_[layer],
                     attention(), attention_scale_, o_latent_);
  b.matmul_heads(o_latent_, n, heads, d.kv_lora_rank, l.w_uv, o_v_, d.v_head_dim);
  b.matmul(o_v_, n, l.o, {}, out);
}

void deepseek_model::mlp(const mlp_refs& m, std::int64_t n, std::int64_t width, const float* in,
                         float* gate, float* up, float* out) {
  auto& b = backend();
  const kernels::matmul_part gate_up[] = {{m.gate, {}, gate}, {m.up, {}, up}};
  b.matmul_group(in, n, gate_up);
  b.swiglu(gate, up, n * width, gate);
  b.matmul(gate, n, m.down, {}, out);
}

status deepseek_model::forward_layers(std::int64_t n, float* x) {
  const auto& c = config();
  auto& b = backend();
  float* h = norm_buffer();
  const float eps = float(c.rms_norm_eps);
  last_step_bytes_ = static_bytes_;
  last_step_experts_ = 0;
  for (std::size_t layer = 0; layer < layers_.size(); ++layer) {
    const auto& l = layers_[layer];
    b.rms_norm(x, n, l.input_norm, eps, h);
    mla(layer, n, h, h);  // h is read before the output projection overwrites it
    b.add(x, h, n * c.hidden_size);
    b.rms_norm(x, n, l.post_norm, eps, h);
    if (l.moe) {
      last_step_bytes_ += moe(l, n, h);
      b.add(x, moe_out_, n * c.hidden_size);
    } else {
      mlp(l.dense, n, c.intermediate_size, h, gate_, up_, h);
      b.add(x, h, n * c.hidden_size);
    }
  }
  return ok_status();
}

}  // namespace dsrt::engine
