#pragma once
// The paged KV block manager: which cache blocks are free, who references each one, and
// each sequence's block table. It owns no memory, only block ids; the engine applies the
// copies it asks for (copy-on-write) to the cache.
//
// Invariants:
//  - every block id in [0, blocks_total) is either on the free list with refcount 0, or
//    referenced (refcount > 0) and not on the free list;
//  - a sequence's table holds ceil(tokens / block_tokens) blocks;
//  - a block that a sequence will write into (its last, partly filled block) is owned by
//    that sequence alone (refcount 1) after reserve() returns true;
//  - only fork() shares a partly filled block (add_ref takes full blocks), so a sequence
//    whose tail_shared is false owns its partly filled last block.
// Thread safety: none; one owner (the batcher or the generator) calls it.
#include <cstdint>
#include <vector>

#include "kernels/assert.h"

namespace dsrt::engine {

struct sequence_blocks {
  std::vector<std::int32_t> table;  // block ids in position order
  std::int64_t tokens = 0;          // positions covered so far
  // The last block may be shared (set by fork, cleared once it is ours alone): while false,
  // growing the sequence reads neither the table nor a refcount (a decode step's cache
  // misses, per sequence, in a large batch).
  bool tail_shared = false;
};

// Copy the whole contents of block `from` into block `to` (every layer's keys and values).
struct block_copy {
  std::int32_t from;
  std::int32_t to;
};

class block_manager {
 public:
  block_manager(std::int32_t blocks_total, int block_tokens);

  std::int32_t blocks_total() const { return std::int32_t(refcount_.size()); }
  std::int32_t free_blocks() const { return std::int32_t(free_.size()); }
  int block_tokens() const { return block_tokens_; }
  int refcount(std::int32_t block) const {
    DSRT_ASSERT(block >= 0 && block < blocks_total(), "block={}", block);
    return refcount_[std::size_t(block)];
  }
  // Starts loading a block's reference count (a cache about to check cold blocks).
  void prefetch_refcount(std::int32_t block) const {
    if (block >= 0 && block < blocks_total()) __builtin_prefetch(&refcount_[std::size_t(block)]);
  }

  // Blocks needed to grow a sequence by new_tokens (including a copy-on-write block).
  std::int32_t blocks_needed(const sequence_blocks& seq, std::int64_t new_tokens) const;

  // Makes room for new_tokens more positions in seq: copies a shared partly filled last
  // block (appending the copy to `copies`) and appends fresh blocks. Returns false and
  // changes nothing when too few blocks are free.
  bool reserve(sequence_blocks& seq, std::int64_t new_tokens, std::vector<block_copy>& copies);

  // A new sequence sharing all of seq's blocks (prefix sharing); writes into the shared
  // last block, by either, will copy it first (both are marked tail_shared).
  sequence_blocks fork(sequence_blocks& seq);

  // Drops seq's references; blocks nobody references return to the free list.
  void release(sequence_blocks& seq);

  // One more reference to a block someone already references: a cache (the prefix index)
  // keeps a full block alive after the sequence that wrote it is released.
  // REQUIRES: refcount(block) > 0 (a free block is handed out by reserve, not here), and
  // the block is full (a partly filled one is shared by fork alone).
  void add_ref(std::int32_t block) {
    DSRT_ASSERT(refcount(block) > 0, "add_ref on free block {}", block);
    ++refcount_[std::size_t(block)];
  }

  // Drops one reference to a block; it returns to the free list when nobody references it.
  // REQUIRES: refcount(block) > 0.
  void release_block(std::int32_t block) {
    DSRT_ASSERT(refcount(block) > 0, "releasing free block {}", block);
    if (--refcount_[std::size_t(block)] == 0) free_.push_back(block);
  }

 private:
  std::int32_t take_free();

  // Blocks that hold `tokens` tokens, and whether a sequence of `tokens` ends inside a
  // block: by shift and mask when block_tokens is a power of two (it always is in
  // practice; a division per call was on every sequence's every step).
  std::int64_t blocks_for(std::int64_t tokens) const {
    return block_shift_ >= 0 ? (tokens + block_tokens_ - 1) >> block_shift_ : (tokens + block_tokens_ - 1) / block_tokens_;
  }
  bool ends_inside_a_block(std::int64_t tokens) const {
    return block_shift_ >= 0 ? (tokens & (block_tokens_ - 1)) != 0 : tokens % block_tokens_ != 0;
  }

  int block_tokens_;
  int block_shift_;                  // log2(block_tokens_), or -1 when it is not a power of two
  std::vector<int> refcount_;
  std::vector<std::int32_t> free_;   // a stack: recently freed blocks are reused first
};

}  // namespace dsrt::engine
