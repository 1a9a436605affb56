#include "tests/engine/reference_deepseek.h"

#include "tests/engine/reference_math.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <numeric>
#include <stdexcept>
#include <string>

namespace dsrt::engine::test_util {
namespace {

// Set per call of reference_deepseek_logits (single-threaded test code).
bool g_fp8_dequant_bf16 = true;

// A projection as doubles: fp8 times its block scale (rounded to bf16 unless the variant
// says not to), any other dtype as stored.
matrix weight(const model::model_files& files, const std::string& name, std::int64_t rows,
              std::int64_t cols) {
  matrix out = tensor(files, name, rows, cols);
  const model::tensor_info* t = files.store.find(name);
  if (t->type != dtype::f8_e4m3) return out;
  const auto& q = *files.config.deepseek->quantization;
  const std::string scale_name = name + "_scale_inv";  // NAME.weight -> NAME.weight_scale_inv
  const model::tensor_info* s = files.store.find(scale_name);
  if (s == nullptr) throw std::runtime_error("missing tensor " + scale_name);
  const std::int64_t scale_cols = (cols + q.block_cols - 1) / q.block_cols;
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c)
      out[std::size_t(r * cols + c)] *= load_as_f32(
          s->data, s->type, std::size_t((r / q.block_rows) * scale_cols + c / q.block_cols));
  if (g_fp8_dequant_bf16)
    for (double& v : out) v = round_bf16(float(v));  // the product in f32, then bf16
  return out;
}

double yarn_mscale(double scale, double mscale) {
  return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

// transformers' _compute_yarn_parameters: inverse frequencies and the cos/sin factor.
struct yarn_rope {
  std::vector<double> inv_freq;
  double attention_factor = 1.0;
};

yarn_rope make_yarn(const model::model_config& c) {
  const int dim = c.deepseek->qk_rope_head_dim;
  const double base = c.rope_theta;
  const auto& s = c.rope;
  yarn_rope r;
  for (int i = 0; i < dim / 2; ++i) r.inv_freq.push_back(1.0 / std::pow(base, double(2 * i) / dim));
  if (s.type != model::rope_scaling_type::yarn) return r;
  auto correction_dim = [&](double rotations) {
    return dim * std::log(double(s.original_max_position_embeddings) / (rotations * 2 * std::numbers::pi)) /
           (2 * std::log(base));
  };
  const double low = std::max(std::floor(correction_dim(s.beta_fast)), 0.0);
  double high = std::min(std::ceil(correction_dim(s.beta_slow)), double(dim - 1));
  if (low == high) high += 0.001;
  for (int i = 0; i < dim / 2; ++i) {
    const double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
    const double extrapolation_factor = 1.0 - ramp;
    const double interpolation = r.inv_freq[std::size_t(i)] / s.factor;
    r.inv_freq[std::size_t(i)] =
        interpolation * (1 - extrapolation_factor) + r.inv_freq[std::size_t(i)] * extrapolation_factor;
  }
  r.attention_factor = s.mscale != 0 && s.mscale_all_dim != 0
                           ? yarn_mscale(s.factor, s.mscale) / yarn_mscale(s.factor, s.mscale_all_dim)
                           : yarn_mscale(s.factor, 1.0);
  return r;
}

// Rotates `dim` values at v (pairs (2i, 2i+1) when interleaved, else (i, i + dim/2)).
void rotate(double* v, int dim, std::int64_t position, const yarn_rope& rope, bool interleaved) {
  for (int i = 0; i < dim / 2; ++i) {
    const double angle = double(position) * rope.inv_freq[std::size_t(i)];
    const double cos = std::cos(angle) * rope.attention_factor;
    const double sin = std::sin(angle) * rope.attention_factor;
    const int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + dim / 2;
    const double x1 = v[a], x2 = v[b];
    v[a] = x1 * cos - x2 * sin;
    v[b] = x2 * cos + x1 * sin;
  }
}

matrix swiglu_mlp(const model::model_files& files, const std::string& prefix, const matrix& h,
                  std::int64_t n, std::int64_t hidden, std::int64_t ffn) {
  const matrix gate = linear(h, n, weight(files, prefix + "gate_proj.weight", ffn, hidden), ffn, hidden);
  const matrix up = linear(h, n, weight(files, prefix + "up_proj.weight", ffn, hidden), ffn, hidden);
  matrix act(gate.size());
  for (std::size_t i = 0; i < act.size(); ++i) act[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
  return linear(act, n, weight(files, prefix + "down_proj.weight", hidden, ffn), hidden, ffn);
}

// Indices of the k largest values, ties to the lower index.
std::vector<int> top_k(const std::vector<double>& v, int k) {
  std::vector<int> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return v[std::size_t(a)] > v[std::size_t(b)]; });
  idx.resize(std::size_t(k));
  return idx;
}

// DeepSeek-V3's MoE (noaux_tc over sigmoid scores), as DeepseekV3MoE computes it.
matrix moe(const model::model_files& files, const std::string& prefix, const matrix& h,
           std::int64_t n, const deepseek_variant& variant, std::vector<double>& margins) {
  const auto& c = files.config;
  const auto& d = *c.deepseek;
  const std::int64_t hidden = c.hidden_size, experts = d.n_routed_experts;
  if (d.topk != model::topk_method::noaux_tc || d.scoring != model::scoring_func::sigmoid)
    throw std::runtime_error("the reference implements DeepSeek-V3 routing only");
  const matrix logits = linear(h, n, tensor(files, prefix + "gate.weight", experts, hidden), experts, hidden);
  const matrix bias = tensor(files, prefix + "gate.e_score_correction_bias", 1, experts);
  matrix out(std::size_t(n * hidden), 0.0);
  const std::int64_t per_group = experts / d.n_group;
  for (std::int64_t t = 0; t < n; ++t) {
    std::vector<double> scores(static_cast<std::size_t>(experts));
    std::vector<double> choice(static_cast<std::size_t>(experts));
    for (std::int64_t e = 0; e < experts; ++e) {
      scores[std::size_t(e)] = 1.0 / (1.0 + std::exp(-logits[std::size_t(t * experts + e)]));
      choice[std::size_t(e)] = scores[std::size_t(e)] + (variant.correction_bias ? bias[std::size_t(e)] : 0.0);
    }
    std::vector<double> group_scores(static_cast<std::size_t>(d.n_group));
    for (int g = 0; g < d.n_group; ++g) {
      std::vector<double> members(choice.begin() + g * per_group, choice.begin() + (g + 1) * per_group);
      std::sort(members.rbegin(), members.rend());
      group_scores[std::size_t(g)] = members[0] + (members.size() > 1 ? members[1] : 0.0);
    }
    const auto groups = top_k(group_scores, d.topk_group);
    auto gap = [](const std::vector<double>& v, const std::vector<int>& chosen) {
      std::vector<double> sorted = v;
      std::sort(sorted.rbegin(), sorted.rend());
      return chosen.size() < sorted.size() ? sorted[chosen.size() - 1] - sorted[chosen.size()]
                                           : INFINITY;
    };
    double& margin = margins[std::size_t(t)];
    margin = std::min(margin, gap(group_scores, groups));
    std::vector<double> masked(static_cast<std::size_t>(experts), -INFINITY);
    for (int g : groups)
      for (std::int64_t e = g * per_group; e < (g + 1) * per_group; ++e) masked[std::size_t(e)] = choice[std::size_t(e)];
    const auto chosen = top_k(masked, d.num_experts_per_tok);
    margin = std::min(margin, gap(masked, chosen));
    double sum = 0;
    for (int e : chosen) sum += scores[std::size_t(e)];
    const matrix row(h.begin() + t * hidden, h.begin() + (t + 1) * hidden);
    for (int e : chosen) {
      double weight = scores[std::size_t(e)];
      if (d.norm_topk_prob) weight /= sum + 1e-20;
      if (variant.routed_scaling) weight *= d.routed_scaling_factor;
      const matrix y = swiglu_mlp(files, prefix + "experts." + std::to_string(e) + ".", row, 1,
                                  hidden, d.moe_intermediate_size);
      for (std::int64_t i = 0; i < hidden; ++i) out[std::size_t(t * hidden + i)] += weight * y[std::size_t(i)];
    }
  }
  if (d.n_shared_experts > 0 && variant.shared_experts) {
    const matrix shared = swiglu_mlp(files, prefix + "shared_experts.", h, n, hidden,
                                     std::int64_t(d.moe_intermediate_size) * d.n_shared_experts);
    for (std::size_t i = 0; i < out.size(); ++i) out[i] += shared[i];
  }
  return out;
}

}  // namespace

