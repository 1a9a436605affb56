#include "runtime/engine/block_manager.h"

#include <bit>

#include "kernels/assert.h"

namespace dsrt::engine {

block_manager::block_manager(std::int32_t blocks_total, int block_tokens)
    : block_tokens_(block_tokens),
      block_shift_(std::has_single_bit(unsigned(block_tokens)) ? std::countr_zero(unsigned(block_tokens)) : -1),
      refcount_(std::size_t(blocks_total), 0) {
  DSRT_ASSERT(blocks_total >= 0 && block_tokens > 0, "blocks_total={} block_tokens={}",
              blocks_total, block_tokens);
  free_.reserve(std::size_t(blocks_total));
  for (std::int32_t b = blocks_total - 1; b >= 0; --b) free_.push_back(b);
}

std::int32_t block_manager::blocks_needed(const sequence_blocks& seq,
                                          std::int64_t new_tokens) const {
  const std::int64_t have = std::int64_t(seq.table.size());
  const std::int64_t need = blocks_for(seq.tokens + new_tokens);
  std::int64_t fresh = need > have ? need - have : 0;
  // Writing into a partly filled last block that another sequence shares: a copy.
  if (seq.tail_shared && new_tokens > 0 && ends_inside_a_block(seq.tokens) && refcount(seq.table.back()) > 1) ++fresh;
  return std::int32_t(fresh);
}

std::int32_t block_manager::take_free() {
  DSRT_ASSERT(!free_.empty(), "no free block");
  const std::int32_t b = free_.back();
  free_.pop_back();
  DSRT_ASSERT(refcount_[std::size_t(b)] == 0, "free block {} has refcount {}", b,
              refcount_[std::size_t(b)]);
  refcount_[std::size_t(b)] = 1;
  return b;
}

bool block_manager::reserve(sequence_blocks& seq, std::int64_t new_tokens,
                            std::vector<block_copy>& copies) {
  DSRT_ASSERT(new_tokens >= 0, "new_tokens={}", new_tokens);
  if (blocks_needed(seq, new_tokens) > free_blocks()) return false;
  if (seq.tail_shared && new_tokens > 0 && ends_inside_a_block(seq.tokens)) {
    std::int32_t& last = seq.table.back();
    if (refcount(last) > 1) {
      const std::int32_t copy = take_free();
      copies.push_back({last, copy});
      --refcount_[std::size_t(last)];
      last = copy;
    }
    seq.tail_shared = false;   // copied, or the others let go of it
  }
  const std::int64_t need = blocks_for(seq.tokens + new_tokens);
  while (std::int64_t(seq.table.size()) < need) seq.table.push_back(take_free());
  seq.tokens += new_tokens;
  return true;
}

sequence_blocks block_manager::fork(sequence_blocks& seq) {
  for (std::int32_t b : seq.table) {
    DSRT_ASSERT(refcount(b) > 0, "forking a sequence with unreferenced block {}", b);
    ++refcount_[std::size_t(b)];
  }
  seq.tail_shared = !seq.table.empty();
  return seq;
}

void block_manager::release(sequence_blocks& seq) {
  for (std::int32_t b : seq.table) {
    DSRT_ASSERT(refcount(b) > 0, "releasing block {} twice", b);
    if (--refcount_[std::size_t(b)] == 0) free_.push_back(b);
  }
  seq.table.clear();
  seq.tokens = 0;
  seq.tail_shared = false;
}

}  // namespace dsrt::engine
