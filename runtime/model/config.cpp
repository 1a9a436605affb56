#include "runtime/model/config.h"

#include <cmath>
#include <limits>
#include <optional>

#include <nlohmann/json.hpp>

#include "runtime/json_file.h"

namespace dsrt::model {
namespace {

using json = nlohmann::json;

}  // namespace

namespace detail {

const json* field_reader::find(const char* name) const {
  auto it = j_.find(name);
  if (it == j_.end() || it->is_null()) return nullptr;
  return &*it;
}

// Every reader checks the JSON type itself, because nlohmann's get<T>() throws on a
// mismatch and a bad config must come back as an error value.
result<std::int64_t> field_reader::integer(const char* name, std::int64_t low,
                                           std::int64_t high,
                                           std::optional<std::int64_t> fallback) const {
  const json* v = find(name);
  if (!v) {
    if (fallback) return *fallback;
    return make_error(error_code::invalid_argument, "{}: {} is missing", source_, name);
  }
  std::int64_t n = 0;
  if (v->is_number_unsigned()) {
    const auto u = v->get<std::uint64_t>();
    if (u > std::uint64_t(std::numeric_limits<std::int64_t>::max())) {
      return make_error(error_code::invalid_argument, "{}: {} ({}) is out of range [{}, {}]",
                        source_, name, u, low, high);
    }
    n = std::int64_t(u);
  } else if (v->is_number_integer()) {
    n = v->get<std::int64_t>();
  } else {
    return make_error(error_code::invalid_argument, "{}: {} ({}) is not an integer", source_,
                      name, v->dump());
  }
  if (n < low || n > high) {
    return make_error(error_code::invalid_argument, "{}: {} ({}) is out of range [{}, {}]",
                      source_, name, n, low, high);
  }
  return n;
}

result<double> field_reader::positive(const char* name, double high,
                                      std::optional<double> fallback) const {
  const json* v = find(name);
  if (!v) {
    if (fallback) return *fallback;
    return make_error(error_code::invalid_argument, "{}: {} is missing", source_, name);
  }
  if (!v->is_number()) {
    return make_error(error_code::invalid_argument, "{}: {} ({}) is not a number", source_,
                      name, v->dump());
  }
  const double d = v->get<double>();
  // The model computes in float: a positive double below float's range would become 0.
  if (!std::isfinite(d) || d <= 0 || d > high || float(d) < std::numeric_limits<float>::min()) {
    return make_error(error_code::invalid_argument, "{}: {} ({}) must be > 0 (in float's range) and <= {}",
                      source_, name, d, high);
  }
  return d;
}

result<bool> field_reader::boolean(const char* name, bool fallback) const {
  const json* v = find(name);
  if (!v) return fallback;
  if (!v->is_boolean()) {
    return make_error(error_code::invalid_argument, "{}: {} ({}) is not a boolean", source_,
                      name, v->dump());
  }
  return v->get<bool>();
}

}  // namespace detail

namespace {

using detail::field_reader;

result<architecture> parse_architecture(const json& j, const std::string& source) {
  // model_type is what transformers dispatches on; architectures is a hint we cross-check.
  std::optional<architecture> from_architectures;
  if (auto it = j.find("architectures"); it != j.end() && it->is_array()) {
    for (const auto& a : *it) {
      if (!a.is_string()) continue;
      if (a == "LlamaForCausalLM") from_architectures = architecture::llama;
      if (a == "Qwen2ForCausalLM") from_architectures = architecture::qwen2;
      if (a == "DeepseekV3ForCausalLM" || a == "DeepseekV2ForCausalLM") {
        from_architectures = architecture::deepseek_v3;
      }
    }
  }
  auto it = j.find("model_type");
  if (it == j.end() || it->is_null()) {
    if (from_architectures) return *from_architectures;
    return make_error(error_code::unsupported,
                      "{}: no model_type and no known architectures (supported: llama, qwen2, "
                      "deepseek_v3, deepseek_v2)",
                      source);
  }
  if (!it->is_string()) {
    return make_error(error_code::invalid_argument, "{}: model_type ({}) is not a string",
                      source, it->dump());
  }
  const auto& type = it->get_ref<const std::string&>();
  architecture arch;
  if (type == "llama") {
    arch = architecture::llama;
  } else if (type == "qwen2") {
    arch = architecture::qwen2;
  } else if (type == "deepseek_v3" || type == "deepseek_v2") {
    // One architecture: V2 and V3 share MLA and MoE and differ in router settings, which
    // deepseek_config carries.
    arch = architecture::deepseek_v3;
  } else {
    return make_error(error_code::unsupported,
                      "{}: model_type '{}' is not supported (supported: llama, qwen2, "
                      "deepseek_v3, deepseek_v2)",
                      source, type);
  }
  if (from_architectures && *from_architectures != arch) {
    return make_error(error_code::invalid_argument,
                      "{}: model_type '{}' contradicts architectures {}", source, type,
                      j["architectures"].dump());
  }
  return arch;
}

result<dtype> parse_torch_dtype(const json& j, const std::string& source) {
  auto it = j.find("torch_dtype");
  if (it == j.end() || it->is_null()) it = j.find("dtype");
  if (it == j.end() || it->is_null()) return dtype::bf16;
  if (it->is_string()) {
    const auto& s = it->get_ref<const std::string&>();
    if (s == "bfloat16") return dtype::bf16;
    if (s == "float16") return dtype::f16;
    if (s == "float32") return dtype::f32;
  }
  return make_error(error_code::invalid_argument,
                    "{}: torch_dtype ({}) is not one of bfloat16, float16, float32", source,
                    it->dump());
}

result<rope_scaling> parse_rope_scaling(const json& j, const std::string& source) {
  rope_scaling rope;
  auto it = j.find("rope_scaling");
  if (it == j.end() || it->is_null()) return rope;
  if (!it->is_object()) {
    return make_error(error_code::invalid_argument, "{}: rope_scaling ({}) is not an object",
                      source, it->dump());
  }
  const json& r = *it;
  // transformers renamed "type" to "rope_type"; checkpoints carry either.
  auto type_it = r.find("rope_type");
  if (type_it == r.end()) type_it = r.find("type");
  if (type_it == r.end() || !type_it->is_string()) {
    return make_error(error_code::invalid_argument,
                      "{}: rope_scaling has no string rope_type / type ({})", source, r.dump());
  }
  const auto& type = type_it->get_ref<const std::string&>();
  const std::string where = source + " rope_scaling";
  field_reader f(r, where);
  constexpr double factor_max = 1024;
  if (type == "default") return rope;
  if (type == "linear") {
    rope.type = rope_scaling_type::linear;
    auto factor = f.positive("factor", factor_max, std::nullopt);
    if (!factor) return factor.err();
    rope.factor = *factor;
    return rope;
  }
  if (type != "llama3" && type != "yarn") {
    return make_error(error_code::unsupported,
                      "{}: rope_scaling type '{}' is not supported (linear, llama3, yarn)",
                      source, type);
  }
  auto factor = f.positive("factor", factor_max, std::nullopt);
  if (!factor) return factor.err();
  rope.factor = *factor;
  const bool llama3 = type == "llama3";
  auto original = f.integer("original_max_position_embeddings", 1, max_position_embeddings_max,
                            llama3 ? std::nullopt : std::optional<std::int64_t>(0));
  if (!original) return original.err();
  rope.original_max_position_embeddings = *original;
  if (llama3) {
    rope.type = rope_scaling_type::llama3;
    auto low = f.positive("low_freq_factor", factor_max, std::nullopt);
    if (!low) return low.err();
    auto high = f.positive("high_freq_factor", factor_max, std::nullopt);
    if (!high) return high.err();
    if (*high <= *low) {
      return make_error(error_code::invalid_argument,
                        "{}: high_freq_factor ({}) must exceed low_freq_factor ({})", where,
                        *high, *low);
    }
    rope.low_freq_factor = *low;
    rope.high_freq_factor = *high;
    return rope;
  }
  rope.type = rope_scaling_type::yarn;
  auto beta_fast = f.positive("beta_fast", factor_max, 32.0);
  if (!beta_fast) return beta_fast.err();
  auto beta_slow = f.positive("beta_slow", factor_max, 1.0);
  if (!beta_slow) return beta_slow.err();
  // 0 means absent: transformers uses the mscale ratio only when both are given.
  auto mscale = f.positive("mscale", factor_max, 0.0);
  if (!mscale) return mscale.err();
  rope.beta_fast = *beta_fast;
  rope.beta_slow = *beta_slow;
  rope.mscale = *mscale;
  if (const json* m = f.find("mscale_all_dim")) {
    if (!m->is_number() || !std::isfinite(m->get<double>()) || m->get<double>() < 0) {
      return make_error(error_code::invalid_argument,
                        "{}: mscale_all_dim ({}) must be a number >= 0", where, m->dump());
    }
    rope.mscale_all_dim = m->get<double>();
  }
  return rope;
}

// A token id: absent/null -> nothing; an int or a list of ints, each in [0, vocab_size).
status parse_token_ids(const json& j, const char* name, int vocab_size, const std::string& source,
                       std::vector<int>& out) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return ok_status();
  const json list = it->is_array() ? *it : json::array({*it});
  for (const auto& id : list) {
    if (!id.is_number_integer() || id.get<std::int64_t>() < 0 ||
        id.get<std::int64_t>() >= vocab_size) {
      return make_error(error_code::invalid_argument,
                        "{}: {} ({}) is not a token id in [0, vocab_size {})", source, name,
                        it->dump(), vocab_size);
    }
    out.push_back(int(id.get<std::int64_t>()));
  }
  return ok_status();
}

// num_key_value_heads and head_dim of a llama / qwen2 config.
status parse_head_shape(const field_reader& f, const std::string& source, model_config& c) {
  auto kv_heads = f.integer("num_key_value_heads", 1, num_attention_heads_max,
                            c.num_attention_heads);
  if (!kv_heads) return kv_heads.err();
  c.num_key_value_heads = int(*kv_heads);
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return make_error(error_code::invalid_argument,
                      "{}: num_attention_heads ({}) is not divisible by num_key_value_heads ({})",
                      source, c.num_attention_heads, c.num_key_value_heads);
  }
  if (f.find("head_dim")) {
    auto head_dim = f.integer("head_dim", 1, head_dim_max);
    if (!head_dim) return head_dim.err();
    c.head_dim = int(*head_dim);
  } else {
    if (c.hidden_size % c.num_attention_heads != 0) {
      return make_error(error_code::invalid_argument,
                        "{}: hidden_size ({}) is not divisible by num_attention_heads ({}) and "
                        "no head_dim is given",
                        source, c.hidden_size, c.num_attention_heads);
    }
    c.head_dim = c.hidden_size / c.num_attention_heads;
    if (c.head_dim > head_dim_max) {
      return make_error(error_code::invalid_argument, "{}: head_dim ({}) is out of range [1, {}]",
                        source, c.head_dim, head_dim_max);
    }
  }