std::vector<double> reference_deepseek_logits(const model::model_files& files,
                                              const std::vector<std::int32_t>& tokens,
                                              const deepseek_variant& variant,
                                              routing_margins* margins) {
  g_fp8_dequant_bf16 = variant.fp8_dequant_bf16;
  const auto& c = files.config;
  const auto& d = *c.deepseek;
  const std::int64_t n = std::int64_t(tokens.size());
  const std::int64_t hidden = c.hidden_size, vocab = c.vocab_size, heads = c.num_attention_heads;
  const std::int64_t nope = d.qk_nope_head_dim, rope_dim = d.qk_rope_head_dim, vdim = d.v_head_dim;
  const std::int64_t qk = nope + rope_dim, latent = d.kv_lora_rank;
  const double eps = c.rms_norm_eps;
  const yarn_rope rope = make_yarn(c);
  double scale = 1.0 / std::sqrt(double(qk));
  if (variant.yarn_mscale && c.rope.type == model::rope_scaling_type::yarn && c.rope.mscale_all_dim != 0) {
    const double m = yarn_mscale(c.rope.factor, c.rope.mscale_all_dim);
    scale *= m * m;
  }

  const matrix embed = tensor(files, "model.embed_tokens.weight", vocab, hidden);
  matrix x(std::size_t(n * hidden));
  for (std::int64_t t = 0; t < n; ++t)
    for (std::int64_t i = 0; i < hidden; ++i)
      x[std::size_t(t * hidden + i)] = embed[std::size_t(tokens[std::size_t(t)] * hidden + i)];
  std::vector<double> position_margins(static_cast<std::size_t>(n), INFINITY);

  for (int layer = 0; layer < c.num_hidden_layers; ++layer) {
    const std::string p = "model.layers." + std::to_string(layer) + ".";
    const std::string a = p + "self_attn.";
    const matrix h = rms_norm(x, n, hidden, tensor(files, p + "input_layernorm.weight", 1, hidden), eps);
    matrix q;
    if (d.q_lora_rank > 0) {
      const matrix qa = linear(h, n, weight(files, a + "q_a_proj.weight", d.q_lora_rank, hidden), d.q_lora_rank, hidden);
      const matrix qn = rms_norm(qa, n, d.q_lora_rank, tensor(files, a + "q_a_layernorm.weight", 1, d.q_lora_rank), eps);
      q = linear(qn, n, weight(files, a + "q_b_proj.weight", heads * qk, d.q_lora_rank), heads * qk, d.q_lora_rank);
    } else {
      q = linear(h, n, weight(files, a + "q_proj.weight", heads * qk, hidden), heads * qk, hidden);
    }
    const matrix kv_a = linear(h, n, weight(files, a + "kv_a_proj_with_mqa.weight", latent + rope_dim, hidden),
                               latent + rope_dim, hidden);
    // The latent (normalised) and the RoPE key, as the cache would hold them.
    matrix c_kv(std::size_t(n * latent)), k_pe(std::size_t(n * rope_dim));
    for (std::int64_t t = 0; t < n; ++t) {
      std::copy_n(kv_a.begin() + t * (latent + rope_dim), latent, c_kv.begin() + t * latent);
      std::copy_n(kv_a.begin() + t * (latent + rope_dim) + latent, rope_dim, k_pe.begin() + t * rope_dim);
    }
    if (variant.kv_norm)
      c_kv = rms_norm(c_kv, n, latent, tensor(files, a + "kv_a_layernorm.weight", 1, latent), eps);
    for (std::int64_t t = 0; t < n; ++t) {
      rotate(&k_pe[std::size_t(t * rope_dim)], int(rope_dim), t, rope, variant.interleaved_rope);
      for (std::int64_t hd = 0; hd < heads; ++hd)
        rotate(&q[std::size_t((t * heads + hd) * qk + nope)], int(rope_dim), t, rope, variant.interleaved_rope);
    }
    if (variant.cache_bf16) {
      for (double& e : c_kv) e = round_bf16(e);
      for (double& e : k_pe) e = round_bf16(e);
    }
    // Naive MLA: decompress every head's keys and values.
    const matrix kv = linear(c_kv, n, weight(files, a + "kv_b_proj.weight", heads * (nope + vdim), latent),
                             heads * (nope + vdim), latent);
    matrix attn(std::size_t(n * heads * vdim), 0.0);
    for (std::int64_t t = 0; t < n; ++t)
      for (std::int64_t hd = 0; hd < heads; ++hd) {
        std::vector<double> scores(static_cast<std::size_t>(t + 1));
        double max = -INFINITY;
        for (std::int64_t s = 0; s <= t; ++s) {
          double dot = 0;
          for (std::int64_t i = 0; i < nope; ++i)
            dot += q[std::size_t((t * heads + hd) * qk + i)] * kv[std::size_t((s * heads + hd) * (nope + vdim) + i)];
          for (std::int64_t i = 0; i < rope_dim; ++i)
            dot += q[std::size_t((t * heads + hd) * qk + nope + i)] * k_pe[std::size_t(s * rope_dim + i)];
          scores[std::size_t(s)] = dot * scale;
          max = std::max(max, scores[std::size_t(s)]);
        }
        double sum = 0;
        for (double& e : scores) sum += (e = std::exp(e - max));
        for (std::int64_t s = 0; s <= t; ++s)
          for (std::int64_t i = 0; i < vdim; ++i)
            attn[std::size_t((t * heads + hd) * vdim + i)] +=
                scores[std::size_t(s)] / sum * kv[std::size_t((s * heads + hd) * (nope + vdim) + nope + i)];
      }
    const matrix o = linear(attn, n, weight(files, a + "o_proj.weight", hidden, heads * vdim), hidden, heads * vdim);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] += o[i];

    const matrix h2 = rms_norm(x, n, hidden, tensor(files, p + "post_attention_layernorm.weight", 1, hidden), eps);
    const bool is_moe = layer >= d.first_k_dense_replace && layer % d.moe_layer_freq == 0;
    const matrix f = is_moe ? moe(files, p + "mlp.", h2, n, variant, position_margins)
                            : swiglu_mlp(files, p + "mlp.", h2, n, hidden, c.intermediate_size);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] += f[i];
  }
  if (margins) margins->per_position = position_margins;
  const matrix h = rms_norm(x, n, hidden, tensor(files, "model.norm.weight", 1, hidden), eps);
  return linear(h, n, tensor(files, "lm_head.weight", vocab, hidden), vocab, hidden);
}

}  // namespace dsrt::engine::test_util
