#include "tests/engine/engine_test_util.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>

#include "runtime/model/safetensors.h"

namespace dsrt::engine::test_util {
namespace {

namespace fs = std::filesystem;

// Generates the models once per process; ctest runs each test case in its own process,
// and dsgen writes a tiny model in milliseconds.
class tiny_models : public ::testing::Environment {
 public:
  static tiny_models& get() {
    static tiny_models* instance = new tiny_models;  // owned by gtest once registered
    return *instance;
  }

  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dsrt-engine-test-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    // (directory, dsgen arguments)
    const std::pair<const char*, const char*> models[] = {
        {"tiny-llama", "--preset tiny-llama"},
        {"tiny-qwen2", "--preset tiny-qwen2"},
        {"tiny-dsv3", "--preset tiny-dsv3"},
        {"tiny-dsv3-fp8", "--preset tiny-dsv3 --fp8"}};
    for (const auto& [name, args] : models) {
      // DSRT_DSGEN: another dsgen than this build tree's (the GPU check runs these tests from
      // a bundle of binaries, scripts/gpu/).
      const char* dsgen_env = std::getenv("DSRT_DSGEN");
      const std::string dsgen = dsgen_env ? dsgen_env : DSRT_BINARY_DIR "/apps/dsgen/dsgen";
      const std::string command = dsgen + " " + args +
                                  " --seed 1 --threads 1 --out " + (dir_ / name).string() +
                                  " > " + (dir_ / (std::string(name) + ".log")).string() +
                                  " 2>&1";
      const int rc = std::system(command.c_str());
      ASSERT_EQ(rc, 0) << "dsgen failed: " << command;
    }
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  const fs::path& dir() const { return dir_; }

 private:
  fs::path dir_;
};

// Registered before main() runs (gtest_main then calls RUN_ALL_TESTS).
[[maybe_unused]] ::testing::Environment* const registered =
    ::testing::AddGlobalTestEnvironment(&tiny_models::get());

}  // namespace

const fs::path& tiny_llama_dir() {
  static const fs::path p = tiny_models::get().dir() / "tiny-llama";
  return p;
}
const fs::path& tiny_qwen2_dir() {
  static const fs::path p = tiny_models::get().dir() / "tiny-qwen2";
  return p;
}
const fs::path& tiny_dsv3_dir() {
  static const fs::path p = tiny_models::get().dir() / "tiny-dsv3";
  return p;
}
const fs::path& tiny_dsv3_fp8_dir() {
  static const fs::path p = tiny_models::get().dir() / "tiny-dsv3-fp8";
  return p;
}

std::unique_ptr<kernels::backend> make_backend(const std::string& isa) {
  return kernels::make_cpu_backend({.threads = 2, .isa = isa});
}

std::unique_ptr<model::model_files> load_files(const fs::path& dir) {
  auto files = model::load_model_dir(dir);
  if (!files) {
    ADD_FAILURE() << "load_model_dir(" << dir << "): " << files.err().to_string();
    return nullptr;
  }
  return std::move(*files);
}

std::unique_ptr<causal_lm> load_model(const fs::path& dir, kernels::backend& backend,
                                        const model_options& options) {
  auto files = load_files(dir);
  if (!files) return nullptr;
  auto m = create_causal_lm(std::move(files), backend, options);
  if (!m) {
    ADD_FAILURE() << "create_causal_lm: " << m.err().to_string();
    return nullptr;
  }
  return std::move(*m);
}

tokenizer::tokenizer load_tokenizer(const fs::path& dir) {
  auto t = tokenizer::tokenizer::load(dir);
  if (!t) {
    ADD_FAILURE() << "tokenizer::load(" << dir << "): " << t.err().to_string();
    std::abort();  // the callers cannot go on without one
  }
  return *t;
}

std::vector<std::int32_t> make_prompt(std::size_t length, std::uint64_t salt) {
  std::vector<std::int32_t> out;
  std::uint64_t s = salt * 0x9e3779b97f4a7c15ull + 12345;
  for (std::size_t i = 0; i < length; ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    out.push_back(std::int32_t((s >> 33) % 480));
  }
  return out;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(double(a[i]) - double(b[i])));
  return m;
}

