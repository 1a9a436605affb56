// causal_lm::forward rejects bad steps with invalid_argument (and runs nothing), and
// create_causal_lm rejects options that cannot work.
#include <gtest/gtest.h>

#include <limits>

#include "tests/engine/engine_test_util.h"

namespace dsrt::engine {
namespace {

using namespace test_util;

class ForwardErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    backend_ = make_backend();
    model_ = load_model(tiny_llama_dir(), *backend_, {.step_tokens_max = 8});
    ASSERT_TRUE(model_);
  }

  // Expects invalid_argument whose message contains `mentions`.
  void expect_invalid(std::span<const step_sequence> seqs, const std::string& mentions,
                      const char* what) {
    std::vector<float> logits = {42.0f};
    const auto s = model_->forward(seqs, logits);
    ASSERT_FALSE(s.ok()) << what;
    EXPECT_EQ(s.err().code, error_code::invalid_argument) << what << ": " << s.err().message;
    EXPECT_NE(s.err().message.find(mentions), std::string::npos)
        << what << ": '" << s.err().message << "' does not mention '" << mentions << "'";
    EXPECT_EQ(logits, std::vector<float>{42.0f}) << what << ": logits were touched";
  }

  std::unique_ptr<kernels::backend> backend_;
  std::unique_ptr<causal_lm> model_;
  const std::vector<std::int32_t> table_ = {0, 1};
};

TEST_F(ForwardErrors, ValidStepRuns) {
  const std::vector<std::int32_t> tokens = {1, 2, 3};
  const step_sequence seq{tokens, 0, table_, false};
  std::vector<float> logits;
  ASSERT_TRUE(model_->forward(std::span(&seq, 1), logits).ok());
  EXPECT_EQ(logits.size(), 512u);
}

TEST_F(ForwardErrors, TokenOutsideTheVocabulary) {
  for (std::int32_t bad : {512, 100000, -1}) {
    const std::vector<std::int32_t> tokens = {1, bad, 3};
    const step_sequence seq{tokens, 0, table_, false};
    expect_invalid(std::span(&seq, 1), std::to_string(bad), "token id");
  }
}

TEST_F(ForwardErrors, BlockTableTooShortOrOutsideTheCache) {
  const std::vector<std::int32_t> tokens = {1, 2, 3};
  const std::vector<std::int32_t> one_block = {0};
  const step_sequence short_table{tokens, 14, one_block, false};  // positions 14..16 need 2 blocks
  expect_invalid(std::span(&short_table, 1), "blocks", "table too short");
  const step_sequence no_table{tokens, 0, {}, false};
  expect_invalid(std::span(&no_table, 1), "blocks", "empty table");
  const std::vector<std::int32_t> outside = {model_->kv_blocks()};
  const step_sequence bad_block{tokens, 0, outside, false};
  expect_invalid(std::span(&bad_block, 1), std::to_string(model_->kv_blocks()), "block outside");
}

TEST_F(ForwardErrors, PositionPastMaxPositionEmbeddings) {
  const int max = model_->config().max_position_embeddings;
  ASSERT_EQ(max, 4096);
  std::vector<std::int32_t> table(std::size_t(max / 16 + 1));
  for (std::size_t i = 0; i < table.size(); ++i) table[i] = std::int32_t(i);
  const std::vector<std::int32_t> tokens = {1, 2};
  const step_sequence past{tokens, max - 1, table, false};  // the second token is at 4096
  expect_invalid(std::span(&past, 1), "max_position_embeddings", "past the context");
  const step_sequence negative{tokens, -1, table, false};
  expect_invalid(std::span(&negative, 1), "position", "negative position");
  const step_sequence wrapping{tokens, std::numeric_limits<std::int64_t>::max(), table, false};
  expect_invalid(std::span(&wrapping, 1), "max_position_embeddings", "a start whose end would wrap");
  // (Reaching exactly the last position is covered by the generator tests, which write
  // every earlier position first.)
}

TEST_F(ForwardErrors, EmptySequence) {
  const std::vector<std::int32_t> tokens = {1};
  const step_sequence seqs[] = {{tokens, 0, table_, false}, {{}, 0, table_, false}};
  expect_invalid(seqs, "sequence 1", "empty sequence");
}

TEST_F(ForwardErrors, MoreTokensThanStepTokensMax) {
  const std::vector<std::int32_t> five = {1, 2, 3, 4, 5}, four = {1, 2, 3, 4};
  const std::vector<std::int32_t> other = {2, 3};
  const step_sequence seqs[] = {{five, 0, table_, false}, {four, 0, other, false}};  // 9 > 8
  expect_invalid(seqs, "step_tokens_max", "too many tokens");
  const step_sequence fits[] = {{five, 0, table_, false}, {std::span(four).subspan(0, 3), 0, other, false}};
  std::vector<float> logits;
  EXPECT_TRUE(model_->forward(fits, logits).ok());
  EXPECT_EQ(logits.size(), 2u * 512u);
}

TEST(DenseModelCreate, RejectsOptionsThatCannotWork) {
  auto backend = make_backend();
  struct bad_case {
    model_options options;
    const char* what;
  };
  const bad_case cases[] = {
      {{.kv_block_tokens = 0}, "zero block tokens"},
      {{.step_tokens_max = 0}, "zero step tokens"},
      {{.kv_cache_bytes_max = 100}, "cache below one block"},
  };
  for (const auto& c : cases) {
    auto files = load_files(tiny_llama_dir());
    ASSERT_TRUE(files);
    auto m = create_causal_lm(std::move(files), *backend, c.options);
    ASSERT_FALSE(m.ok()) << c.what;
    EXPECT_EQ(m.err().code, error_code::invalid_argument) << c.what << ": " << m.err().message;
  }
}

// A step limit so small that one row of logits (vocab 512 floats) is wider than the scratch
// the head writes into (step_tokens_max x intermediate = 128 floats) must still work.
TEST(DenseModelStep, OneTokenStepsGiveTheSameLogits) {
  auto backend = make_backend();
  auto narrow = load_model(tiny_llama_dir(), *backend, {.step_tokens_max = 1});
  auto wide = load_model(tiny_llama_dir(), *backend);
  ASSERT_TRUE(narrow && wide);
  const auto tokens = make_prompt(20, 9);
  const std::vector<std::int32_t> table = {0, 1};
  for (std::size_t p = 0; p < tokens.size(); ++p) {
    const auto a = forward_one(*narrow, std::span(tokens).subspan(p, 1), std::int64_t(p), table, false);
    const auto b = forward_one(*wide, std::span(tokens).subspan(p, 1), std::int64_t(p), table, false);
    ASSERT_EQ(a.size(), 512u) << "at position " << p;
    EXPECT_EQ(a, b) << "at position " << p;
  }
}

}  // namespace
}  // namespace dsrt::engine
