// DeepSeek-V2/V3 config.json parsing: the published configs, defaults, every validation
// rule, quantization_config, and load_model_dir refusing the weights for now.
#include <gtest/gtest.h>

#include "runtime/model/config.h"
#include "runtime/model/weights.h"
#include "tests/model/model_test_util.h"

namespace dsrt::model {
namespace {

using testing::json;
using testing::scratch_dir;

// DeepSeek-V3's published config.json (the fields we read).
json deepseek_v3_config() {
  return {{"architectures", {"DeepseekV3ForCausalLM"}},
          {"model_type", "deepseek_v3"},
          {"attention_bias", false},
          {"bos_token_id", 0},
          {"eos_token_id", 1},
          {"first_k_dense_replace", 3},
          {"hidden_act", "silu"},
          {"hidden_size", 7168},
          {"intermediate_size", 18432},
          {"kv_lora_rank", 512},
          {"max_position_embeddings", 163840},
          {"moe_intermediate_size", 2048},
          {"moe_layer_freq", 1},
          {"n_group", 8},
          {"n_routed_experts", 256},
          {"n_shared_experts", 1},
          {"norm_topk_prob", true},
          {"num_attention_heads", 128},
          {"num_experts_per_tok", 8},
          {"num_hidden_layers", 61},
          {"num_key_value_heads", 128},
          {"num_nextn_predict_layers", 1},
          {"q_lora_rank", 1536},
          {"qk_nope_head_dim", 128},
          {"qk_rope_head_dim", 64},
          {"quantization_config",
           {{"activation_scheme", "dynamic"},
            {"fmt", "e4m3"},
            {"quant_method", "fp8"},
            {"weight_block_size", {128, 128}}}},
          {"rms_norm_eps", 1e-06},
          {"rope_scaling",
           {{"beta_fast", 32},
            {"beta_slow", 1},
            {"factor", 40},
            {"mscale", 1.0},
            {"mscale_all_dim", 1.0},
            {"original_max_position_embeddings", 4096},
            {"type", "yarn"}}},
          {"rope_theta", 10000},
          {"routed_scaling_factor", 2.5},
          {"scoring_func", "sigmoid"},
          {"tie_word_embeddings", false},
          {"topk_group", 4},
          {"topk_method", "noaux_tc"},
          {"torch_dtype", "bfloat16"},
          {"v_head_dim", 128},
          {"vocab_size", 129280}};
}

// DeepSeek-V2-Lite's published config.json (the fields we read).
json deepseek_v2_lite_config() {
  return {{"architectures", {"DeepseekV2ForCausalLM"}},
          {"model_type", "deepseek_v2"},
          {"bos_token_id", 100000},
          {"eos_token_id", 100001},
          {"first_k_dense_replace", 1},
          {"hidden_size", 2048},
          {"intermediate_size", 10944},
          {"kv_lora_rank", 512},
          {"max_position_embeddings", 163840},
          {"moe_intermediate_size", 1408},
          {"moe_layer_freq", 1},
          {"n_group", 1},
          {"n_routed_experts", 64},
          {"n_shared_experts", 2},
          {"norm_topk_prob", false},
          {"num_attention_heads", 16},
          {"num_experts_per_tok", 6},
          {"num_hidden_layers", 27},
          {"num_key_value_heads", 16},
          {"q_lora_rank", nullptr},
          {"qk_nope_head_dim", 128},
          {"qk_rope_head_dim", 64},
          {"rms_norm_eps", 1e-06},
          {"rope_scaling",
           {{"beta_fast", 32},
            {"beta_slow", 1},
            {"factor", 40},
            {"mscale", 0.707},
            {"mscale_all_dim", 0.707},
            {"original_max_position_embeddings", 4096},
            {"type", "yarn"}}},
          {"rope_theta", 10000},
          {"routed_scaling_factor", 1.0},
          {"scoring_func", "softmax"},
          {"tie_word_embeddings", false},
          {"topk_group", 1},
          {"topk_method", "greedy"},
          {"torch_dtype", "bfloat16"},
          {"v_head_dim", 128},
          {"vocab_size", 102400}};
}

void expect_error(const json& j, error_code code, const std::vector<std::string>& parts) {
  testing::expect_config_error(j, code, parts);
}

TEST(DeepseekConfig, ParsesDeepseekV3) {
  auto c = parse_config(deepseek_v3_config(), "config.json");
  ASSERT_TRUE(c.ok()) << c.err().to_string();
  EXPECT_EQ(c->arch, architecture::deepseek_v3);
  EXPECT_EQ(c->model_type, "deepseek_v3");
  EXPECT_EQ(architecture_name(c->arch), "deepseek_v3");
  EXPECT_EQ(c->vocab_size, 129280);
  EXPECT_EQ(c->hidden_size, 7168);
  EXPECT_EQ(c->intermediate_size, 18432);
  EXPECT_EQ(c->num_hidden_layers, 61);
  EXPECT_EQ(c->num_attention_heads, 128);
  EXPECT_EQ(c->num_key_value_heads, 128);
  EXPECT_EQ(c->head_dim, 64);  // qk_rope_head_dim: what RoPE rotates
  EXPECT_EQ(c->max_position_embeddings, 163840);
  EXPECT_EQ(c->torch_dtype, dtype::bf16);
  EXPECT_EQ(c->bos_token_id, 0);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int>{1}));
  EXPECT_EQ(c->rope.type, rope_scaling_type::yarn);
  EXPECT_DOUBLE_EQ(c->rope.factor, 40.0);
  EXPECT_DOUBLE_EQ(c->rope.beta_fast, 32.0);
  EXPECT_DOUBLE_EQ(c->rope.beta_slow, 1.0);
  EXPECT_DOUBLE_EQ(c->rope.mscale, 1.0);
  EXPECT_DOUBLE_EQ(c->rope.mscale_all_dim, 1.0);
  EXPECT_EQ(c->rope.original_max_position_embeddings, 4096);

