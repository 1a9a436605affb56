// The DeepSeek-V2/V3 part of config.json: MLA sizes, MoE routing, MTP and FP8 block
// quantization. parse_config (config.cpp) has already read the fields every architecture
// shares; this file reads the rest and checks that the routing settings can be met.
#include <initializer_list>
#include <string>

#include <nlohmann/json.hpp>

#include "runtime/model/config.h"

namespace dsrt::model::detail {
namespace {

using json = nlohmann::json;

// Defaults where a field is absent. V3: transformers' DeepseekV3Config (its modeling code
// always routes with noaux_tc over sigmoid scores and makes every layer after the first
// first_k_dense_replace an MoE layer, so those defaults are noaux_tc, sigmoid and 1).
// V2: the routing fields below follow DeepseekV2Config (greedy top-k over softmax scores,
// one group, no renormalisation, scale 1.0, no dense prefix); sizes keep V3's defaults, so
// a V2 config.json should spell its sizes out (published ones do).
deepseek_config defaults_for(const std::string& model_type) {
  deepseek_config d;  // the member initialisers are DeepseekV3Config's defaults
  if (model_type == "deepseek_v2") {
    d.n_group = 1;
    d.topk_group = 1;
    d.topk = topk_method::greedy;
    d.scoring = scoring_func::softmax;
    d.norm_topk_prob = false;
    d.routed_scaling_factor = 1.0;
    d.first_k_dense_replace = 0;
  }
  return d;
}

// A string field that must be one of `names`; returns the index of the match, `fallback`
// when absent.
result<int> one_of(const json& j, const char* name, std::initializer_list<const char*> names,
                   int fallback, const std::string& source) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return fallback;
  if (it->is_string()) {
    int i = 0;
    for (const char* n : names) {
      if (*it == n) return i;
      ++i;
    }
  }
  std::string allowed;
  for (const char* n : names) allowed += std::string(allowed.empty() ? "" : ", ") + n;
  return make_error(error_code::invalid_argument, "{}: {} ({}) is not one of {}", source, name,
                    it->dump(), allowed);
}

// quantization_config: only DeepSeek-V3's FP8 scheme (fp8, e4m3, 128x128 weight blocks).
result<fp8_block_quantization> parse_quantization(const json& q, const std::string& source) {
  const std::string where = source + " quantization_config";
  if (!q.is_object()) {
    return make_error(error_code::invalid_argument, "{}: ({}) is not an object", where,
                      q.dump());
  }
  auto method = q.find("quant_method");
  if (method == q.end() || *method != "fp8") {
    return make_error(error_code::unsupported,
                      "{}: quant_method {} is not supported (only \"fp8\", as DeepSeek-V3 ships)",
                      where, method == q.end() ? std::string("(missing)") : method->dump());
  }
  auto format = q.find("fmt");
  if (format != q.end() && *format != "e4m3") {
    return make_error(error_code::unsupported,
                      "{}: fmt {} is not supported (only \"e4m3\")", where, format->dump());
  }
  fp8_block_quantization out;
  auto scheme = one_of(q, "activation_scheme", {"dynamic", "static"}, 0, where);
  if (!scheme) return scheme.err();
  out.activations = *scheme == 0 ? fp8_block_quantization::activation_scheme::dynamic
                                 : fp8_block_quantization::activation_scheme::static_scales;
  auto block = q.find("weight_block_size");
  // Per-tensor FP8 (no block size) needs different scale handling: not supported.
  if (block == q.end() || !block->is_array() || block->size() != 2 ||
      !(*block)[0].is_number_integer() || !(*block)[1].is_number_integer()) {
    return make_error(error_code::unsupported,
                      "{}: weight_block_size {} is not supported (a [rows, cols] pair, e.g. "
                      "[128, 128])",
                      where, block == q.end() ? std::string("(missing)") : block->dump());
  }
  const auto rows = (*block)[0].get<std::int64_t>(), cols = (*block)[1].get<std::int64_t>();
  if (rows < 1 || rows > quant_block_max || cols < 1 || cols > quant_block_max) {
    return make_error(error_code::invalid_argument,
                      "{}: weight_block_size ({}) entries must be in [1, {}]", where,
                      block->dump(), quant_block_max);
  }
  out.block_rows = int(rows);
  out.block_cols = int(cols);
  return out;
}

// The sizes and counts, each range-checked where it is read.
status read_fields(const json& j, const std::string& source, const model_config& c,
                   deepseek_config& d) {
  field_reader f(j, source);
  // q_lora_rank: null means "q is not compressed" (V2-Lite); absent means the default.
  if (auto it = j.find("q_lora_rank"); it != j.end() && it->is_null()) {
    d.q_lora_rank = 0;
  } else {
    auto q = f.integer("q_lora_rank", 1, lora_rank_max, d.q_lora_rank);
    if (!q) return q.err();
    d.q_lora_rank = int(*q);
  }
  struct int_field {
    const char* name;
    int* out;
    std::int64_t low, high;
  };
  const int_field ints[] = {
      {"kv_lora_rank", &d.kv_lora_rank, 1, lora_rank_max},
      {"qk_nope_head_dim", &d.qk_nope_head_dim, 1, head_dim_max},
      {"qk_rope_head_dim", &d.qk_rope_head_dim, 1, head_dim_max},
      {"v_head_dim", &d.v_head_dim, 1, head_dim_max},
      {"n_routed_experts", &d.n_routed_experts, 1, routed_experts_max},
      {"n_shared_experts", &d.n_shared_experts, 0, shared_experts_max},
      {"num_experts_per_tok", &d.num_experts_per_tok, 1, routed_experts_max},
      {"n_group", &d.n_group, 1, routed_experts_max},
      {"topk_group", &d.topk_group, 1, routed_experts_max},
      {"first_k_dense_replace", &d.first_k_dense_replace, 0, c.num_hidden_layers},
      {"moe_layer_freq", &d.moe_layer_freq, 1, num_hidden_layers_max},
      {"moe_intermediate_size", &d.moe_intermediate_size, 1, intermediate_size_max},
      {"num_nextn_predict_layers", &d.num_nextn_predict_layers, 0, nextn_predict_layers_max},
  };
  for (const auto& i : ints) {
    auto v = f.integer(i.name, i.low, i.high, *i.out);
    if (!v) return v.err();
    *i.out = int(*v);
  }
  auto norm = f.boolean("norm_topk_prob", d.norm_topk_prob);
  if (!norm) return norm.err();
  d.norm_topk_prob = *norm;
  auto scale = f.positive("routed_scaling_factor", routed_scaling_factor_max,
                          d.routed_scaling_factor);
  if (!scale) return scale.err();
  d.routed_scaling_factor = *scale;
  auto method = one_of(j, "topk_method", {"greedy", "group_limited_greedy", "noaux_tc"},
                       int(d.topk), source);
  if (!method) return method.err();
  d.topk = topk_method(*method);
  auto scoring = one_of(j, "scoring_func", {"softmax", "sigmoid"}, int(d.scoring), source);
  if (!scoring) return scoring.err();
  d.scoring = scoring_func(*scoring);
  if (auto it = j.find("quantization_config"); it != j.end() && !it->is_null()) {
    auto q = parse_quantization(*it, source);
    if (!q) return q.err();
    d.quantization = *q;
  }
  return ok_status();
}

// Checks between fields: settings the router could not carry out.
status check_routing(const deepseek_config& d, const std::string& source) {
  if (d.qk_rope_head_dim % 2 != 0) {
    return make_error(error_code::invalid_argument,
                      "{}: qk_rope_head_dim ({}) must be even (RoPE rotates pairs of dimensions)",
                      source, d.qk_rope_head_dim);
  }
  if (d.num_experts_per_tok > d.n_routed_experts) {
    return make_error(error_code::invalid_argument,
                      "{}: num_experts_per_tok ({}) exceeds n_routed_experts ({}): top-k larger "
                      "than the expert count",
                      source, d.num_experts_per_tok, d.n_routed_experts);
  }
  if (d.n_routed_experts % d.n_group != 0) {
    return make_error(error_code::invalid_argument,
                      "{}: n_routed_experts ({}) is not divisible by n_group ({})", source,
                      d.n_routed_experts, d.n_group);
  }
  if (d.topk_group > d.n_group) {
    return make_error(error_code::invalid_argument,
                      "{}: topk_group ({}) is not in [1, n_group ({})]", source, d.topk_group,
                      d.n_group);
  }
  if (d.topk != topk_method::greedy) {
    // The router keeps only the topk_group best groups, so top-k must fit in them.
    const int reachable = d.topk_group * (d.n_routed_experts / d.n_group);
    if (d.num_experts_per_tok > reachable) {
      return make_error(error_code::invalid_argument,
                        "{}: num_experts_per_tok ({}) exceeds the {} experts in topk_group ({}) "
                        "groups of n_routed_experts / n_group ({} / {}): group settings that "
                        "cannot be met",
                        source, d.num_experts_per_tok, reachable, d.topk_group,
                        d.n_routed_experts, d.n_group);
    }
  }
  // noaux_tc adds e_score_correction_bias to the scores to balance load without an
  // auxiliary loss; DeepSeek-V3 trained that bias against sigmoid scores, and softmax
  // scores (which sum to 1 across experts) would give the bias a different meaning.
  if (d.topk == topk_method::noaux_tc && d.scoring != scoring_func::sigmoid) {
    return make_error(error_code::invalid_argument,
                      "{}: topk_method noaux_tc requires scoring_func sigmoid (got softmax)",
                      source);
  }
  return ok_status();
}

}  // namespace

