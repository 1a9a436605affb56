// Copy-on-write end to end: a forked sequence and its original continue with different
// tokens over a shared, partly filled KV block, and the original's logits stay exactly
// what they are without the fork.
#include <gtest/gtest.h>

#include <iostream>

#include "tests/engine/engine_test_util.h"

namespace dsrt::engine {
namespace {

using namespace test_util;

// Reserves `tokens` more positions for seq, applies any copy to the cache, and returns the
// logits of every new token.
std::vector<float> extend(causal_lm& model, block_manager& bm, sequence_blocks& seq,
                          const std::vector<std::int32_t>& tokens, std::size_t& copies_made) {
  std::vector<block_copy> copies;
  const std::int64_t first = seq.tokens;
  if (!bm.reserve(seq, std::int64_t(tokens.size()), copies)) {
    ADD_FAILURE() << "reserve failed";
    return {};
  }
  model.copy_blocks(copies);
  copies_made += copies.size();
  return forward_one(model, tokens, first, seq.table, /*all_logits=*/true);
}

TEST(CopyOnWrite, ForkedSequenceDoesNotDisturbTheOriginal) {
  auto backend = make_backend();
  auto model = load_model(tiny_llama_dir(), *backend);
  ASSERT_TRUE(model);
  const std::size_t vocab = std::size_t(model->config().vocab_size);
  ASSERT_EQ(model->kv_block_tokens(), 16);
  block_manager bm(model->kv_blocks(), model->kv_block_tokens());

  const auto prompt = make_prompt(20, 1);  // block 0 full, block 1 holds 4 of 16
  const auto y = make_prompt(5, 2), z = make_prompt(3, 3), x = make_prompt(8, 4);

  // With the fork. The original writes first, so it takes the copy; the fork then writes
  // its own tokens into the block the two shared, at the same positions. The original's
  // later tokens read those positions: they see its own keys only if the copy was made
  // and filled.
  std::size_t copies = 0;
  sequence_blocks original;
  ASSERT_FALSE(extend(*model, bm, original, prompt, copies).empty());
  sequence_blocks forked = bm.fork(original);
  const auto original_y = extend(*model, bm, original, y, copies);
  EXPECT_EQ(copies, 1u) << "the first write into the shared block copies it";
  const auto forked_x = extend(*model, bm, forked, x, copies);
  EXPECT_EQ(copies, 1u) << "the second writer owns the block alone";
  const auto original_z = extend(*model, bm, original, z, copies);
  EXPECT_NE(original.table[1], forked.table[1]);

  // Without the fork, on fresh blocks.
  std::size_t unused = 0;
  sequence_blocks alone;
  ASSERT_FALSE(extend(*model, bm, alone, prompt, unused).empty());
  const auto alone_y = extend(*model, bm, alone, y, unused);
  const auto alone_z = extend(*model, bm, alone, z, unused);
  sequence_blocks alone_fork;
  ASSERT_FALSE(extend(*model, bm, alone_fork, prompt, unused).empty());
  const auto alone_x = extend(*model, bm, alone_fork, x, unused);
  EXPECT_EQ(unused, 0u);

  // The same operations on the same values: identical results are expected; 1e-6 leaves
  // room only for nothing a wrong block could explain (logits here span about 1).
  const double d_y = max_abs_diff(original_y, alone_y);
  const double d_z = max_abs_diff(original_z, alone_z);
  const double d_x = max_abs_diff(forked_x, alone_x);
  EXPECT_LE(d_y, 1e-6) << "original, tokens after the fork";
  EXPECT_LE(d_z, 1e-6) << "original, tokens after the fork wrote its own";
  EXPECT_LE(d_x, 1e-6) << "forked sequence";
  EXPECT_EQ(original_z.size(), z.size() * vocab);
  // The fork's tokens differ, so its logits must too (or the check above proves nothing).
  EXPECT_GT(row_max_abs_diff(forked_x, 0, original_y, 0, vocab), 1e-3);
  std::cout << "copy-on-write max |diff|: original " << d_y << ", " << d_z << "; fork " << d_x
            << "\n";
}

}  // namespace
}  // namespace dsrt::engine
