// The KV block manager stepped one operation at a time: allocation, refcounts, prefix
// sharing with copy-on-write, all-or-nothing reserve, and a seeded random walk that checks
// the invariants after every step.
#include "runtime/engine/block_manager.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <iostream>
#include <map>
#include <random>
#include <set>

namespace dsrt::engine {
namespace {

std::int64_t blocks_for(std::int64_t tokens, int block_tokens) {
  return (tokens + block_tokens - 1) / block_tokens;
}

TEST(BlockManager, ReserveTakesBlocksAndReleaseReturnsThem) {
  block_manager bm(8, 4);
  EXPECT_EQ(bm.blocks_total(), 8);
  EXPECT_EQ(bm.free_blocks(), 8);
  sequence_blocks seq;
  std::vector<block_copy> copies;
  ASSERT_TRUE(bm.reserve(seq, 10, copies));
  EXPECT_TRUE(copies.empty());
  EXPECT_EQ(seq.tokens, 10);
  ASSERT_EQ(seq.table.size(), 3u);
  EXPECT_EQ(bm.free_blocks(), 5);
  EXPECT_EQ(std::set<std::int32_t>(seq.table.begin(), seq.table.end()).size(), 3u)
      << "a sequence got the same block twice";
  for (std::int32_t b : seq.table) EXPECT_EQ(bm.refcount(b), 1) << "block " << b;

  // Growing inside the partly filled last block takes nothing; past it, one block.
  ASSERT_TRUE(bm.reserve(seq, 2, copies));
  EXPECT_EQ(seq.table.size(), 3u);
  EXPECT_EQ(bm.free_blocks(), 5);
  ASSERT_TRUE(bm.reserve(seq, 1, copies));
  EXPECT_EQ(seq.table.size(), 4u);
  EXPECT_EQ(bm.free_blocks(), 4);
  EXPECT_TRUE(copies.empty());

  const std::vector<std::int32_t> held = seq.table;
  bm.release(seq);
  EXPECT_TRUE(seq.table.empty());
  EXPECT_EQ(seq.tokens, 0);
  EXPECT_EQ(bm.free_blocks(), 8);
  for (std::int32_t b : held) EXPECT_EQ(bm.refcount(b), 0) << "block " << b;
}

TEST(BlockManager, ForkSharesBlocksAndCopiesThePartlyFilledLastBlockOnWrite) {
  block_manager bm(8, 4);
  sequence_blocks original;
  std::vector<block_copy> copies;
  ASSERT_TRUE(bm.reserve(original, 6, copies));  // one full block, one holding 2 of 4
  ASSERT_EQ(original.table.size(), 2u);
  const std::int32_t full = original.table[0], partial = original.table[1];

  sequence_blocks forked = bm.fork(original);
  EXPECT_EQ(forked.table, original.table);
  EXPECT_EQ(forked.tokens, 6);
  EXPECT_EQ(bm.refcount(full), 2);
  EXPECT_EQ(bm.refcount(partial), 2);
  EXPECT_EQ(bm.free_blocks(), 6) << "fork must not take blocks";

  EXPECT_EQ(bm.blocks_needed(forked, 1), 1) << "the write needs a private copy of the last block";
  ASSERT_TRUE(bm.reserve(forked, 1, copies));
  ASSERT_EQ(copies.size(), 1u) << "exactly one block_copy";
  EXPECT_EQ(copies[0].from, partial);
  EXPECT_EQ(copies[0].to, forked.table[1]);
  EXPECT_NE(forked.table[1], partial);
  EXPECT_EQ(forked.table[0], full) << "the full block stays shared";
  EXPECT_EQ(bm.refcount(full), 2);
  EXPECT_EQ(bm.refcount(partial), 1) << "the original's last block lost the fork's reference";
  EXPECT_EQ(bm.refcount(forked.table[1]), 1);
  EXPECT_EQ(bm.free_blocks(), 5);
  EXPECT_EQ(original.table, (std::vector<std::int32_t>{full, partial}))
      << "the original's table must not change";

  // The original now owns its last block alone: writing into it copies nothing.
  copies.clear();
  EXPECT_EQ(bm.blocks_needed(original, 2), 0);
  ASSERT_TRUE(bm.reserve(original, 2, copies));
  EXPECT_TRUE(copies.empty());
  EXPECT_EQ(original.table, (std::vector<std::int32_t>{full, partial}));

  bm.release(original);
  EXPECT_EQ(bm.refcount(full), 1);
  bm.release(forked);
  EXPECT_EQ(bm.free_blocks(), 8);
}

TEST(BlockManager, ForkAtABlockBoundaryAppendsWithoutCopying) {
  block_manager bm(8, 4);
  sequence_blocks original;
  std::vector<block_copy> copies;
  ASSERT_TRUE(bm.reserve(original, 8, copies));
  sequence_blocks forked = bm.fork(original);
  EXPECT_EQ(bm.blocks_needed(forked, 1), 1);
  ASSERT_TRUE(bm.reserve(forked, 1, copies));
  EXPECT_TRUE(copies.empty()) << "full shared blocks are never written, so never copied";
  ASSERT_EQ(forked.table.size(), 3u);
  EXPECT_EQ(bm.refcount(forked.table[0]), 2);
  EXPECT_EQ(bm.refcount(forked.table[1]), 2);
  EXPECT_EQ(bm.refcount(forked.table[2]), 1);
}

TEST(BlockManager, ReserveFailsWithoutChangingAnythingWhenBlocksAreShort) {
  block_manager bm(4, 4);
  sequence_blocks first;
  std::vector<block_copy> copies;
  ASSERT_TRUE(bm.reserve(first, 10, copies));  // 3 blocks, the last holding 2 of 4
  ASSERT_EQ(bm.free_blocks(), 1);

  sequence_blocks second;
  const std::vector<block_copy> sentinel = {{7, 7}};
  copies = sentinel;
  EXPECT_EQ(bm.blocks_needed(second, 5), 2);
  EXPECT_FALSE(bm.reserve(second, 5, copies));
  EXPECT_TRUE(second.table.empty());
  EXPECT_EQ(second.tokens, 0);
  EXPECT_EQ(bm.free_blocks(), 1);
  EXPECT_EQ(copies.size(), 1u) << "a failed reserve must not add copies";

  // A fork whose write needs a copy and a fresh block (2) when only 1 is free.
  sequence_blocks forked = bm.fork(first);
  const sequence_blocks before = forked;
  EXPECT_EQ(bm.blocks_needed(forked, 3), 2);
  EXPECT_FALSE(bm.reserve(forked, 3, copies));
  EXPECT_EQ(forked.table, before.table);
  EXPECT_EQ(forked.tokens, before.tokens);
  EXPECT_EQ(copies.size(), 1u);
  EXPECT_EQ(bm.free_blocks(), 1);
  for (std::int32_t b : first.table) EXPECT_EQ(bm.refcount(b), 2) << "block " << b;
  // Exactly enough is fine: the copy alone.
  EXPECT_EQ(bm.blocks_needed(forked, 2), 1);
  EXPECT_TRUE(bm.reserve(forked, 2, copies));
  EXPECT_EQ(bm.free_blocks(), 0);
}

TEST(BlockManager, AddRefKeepsABlockUntilTheLastReleaseBlock) {
  block_manager bm(8, 4);
  sequence_blocks seq;
  std::vector<block_copy> copies;
  ASSERT_TRUE(bm.reserve(seq, 8, copies));
  const std::int32_t block = seq.table[0];
  bm.add_ref(block);  // what the prefix index does to keep a full block cached
  EXPECT_EQ(bm.refcount(block), 2);
  bm.release(seq);
  EXPECT_EQ(bm.refcount(block), 1);
  EXPECT_EQ(bm.free_blocks(), 7) << "the extra reference keeps the block off the free list";
  bm.release_block(block);
  EXPECT_EQ(bm.refcount(block), 0);
  EXPECT_EQ(bm.free_blocks(), 8);
  // A free block has no reference to add to or drop: both are programmer errors.
  EXPECT_DEATH(bm.add_ref(block), "add_ref on free block");
  EXPECT_DEATH(bm.release_block(block), "releasing free block");
  EXPECT_DEATH(bm.add_ref(8), "block=8");
}

// Invariants over the whole state: refcounts equal the references held in tables, every
// block is free xor referenced, tables have ceil(tokens / block_tokens) entries.
void check_invariants(const block_manager& bm, const std::map<int, sequence_blocks>& live, int step) {
  std::map<std::int32_t, int> references;
  for (const auto& [id, seq] : live) {
    EXPECT_EQ(std::int64_t(seq.table.size()), blocks_for(seq.tokens, bm.block_tokens()))
        << "sequence " << id << " at step " << step;
    for (std::int32_t b : seq.table) ++references[b];
    // The hint reserve() trusts: a partly filled last block not marked shared is owned.
    if (seq.tokens % bm.block_tokens() != 0 && !seq.tail_shared) {
      EXPECT_EQ(bm.refcount(seq.table.back()), 1) << "sequence " << id << " at step " << step;
    }
  }
  std::int32_t referenced = 0;
  for (std::int32_t b = 0; b < bm.blocks_total(); ++b) {
    const int expected = references.count(b) ? references[b] : 0;
    EXPECT_EQ(bm.refcount(b), expected) << "block " << b << " at step " << step;
    referenced += bm.refcount(b) > 0;
  }
  EXPECT_EQ(bm.free_blocks() + referenced, bm.blocks_total()) << "at step " << step;
}

// A block size that is a power of two takes shifts and masks, any other divisions.
void random_walk(int block_tokens) {
  SCOPED_TRACE(::testing::Message() << block_tokens << " tokens per block");
  constexpr int steps = 3000;
  constexpr int sequences_max = 10;
  block_manager bm(40, block_tokens);
  std::mt19937_64 random(20240601);
  std::map<int, sequence_blocks> live;
  int next_id = 0;
  std::vector<block_copy> copies;
  int reserves_ok = 0, reserves_refused = 0, copies_seen = 0, forks = 0;
  for (int step = 0; step < steps; ++step) {
    const int op = int(random() % 10);
    auto pick = [&]() {
      auto it = live.begin();
      std::advance(it, std::ptrdiff_t(random() % live.size()));
      return it;
    };
    if (live.empty() || (op < 2 && int(live.size()) < sequences_max)) {
      live[next_id++] = {};
    } else if (op < 7) {
      auto it = pick();
      sequence_blocks& seq = it->second;
      const std::int64_t tokens = std::int64_t(random() % 11);
      const std::int32_t needed = bm.blocks_needed(seq, tokens);
      const std::int32_t free_before = bm.free_blocks();
      const std::size_t copies_before = copies.size();
      const sequence_blocks before = seq;
      const bool ok = bm.reserve(seq, tokens, copies);
      EXPECT_EQ(ok, needed <= free_before) << "at step " << step;
      if (ok) {
        ++reserves_ok;
        EXPECT_EQ(free_before - bm.free_blocks(), needed)
            << "blocks_needed disagrees with reserve at step " << step;
        EXPECT_EQ(seq.tokens, before.tokens + tokens) << "at step " << step;
        copies_seen += int(copies.size() - copies_before);
        EXPECT_LE(copies.size() - copies_before, 1u) << "at step " << step;
        if (tokens > 0 && seq.tokens % bm.block_tokens() != 0) {
          EXPECT_EQ(bm.refcount(seq.table.back()), 1)
              << "the block being written is shared at step " << step;
        }
      } else {
        ++reserves_refused;
        EXPECT_EQ(seq.table, before.table) << "at step " << step;
        EXPECT_EQ(seq.tokens, before.tokens) << "at step " << step;
        EXPECT_EQ(bm.free_blocks(), free_before) << "at step " << step;
        EXPECT_EQ(copies.size(), copies_before) << "at step " << step;
      }
    } else if (op < 8 && int(live.size()) < sequences_max) {
      const sequence_blocks copy = bm.fork(pick()->second);
      live[next_id++] = copy;
      ++forks;
    } else {
      auto it = pick();
      bm.release(it->second);
      live.erase(it);
    }
    check_invariants(bm, live, step);
    if (::testing::Test::HasFailure()) break;  // one broken step is enough to read
  }
  for (auto& [id, seq] : live) bm.release(seq);
  live.clear();
  check_invariants(bm, live, steps);
  EXPECT_EQ(bm.free_blocks(), bm.blocks_total()) << "blocks leaked";
  // The walk must have exercised what it claims to.
  EXPECT_GT(reserves_ok, 100);
  EXPECT_GT(reserves_refused, 10);
  EXPECT_GT(copies_seen, 10);
  EXPECT_GT(forks, 50);
  std::cout << "random walk, " << block_tokens << " tokens per block: " << reserves_ok << " reserves, "
            << reserves_refused << " refused, " << forks << " forks, " << copies_seen << " copies\n";
}

TEST(BlockManager, RandomOperationsKeepTheInvariantsAndLeakNothing) {
  for (int block_tokens : {4, 3, 2}) random_walk(block_tokens);
}

}  // namespace
}  // namespace dsrt::engine
