#include "runtime/model/config.h"

#include <gtest/gtest.h>

#include "tests/model/model_test_util.h"

namespace dsrt::model {
namespace {

using testing::json;
using testing::scratch_dir;
using testing::tiny_config;

void expect_error(const json& j, error_code code, const std::vector<std::string>& parts) {
  testing::expect_config_error(j, code, parts);
}

TEST(Config, ParsesLlama) {
  json j = tiny_config("llama");
  j["eos_token_id"] = {2, 3};
  auto c = parse_config(j, "config.json");
  ASSERT_TRUE(c.ok()) << c.err().to_string();
  EXPECT_EQ(c->arch, architecture::llama);
  EXPECT_EQ(c->model_type, "llama");
  EXPECT_EQ(c->vocab_size, 16);
  EXPECT_EQ(c->hidden_size, 8);
  EXPECT_EQ(c->intermediate_size, 12);
  EXPECT_EQ(c->num_hidden_layers, 2);
  EXPECT_EQ(c->num_attention_heads, 2);
  EXPECT_EQ(c->num_key_value_heads, 1);
  EXPECT_EQ(c->head_dim, 4);
  EXPECT_EQ(c->max_position_embeddings, 64);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c->rope_theta, 10000.0);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_FALSE(c->attention_bias);
  EXPECT_EQ(c->torch_dtype, dtype::f32);
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int>{2, 3}));
  EXPECT_EQ(c->rope.type, rope_scaling_type::none);
}

TEST(Config, OddHeadDimAndRopeThetaAtMostOneAreRejected) {
  json j = tiny_config("llama");
  j["head_dim"] = 5;
  expect_error(j, error_code::invalid_argument, {"config.json", "head_dim (5)", "even"});
  j = tiny_config("llama");
  j["rope_theta"] = 1.0;
  expect_error(j, error_code::invalid_argument, {"config.json", "rope_theta (1)", "greater than 1"});
}

TEST(Config, Qwen2AlwaysHasAttentionBias) {
  auto c = parse_config(tiny_config("qwen2"), "config.json");
  ASSERT_TRUE(c.ok()) << c.err().to_string();
  EXPECT_EQ(c->arch, architecture::qwen2);
  EXPECT_TRUE(c->attention_bias);
  EXPECT_TRUE(c->tie_word_embeddings);
}

TEST(Config, DefaultsForOptionalFields) {
  json j = tiny_config();
  for (const char* k : {"num_key_value_heads", "rms_norm_eps", "rope_theta", "torch_dtype",
                        "bos_token_id", "eos_token_id", "tie_word_embeddings"}) {
    j.erase(k);
  }
  auto c = parse_config(j, "config.json");
  ASSERT_TRUE(c.ok()) << c.err().to_string();
  EXPECT_EQ(c->num_key_value_heads, 2);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c->rope_theta, 10000.0);
  EXPECT_EQ(c->torch_dtype, dtype::bf16);
  EXPECT_EQ(c->bos_token_id, -1);
  EXPECT_TRUE(c->eos_token_ids.empty());
}

TEST(Config, ExplicitHeadDimNeedNotDivideHidden) {
  json j = tiny_config();
  j["hidden_size"] = 10;
  j["head_dim"] = 16;
  auto c = parse_config(j, "config.json");
  ASSERT_TRUE(c.ok()) << c.err().to_string();
  EXPECT_EQ(c->head_dim, 16);
  j.erase("head_dim");
  j["num_attention_heads"] = 4;
  j["num_key_value_heads"] = 2;
  expect_error(j, error_code::invalid_argument,
               {"config.json", "hidden_size (10)", "num_attention_heads (4)"});
}

TEST(Config, ArchitectureFromArchitecturesListWhenNoModelType) {
  json j = tiny_config("qwen2");
  j.erase("model_type");
  auto c = parse_config(j, "config.json");
  ASSERT_TRUE(c.ok()) << c.err().to_string();
  EXPECT_EQ(c->arch, architecture::qwen2);
}

TEST(Config, UnknownModelTypeIsUnsupported) {
  json j = tiny_config();
  j["model_type"] = "mamba";
  expect_error(j, error_code::unsupported, {"config.json", "model_type", "mamba"});
  j.erase("model_type");
  j["architectures"] = {"MysteryForCausalLM"};
  expect_error(j, error_code::unsupported, {"config.json", "model_type"});
}

TEST(Config, ModelTypeContradictingArchitecturesIsRejected) {
  json j = tiny_config("llama");
  j["architectures"] = {"Qwen2ForCausalLM"};
  expect_error(j, error_code::invalid_argument, {"config.json", "llama", "Qwen2ForCausalLM"});
}

