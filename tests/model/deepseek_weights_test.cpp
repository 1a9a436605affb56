// DeepSeek-V3 weights: dsgen's tiny-dsv3 (bf16 and --fp8) binds every MLA / MoE tensor,
// skips the multi-token-prediction layer, and each broken variant of it is a clear error.
#include <sys/wait.h>

#include <cstdlib>
#include <cstring>
#include <functional>

#include <gtest/gtest.h>

#include "runtime/model/weights.h"
#include "tests/model/model_test_util.h"

namespace dsrt::model {
namespace {

using testing::json;
using testing::read_file;
using testing::scratch_dir;
using testing::write_file;
namespace fs = std::filesystem;

fs::path generate(const scratch_dir& dir, const std::string& name, const std::string& args) {
  const fs::path out = dir / name;
  const std::string cmd = std::string(DSRT_BINARY_DIR "/apps/dsgen/dsgen ") + args +
                          " --seed 3 --threads 1 --out '" + out.string() + "' > /dev/null 2>&1";
  const int status = std::system(cmd.c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << cmd;
  return out;
}

// Copies a model directory, passing its tensors through `edit` (return false to drop one)
// and its config through `edit_config`.
void copy_model(const fs::path& src, const fs::path& dst,
                const std::function<bool(tensor_to_write&)>& edit,
                const std::function<void(json&)>& edit_config = {}) {
  fs::create_directories(dst);
  json config = json::parse(read_file(src / "config.json"));
  if (edit_config) edit_config(config);
  write_file(dst / "config.json", config.dump(2));
  auto store = weight_store::open(src);
  ASSERT_TRUE(store.ok()) << store.err().to_string();
  std::vector<tensor_to_write> tensors;
  for (const auto& [name, t] : store->all()) {
    tensor_to_write w{name, t->type, t->shape, {}};
    const auto* bytes = static_cast<const std::uint8_t*>(t->data);
    w.bytes.assign(bytes, bytes + t->size_bytes);
    if (edit(w)) tensors.push_back(std::move(w));
  }
  auto s = write_safetensors(dst / "model.safetensors", tensors);
  ASSERT_TRUE(s.ok()) << s.err().to_string();
}

void expect_load_error(const fs::path& dir, error_code code, std::vector<std::string> parts) {
  auto m = load_model_dir(dir);
  ASSERT_FALSE(m.ok()) << "loaded " << dir;
  EXPECT_EQ(m.err().code, code) << m.err().to_string();
  for (const auto& p : parts)
    EXPECT_NE(m.err().message.find(p), std::string::npos)
        << "message '" << m.err().message << "' lacks '" << p << "'";
}

class DeepseekWeights : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new scratch_dir;
    bf16_ = generate(*dir_, "bf16", "--preset tiny-dsv3");
    fp8_ = generate(*dir_, "fp8", "--preset tiny-dsv3 --fp8");
  }
  static void TearDownTestSuite() { delete dir_; }