  ASSERT_TRUE(c->deepseek.has_value());
  const deepseek_config& d = *c->deepseek;
  EXPECT_EQ(d.q_lora_rank, 1536);
  EXPECT_EQ(d.kv_lora_rank, 512);
  EXPECT_EQ(d.qk_nope_head_dim, 128);
  EXPECT_EQ(d.qk_rope_head_dim, 64);
  EXPECT_EQ(d.v_head_dim, 128);
  EXPECT_EQ(d.n_routed_experts, 256);
  EXPECT_EQ(d.n_shared_experts, 1);
  EXPECT_EQ(d.num_experts_per_tok, 8);
  EXPECT_EQ(d.n_group, 8);
  EXPECT_EQ(d.topk_group, 4);
  EXPECT_EQ(d.topk, topk_method::noaux_tc);
  EXPECT_EQ(d.scoring, scoring_func::sigmoid);
  EXPECT_TRUE(d.norm_topk_prob);
  EXPECT_DOUBLE_EQ(d.routed_scaling_factor, 2.5);
  EXPECT_EQ(d.first_k_dense_replace, 3);
  EXPECT_EQ(d.moe_layer_freq, 1);
  EXPECT_EQ(d.moe_intermediate_size, 2048);
  EXPECT_EQ(d.num_nextn_predict_layers, 1);
  ASSERT_TRUE(d.quantization.has_value());
  EXPECT_EQ(d.quantization->activations, fp8_block_quantization::activation_scheme::dynamic);
  EXPECT_EQ(d.quantization->block_rows, 128);
  EXPECT_EQ(d.quantization->block_cols, 128);
}