  if (c.head_dim % 2 != 0)
    return make_error(error_code::invalid_argument,
                      "{}: head_dim ({}) must be even (RoPE rotates pairs of dimensions)", source,
                      c.head_dim);
  return ok_status();
}

}  // namespace

std::string_view architecture_name(architecture a) {
  switch (a) {
    case architecture::llama: return "llama";
    case architecture::qwen2: return "qwen2";
    case architecture::deepseek_v3: return "deepseek_v3";
  }
  return "?";
}

result<model_config> parse_config(const json& j, const std::string& source) {
  if (!j.is_object()) {
    return make_error(error_code::invalid_argument, "{}: the config is not a JSON object",
                      source);
  }
  model_config c;
  auto arch = parse_architecture(j, source);
  if (!arch) return arch.err();
  c.arch = *arch;
  auto type_it = j.find("model_type");
  c.model_type = type_it != j.end() && type_it->is_string()
                     ? type_it->get<std::string>()
                     : std::string(architecture_name(c.arch));

  field_reader f(j, source);
  auto vocab = f.integer("vocab_size", 1, vocab_size_max);
  if (!vocab) return vocab.err();
  auto hidden = f.integer("hidden_size", 1, hidden_size_max);
  if (!hidden) return hidden.err();
  auto intermediate = f.integer("intermediate_size", 1, intermediate_size_max);
  if (!intermediate) return intermediate.err();
  auto layers = f.integer("num_hidden_layers", 1, num_hidden_layers_max);
  if (!layers) return layers.err();
  auto heads = f.integer("num_attention_heads", 1, num_attention_heads_max);
  if (!heads) return heads.err();
  auto max_positions = f.integer("max_position_embeddings", 1, max_position_embeddings_max);
  if (!max_positions) return max_positions.err();
  c.vocab_size = int(*vocab);
  c.hidden_size = int(*hidden);
  c.intermediate_size = int(*intermediate);
  c.num_hidden_layers = int(*layers);
  c.num_attention_heads = int(*heads);
  c.max_position_embeddings = int(*max_positions);

  if (c.arch == architecture::deepseek_v3) {
    // MLA: head_dim and num_key_value_heads follow from the DeepSeek fields; config.json's
    // own values (if any) are not used.
    DSRT_TRY(detail::parse_deepseek(j, source, c));
  } else {
    DSRT_TRY(parse_head_shape(f, source, c));
  }

  auto eps = f.positive("rms_norm_eps", 1.0, 1e-6);
  if (!eps) return eps.err();
  c.rms_norm_eps = *eps;
  auto theta = f.positive("rope_theta", 1e12, 10000.0);
  if (!theta) return theta.err();
  if (*theta <= 1.0)
    return make_error(error_code::invalid_argument, "{}: rope_theta ({}) must be greater than 1",
                      source, *theta);
  c.rope_theta = *theta;
  auto rope = parse_rope_scaling(j, source);
  if (!rope) return rope.err();
  c.rope = *rope;
  auto tie = f.boolean("tie_word_embeddings", false);
  if (!tie) return tie.err();
  c.tie_word_embeddings = *tie;
  // Qwen2's attention always has q/k/v biases; llama's only when attention_bias says so.
  auto bias = f.boolean("attention_bias", false);
  if (!bias) return bias.err();
  c.attention_bias = c.arch == architecture::qwen2 || *bias;
  auto type = parse_torch_dtype(j, source);
  if (!type) return type.err();
  c.torch_dtype = *type;

  std::vector<int> bos;
  DSRT_TRY(parse_token_ids(j, "bos_token_id", c.vocab_size, source, bos));
  if (bos.size() > 1) {
    return make_error(error_code::invalid_argument, "{}: bos_token_id ({}) must be one id",
                      source, j["bos_token_id"].dump());
  }
  c.bos_token_id = bos.empty() ? -1 : bos[0];
  DSRT_TRY(parse_token_ids(j, "eos_token_id", c.vocab_size, source, c.eos_token_ids));
  return c;
}

result<model_config> load_config(const std::filesystem::path& file) {
  // Accept the model directory as well as the file itself.
  std::error_code ec;
  const auto path = std::filesystem::is_directory(file, ec) ? file / "config.json" : file;
  const std::string source = path.string();
  if (!std::filesystem::exists(path, ec)) {
    return make_error(error_code::not_found, "{}: no such file", source);
  }
  auto j = read_json_file(path, config_file_bytes_max);
  if (!j) return j.err();
  return parse_config(*j, source);
}

}  // namespace dsrt::model
