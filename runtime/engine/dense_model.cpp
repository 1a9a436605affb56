#include "runtime/engine/dense_model.h"

#include <algorithm>
#include <cmath>

#include "runtime/engine/rope.h"

namespace dsrt::engine {
namespace {

// Sum of f over every matrix (and norm / bias vector) a decode step reads.
template <class F>
std::int64_t sum_over_step_tensors(const model::dense_weights& w, F f) {
  std::int64_t total = f(w.final_norm) + f(w.lm_head);
  for (const auto& l : w.layers)
    total += f(l.input_norm) + f(l.q) + f(l.k) + f(l.v) + f(l.q_bias) + f(l.k_bias) + f(l.v_bias) +
             f(l.o) + f(l.post_norm) + f(l.gate) + f(l.up) + f(l.down);
  return total;
}

}  // namespace

result<std::unique_ptr<causal_lm>> dense_model::create(std::unique_ptr<model::model_files> files,
                                                       kernels::backend& backend,
                                                       const model_options& options) {
  DSRT_TRY(check_options(options));
  std::unique_ptr<dense_model> m(new dense_model(std::move(files), backend, options));
  DSRT_TRY(m->allocate());
  return std::unique_ptr<causal_lm>(std::move(m));
}

std::int64_t dense_model::last_step_weight_bytes() const {
  return sum_over_step_tensors(files().weights, [](const model::tensor_info* t) {
    return t ? std::int64_t(t->size_bytes) : 0;
  });
}

std::int64_t dense_model::weight_elements_per_token() const {
  return sum_over_step_tensors(files().weights,
                               [](const model::tensor_info* t) { return t ? t->elements() : 0; });
}

status dense_model::allocate() {
  const auto& c = config();
  const auto& w = files().weights;
  DSRT_TRY(allocate_common(w.embed, w.final_norm, w.lm_head));
  for (const auto& l : w.layers) {
    layer_refs r;
    for (auto [dst, src] : {std::pair{&r.input_norm, l.input_norm}, {&r.q, l.q}, {&r.k, l.k},
                            {&r.v, l.v}, {&r.q_bias, l.q_bias}, {&r.k_bias, l.k_bias},
                            {&r.v_bias, l.v_bias}, {&r.o, l.o}, {&r.post_norm, l.post_norm},
                            {&r.gate, l.gate}, {&r.up, l.up}, {&r.down, l.down}}) {
      auto ref = upload(src);
      if (!ref) return ref.err();
      *dst = *ref;
    }
    layers_.push_back(r);
  }
  rope_ = make_rope_table(c);

  const std::int64_t bytes_per_block = std::int64_t(options().kv_block_tokens) *
                                       c.num_key_value_heads * c.head_dim *
                                       std::int64_t(sizeof(std::uint16_t));
  DSRT_TRY(allocate_cache(bytes_per_block, 2 * c.num_hidden_layers));
  for (int layer = 0; layer < c.num_hidden_layers; ++layer)
    cache_.push_back(kernels::kv_layer{static_cast<std::uint16_t*>(cache_arrays()[2 * layer]),
                                       static_cast<std::uint16_t*>(cache_arrays()[2 * layer + 1]),
                                       options().kv_block_tokens, c.num_key_value_heads,
                                       c.head_dim});

  const std::int64_t q_width = std::int64_t(c.num_attention_heads) * c.head_dim;
  const std::int64_t kv_width = std::int64_t(c.num_key_value_heads) * c.head_dim;
  for (auto [dst, width] : {std::pair{&q_, q_width}, {&k_, kv_width}, {&v_, kv_width},
                            {&attn_, q_width}, {&gate_, std::int64_t(c.intermediate_size)},
                            {&up_, std::int64_t(c.intermediate_size)}}) {
    auto p = allocate_buffer(width);
    if (!p) return p.err();
    *dst = *p;
  }
  return ok_status();
}

status dense_model::forward_layers(std::int64_t n, float* x) {
  const auto& c = config();
  auto& b = backend();
  float* h = norm_buffer();
  const float eps = float(c.rms_norm_eps);
  const float scale = 1.0f / std::sqrt(float(c.head_dim));
  for (std::size_t layer = 0; layer < layers_.size(); ++layer) {
    const auto& l = layers_[layer];
    b.rms_norm(x, n, l.input_norm, eps, h);
    const kernels::matmul_part qkv[] = {{l.q, l.q_bias, q_}, {l.k, l.k_bias, k_}, {l.v, l.v_bias, v_}};
    b.matmul_group(h, n, qkv);
    b.rope(q_, n, c.num_attention_heads, c.head_dim, c.head_dim, positions(), rope_);
    b.rope(k_, n, c.num_key_value_heads, c.head_dim, c.head_dim, positions(), rope_);
    b.kv_write(cache_[layer], attention(), k_, v_);
    b.paged_attention(q_, c.num_attention_heads, cache_[layer], attention(), scale, attn_);
    // The attention output projection writes into h, whose normed input is no longer needed.
    b.matmul(attn_, n, l.o, {}, h);
    b.add(x, h, n * c.hidden_size);
    b.rms_norm(x, n, l.post_norm, eps, h);
    const kernels::matmul_part gate_up[] = {{l.gate, {}, gate_}, {l.up, {}, up_}};
    b.matmul_group(h, n, gate_up);
    b.swiglu(gate_, up_, n * c.intermediate_size, gate_);
    b.matmul(gate_, n, l.down, {}, h);
    b.add(x, h, n * c.hidden_size);
  }
  return ok_status();
}

}  // namespace dsrt::engine
