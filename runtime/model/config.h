#pragma once
// A model's config.json, parsed and validated. Architectures: llama, qwen2.
#include <cstdint>
#include <filesystem>
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

enum class architecture { llama, qwen2 };

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

struct model_config {
  architecture arch = architecture::llama;
  std::string model_type;              // as written in config.json
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int num_key_value_heads = 0;         // defaults to num_attention_heads when absent
  int head_dim = 0;                    // defaults to hidden_size / num_attention_heads
  int max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  rope_scaling rope;
  bool tie_word_embeddings = false;
  bool attention_bias = false;         // q/k/v projections carry a bias (qwen2: always)
  dtype torch_dtype = dtype::bf16;     // "torch_dtype" (or "dtype"); informative
  int bos_token_id = -1;               // -1 when absent
  std::vector<int> eos_token_ids;      // eos_token_id may be an int or a list
};

// Parses and validates a config. `source` names the file in error messages.
// Errors: invalid_argument for missing or out-of-range values (the message names the
// field and the value), unsupported for an unknown architecture / model_type or
// rope_scaling type.
result<model_config> parse_config(const nlohmann::json& j, const std::string& source);

// Reads and parses DIR/config.json. Errors: not_found, corrupt_data (not JSON), and the
// errors of parse_config.
result<model_config> load_config(const std::filesystem::path& file);

std::string_view architecture_name(architecture a);

}  // namespace dsrt::model