TEST(Config, HeadsNotDivisibleByKvHeads) {
  json j = tiny_config();
  j["hidden_size"] = 48;
  j["num_attention_heads"] = 12;
  j["num_key_value_heads"] = 5;
  auto c = parse_config(j, "config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.err().code, error_code::invalid_argument);
  EXPECT_EQ(c.err().message,
            "config.json: num_attention_heads (12) is not divisible by num_key_value_heads (5)");
}

TEST(Config, OutOfRangeValues) {
  struct bad {
    const char* field;
    json value;
    const char* shown;
  };
  const std::vector<bad> cases = {
      {"vocab_size", 0, "vocab_size (0)"},
      {"vocab_size", 1 << 23, "vocab_size (8388608)"},
      {"hidden_size", -8, "hidden_size (-8)"},
      {"intermediate_size", 0, "intermediate_size (0)"},
      {"num_hidden_layers", 100000, "num_hidden_layers (100000)"},
      {"num_attention_heads", 0, "num_attention_heads (0)"},
      {"num_key_value_heads", -1, "num_key_value_heads (-1)"},
      {"max_position_embeddings", 0, "max_position_embeddings (0)"},
      {"head_dim", 0, "head_dim (0)"},
      {"rms_norm_eps", 0.0, "rms_norm_eps (0)"},
      {"rms_norm_eps", -1e-5, "rms_norm_eps (-1e-05)"},
      {"rope_theta", -1.0, "rope_theta (-1)"},
      {"vocab_size", "16", "vocab_size (\"16\")"},
      {"bos_token_id", 16, "bos_token_id (16)"},
      {"eos_token_id", json::array({2, -1}), "eos_token_id ([2,-1])"},
      {"tie_word_embeddings", "yes", "tie_word_embeddings (\"yes\")"},
      {"torch_dtype", "int4", "torch_dtype (\"int4\")"},
  };
  for (const auto& b : cases) {
    SCOPED_TRACE(b.field);
    json j = tiny_config();
    j[b.field] = b.value;
    expect_error(j, error_code::invalid_argument, {"config.json", b.shown});
  }
  json j = tiny_config();
  j.erase("hidden_size");
  expect_error(j, error_code::invalid_argument, {"config.json", "hidden_size is missing"});
  expect_error(json::array(), error_code::invalid_argument, {"config.json", "not a JSON object"});
}

TEST(Config, RopeScalingVariants) {
  json j = tiny_config();
  j["rope_scaling"] = nullptr;
  EXPECT_EQ(parse_config(j, "c")->rope.type, rope_scaling_type::none);
  j["rope_scaling"] = {{"type", "default"}};
  EXPECT_EQ(parse_config(j, "c")->rope.type, rope_scaling_type::none);

  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  auto linear = parse_config(j, "c");
  ASSERT_TRUE(linear.ok()) << linear.err().to_string();
  EXPECT_EQ(linear->rope.type, rope_scaling_type::linear);
  EXPECT_DOUBLE_EQ(linear->rope.factor, 2.0);

  j["rope_scaling"] = {{"rope_type", "llama3"},      {"factor", 8.0},
                       {"low_freq_factor", 1.0},     {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192}};
  auto llama3 = parse_config(j, "c");
  ASSERT_TRUE(llama3.ok()) << llama3.err().to_string();
  EXPECT_EQ(llama3->rope.type, rope_scaling_type::llama3);
  EXPECT_DOUBLE_EQ(llama3->rope.factor, 8.0);
  EXPECT_EQ(llama3->rope.original_max_position_embeddings, 8192);

  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0},
                       {"original_max_position_embeddings", 32768}, {"mscale_all_dim", 0.707}};
  auto yarn = parse_config(j, "c");
  ASSERT_TRUE(yarn.ok()) << yarn.err().to_string();
  EXPECT_EQ(yarn->rope.type, rope_scaling_type::yarn);
  EXPECT_DOUBLE_EQ(yarn->rope.factor, 4.0);
  EXPECT_DOUBLE_EQ(yarn->rope.beta_fast, 32.0);
  EXPECT_DOUBLE_EQ(yarn->rope.mscale_all_dim, 0.707);

  j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
  expect_error(j, error_code::unsupported, {"config.json", "dynamic"});
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 0.0}};
  expect_error(j, error_code::invalid_argument, {"config.json rope_scaling", "factor (0)"});
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  expect_error(j, error_code::invalid_argument, {"original_max_position_embeddings is missing"});
  j["rope_scaling"] = "linear";
  expect_error(j, error_code::invalid_argument, {"rope_scaling"});
}

TEST(Config, LoadConfigFromFileOrDirectory) {
  scratch_dir dir;
  testing::write_file(dir / "config.json", tiny_config().dump());
  auto from_file = load_config(dir / "config.json");
  ASSERT_TRUE(from_file.ok()) << from_file.err().to_string();
  auto from_dir = load_config(dir.path());
  ASSERT_TRUE(from_dir.ok()) << from_dir.err().to_string();
  EXPECT_EQ(from_dir->hidden_size, 8);
}

TEST(Config, LoadConfigErrors) {
  scratch_dir dir;
  auto missing = load_config(dir / "config.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.err().code, error_code::not_found);
  EXPECT_NE(missing.err().message.find("config.json"), std::string::npos);

  testing::write_file(dir / "config.json", "{\"model_type\": \"llama\", ");
  auto bad = load_config(dir / "config.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.err().code, error_code::corrupt_data);
  EXPECT_NE(bad.err().message.find("config.json: not valid JSON"), std::string::npos)
      << bad.err().message;

  // Nested a million deep (2 MB): refused before parsing (copying or printing such a value
  // recursed once per level and overflowed the stack).
  const std::size_t deep = 1'000'000;
  testing::write_file(dir / "config.json", "{\"model_type\": \"llama\", \"eos_token_id\": " +
                                               std::string(deep, '[') + std::string(deep, ']') + "}");
  auto nested = load_config(dir / "config.json");
  ASSERT_FALSE(nested.ok());
  EXPECT_EQ(nested.err().code, error_code::corrupt_data);
  EXPECT_NE(nested.err().message.find("nested 1000001 deep"), std::string::npos) << nested.err().message;

  // Brackets inside strings are text, not nesting.
  json quoted = tiny_config("llama");
  quoted["note"] = std::string(1000, '[') + "\\\"" + std::string(1000, '{');
  testing::write_file(dir / "config.json", quoted.dump());
  EXPECT_TRUE(load_config(dir / "config.json").ok());
}

}  // namespace
}  // namespace dsrt::model
