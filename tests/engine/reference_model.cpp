#include "tests/engine/reference_model.h"

#include "tests/engine/reference_math.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace dsrt::engine::test_util {
namespace {

void rope(matrix& x, std::int64_t n, int heads, int head_dim, double theta, bool rotate_half) {
  const int half = head_dim / 2;
  for (std::int64_t t = 0; t < n; ++t)
    for (int h = 0; h < heads; ++h) {
      double* v = &x[std::size_t((t * heads + h) * head_dim)];
      for (int i = 0; i < half; ++i) {
        const double inv_freq = 1.0 / std::pow(theta, double(2 * i) / double(head_dim));
        const double angle = double(t) * inv_freq;
        const int a = rotate_half ? i : 2 * i, b = rotate_half ? i + half : 2 * i + 1;
        const double x1 = v[a], x2 = v[b];
        v[a] = x1 * std::cos(angle) - x2 * std::sin(angle);
        v[b] = x2 * std::cos(angle) + x1 * std::sin(angle);
      }
    }
}

}  // namespace

std::vector<double> reference_logits(const model::model_files& files,
                                     const std::vector<std::int32_t>& tokens,
                                     const reference_variant& variant) {
  const auto& c = files.config;
  const std::int64_t n = std::int64_t(tokens.size());
  const std::int64_t hidden = c.hidden_size, inter = c.intermediate_size, vocab = c.vocab_size;
  const int heads = c.num_attention_heads, kv_heads = c.num_key_value_heads, hd = c.head_dim;
  const std::int64_t q_width = std::int64_t(heads) * hd, kv_width = std::int64_t(kv_heads) * hd;
  const double eps = c.rms_norm_eps;
  const double theta = variant.theta > 0 ? variant.theta : c.rope_theta;
  const bool biases = (c.attention_bias || c.arch == model::architecture::qwen2) && variant.biases;

  const matrix embed = tensor(files, "model.embed_tokens.weight", vocab, hidden);
  matrix x(std::size_t(n * hidden));
  for (std::int64_t t = 0; t < n; ++t)
    for (std::int64_t i = 0; i < hidden; ++i)
      x[std::size_t(t * hidden + i)] = embed[std::size_t(tokens[std::size_t(t)] * hidden + i)];

  for (int layer = 0; layer < c.num_hidden_layers; ++layer) {
    const std::string p = "model.layers." + std::to_string(layer) + ".";
    auto w = [&](const std::string& name, std::int64_t rows, std::int64_t cols) {
      return tensor(files, p + name, rows, cols);
    };
    const matrix in_norm = w("input_layernorm.weight", 1, hidden);
    const matrix h = rms_norm(x, n, hidden, in_norm, eps, variant.norm_weights);
    matrix qb, kb, vb;
    if (biases) {
      qb = w("self_attn.q_proj.bias", 1, q_width);
      kb = w("self_attn.k_proj.bias", 1, kv_width);
      vb = w("self_attn.v_proj.bias", 1, kv_width);
    }
    matrix q = linear(h, n, w("self_attn.q_proj.weight", q_width, hidden), q_width, hidden,
                      biases ? &qb : nullptr);
    matrix k = linear(h, n, w("self_attn.k_proj.weight", kv_width, hidden), kv_width, hidden,
                      biases ? &kb : nullptr);
    matrix v = linear(h, n, w("self_attn.v_proj.weight", kv_width, hidden), kv_width, hidden,
                      biases ? &vb : nullptr);
    rope(q, n, heads, hd, theta, variant.rotate_half);
    rope(k, n, kv_heads, hd, theta, variant.rotate_half);
    if (variant.kv_bf16) {
      for (double& e : k) e = round_bf16(e);
      for (double& e : v) e = round_bf16(e);
    }
    matrix attn(std::size_t(n * q_width), 0.0);
    const double scale = 1.0 / std::sqrt(double(hd));
    for (std::int64_t t = 0; t < n; ++t)
      for (int head = 0; head < heads; ++head) {
        const int g = variant.grouped_kv ? head / (heads / kv_heads) : head % kv_heads;
        const std::int64_t context = variant.causal ? t + 1 : n;
        std::vector<double> scores(static_cast<std::size_t>(context));
        double max = -INFINITY;
        for (std::int64_t s = 0; s < context; ++s) {
          double dot = 0;
          for (int i = 0; i < hd; ++i)
            dot += q[std::size_t((t * heads + head) * hd + i)] * k[std::size_t((s * kv_heads + g) * hd + i)];
          scores[std::size_t(s)] = dot * scale;
          max = std::max(max, scores[std::size_t(s)]);
        }
        double sum = 0;
        for (double& e : scores) sum += (e = std::exp(e - max));
        for (std::int64_t s = 0; s < context; ++s)
          for (int i = 0; i < hd; ++i)
            attn[std::size_t((t * heads + head) * hd + i)] +=
                scores[std::size_t(s)] / sum * v[std::size_t((s * kv_heads + g) * hd + i)];
      }
    const matrix o = linear(attn, n, w("self_attn.o_proj.weight", hidden, q_width), hidden, q_width, nullptr);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] += o[i];

    const matrix post_norm = w("post_attention_layernorm.weight", 1, hidden);
    const matrix h2 = rms_norm(x, n, hidden, post_norm, eps, variant.norm_weights);
    const matrix gate = linear(h2, n, w("mlp.gate_proj.weight", inter, hidden), inter, hidden, nullptr);
    const matrix up = linear(h2, n, w("mlp.up_proj.weight", inter, hidden), inter, hidden, nullptr);
    matrix act(gate.size());
    for (std::size_t i = 0; i < act.size(); ++i) act[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
    const matrix down = linear(act, n, w("mlp.down_proj.weight", hidden, inter), hidden, inter, nullptr);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] += down[i];
  }
  const matrix final_norm = tensor(files, "model.norm.weight", 1, hidden);
  const matrix h = rms_norm(x, n, hidden, final_norm, eps, variant.norm_weights);
  const matrix head =
      c.tie_word_embeddings ? embed : tensor(files, "lm_head.weight", vocab, hidden);
  return linear(h, n, head, vocab, hidden, nullptr);
}

}  // namespace dsrt::engine::test_util
