#pragma once
// A model's config.json, parsed and validated. Architectures: llama, qwen2, deepseek_v3
// (config only: model_type deepseek_v3 or deepseek_v2; its weights are not loaded yet).
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "kernels/dtype.h"
#include "runtime/error.h"

namespace dsrt::model {

// Upper bounds on config values. Far above any released llama / qwen2 model, low enough
// that a typo (or a hostile file) cannot make the loader size a tensor past 2^63 bytes.
inline constexpr std::int64_t vocab_size_max = 1 << 22;               // 4M tokens
inline constexpr std::int64_t hidden_size_max = 1 << 16;
inline constexpr std::int64_t intermediate_size_max = 1 << 18;
inline constexpr std::int64_t num_hidden_layers_max = 1024;
inline constexpr std::int64_t num_attention_heads_max = 1024;
inline constexpr std::int64_t head_dim_max = 1024;
inline constexpr std::int64_t max_position_embeddings_max = 1 << 24;  // 16M tokens
inline constexpr std::uint64_t config_file_bytes_max = 16ull << 20;   // 16 MiB

// DeepSeek (MLA + MoE) bounds. DeepSeek-V3 has 256 routed experts, 1 shared, top-8 in 8
// groups, LoRA ranks 1536 / 512 and 1 MTP layer; these leave wide headroom.
inline constexpr std::int64_t lora_rank_max = 1 << 16;             // q_lora_rank, kv_lora_rank
inline constexpr std::int64_t routed_experts_max = 4096;           // n_routed_experts, n_group
inline constexpr std::int64_t shared_experts_max = 64;             // n_shared_experts
inline constexpr std::int64_t nextn_predict_layers_max = 16;       // num_nextn_predict_layers
inline constexpr double routed_scaling_factor_max = 1024;
inline constexpr std::int64_t quant_block_max = 1 << 16;           // weight_block_size entries

enum class architecture { llama, qwen2, deepseek_v3 };

enum class rope_scaling_type { none, linear, llama3, yarn };

// rope_scaling from config.json. Fields not used by a type keep their defaults.
struct rope_scaling {
  rope_scaling_type type = rope_scaling_type::none;
  double factor = 1.0;                          // linear, llama3, yarn
  double low_freq_factor = 1.0;                 // llama3
  double high_freq_factor = 4.0;                // llama3
  std::int64_t original_max_position_embeddings = 0;  // llama3, yarn
  double beta_fast = 32.0;                      // yarn
  double beta_slow = 1.0;                       // yarn
  double mscale = 0.0;                          // yarn (DeepSeek); 0 = absent
  double mscale_all_dim = 0.0;                  // yarn (DeepSeek)
};

// How the DeepSeek router picks experts ("topk_method").
enum class topk_method {
  greedy,                // top-k over all experts (DeepSeek-V2, V2-Lite)
  group_limited_greedy,  // top-k within the topk_group best groups, groups ranked by max score
  noaux_tc,              // as group_limited, groups ranked by the sum of their top-2 scores,
                         // which include the learned e_score_correction_bias (DeepSeek-V3)
};

// How router logits become expert scores ("scoring_func").
enum class scoring_func { softmax, sigmoid };

// "quantization_config" of DeepSeek-V3's FP8 checkpoints: weights in float8 e4m3 with one
// f32 scale per block (the "weight_scale_inv" tensors). The only scheme we accept.
struct fp8_block_quantization {
  // "dynamic" (V3: scales computed per activation block at run time) or "static".
  enum class activation_scheme { dynamic, static_scales };
  activation_scheme activations = activation_scheme::dynamic;
  int block_rows = 128;  // weight_block_size[0]: output rows per scale
  int block_cols = 128;  // weight_block_size[1]: input columns per scale
};

// The DeepSeek-V2/V3 fields of config.json (MLA attention, MoE feed-forward, MTP). Sizes
// are element counts. Defaults when a field is absent are those of transformers'
// DeepseekV3Config; for model_type deepseek_v2 the routing fields default as
// DeepseekV2Config does (marked "V2:").
struct deepseek_config {
  // --- MLA (multi-head latent attention) ---
  int q_lora_rank = 1536;          // rank of the q down-projection; 0 = q not compressed
                                   // (written as null, as in V2-Lite)
  int kv_lora_rank = 512;          // rank of the joint k/v latent (what the KV cache holds)
  int qk_nope_head_dim = 128;      // per-head q/k dims without RoPE
  int qk_rope_head_dim = 64;       // per-head q/k dims with RoPE (even); = model_config::head_dim
  int v_head_dim = 128;            // per-head value dims
  // --- MoE ---
  int n_routed_experts = 256;      // experts chosen by the router, >= 1
  int n_shared_experts = 1;        // experts every token goes through, >= 0
  int num_experts_per_tok = 8;     // top-k, in [1, n_routed_experts]
  int n_group = 8;                 // expert groups; divides n_routed_experts (V2: 1)
  int topk_group = 4;              // groups a token may route into, in [1, n_group] (V2: 1)
  topk_method topk = topk_method::noaux_tc;       // V2: greedy
  scoring_func scoring = scoring_func::sigmoid;   // V2: softmax
  bool norm_topk_prob = true;      // renormalise the top-k weights to sum to 1 (V2: false)
  double routed_scaling_factor = 2.5;  // multiplies routed-expert output, > 0 (V2: 1.0)
  int first_k_dense_replace = 3;   // the first k layers use a dense MLP (V2: 0)
  int moe_layer_freq = 1;          // after those, every moe_layer_freq-th layer is MoE
  int moe_intermediate_size = 2048;  // FFN width of one expert
  // --- MTP ---
  int num_nextn_predict_layers = 0;  // multi-token-prediction layers after the main stack
  // --- weights ---
  std::optional<fp8_block_quantization> quantization;  // absent: weights in torch_dtype
};

// Whether decoder layer `layer` has an MoE feed-forward (DeepSeek's rule: after the first
// first_k_dense_replace layers, every moe_layer_freq-th layer).
inline bool is_moe_layer(const deepseek_config& d, int layer) {
  return layer >= d.first_k_dense_replace && layer % d.moe_layer_freq == 0;
}

struct model_config {
  architecture arch = architecture::llama;
  std::string model_type;              // as written in config.json
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int num_key_value_heads = 0;         // defaults to num_attention_heads when absent;
                                       // deepseek: always num_attention_heads (MLA has no
                                       // KV head groups)
  int head_dim = 0;                    // defaults to hidden_size / num_attention_heads;
                                       // deepseek: qk_rope_head_dim, the part RoPE rotates,
                                       // so make_rope_table builds the right table
  int max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  rope_scaling rope;
  bool tie_word_embeddings = false;
  bool attention_bias = false;         // q/k/v projections carry a bias (qwen2: always)
  dtype torch_dtype = dtype::bf16;     // "torch_dtype" (or "dtype"); informative
  int bos_token_id = -1;               // -1 when absent
  std::vector<int> eos_token_ids;      // eos_token_id may be an int or a list
  std::optional<deepseek_config> deepseek;  // set iff arch == deepseek_v3
};

// Parses and validates a config. `source` names the file in error messages.
// Errors: invalid_argument for missing or out-of-range values (the message names the
// field and the value), unsupported for an unknown architecture / model_type or
// rope_scaling type or quantization_config.
result<model_config> parse_config(const nlohmann::json& j, const std::string& source);

// Reads and parses DIR/config.json. Errors: not_found, corrupt_data (not JSON), and the
// errors of parse_config.
result<model_config> load_config(const std::filesystem::path& file);

std::string_view architecture_name(architecture a);

namespace detail {

// Reads one config field with its JSON type and range checked; errors name `source` and
// the field. Shared by config.cpp and config_deepseek.cpp, not meant for other callers.
// REQUIRES: `j` and `source` outlive the reader.
class field_reader {
 public:
  field_reader(const nlohmann::json& j, const std::string& source) : j_(j), source_(source) {}

  // The field, or nullptr when absent or null.
  const nlohmann::json* find(const char* name) const;
  // An integer in [low, high]; `fallback` when absent (nullopt: the field is required).
  result<std::int64_t> integer(const char* name, std::int64_t low, std::int64_t high,
                               std::optional<std::int64_t> fallback = std::nullopt) const;
  // A finite number > 0 (and <= high); `fallback` when absent.
  result<double> positive(const char* name, double high, std::optional<double> fallback) const;
  result<bool> boolean(const char* name, bool fallback) const;

 private:
  const nlohmann::json& j_;
  const std::string& source_;
};

// Fills c.deepseek, and c.head_dim / c.num_key_value_heads from it (config_deepseek.cpp).
// REQUIRES: c.num_hidden_layers and c.num_attention_heads are parsed.
status parse_deepseek(const nlohmann::json& j, const std::string& source, model_config& c);

}  // namespace detail

}  // namespace dsrt::model
