// Whole forwards on the CUDA backend against the CPU backend: the tiny dense models (Llama and
// Qwen2, with its q/k/v biases) and the tiny DeepSeek-V3 (MLA and MoE; bf16 and block-scaled
// fp8), a prefill then decode steps, every row of logits within tolerance of the CPU's. Without a usable GPU the cases
// skip with the reason; run them on a GPU machine with `ctest -L gpu`.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <tuple>

#include "kernels/cuda_backend.h"
#include "tests/engine/engine_test_util.h"

namespace dsrt::engine {
namespace {

using namespace test_util;

// (model, backend variant): "default", or "plain": no step graphs and a 4 KiB staging ring,
// so that the ring wraps (and waits) inside every step and every launch is issued at once.
class CudaForward : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {
 protected:
  void SetUp() override {
    std::string why;
    kernels::cuda_backend_options options;
    if (variant() == "plain") {
      options.graphs = false;
      options.staging_bytes = 4096;
    }
    gpu_ = kernels::make_cuda_backend(options, &why);
    if (!gpu_) GTEST_SKIP() << "no CUDA device for the CUDA forward tests: " << why;
    cpu_ = make_backend();
  }
  const std::string& model_name() const { return std::get<0>(GetParam()); }
  const std::string& variant() const { return std::get<1>(GetParam()); }
  std::filesystem::path dir() const {
    return model_name() == "tiny-llama"      ? tiny_llama_dir()
           : model_name() == "tiny-qwen2"    ? tiny_qwen2_dir()
           : model_name() == "tiny-dsv3-fp8" ? tiny_dsv3_fp8_dir()
                                             : tiny_dsv3_dir();
  }
  std::unique_ptr<kernels::backend> gpu_, cpu_;
};

// Largest |a - b| over the row's logit range, for every row of width `vocab`.
void expect_rows_close(const std::vector<float>& gpu, const std::vector<float>& cpu,
                       std::size_t vocab, double tolerance, const std::string& label) {
  ASSERT_EQ(gpu.size(), cpu.size()) << label;
  ASSERT_FALSE(cpu.empty()) << label;
  for (std::size_t r = 0; r < cpu.size() / vocab; ++r) {
    const auto begin = cpu.begin() + std::ptrdiff_t(r * vocab);
    const auto [lo, hi] = std::minmax_element(begin, begin + std::ptrdiff_t(vocab));
    const double range = std::max(1e-6, double(*hi - *lo));
    EXPECT_LE(row_max_abs_diff(gpu, r, cpu, r, vocab) / range, tolerance) << label << " row " << r;
  }
}

TEST_P(CudaForward, PrefillThenDecodeStepsMatchTheCpu) {
  auto cpu_model = load_model(dir(), *cpu_);
  auto gpu_model = load_model(dir(), *gpu_);
  ASSERT_TRUE(cpu_model && gpu_model);
  const std::size_t vocab = std::size_t(cpu_model->config().vocab_size);
  const int bt = cpu_model->kv_block_tokens();
  // A prompt crossing several blocks, then 8 decode steps of the CPU's greedy tokens.
  const auto prompt = make_prompt(std::size_t(3 * bt + 5), 7);
  const int steps = 8;
  std::vector<std::int32_t> table((prompt.size() + steps + std::size_t(bt) - 1) / std::size_t(bt));
  std::iota(table.rbegin(), table.rend(), 0);  // not the identity
  const auto cpu_prefill = forward_one(*cpu_model, prompt, 0, table, true);
  const auto gpu_prefill = forward_one(*gpu_model, prompt, 0, table, true);
  const std::string label = model_name() + " (" + variant() + ")";
  expect_rows_close(gpu_prefill, cpu_prefill, vocab, 2e-2, label + " prefill");
  ASSERT_FALSE(cpu_prefill.empty());
  auto last = cpu_prefill.end() - std::ptrdiff_t(vocab);
  std::int32_t token = std::int32_t(std::max_element(last, cpu_prefill.end()) - last);
  for (int s = 0; s < steps; ++s) {
    const std::int64_t position = std::int64_t(prompt.size()) + s;
    const auto c = forward_one(*cpu_model, std::span(&token, 1), position, table, false);
    const auto g = forward_one(*gpu_model, std::span(&token, 1), position, table, false);
    expect_rows_close(g, c, vocab, 2e-2, label + " decode step " + std::to_string(s));
    ASSERT_EQ(c.size(), vocab);
    token = std::int32_t(std::max_element(c.begin(), c.end()) - c.begin());
  }
}

INSTANTIATE_TEST_SUITE_P(TinyModels, CudaForward,
                         ::testing::Combine(::testing::Values("tiny-llama", "tiny-qwen2", "tiny-dsv3",
                                                              "tiny-dsv3-fp8"),
                                            ::testing::Values("default", "plain")),
                         [](const auto& info) {
                           std::string name = std::get<0>(info.param) + "_" + std::get<1>(info.param);
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

}  // namespace
}  // namespace dsrt::engine
