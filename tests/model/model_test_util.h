#pragma once
// Helpers for the model tests: scratch directories, raw file writing, and a tiny llama /
// qwen2 model directory built with write_safetensors so each test can break one thing.
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "runtime/model/config.h"
#include <nlohmann/json.hpp>

#include "runtime/model/safetensors.h"

namespace dsrt::model::testing {

namespace fs = std::filesystem;
using json = nlohmann::json;

// A fresh directory under the system temp dir, removed with everything in it at scope end.
class scratch_dir {
 public:
  scratch_dir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("dsrt-model-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~scratch_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;

  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

inline void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), std::streamsize(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

inline std::string read_file(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

// A safetensors file from a header text and a data region, with the length field given
// explicitly so tests can lie about it.
inline std::string raw_safetensors(const std::string& header, const std::string& data,
                                   std::uint64_t header_length) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[std::size_t(i)] = char((header_length >> (8 * i)) & 0xff);
  return out + header + data;
}
inline std::string raw_safetensors(const std::string& header, const std::string& data) {
  return raw_safetensors(header, data, header.size());
}

// f32 tensor of the given shape whose element i holds i * 0.001 + salt.
inline tensor_to_write f32_tensor(std::string name, std::vector<std::int64_t> shape,
                                  float salt = 0) {
  tensor_to_write t;
  t.name = std::move(name);
  t.type = dtype::f32;
  t.shape = std::move(shape);
  std::int64_t n = 1;
  for (auto d : t.shape) n *= d;
  t.bytes.resize(std::size_t(n) * 4);
  for (std::int64_t i = 0; i < n; ++i) {
    const float v = float(i) * 0.001f + salt;
    std::memcpy(t.bytes.data() + 4 * i, &v, 4);
  }
  return t;
}

// config.json of a tiny model: vocab 16, hidden 8, 2 layers, 2 heads, 1 KV head, FFN 12.
inline json tiny_config(const std::string& arch = "llama") {
  return {{"architectures", {arch == "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM"}},
          {"model_type", arch},
          {"vocab_size", 16},
          {"hidden_size", 8},
          {"intermediate_size", 12},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 2},
          {"num_key_value_heads", 1},
          {"max_position_embeddings", 64},
          {"rms_norm_eps", 1e-5},
          {"rope_theta", 10000.0},
          {"tie_word_embeddings", arch == "qwen2"},
          {"torch_dtype", "float32"},
          {"bos_token_id", 1},
          {"eos_token_id", 2}};
}

// Every tensor the config implies (f32), with biases for qwen2 and lm_head unless tied.
inline std::vector<tensor_to_write> tiny_tensors(const json& c) {
  const std::int64_t vocab = c["vocab_size"], hidden = c["hidden_size"];
  const std::int64_t ffn = c["intermediate_size"], heads = c["num_attention_heads"];
  const std::int64_t kv = c["num_key_value_heads"];
  const std::int64_t hd = hidden / heads;
  std::vector<tensor_to_write> t;
  t.push_back(f32_tensor("model.embed_tokens.weight", {vocab, hidden}, 0.5f));
  for (int i = 0; i < c["num_hidden_layers"].get<int>(); ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    t.push_back(f32_tensor(p + "input_layernorm.weight", {hidden}));
    t.push_back(f32_tensor(p + "self_attn.q_proj.weight", {heads * hd, hidden}));
    t.push_back(f32_tensor(p + "self_attn.k_proj.weight", {kv * hd, hidden}));
    t.push_back(f32_tensor(p + "self_attn.v_proj.weight", {kv * hd, hidden}));
    t.push_back(f32_tensor(p + "self_attn.o_proj.weight", {hidden, heads * hd}));
    t.push_back(f32_tensor(p + "post_attention_layernorm.weight", {hidden}));
    t.push_back(f32_tensor(p + "mlp.gate_proj.weight", {ffn, hidden}));
    t.push_back(f32_tensor(p + "mlp.up_proj.weight", {ffn, hidden}));
    t.push_back(f32_tensor(p + "mlp.down_proj.weight", {hidden, ffn}));
    if (c["model_type"] == "qwen2") {
      t.push_back(f32_tensor(p + "self_attn.q_proj.bias", {heads * hd}));
      t.push_back(f32_tensor(p + "self_attn.k_proj.bias", {kv * hd}));
      t.push_back(f32_tensor(p + "self_attn.v_proj.bias", {kv * hd}));
    }
  }
  t.push_back(f32_tensor("model.norm.weight", {hidden}));
  if (!c["tie_word_embeddings"].get<bool>()) {
    t.push_back(f32_tensor("lm_head.weight", {vocab, hidden}, 0.25f));
  }
  return t;
}

inline void write_model(const fs::path& dir, const json& config,
                        const std::vector<tensor_to_write>& tensors) {
  write_file(dir / "config.json", config.dump(2));
  auto s = write_safetensors(dir / "model.safetensors", tensors);
  ASSERT_TRUE(s.ok()) << s.err().to_string();
}

// Replaces (or with an empty shape, removes) one tensor of a list.
inline std::vector<tensor_to_write> without(std::vector<tensor_to_write> t,
                                            const std::string& name) {
  std::erase_if(t, [&](const tensor_to_write& x) { return x.name == name; });
  return t;
}

// Parses `j`; expects failure with `code` and a message containing every `parts` item.
inline void expect_config_error(const json& j, error_code code, const std::vector<std::string>& parts) {
  auto c = parse_config(j, "config.json");
  ASSERT_FALSE(c.ok()) << j.dump();
  EXPECT_EQ(c.err().code, code) << c.err().to_string();
  for (const auto& p : parts) {
    EXPECT_NE(c.err().message.find(p), std::string::npos)
        << "message '" << c.err().message << "' lacks '" << p << "'";
  }
}

}  // namespace dsrt::model::testing