status parse_deepseek(const json& j, const std::string& source, model_config& c) {
  DSRT_ASSERT(c.num_hidden_layers > 0 && c.num_attention_heads > 0,
              "num_hidden_layers={} num_attention_heads={}", c.num_hidden_layers,
              c.num_attention_heads);
  deepseek_config d = defaults_for(c.model_type);
  // MLA does not group KV heads, but config.json still carries num_key_value_heads
  // (transformers uses it to repeat the decompressed keys); a value that does not divide
  // the heads is a broken config, not something to ignore.
  field_reader f(j, source);
  auto kv_heads = f.integer("num_key_value_heads", 1, num_attention_heads_max, c.num_attention_heads);
  if (!kv_heads) return kv_heads.err();
  if (c.num_attention_heads % *kv_heads != 0) {
    return make_error(error_code::invalid_argument,
                      "{}: num_attention_heads ({}) is not divisible by num_key_value_heads ({})",
                      source, c.num_attention_heads, *kv_heads);
  }
  DSRT_TRY(read_fields(j, source, c, d));
  DSRT_TRY(check_routing(d, source));
  // RoPE covers only the qk_rope_head_dim slice of each head, so that is the head_dim the
  // rope table is built for. MLA shares one latent across heads: no KV head groups.
  c.head_dim = d.qk_rope_head_dim;
  c.num_key_value_heads = c.num_attention_heads;
  c.deepseek = d;
  return ok_status();
}

}  // namespace dsrt::model::detail
