#include "kernels/cuda/attention_metadata.h"

#include <algorithm>
#include <bit>

#include "kernels/assert.h"

namespace dsrt::kernels::cuda {

int attention_context_bucket(std::int64_t context) {
  DSRT_ASSERT(context <= (std::int64_t(1) << 30), "context {} past 2^30", context);
  return int(std::bit_ceil(std::uint64_t(std::max<std::int64_t>(context, 1))));
}

int build_attention_rows(int block_tokens, std::span<const attention_sequence> seqs,
                         std::vector<attention_row>& rows, std::vector<std::int32_t>& tables) {
  rows.clear();
  std::int64_t context_max = 1, blocks_max = 1;
  for (const auto& s : seqs) {
    const std::int64_t last = s.first_position + s.rows;  // positions the last row sees
    DSRT_ASSERT(s.rows <= 0 || (last - 1) / block_tokens < s.blocks,
                "position {} needs block {} of {}", last - 1, (last - 1) / block_tokens, s.blocks);
    DSRT_ASSERT(last <= (std::int64_t(1) << 30) && s.row_begin + s.rows <= 0x7fffffff,
                "attention rows past 2^30 positions or 2^31 rows");
    context_max = std::max(context_max, last);
    blocks_max = std::max(blocks_max, (last + block_tokens - 1) / block_tokens);
  }
  const auto stride = std::int64_t(std::bit_ceil(std::uint64_t(blocks_max)));
  DSRT_ASSERT(std::int64_t(seqs.size()) * stride <= 0x7fffffff, "{} tables of {} blocks",
              seqs.size(), stride);
  tables.assign(seqs.size() * std::size_t(stride), 0);
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    const auto& s = seqs[i];
    const std::int64_t needed = (s.first_position + s.rows + block_tokens - 1) / block_tokens;
    std::copy(s.block_table, s.block_table + std::min(needed, s.blocks),
              tables.begin() + std::ptrdiff_t(i * std::size_t(stride)));
    const auto offset = std::int32_t(std::int64_t(i) * stride);
    for (std::int64_t r = 0; r < s.rows; ++r)
      rows.push_back({std::int32_t(s.row_begin + r), std::int32_t(s.first_position + r + 1), offset});
  }
  return attention_context_bucket(context_max);
}

void build_cache_slots(int block_tokens, std::span<const attention_sequence> seqs,
                       std::vector<std::int32_t>& rows, std::vector<std::int64_t>& slots) {
  rows.clear();
  slots.clear();
  for (const auto& s : seqs)
    for (std::int64_t i = 0; i < s.rows; ++i) {
      const std::int64_t pos = s.first_position + i;
      const std::int64_t block_index = pos / block_tokens;
      DSRT_ASSERT(block_index < s.blocks, "position {} needs block {} of {}", pos, block_index,
                  s.blocks);
      rows.push_back(std::int32_t(s.row_begin + i));
      slots.push_back(std::int64_t(s.block_table[block_index]) * block_tokens + pos % block_tokens);
    }
}

}  // namespace dsrt::kernels::cuda
