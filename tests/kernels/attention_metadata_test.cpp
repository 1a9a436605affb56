// The CUDA attention kernels' host-side metadata (kernels/cuda/attention_metadata.h): rows,
// padded block tables, bucketed context, cache slots. Plain C++, runs everywhere.
#include <gtest/gtest.h>

#include <vector>

#include "kernels/cuda/attention_metadata.h"

namespace dsrt::kernels::cuda {
namespace {

TEST(AttentionMetadata, ContextBucketsArePowersOfTwo) {
  EXPECT_EQ(attention_context_bucket(0), 1);
  EXPECT_EQ(attention_context_bucket(1), 1);
  EXPECT_EQ(attention_context_bucket(2), 2);
  EXPECT_EQ(attention_context_bucket(3), 4);
  EXPECT_EQ(attention_context_bucket(1024), 1024);
  EXPECT_EQ(attention_context_bucket(1025), 2048);
}

TEST(AttentionMetadata, RowsPointAtTablesPaddedToOneStride) {
  const std::vector<std::int32_t> a = {7, 3, 9}, b = {4, 5, 6, 1, 2};
  // a: a decode at position 40 (3 blocks of 16); b: a prefill of rows 1..3 at 60..62 (4 blocks
  // needed, a fifth reserved beyond them).
  const attention_sequence seqs[] = {{0, 1, 40, a.data(), 3}, {1, 3, 60, b.data(), 5}};
  std::vector<attention_row> rows;
  std::vector<std::int32_t> tables;
  const int bucket = build_attention_rows(16, seqs, rows, tables);
  EXPECT_EQ(bucket, 64);                        // longest context 63
  ASSERT_EQ(tables.size(), 8u);                 // stride 4 = bit_ceil(4 needed)
  EXPECT_EQ(tables, (std::vector<std::int32_t>{7, 3, 9, 0, 4, 5, 6, 1}));
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0].q_row, 0);
  EXPECT_EQ(rows[0].context, 41);
  EXPECT_EQ(rows[0].table_offset, 0);
  for (int r = 1; r < 4; ++r) {
    EXPECT_EQ(rows[std::size_t(r)].q_row, r);
    EXPECT_EQ(rows[std::size_t(r)].context, 60 + r);
    EXPECT_EQ(rows[std::size_t(r)].table_offset, 4);
  }
}

TEST(AttentionMetadata, ADecodeStepKeepsItsSizesAndBucketWhileItGrows) {
  // Positions 40..47 of one sequence: the sizes and the bucket do not move (the launch keys
  // of step graphs stay equal), only the contents do.
  const std::vector<std::int32_t> table = {5, 6, 7, 8};
  std::vector<attention_row> rows;
  std::vector<std::int32_t> tables;
  for (std::int64_t p = 40; p < 48; ++p) {
    const attention_sequence seq{0, 1, p, table.data(), 4};
    EXPECT_EQ(build_attention_rows(16, {&seq, 1}, rows, tables), 64);
    EXPECT_EQ(tables.size(), 4u);
    EXPECT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0].context, p + 1);
  }
}

TEST(AttentionMetadata, CacheSlotsFollowTheBlockTables) {
  const std::vector<std::int32_t> a = {7, 3};
  const attention_sequence seqs[] = {{2, 3, 14, a.data(), 2}};  // positions 14, 15, 16
  std::vector<std::int32_t> rows;
  std::vector<std::int64_t> slots;
  build_cache_slots(16, seqs, rows, slots);
  EXPECT_EQ(rows, (std::vector<std::int32_t>{2, 3, 4}));
  EXPECT_EQ(slots, (std::vector<std::int64_t>{7 * 16 + 14, 7 * 16 + 15, 3 * 16 + 0}));
}

TEST(AttentionMetadataDeathTest, ATableTooShortIsAProgrammerError) {
  const std::vector<std::int32_t> a = {7};
  const attention_sequence seqs[] = {{0, 1, 16, a.data(), 1}};  // position 16 needs block 1
  std::vector<attention_row> rows;
  std::vector<std::int32_t> tables;
  EXPECT_DEATH(build_attention_rows(16, seqs, rows, tables), "needs block 1 of 1");
  std::vector<std::int32_t> slot_rows;
  std::vector<std::int64_t> slots;
  EXPECT_DEATH(build_cache_slots(16, seqs, slot_rows, slots), "needs block 1 of 1");
}

}  // namespace
}  // namespace dsrt::kernels::cuda
