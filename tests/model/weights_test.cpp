#include "runtime/model/weights.h"

#include <gtest/gtest.h>

#include "tests/model/model_test_util.h"

namespace dsrt::model {
namespace {

using testing::f32_tensor;
using testing::json;
using testing::scratch_dir;
using testing::tiny_config;
using testing::tiny_tensors;
using testing::without;
using testing::write_file;
using testing::write_model;

void expect_load_error(const std::filesystem::path& dir, error_code code,
                       std::vector<std::string> parts) {
  auto m = load_model_dir(dir);
  ASSERT_FALSE(m.ok()) << "loaded " << dir;
  EXPECT_EQ(m.err().code, code) << m.err().to_string();
  for (const auto& p : parts) {
    EXPECT_NE(m.err().message.find(p), std::string::npos)
        << "message '" << m.err().message << "' lacks '" << p << "'";
  }
}

TEST(LoadModelDir, LoadsLlama) {
  scratch_dir dir;
  const json c = tiny_config("llama");
  write_model(dir.path(), c, tiny_tensors(c));
  auto m = load_model_dir(dir.path());
  ASSERT_TRUE(m.ok()) << m.err().to_string();
  const auto& w = (*m)->weights;
  EXPECT_EQ((*m)->config.arch, architecture::llama);
  ASSERT_EQ(w.layers.size(), 2u);
  EXPECT_EQ(w.embed->name, "model.embed_tokens.weight");
  EXPECT_EQ(w.lm_head->name, "lm_head.weight");
  EXPECT_NE(w.lm_head, w.embed);
  EXPECT_EQ(w.layers[1].k->name, "model.layers.1.self_attn.k_proj.weight");
  EXPECT_EQ(w.layers[1].k->shape, (std::vector<std::int64_t>{4, 8}));
  EXPECT_EQ(w.layers[0].q_bias, nullptr);
  EXPECT_EQ(w.final_norm->name, "model.norm.weight");
  // The pointers read the mapped bytes: embed row 0 element 1 is 0.001 + 0.5.
  EXPECT_FLOAT_EQ(load_as_f32(w.embed->data, w.embed->type, 1), 0.501f);
  EXPECT_FLOAT_EQ(load_as_f32(w.lm_head->data, w.lm_head->type, 1), 0.251f);
}

TEST(LoadModelDir, Qwen2TiedWithBiases) {
  scratch_dir dir;
  const json c = tiny_config("qwen2");
  write_model(dir.path(), c, tiny_tensors(c));
  auto m = load_model_dir(dir.path());
  ASSERT_TRUE(m.ok()) << m.err().to_string();
  const auto& w = (*m)->weights;
  EXPECT_EQ(w.lm_head, w.embed);
  ASSERT_NE(w.layers[0].q_bias, nullptr);
  EXPECT_EQ(w.layers[0].q_bias->shape, (std::vector<std::int64_t>{8}));
  EXPECT_EQ(w.layers[1].v_bias->shape, (std::vector<std::int64_t>{4}));
}

TEST(LoadModelDir, TiedWithLmHeadPresentUsesTheEmbedding) {
  scratch_dir dir;
  json c = tiny_config("llama");
  auto tensors = tiny_tensors(c);  // includes lm_head
  c["tie_word_embeddings"] = true;
  write_model(dir.path(), c, tensors);
  auto m = load_model_dir(dir.path());
  ASSERT_TRUE(m.ok()) << m.err().to_string();
  EXPECT_EQ((*m)->weights.lm_head, (*m)->weights.embed);
}

TEST(LoadModelDir, MixedDtypesAreAccepted) {
  scratch_dir dir;
  const json c = tiny_config("llama");
  auto tensors = tiny_tensors(c);
  for (auto& t : tensors) {
    if (t.name.find("proj") == std::string::npos) continue;
    t.type = dtype::bf16;  // keep the high halves: valid bf16 values
    std::vector<std::uint8_t> half;
    for (std::size_t i = 0; i < t.bytes.size(); i += 4) {
      half.push_back(t.bytes[i + 2]);
      half.push_back(t.bytes[i + 3]);
    }
    t.bytes = half;
  }
  write_model(dir.path(), c, tensors);
  auto m = load_model_dir(dir.path());
  ASSERT_TRUE(m.ok()) << m.err().to_string();
  EXPECT_EQ((*m)->weights.layers[0].up->type, dtype::bf16);
  EXPECT_EQ((*m)->weights.final_norm->type, dtype::f32);
}

TEST(LoadModelDir, Sharded) {
  scratch_dir dir;
  const json c = tiny_config("llama");
  auto tensors = tiny_tensors(c);
  std::vector<tensor_to_write> first, second;
  json weight_map;
  for (auto& t : tensors) {
    const bool in_first = t.name < "model.layers.1";
    weight_map[t.name] = in_first ? "model-00001-of-00002.safetensors"
                                  : "model-00002-of-00002.safetensors";
    (in_first ? first : second).push_back(t);
  }
  ASSERT_TRUE(write_safetensors(dir / "model-00001-of-00002.safetensors", first).ok());
  ASSERT_TRUE(write_safetensors(dir / "model-00002-of-00002.safetensors", second).ok());
  write_file(dir / "model.safetensors.index.json", json{{"weight_map", weight_map}}.dump());
  write_file(dir / "config.json", c.dump());
  auto m = load_model_dir(dir.path());
  ASSERT_TRUE(m.ok()) << m.err().to_string();
  EXPECT_EQ((*m)->weights.embed->file.filename(), "model-00001-of-00002.safetensors");
  EXPECT_EQ((*m)->weights.layers[1].q->file.filename(), "model-00002-of-00002.safetensors");

  std::filesystem::remove(dir / "model-00002-of-00002.safetensors");
  expect_load_error(dir.path(), error_code::not_found,
                    {"model.safetensors.index.json", "model-00002-of-00002.safetensors"});
}

TEST(LoadModelDir, MissingDirectoryConfigOrWeights) {
  scratch_dir dir;
  expect_load_error(dir / "nope", error_code::not_found, {"nope"});
  const json c = tiny_config();
  ASSERT_TRUE(write_safetensors(dir / "model.safetensors", tiny_tensors(c)).ok());
  expect_load_error(dir.path(), error_code::not_found, {"config.json"});
  std::filesystem::remove(dir / "model.safetensors");
  write_file(dir / "config.json", c.dump());
  expect_load_error(dir.path(), error_code::not_found, {"model.safetensors"});
}

TEST(LoadModelDir, CorruptWeightsFile) {
  scratch_dir dir;
  write_file(dir / "config.json", tiny_config().dump());
  write_file(dir / "model.safetensors", std::string("\x10\0\0\0\0\0\0\0{}", 10));
  expect_load_error(dir.path(), error_code::corrupt_data,
                    {"model.safetensors", "header length 16", "past the end"});
}

TEST(LoadModelDir, ShapeContradictingConfig) {
  scratch_dir dir;
  const json c = tiny_config();
  auto tensors = without(tiny_tensors(c), "model.layers.1.mlp.up_proj.weight");
  tensors.push_back(f32_tensor("model.layers.1.mlp.up_proj.weight", {12, 7}));
  write_model(dir.path(), c, tensors);
  expect_load_error(dir.path(), error_code::corrupt_data,
                    {"model.safetensors", "'model.layers.1.mlp.up_proj.weight'", "shape [12, 7]",
                     "implies [12, 8]"});
}

TEST(LoadModelDir, ConfigContradictingWeights) {
  scratch_dir dir;
  json c = tiny_config();
  auto tensors = tiny_tensors(c);
  c["vocab_size"] = 32;
  write_model(dir.path(), c, tensors);
  expect_load_error(dir.path(), error_code::corrupt_data,
                    {"'model.embed_tokens.weight'", "shape [16, 8]", "implies [32, 8]"});
}

TEST(LoadModelDir, MissingTensors) {
  const json c = tiny_config("llama");
  for (const char* name : {"model.layers.1.self_attn.o_proj.weight", "model.norm.weight",
                           "model.embed_tokens.weight", "lm_head.weight"}) {
    SCOPED_TRACE(name);
    scratch_dir dir;
    write_model(dir.path(), c, without(tiny_tensors(c), name));
    expect_load_error(dir.path(), error_code::corrupt_data,
                      {dir.path().string(), std::string("'") + name + "'", "missing"});
  }
  scratch_dir dir;
  const json q = tiny_config("qwen2");
  write_model(dir.path(), q, without(tiny_tensors(q), "model.layers.0.self_attn.k_proj.bias"));
  expect_load_error(dir.path(), error_code::corrupt_data,
                    {"'model.layers.0.self_attn.k_proj.bias'", "missing"});
}

TEST(LoadModelDir, TensorDtypeWeDoNotAccept) {
  scratch_dir dir;
  write_file(dir / "config.json", tiny_config().dump());
  const json header = {
      {"model.embed_tokens.weight", {{"dtype", "I64"}, {"shape", {16, 8}}, {"data_offsets", {0, 1024}}}}};
  write_file(dir / "model.safetensors",
             testing::raw_safetensors(header.dump(), std::string(1024, '\0')));
  expect_load_error(dir.path(), error_code::unsupported,
                    {"model.safetensors", "'model.embed_tokens.weight'", "I64"});
}

TEST(LoadModelDir, UnknownArchitecture) {
  scratch_dir dir;
  json c = tiny_config();
  write_model(dir.path(), c, tiny_tensors(c));
  c["model_type"] = "mamba";
  c["architectures"] = {"MambaForCausalLM"};
  write_file(dir / "config.json", c.dump());
  expect_load_error(dir.path(), error_code::unsupported, {"config.json", "'mamba'"});
}

TEST(LoadModelDir, OutOfRangeConfig) {
  scratch_dir dir;
  json c = tiny_config();
  write_model(dir.path(), c, tiny_tensors(c));
  c["num_hidden_layers"] = 0;
  write_file(dir / "config.json", c.dump());
  expect_load_error(dir.path(), error_code::invalid_argument,
                    {"config.json", "num_hidden_layers (0)"});
  c = tiny_config();
  c["num_key_value_heads"] = 3;
  write_file(dir / "config.json", c.dump());
  expect_load_error(dir.path(), error_code::invalid_argument,
                    {"config.json", "num_attention_heads (2) is not divisible by "
                                    "num_key_value_heads (3)"});
}

}  // namespace
}  // namespace dsrt::model