TEST(DeepseekConfig, ParsesDeepseekV2Lite) {
  auto c = parse_config(deepseek_v2_lite_config(), "config.json");
  ASSERT_TRUE(c.ok()) << c.err().to_string();
  EXPECT_EQ(c->arch, architecture::deepseek_v3);
  EXPECT_EQ(c->model_type, "deepseek_v2");
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->num_key_value_heads, 16);
  EXPECT_DOUBLE_EQ(c->rope.mscale_all_dim, 0.707);
  ASSERT_TRUE(c->deepseek.has_value());
  const deepseek_config& d = *c->deepseek;
  EXPECT_EQ(d.q_lora_rank, 0);  // null: q is not compressed
  EXPECT_EQ(d.n_routed_experts, 64);
  EXPECT_EQ(d.n_shared_experts, 2);
  EXPECT_EQ(d.num_experts_per_tok, 6);
  EXPECT_EQ(d.n_group, 1);
  EXPECT_EQ(d.topk_group, 1);
  EXPECT_EQ(d.topk, topk_method::greedy);
  EXPECT_EQ(d.scoring, scoring_func::softmax);
  EXPECT_FALSE(d.norm_topk_prob);
  EXPECT_DOUBLE_EQ(d.routed_scaling_factor, 1.0);
  EXPECT_EQ(d.first_k_dense_replace, 1);
  EXPECT_EQ(d.moe_intermediate_size, 1408);
  EXPECT_EQ(d.num_nextn_predict_layers, 0);
  EXPECT_FALSE(d.quantization.has_value());
}

TEST(DeepseekConfig, DefaultsAndArchitecturesOnly) {
  json j = deepseek_v3_config();
  for (const char* k : {"q_lora_rank", "n_group", "topk_group", "topk_method", "scoring_func",
                        "norm_topk_prob", "routed_scaling_factor", "first_k_dense_replace",
                        "moe_layer_freq", "num_nextn_predict_layers", "quantization_config",
                        "num_key_value_heads", "model_type"}) {
    j.erase(k);
  }
  auto c = parse_config(j, "config.json");
  ASSERT_TRUE(c.ok()) << c.err().to_string();
  EXPECT_EQ(c->arch, architecture::deepseek_v3);
  const deepseek_config& d = *c->deepseek;
  EXPECT_EQ(d.q_lora_rank, 1536);
  EXPECT_EQ(d.n_group, 8);
  EXPECT_EQ(d.topk_group, 4);
  EXPECT_EQ(d.topk, topk_method::noaux_tc);
  EXPECT_EQ(d.scoring, scoring_func::sigmoid);
  EXPECT_TRUE(d.norm_topk_prob);
  EXPECT_DOUBLE_EQ(d.routed_scaling_factor, 2.5);
  EXPECT_EQ(d.first_k_dense_replace, 3);
  EXPECT_EQ(d.moe_layer_freq, 1);
  EXPECT_EQ(d.num_nextn_predict_layers, 0);
  EXPECT_FALSE(d.quantization.has_value());
  EXPECT_EQ(c->num_key_value_heads, 128);

  // Llama configs carry no DeepSeek fields.
  auto llama = parse_config(testing::tiny_config("llama"), "config.json");
  ASSERT_TRUE(llama.ok()) << llama.err().to_string();
  EXPECT_FALSE(llama->deepseek.has_value());
}

