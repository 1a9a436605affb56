// A request's output does not depend on what else is in its batch: 16 prompts of different
// lengths generated together give, token for token, what each gives alone; greedy and
// seeded sampling.
#include <gtest/gtest.h>

#include <iostream>
#include <set>

#include "runtime/engine/generator.h"
#include "tests/engine/engine_test_util.h"

namespace dsrt::engine {
namespace {

using namespace test_util;

constexpr int request_count = 16;

std::vector<generation_request> make_requests(const sampling_params& base) {
  std::vector<generation_request> requests;
  for (int i = 0; i < request_count; ++i) {
    generation_request r;
    r.prompt = make_prompt(std::size_t(3 + 5 * i), std::uint64_t(100 + i));  // 3 .. 78 tokens
    r.sampling = base;
    r.sampling.seed = std::uint64_t(1000 + i);
    r.max_tokens = 12 + i % 5;
    requests.push_back(std::move(r));
  }
  return requests;
}

struct model_case {
  const char* name;
  const std::filesystem::path& (*dir)();
  friend void PrintTo(const model_case& c, std::ostream* os) { *os << c.name; }
};

class BatchInvariance : public ::testing::TestWithParam<model_case> {
 protected:
  void SetUp() override {
    backend_ = make_backend();
    model_ = load_model(GetParam().dir(), *backend_);
    ASSERT_TRUE(model_);
    tokenizer_.emplace(load_tokenizer(GetParam().dir()));
  }

  // Small prefill chunks and step budget so that steps mix prefill chunks of several
  // prompts with decode tokens, and long prompts take several steps.
  std::vector<generation_output> run(std::span<const generation_request> requests) {
    generator gen(*model_, *tokenizer_, {.prefill_chunk_tokens = 24, .step_tokens_max = 64});
    auto out = gen.run(requests);
    if (!out) {
      ADD_FAILURE() << out.err().to_string();
      return {};
    }
    return std::move(*out);
  }

  void expect_together_equals_alone(const sampling_params& sampling) {
    const auto requests = make_requests(sampling);
    const auto together = run(requests);
    ASSERT_EQ(together.size(), requests.size());
    std::set<std::vector<std::int32_t>> distinct;
    for (int i = 0; i < request_count; ++i) {
      const auto alone = run(std::span(requests).subspan(std::size_t(i), 1));
      ASSERT_EQ(alone.size(), 1u) << "request " << i;
      EXPECT_EQ(together[i].tokens, alone[0].tokens) << "request " << i;
      EXPECT_EQ(together[i].text, alone[0].text) << "request " << i;
      EXPECT_EQ(int(together[i].tokens.size()), requests[i].max_tokens) << "request " << i;
      distinct.insert(together[i].tokens);
    }
    // Different prompts must give different outputs, or equality would prove little.
    EXPECT_GE(distinct.size(), std::size_t(request_count / 2));
  }

  std::unique_ptr<kernels::backend> backend_;
  std::unique_ptr<causal_lm> model_;
  std::optional<tokenizer::tokenizer> tokenizer_;
};

TEST_P(BatchInvariance, GreedyTogetherEqualsAlone) {
  expect_together_equals_alone({.temperature = 0.0f});
}

TEST_P(BatchInvariance, SeededSamplingTogetherEqualsAlone) {
  const sampling_params sampling{.temperature = 0.8f, .top_p = 0.9f};
  expect_together_equals_alone(sampling);
  // Sampling must actually sample: some request's tokens differ from its greedy ones.
  const auto greedy = run(make_requests({.temperature = 0.0f}));
  const auto sampled = run(make_requests(sampling));
  ASSERT_EQ(greedy.size(), sampled.size());
  int differing = 0;
  for (std::size_t i = 0; i < greedy.size(); ++i) differing += greedy[i].tokens != sampled[i].tokens;
  EXPECT_GT(differing, request_count / 2);
  std::cout << differing << " of " << request_count << " sampled outputs differ from greedy\n";
}

// tiny-dsv3: MoE routing groups different tokens per expert in every batch; the output of
// each token must still not depend on the others.
INSTANTIATE_TEST_SUITE_P(Models, BatchInvariance,
                         ::testing::Values(model_case{"TinyLlama", &tiny_llama_dir},
                                           model_case{"TinyDsv3", &tiny_dsv3_dir},
                                           model_case{"TinyDsv3Fp8", &tiny_dsv3_fp8_dir}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace dsrt::engine
