// make_rope_table against Hugging Face's formulas (transformers' modeling_rope_utils.py:
// _compute_default / _compute_linear_scaling / _compute_llama3 / _compute_yarn_parameters),
// written here in double precision from the config JSON as transformers reads it.
#include "runtime/engine/rope.h"

#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <numbers>

#include <nlohmann/json.hpp>

namespace dsrt::engine {
namespace {

using json = nlohmann::json;

// The engine stores float32 and computes base**(2i/dim) in float32 as transformers does;
// 1e-6 relative covers that rounding and nothing else.
constexpr double tolerance = 1e-6;

struct hf_rope {
  std::vector<double> inv_freq;
  double attention_factor = 1.0;
};

// Python's `x or default` for an optional number in rope_scaling.
double get_or(const json& j, const char* key, double fallback) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() || it->get<double>() == 0.0 ? fallback : it->get<double>();
}

hf_rope hf_reference(const json& config) {
  const int dim = config.contains("head_dim")
                      ? config["head_dim"].get<int>()
                      : config["hidden_size"].get<int>() / config["num_attention_heads"].get<int>();
  const double base = config["rope_theta"].get<double>();
  hf_rope out;
  for (int i = 0; i < dim; i += 2) out.inv_freq.push_back(1.0 / std::pow(base, double(i) / dim));
  const json& rs = config["rope_scaling"];
  if (rs.is_null()) return out;
  const std::string type = rs.value("rope_type", rs.value("type", std::string("default")));
  const double factor = rs["factor"].get<double>();
  if (type == "linear") {
    for (double& f : out.inv_freq) f /= factor;
  } else if (type == "llama3") {
    const double low_freq_factor = rs["low_freq_factor"].get<double>();
    const double high_freq_factor = rs["high_freq_factor"].get<double>();
    const double old_context_len = rs["original_max_position_embeddings"].get<double>();
    const double low_freq_wavelen = old_context_len / low_freq_factor;
    const double high_freq_wavelen = old_context_len / high_freq_factor;
    for (double& f : out.inv_freq) {
      const double wavelen = 2 * std::numbers::pi / f;
      const double scaled = wavelen > low_freq_wavelen ? f / factor : f;
      const double smooth =
          (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
      const double smoothed = (1 - smooth) * scaled / factor + smooth * scaled;
      const bool medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
      f = medium ? smoothed : scaled;
    }
  } else if (type == "yarn") {
    const double original = get_or(rs, "original_max_position_embeddings",
                                   config["max_position_embeddings"].get<double>());
    auto get_mscale = [](double scale, double mscale) {
      return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
    };
    const double mscale = get_or(rs, "mscale", 0.0), mscale_all_dim = get_or(rs, "mscale_all_dim", 0.0);
    out.attention_factor = mscale != 0.0 && mscale_all_dim != 0.0
                               ? get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim)
                               : get_mscale(factor, 1.0);
    const double beta_fast = get_or(rs, "beta_fast", 32), beta_slow = get_or(rs, "beta_slow", 1);
    auto correction_dim = [&](double rotations) {
      return dim * std::log(original / (rotations * 2 * std::numbers::pi)) / (2 * std::log(base));
    };
    const double low = std::max(std::floor(correction_dim(beta_fast)), 0.0);
    double high = std::min(std::ceil(correction_dim(beta_slow)), double(dim - 1));
    if (low == high) high += 0.001;
    for (int i = 0; i < dim / 2; ++i) {
      const double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
      const double extrapolation_factor = 1 - ramp;
      const double f = out.inv_freq[std::size_t(i)];
      out.inv_freq[std::size_t(i)] = f / factor * (1 - extrapolation_factor) + f * extrapolation_factor;
    }
  }
  return out;
}

json base_config(int head_dim, double theta, int max_positions) {
  return json{{"model_type", "llama"},       {"vocab_size", 1000},
              {"hidden_size", head_dim * 8}, {"intermediate_size", 64},
              {"num_hidden_layers", 1},      {"num_attention_heads", 8},
              {"num_key_value_heads", 2},    {"max_position_embeddings", max_positions},
              {"rope_theta", theta},         {"rope_scaling", nullptr}};
}

void expect_matches_hf(const std::string& name, const json& config) {
  SCOPED_TRACE(name);
  auto parsed = model::parse_config(config, name);
  ASSERT_TRUE(parsed.ok()) << parsed.err().to_string();
  const auto table = make_rope_table(*parsed);
  const hf_rope want = hf_reference(config);
  ASSERT_EQ(table.inv_freq.size(), want.inv_freq.size());
  double worst = 0;
  std::size_t worst_at = 0;
  for (std::size_t i = 0; i < want.inv_freq.size(); ++i) {
    const double rel = std::abs(table.inv_freq[i] - want.inv_freq[i]) / want.inv_freq[i];
    if (rel > worst) {
      worst = rel;
      worst_at = i;
    }
  }
  EXPECT_LE(worst, tolerance) << "inv_freq[" << worst_at << "] = " << table.inv_freq[worst_at]
                              << ", transformers " << want.inv_freq[worst_at];
  EXPECT_NEAR(table.cos_sin_scale, want.attention_factor, tolerance * want.attention_factor)
      << "attention factor";
  std::cout << name << ": max relative inv_freq diff " << worst << ", attention factor "
            << table.cos_sin_scale << " (transformers " << want.attention_factor << ")\n";
}

TEST(RopeTable, DefaultMatchesTransformers) {
  expect_matches_hf("default theta 500000", base_config(128, 500000.0, 8192));
  expect_matches_hf("default theta 10000 head_dim 16", base_config(16, 10000.0, 4096));
}

TEST(RopeTable, LinearMatchesTransformers) {
  json c = base_config(128, 10000.0, 16384);
  c["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
  expect_matches_hf("linear factor 4", c);
}

TEST(RopeTable, Llama3MatchesTransformers) {
  json c = base_config(128, 500000.0, 131072);  // Llama 3.1
  c["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  expect_matches_hf("llama3 (3.1)", c);
  c["rope_scaling"]["factor"] = 32.0;  // Llama 3.2
  c["rope_scaling"]["low_freq_factor"] = 2.0;
  expect_matches_hf("llama3 factor 32 low 2", c);
}

TEST(RopeTable, YarnMatchesTransformers) {
  json qwen = base_config(128, 1000000.0, 131072);  // Qwen2.5 long context
  qwen["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 32768}};
  expect_matches_hf("yarn qwen2.5", qwen);

  json deepseek = base_config(64, 10000.0, 163840);  // DeepSeek-V3's rope part
  deepseek["rope_scaling"] = {{"type", "yarn"},          {"factor", 40.0},
                              {"beta_fast", 32},         {"beta_slow", 1},
                              {"mscale", 1.0},           {"mscale_all_dim", 1.0},
                              {"original_max_position_embeddings", 4096}};
  expect_matches_hf("yarn deepseek-v3", deepseek);
  deepseek["rope_scaling"]["mscale"] = 0.707;
  deepseek["rope_scaling"]["beta_fast"] = 16;
  deepseek["rope_scaling"]["beta_slow"] = 2;
  expect_matches_hf("yarn mscale 0.707 / mscale_all_dim 1, betas 16 / 2", deepseek);
}

// transformers: original_max_position_embeddings defaults to max_position_embeddings.
TEST(RopeTable, YarnWithoutOriginalContextUsesMaxPositionEmbeddings) {
  json c = base_config(128, 1000000.0, 32768);
  c["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}};
  expect_matches_hf("yarn without original_max_position_embeddings", c);
}

// transformers divides by get_mscale(factor, mscale_all_dim) only when both mscale and
// mscale_all_dim are given (and non-zero); with mscale absent it uses get_mscale(factor).
TEST(RopeTable, YarnWithMscaleAllDimOnlyUsesTheDefaultAttentionFactor) {
  json c = base_config(64, 10000.0, 163840);
  c["rope_scaling"] = {{"type", "yarn"}, {"factor", 40.0}, {"mscale_all_dim", 1.0},
                       {"original_max_position_embeddings", 4096}};
  expect_matches_hf("yarn mscale_all_dim only", c);
}

}  // namespace
}  // namespace dsrt::engine