  static scratch_dir* dir_;
  static fs::path bf16_, fp8_;
};
scratch_dir* DeepseekWeights::dir_ = nullptr;
fs::path DeepseekWeights::bf16_, DeepseekWeights::fp8_;

TEST_F(DeepseekWeights, BindsMlaAndMoeLayers) {
  auto m = load_model_dir(bf16_);
  ASSERT_TRUE(m.ok()) << m.err().to_string();
  const auto& c = (*m)->config;
  const auto& w = (*m)->deepseek;
  ASSERT_EQ(c.arch, architecture::deepseek_v3);
  ASSERT_EQ(w.layers.size(), 4u);
  EXPECT_TRUE((*m)->weights.layers.empty());  // the dense binding is not used
  // Layer 0 is dense (first_k_dense_replace = 1); the others are MoE.
  EXPECT_FALSE(w.layers[0].moe);
  ASSERT_NE(w.layers[0].dense.gate.weight, nullptr);
  EXPECT_EQ(w.layers[0].dense.gate.weight->shape, (std::vector<std::int64_t>{512, 256}));
  EXPECT_EQ(w.layers[0].router, nullptr);
  for (std::size_t i = 1; i < 4; ++i) {
    const auto& l = w.layers[i];
    EXPECT_TRUE(l.moe) << i;
    EXPECT_EQ(l.experts.size(), 16u);
    EXPECT_EQ(l.experts[15].down.weight->name, fmt::format("model.layers.{}.mlp.experts.15.down_proj.weight", i));
    EXPECT_EQ(l.experts[15].down.weight->shape, (std::vector<std::int64_t>{256, 128}));
    ASSERT_NE(l.router_bias, nullptr);
    EXPECT_EQ(l.router->shape, (std::vector<std::int64_t>{16, 256}));
    EXPECT_EQ(l.shared.up.weight->shape, (std::vector<std::int64_t>{128, 256}));
    EXPECT_EQ(l.dense.gate.weight, nullptr);
  }
  const auto& l = w.layers[2];
  EXPECT_EQ(l.q_a.weight->shape, (std::vector<std::int64_t>{128, 256}));
  EXPECT_EQ(l.q_b.weight->shape, (std::vector<std::int64_t>{4 * (32 + 16), 128}));
  EXPECT_EQ(l.kv_a.weight->shape, (std::vector<std::int64_t>{64 + 16, 256}));
  EXPECT_EQ(l.kv_b.weight->shape, (std::vector<std::int64_t>{4 * (32 + 32), 64}));
  EXPECT_EQ(l.o.weight->shape, (std::vector<std::int64_t>{256, 4 * 32}));
  EXPECT_EQ(l.q.weight, nullptr);
  EXPECT_EQ(l.kv_a.scale, nullptr);  // bf16: no scales
  // The MTP layer (layer 4) is skipped, every one of its tensors counted.
  std::int64_t layer4 = 0;
  for (const auto& [name, t] : (*m)->store.all()) layer4 += name.starts_with("model.layers.4.");
  EXPECT_GT(layer4, 0);
  EXPECT_EQ(w.mtp_tensors_skipped, layer4);
}

TEST_F(DeepseekWeights, Fp8ProjectionsCarryTheirBlockScales) {
  auto m = load_model_dir(fp8_);
  ASSERT_TRUE(m.ok()) << m.err().to_string();
  const auto& l = (*m)->deepseek.layers[1];
  ASSERT_TRUE((*m)->config.deepseek->quantization);
  EXPECT_EQ(l.kv_a.weight->type, dtype::f8_e4m3);
  ASSERT_NE(l.kv_a.scale, nullptr);
  EXPECT_EQ(l.kv_a.scale->name, "model.layers.1.self_attn.kv_a_proj_with_mqa.weight_scale_inv");
  EXPECT_EQ(l.kv_a.scale->shape, (std::vector<std::int64_t>{1, 2}));  // 80 x 256 in 128 blocks
  EXPECT_EQ(l.experts[3].gate.weight->type, dtype::f8_e4m3);
  EXPECT_NE(l.experts[3].gate.scale, nullptr);
  // Norms, the router, the embedding and the head stay in bf16; the bias in f32.
  EXPECT_EQ(l.router->type, dtype::bf16);
  EXPECT_EQ(l.router_bias->type, dtype::f32);
  EXPECT_EQ((*m)->deepseek.lm_head->type, dtype::bf16);
}

TEST_F(DeepseekWeights, MissingScaleTensorIsAnError) {
  scratch_dir out;
  copy_model(fp8_, out.path(), [](tensor_to_write& t) {
    return t.name != "model.layers.2.mlp.experts.7.up_proj.weight_scale_inv";
  });
  expect_load_error(out.path(), error_code::corrupt_data,
                    {"'model.layers.2.mlp.experts.7.up_proj.weight_scale_inv'", "missing"});
}

TEST_F(DeepseekWeights, ScaleOfTheWrongShapeOrDtypeIsAnError) {
  scratch_dir shape, type;
  const std::string name = "model.layers.1.self_attn.o_proj.weight_scale_inv";
  copy_model(fp8_, shape.path(), [&](tensor_to_write& t) {
    if (t.name == name) t.shape = {t.shape[1], t.shape[0]};
    return true;
  });
  expect_load_error(shape.path(), error_code::corrupt_data, {"'" + name + "'", "shape"});
  copy_model(fp8_, type.path(), [&](tensor_to_write& t) {
    if (t.name != name) return true;
    t.type = dtype::bf16;
    t.bytes.resize(t.bytes.size() / 2);
    return true;
  });
  expect_load_error(type.path(), error_code::corrupt_data, {"'" + name + "'", "f32"});
}

TEST_F(DeepseekWeights, Fp8WithoutQuantizationConfigIsAnError) {
  scratch_dir out;
  copy_model(fp8_, out.path(), [](tensor_to_write&) { return true; },
             [](json& c) { c.erase("quantization_config"); });
  expect_load_error(out.path(), error_code::corrupt_data, {"f8_e4m3", "quantization_config"});
}

TEST_F(DeepseekWeights, TensorsPastTheMtpLayersAreAnError) {
  scratch_dir out;
  copy_model(bf16_, out.path(), [](tensor_to_write&) { return true; },
             [](json& c) { c["num_nextn_predict_layers"] = 0; });
  expect_load_error(out.path(), error_code::corrupt_data,
                    {"belongs to layer 4", "4 layers and 0 multi-token-prediction layers"});
}

TEST_F(DeepseekWeights, MissingExpertOrRouterBiasIsAnError) {
  scratch_dir expert, bias;
  copy_model(bf16_, expert.path(), [](tensor_to_write& t) {
    return t.name != "model.layers.3.mlp.experts.0.gate_proj.weight";
  });
  expect_load_error(expert.path(), error_code::corrupt_data,
                    {"'model.layers.3.mlp.experts.0.gate_proj.weight'", "missing"});
  copy_model(bf16_, bias.path(), [](tensor_to_write& t) {
    return t.name != "model.layers.1.mlp.gate.e_score_correction_bias";
  });
  expect_load_error(bias.path(), error_code::corrupt_data,
                    {"'model.layers.1.mlp.gate.e_score_correction_bias'", "missing"});
}

// The two ways of holding weights in memory give the same bytes (huge_pages copies them
// out of the file mapping; mapped uses the mapping itself).
TEST_F(DeepseekWeights, HugePageCopyHoldsTheFileBytes) {
  auto mapped = load_model_dir(fp8_, {.memory = weights_memory::mapped});
  auto copied = load_model_dir(fp8_, {.memory = weights_memory::huge_pages});
  ASSERT_TRUE(mapped.ok() && copied.ok());
  ASSERT_EQ((*mapped)->store.all().size(), (*copied)->store.all().size());
  for (const auto& [name, t] : (*mapped)->store.all()) {
    const tensor_info* c = (*copied)->store.find(name);
    ASSERT_NE(c, nullptr) << name;
    ASSERT_EQ(c->size_bytes, t->size_bytes) << name;
    EXPECT_NE(c->data, t->data) << name;
    EXPECT_EQ(std::memcmp(c->data, t->data, t->size_bytes), 0) << name;
  }
}

TEST_F(DeepseekWeights, DsgenIsDeterministic) {
  scratch_dir again;
  for (const auto& [dir, args] : {std::pair{bf16_, "--preset tiny-dsv3"}, {fp8_, "--preset tiny-dsv3 --fp8"}}) {
    const fs::path other = generate(again, dir.filename().string(), args);
    EXPECT_EQ(read_file(other / "model.safetensors"), read_file(dir / "model.safetensors")) << args;
    EXPECT_EQ(read_file(other / "config.json"), read_file(dir / "config.json")) << args;
  }
}

}  // namespace
}  // namespace dsrt::model
