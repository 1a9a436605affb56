#pragma once
// dsgen's model presets (the table in design/PERFORMANCE.md) and what follows from one:
// the config.json Hugging Face writes for it and the list of tensors to generate.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/dtype.h"

namespace dsrt::dsgen {

// Model families dsgen writes. The DeepSeek presets (tiny-dsv3, bench-dsv3-1b) will add
// a family here and rows to the table; everything else keys off the family.
enum class family { llama, qwen2 };

struct preset {
  std::string_view name;
  family arch;
  int vocab_size;
  int hidden_size;
  int num_hidden_layers;
  int num_attention_heads;
  int num_key_value_heads;
  int head_dim;            // 0: hidden_size / num_attention_heads, not written to config
  int intermediate_size;
  bool tie_word_embeddings;
  bool attention_bias;     // q/k/v biases (qwen2 always)
  std::string_view use;    // one line for --list
};

const std::vector<preset>& presets();
const preset* find_preset(std::string_view name);
std::string preset_names();  // "a, b, c" for error messages

std::string_view family_name(family f);
double rope_theta(family f);
double rms_norm_eps(family f);
inline constexpr int max_position_embeddings = 4096;

// Token ids config.json names; they come from the tokenizer dsgen writes.
struct special_ids {
  int bos = -1;              // -1: none
  std::vector<int> eos;
};

// One tensor of the model and how to fill it.
enum class init { normal, ones };
struct tensor_plan {
  std::string name;
  std::vector<std::int64_t> shape;
  init fill = init::normal;
  std::int64_t elements() const;
};

// config.json as transformers writes it for this architecture. vocab_size may differ from
// the preset's when a real tokenizer decides it.
nlohmann::ordered_json make_config(const preset& p, int vocab_size, dtype type,
                                   const special_ids& ids);
nlohmann::ordered_json make_generation_config(const special_ids& ids);

// Every tensor, in the names transformers uses (runtime/model/weights.h lists them).
std::vector<tensor_plan> plan_tensors(const preset& p, int vocab_size);

}  // namespace dsrt::dsgen