TEST(DeepseekConfig, InvalidValuesAreRejected) {
  struct bad {
    json patch;  // merged into the V3 config
    std::vector<std::string> parts;
  };
  const std::vector<bad> cases = {
      {{{"kv_lora_rank", 0}}, {"kv_lora_rank (0)"}},
      {{{"q_lora_rank", -1}}, {"q_lora_rank (-1)"}},
      {{{"qk_nope_head_dim", 0}}, {"qk_nope_head_dim (0)"}},
      {{{"qk_rope_head_dim", 0}}, {"qk_rope_head_dim (0)"}},
      {{{"qk_rope_head_dim", 63}}, {"qk_rope_head_dim (63)", "even"}},
      {{{"v_head_dim", -128}}, {"v_head_dim (-128)"}},
      {{{"n_routed_experts", 0}}, {"n_routed_experts (0)"}},
      {{{"n_routed_experts", 100000}}, {"n_routed_experts (100000)"}},
      {{{"moe_intermediate_size", 0}}, {"moe_intermediate_size (0)"}},
      {{{"num_experts_per_tok", 0}}, {"num_experts_per_tok (0)"}},
      {{{"num_experts_per_tok", 9}, {"n_routed_experts", 8}, {"n_group", 1}, {"topk_group", 1}},
       {"num_experts_per_tok (9)", "n_routed_experts (8)", "top-k larger than the expert count"}},
      {{{"n_group", 3}}, {"n_routed_experts (256)", "n_group (3)"}},
      {{{"topk_group", 0}}, {"topk_group (0)"}},
      {{{"topk_group", 9}}, {"topk_group (9)", "n_group (8)"}},
      {{{"topk_group", 1}, {"num_experts_per_tok", 33}},
       {"num_experts_per_tok (33)", "topk_group (1)", "cannot be met"}},
      {{{"topk_method", "group_limited_greedy"}, {"topk_group", 1}, {"num_experts_per_tok", 40}},
       {"num_experts_per_tok (40)", "cannot be met"}},
      {{{"scoring_func", "softmax"}}, {"noaux_tc", "sigmoid"}},
      {{{"scoring_func", "tanh"}}, {"scoring_func (\"tanh\")"}},
      {{{"topk_method", "random"}}, {"topk_method (\"random\")"}},
      {{{"first_k_dense_replace", 62}}, {"first_k_dense_replace (62)"}},
      {{{"first_k_dense_replace", -1}}, {"first_k_dense_replace (-1)"}},
      {{{"moe_layer_freq", 0}}, {"moe_layer_freq (0)"}},
      {{{"routed_scaling_factor", 0.0}}, {"routed_scaling_factor (0)"}},
      {{{"routed_scaling_factor", -2.5}}, {"routed_scaling_factor (-2.5)"}},
      // Positive as a double, 0 as the float the router computes with (it asserted).
      {{{"routed_scaling_factor", 1e-50}}, {"routed_scaling_factor (1e-50)", "float"}},
      {{{"n_shared_experts", -1}}, {"n_shared_experts (-1)"}},
      {{{"num_attention_heads", 0}}, {"num_attention_heads (0)"}},
      {{{"num_key_value_heads", 5}}, {"num_attention_heads (128)", "not divisible", "num_key_value_heads (5)"}},
      {{{"num_nextn_predict_layers", -1}}, {"num_nextn_predict_layers (-1)"}},
      {{{"norm_topk_prob", "yes"}}, {"norm_topk_prob (\"yes\")"}},
      {{{"quantization_config", {{"quant_method", "fp8"}, {"weight_block_size", {0, 128}}}}},
       {"weight_block_size ([0,128])"}},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(::testing::Message() << "case " << i << ": " << cases[i].patch.dump());
    json j = deepseek_v3_config();
    j.merge_patch(cases[i].patch);
    auto parts = cases[i].parts;
    parts.push_back("config.json");
    expect_error(j, error_code::invalid_argument, parts);
  }
  // Greedy routing ignores groups, so a top-k beyond topk_group's groups is fine there.
  json greedy = deepseek_v3_config();
  greedy.merge_patch({{"topk_method", "greedy"}, {"topk_group", 1}, {"num_experts_per_tok", 40}});
  EXPECT_TRUE(parse_config(greedy, "config.json").ok());
}

TEST(DeepseekConfig, UnsupportedQuantizationIsUnsupported) {
  const std::vector<std::pair<json, std::string>> cases = {
      {{{"quant_method", "gptq"}, {"bits", 4}}, "quant_method \"gptq\""},
      {{{"quant_method", "fp8"}, {"fmt", "e5m2"}, {"weight_block_size", {128, 128}}},
       "fmt \"e5m2\""},
      {{{"quant_method", "fp8"}, {"fmt", "e4m3"}}, "weight_block_size (missing)"},
      {{{"quant_method", "fp8"}, {"weight_block_size", {128}}}, "weight_block_size [128]"},
  };
  for (const auto& [quant, shown] : cases) {
    SCOPED_TRACE(quant.dump());
    json j = deepseek_v3_config();
    j["quantization_config"] = quant;
    expect_error(j, error_code::unsupported, {"config.json quantization_config", shown});
  }
}

TEST(DeepseekConfig, ModelTypeContradictingArchitecturesIsRejected) {
  json j = deepseek_v3_config();
  j["architectures"] = {"LlamaForCausalLM"};
  expect_error(j, error_code::invalid_argument, {"config.json", "deepseek_v3", "Llama"});
}

}  // namespace
}  // namespace dsrt::model