double row_max_abs_diff(const std::vector<float>& a, std::size_t row_a, const std::vector<float>& b,
                        std::size_t row_b, std::size_t width) {
  if ((row_a + 1) * width > a.size() || (row_b + 1) * width > b.size())
    return std::numeric_limits<double>::infinity();
  double m = 0;
  for (std::size_t i = 0; i < width; ++i)
    m = std::max(m, std::abs(double(a[row_a * width + i]) - double(b[row_b * width + i])));
  return m;
}

std::vector<float> forward_one(causal_lm& model, std::span<const std::int32_t> tokens,
                               std::int64_t first_position, std::span<const std::int32_t> table,
                               bool all_logits) {
  const step_sequence seq{tokens, first_position, table, all_logits};
  std::vector<float> logits;
  if (auto s = model.forward(std::span(&seq, 1), logits); !s) {
    ADD_FAILURE() << "forward at position " << first_position << ": " << s.err().to_string();
    return {};
  }
  return logits;
}

fs::path write_sharpened(const fs::path& src, const fs::path& dst,
                         const std::function<double(const std::string&)>& scale_of) {
  fs::create_directories(dst);
  for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json"})
    fs::copy_file(src / f, dst / f, fs::copy_options::overwrite_existing);
  auto store = model::weight_store::open(src);
  EXPECT_TRUE(store.ok());
  if (!store) return dst;
  std::vector<model::tensor_to_write> out;
  for (const auto& [name, t] : store->all()) {
    if (t->type == dtype::f32) {
      model::tensor_to_write w{name, dtype::f32, t->shape, {}};
      const auto* bytes = static_cast<const std::uint8_t*>(t->data);
      w.bytes.assign(bytes, bytes + t->size_bytes);
      out.push_back(std::move(w));
      continue;
    }
    const bool norm = name.find("norm") != std::string::npos;
    const double scale = norm ? 1.0 : scale_of(name);
    model::tensor_to_write w{name, dtype::bf16, t->shape, {}};
    w.bytes.resize(std::size_t(t->elements()) * 2);
    for (std::int64_t i = 0; i < t->elements(); ++i) {
      double v = load_as_f32(t->data, t->type, std::size_t(i)) * scale;
      if (norm) v = 0.5 + double((i * 7) % 11) / 10.0;  // 0.5 .. 1.5 per channel
      const std::uint16_t b = f32_to_bf16(float(v));
      std::memcpy(&w.bytes[std::size_t(i) * 2], &b, 2);
    }
    out.push_back(std::move(w));
  }
  auto s = model::write_safetensors(dst / "model.safetensors", out);
  EXPECT_TRUE(s.ok()) << (s ? "" : s.err().to_string());
  return dst;
}

double relative_distance(const std::vector<double>& a, const std::vector<double>& b, double range) {
  if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]) / range);
  return worst;
}

double compare_with_reference(const fs::path& dir, const std::string& isa,
                              const std::vector<std::int32_t>& tokens,
                              const std::vector<double>& reference, double tolerance,
                              const std::string& label) {
  auto backend = make_backend(isa);
  auto model = load_model(dir, *backend);
  if (!model) return std::numeric_limits<double>::infinity();
  const std::size_t vocab = std::size_t(model->config().vocab_size);
  const std::int64_t blocks = (std::int64_t(tokens.size()) + model->kv_block_tokens() - 1) /
                              model->kv_block_tokens();
  std::vector<std::int32_t> table;
  for (std::int32_t b = 0; b < blocks; ++b) table.push_back(b);
  const auto logits = forward_one(*model, tokens, 0, table, /*all_logits=*/true);
  if (logits.size() != reference.size()) {
    ADD_FAILURE() << "logits size " << logits.size() << ", expected " << reference.size();
    return std::numeric_limits<double>::infinity();
  }
  const double range = *std::max_element(reference.begin(), reference.end()) -
                       *std::min_element(reference.begin(), reference.end());
  double worst = 0;
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    double row = 0;
    for (std::size_t i = 0; i < vocab; ++i)
      row = std::max(row, std::abs(logits[t * vocab + i] - reference[t * vocab + i]) / range);
    EXPECT_LE(row, tolerance) << label << " on " << backend->caps().detail << " at position " << t;
    worst = std::max(worst, row);
  }
  std::cout << label << " on " << backend->caps().detail << ": max |engine - reference| = " << worst
            << " x logit range " << range << " (tolerance " << tolerance << ") over "
            << tokens.size() << " positions\n";
  ::testing::Test::RecordProperty("max_relative_diff_" + backend->caps().detail, std::to_string(worst));
  return worst;
}

}  // namespace dsrt::engine::test_util
