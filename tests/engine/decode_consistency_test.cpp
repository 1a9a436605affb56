// Token-by-token decode, one-shot prefill and chunked prefill of the same sequence give the
// same logits at every position, across KV block boundaries (16-token blocks, 40 tokens).
#include <gtest/gtest.h>

#include <iostream>

#include "runtime/engine/sampler.h"
#include "tests/engine/engine_test_util.h"

namespace dsrt::engine {
namespace {

using namespace test_util;

// The paths differ only in how rows are grouped into matmuls (a different summation order
// inside the kernels); the values in the bf16 KV cache are rounded from the same f32 keys.
// Logits of these models span about 1, so 1e-4 absolute is ~1e-4 relative: far below any
// difference a wrong position, block or mask would make (those are ~1e-2 and up).
constexpr double tolerance = 1e-4;
constexpr std::size_t sequence_tokens = 40;

struct decode_case {
  const char* name;
  const std::filesystem::path& (*dir)();
  friend void PrintTo(const decode_case& c, std::ostream* os) { *os << c.name; }
};

class DecodeConsistency : public ::testing::TestWithParam<decode_case> {
 protected:
  void SetUp() override {
    backend_ = make_backend();
    model_ = load_model(GetParam().dir(), *backend_);
    ASSERT_TRUE(model_);
    ASSERT_EQ(model_->kv_block_tokens(), 16);
    vocab_ = std::size_t(model_->config().vocab_size);
    tokens_ = make_prompt(sequence_tokens, 7);
  }

  // A fresh sequence's blocks for the whole length.
  std::vector<std::int32_t> fresh_table() {
    sequence_blocks seq;
    std::vector<block_copy> copies;
    EXPECT_TRUE(blocks_.reserve(seq, std::int64_t(sequence_tokens), copies));
    return seq.table;
  }

  // Prefill in chunks of the given sizes, all logits.
  std::vector<float> chunked(const std::vector<std::size_t>& chunks) {
    const auto table = fresh_table();
    std::vector<float> all;
    std::size_t at = 0;
    for (std::size_t size : chunks) {
      const auto part = forward_one(*model_, std::span(tokens_).subspan(at, size),
                                    std::int64_t(at), table, /*all_logits=*/true);
      EXPECT_EQ(part.size(), size * vocab_) << "chunk at " << at;
      all.insert(all.end(), part.begin(), part.end());
      at += size;
    }
    EXPECT_EQ(at, sequence_tokens);
    return all;
  }

  // Largest difference over all positions; the first failing position is named.
  double compare(const std::vector<float>& got, const std::vector<float>& want, const char* what) {
    double worst = 0;
    for (std::size_t p = 0; p < sequence_tokens; ++p) {
      const double d = row_max_abs_diff(got, p, want, p, vocab_);
      EXPECT_LE(d, tolerance) << what << " at position " << p;
      worst = std::max(worst, d);
    }
    std::cout << GetParam().name << " " << what << " vs one-shot prefill: max |diff| " << worst
              << "\n";
    return worst;
  }

  std::unique_ptr<kernels::backend> backend_;
  std::unique_ptr<causal_lm> model_;
  block_manager blocks_{64, 16};
  std::size_t vocab_ = 0;
  std::vector<std::int32_t> tokens_;
};

TEST_P(DecodeConsistency, DecodeTokenByTokenMatchesPrefill) {
  const auto prefill = chunked({sequence_tokens});
  ASSERT_EQ(prefill.size(), sequence_tokens * vocab_);
  std::vector<float> decoded;
  const auto table = fresh_table();
  for (std::size_t p = 0; p < sequence_tokens; ++p) {
    const auto row = forward_one(*model_, std::span(tokens_).subspan(p, 1), std::int64_t(p), table,
                                 /*all_logits=*/false);
    ASSERT_EQ(row.size(), vocab_) << "at position " << p;
    decoded.insert(decoded.end(), row.begin(), row.end());
  }
  compare(decoded, prefill, "token-by-token decode");
  // Positions must matter, or this test could not see a position bug.
  EXPECT_GT(row_max_abs_diff(prefill, 0, prefill, 39, vocab_), 10 * tolerance);
}

TEST_P(DecodeConsistency, ChunkedPrefillMatchesPrefill) {
  const auto prefill = chunked({sequence_tokens});
  compare(chunked({7, 16, 17}), prefill, "chunks 7+16+17");
  compare(chunked({16, 16, 8}), prefill, "chunks 16+16+8");
  compare(chunked({1, 30, 9}), prefill, "chunks 1+30+9");
}

// Logits of the last token only (all_logits false) are the last row of all_logits.
TEST_P(DecodeConsistency, LastTokenLogitsAreTheLastRow) {
  const auto prefill = chunked({sequence_tokens});
  const auto last = forward_one(*model_, tokens_, 0, fresh_table(), /*all_logits=*/false);
  ASSERT_EQ(last.size(), vocab_);
  EXPECT_LE(row_max_abs_diff(last, 0, prefill, sequence_tokens - 1, vocab_), tolerance);
}

// forward_greedy's ids are what the greedy sampler picks from forward()'s logits, for every
// requested row of several sequences (every row of one, the last of the others).
TEST_P(DecodeConsistency, ForwardGreedyPicksWhatTheGreedySamplerPicks) {
  const auto other = make_prompt(23, 9);
  const std::int64_t bt = model_->kv_block_tokens();
  std::vector<std::int32_t> table_a, table_b;
  for (std::int32_t b = 0; b < std::int32_t((sequence_tokens + bt - 1) / bt); ++b) table_a.push_back(b);
  for (std::int32_t b = 0; b < std::int32_t((other.size() + bt - 1) / bt); ++b)
    table_b.push_back(std::int32_t(table_a.size()) + b);
  const step_sequence seqs[] = {{tokens_, 0, table_a, true}, {other, 0, table_b, false}};
  std::vector<float> logits;
  ASSERT_TRUE(model_->forward(seqs, logits).ok());
  std::vector<std::int32_t> ids;
  ASSERT_TRUE(model_->forward_greedy(seqs, ids).ok());
  ASSERT_EQ(ids.size(), sequence_tokens + 1);
  ASSERT_EQ(logits.size(), ids.size() * vocab_);
  for (std::size_t r = 0; r < ids.size(); ++r) {
    sampler greedy({});
    EXPECT_EQ(ids[r], greedy.sample(std::span(logits).subspan(r * vocab_, vocab_), 0)) << "row " << r;
  }
  // Errors are forward()'s.
  const std::int32_t bad = std::int32_t(vocab_);
  const step_sequence wrong[] = {{std::span(&bad, 1), 0, table_a, false}};
  EXPECT_EQ(model_->forward_greedy(wrong, ids).err().code, error_code::invalid_argument);
}

INSTANTIATE_TEST_SUITE_P(Models, DecodeConsistency,
                         ::testing::Values(decode_case{"TinyLlama", &tiny_llama_dir},
                                           decode_case{"TinyQwen2", &tiny_qwen2_dir},
                                           decode_case{"TinyDsv3", &tiny_dsv3_dir},
                                           decode_case{"TinyDsv3Fp8", &tiny_dsv3_fp8_dir}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace dsrt::engine
