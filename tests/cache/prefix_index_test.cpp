// The prefix index stepped one call at a time over a real block_manager (no model): what a
// prompt matches, the references it takes and gives back, eviction order and limits, and
// a seeded random walk that checks every matched block holds the KV of exactly its prefix.
#include "runtime/cache/prefix_index.h"

#include <gtest/gtest.h>

#include <iostream>
#include <map>
#include <numeric>

#include "runtime/random.h"

namespace dsrt::cache {
namespace {

using engine::block_manager;
using engine::sequence_blocks;
using tokens_t = std::vector<std::int32_t>;

constexpr int block_tokens = 4;

// `count` tokens first, first + 1, ...: distinct runs give distinct blocks.
tokens_t run_of(std::int32_t first, int count) {
  tokens_t tokens(std::size_t(count), 0);
  std::iota(tokens.begin(), tokens.end(), first);
  return tokens;
}

tokens_t concat(tokens_t a, const tokens_t& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// What the batcher does for a prompt: reuse the cached prefix, compute the rest, record it.
sequence_blocks serve(prefix_index& index, block_manager& bm, const tokens_t& prompt,
                      std::uint64_t tick) {
  sequence_blocks seq = index.match(prompt, tick);
  std::vector<engine::block_copy> copies;
  EXPECT_TRUE(bm.reserve(seq, std::int64_t(prompt.size()) - seq.tokens, copies));
  EXPECT_TRUE(copies.empty()) << "a matched prefix is whole blocks: nothing to copy";
  index.insert(prompt, seq.table, tick);
  return seq;
}

// The prompt's tokens up to the end of block i: what that block's keys and values encode.
tokens_t through_block(const tokens_t& prompt, std::size_t i) {
  return tokens_t(prompt.begin(), prompt.begin() + std::ptrdiff_t((i + 1) * block_tokens));
}

tokens_t first_blocks(const sequence_blocks& seq, int count) {
  return tokens_t(seq.table.begin(), seq.table.begin() + count);
}

TEST(PrefixIndex, MatchOnAnEmptyIndexMisses) {
  block_manager bm(64, block_tokens);
  prefix_index index(bm, {});
  sequence_blocks seq = index.match(run_of(0, 13), 1);
  EXPECT_TRUE(seq.table.empty());
  EXPECT_EQ(seq.tokens, 0);
  EXPECT_EQ(bm.free_blocks(), 64);
  EXPECT_EQ(index.counters().lookups, 1);
  EXPECT_EQ(index.counters().hits, 0);
  EXPECT_EQ(index.counters().hit_tokens, 0);
  EXPECT_TRUE(index.match({}, 2).table.empty()) << "an empty prompt matches nothing";
}

TEST(PrefixIndex, ASharedPrefixMatchesTheSameBlocksWithOneReferenceEach) {
  block_manager bm(64, block_tokens);
  prefix_index index(bm, {});
  const tokens_t system = run_of(100, 8);  // two full blocks
  sequence_blocks first = serve(index, bm, concat(system, run_of(0, 2)), 1);
  ASSERT_EQ(first.table.size(), 3u);
  EXPECT_EQ(index.cached_blocks(), 2) << "the partly filled last block is not cached";
  EXPECT_EQ(bm.refcount(first.table[0]), 2) << "the sequence's and the index's";
  EXPECT_EQ(bm.refcount(first.table[1]), 2);
  EXPECT_EQ(bm.refcount(first.table[2]), 1);

  const tokens_t second_prompt = concat(system, run_of(50, 5));
  EXPECT_EQ(index.cached_prefix_blocks(second_prompt), 2);
  sequence_blocks second = index.match(second_prompt, 2);
  EXPECT_EQ(second.table, first_blocks(first, 2)) << "the very same block ids";
  EXPECT_EQ(second.tokens, 8);
  EXPECT_EQ(bm.refcount(first.table[0]), 3);
  EXPECT_EQ(bm.refcount(first.table[1]), 3);
  EXPECT_EQ(index.counters().hits, 1);
  EXPECT_EQ(index.counters().hit_tokens, 8);
  EXPECT_EQ(index.counters().inserted_blocks, 2);

  bm.release(first);
  EXPECT_EQ(bm.refcount(second.table[0]), 2);
  bm.release(second);
  EXPECT_EQ(bm.free_blocks(), 62) << "only the index's two blocks stay taken";
}

TEST(PrefixIndex, TheLastPromptTokenIsNeverCovered) {
  block_manager bm(64, block_tokens);
  prefix_index index(bm, {});
  const tokens_t prompt = run_of(0, 8);  // exactly two blocks
  sequence_blocks seq = serve(index, bm, prompt, 1);
  EXPECT_EQ(index.cached_blocks(), 2);
  sequence_blocks again = index.match(prompt, 2);
  EXPECT_EQ(again.table, first_blocks(seq, 1)) << "the model must still compute token 8";
  EXPECT_EQ(again.tokens, 4);
  sequence_blocks longer = index.match(concat(prompt, {7}), 3);
  EXPECT_EQ(longer.table, seq.table);
  EXPECT_EQ(index.cached_prefix_blocks(run_of(0, 4)), 0);
  EXPECT_EQ(index.cached_prefix_blocks(run_of(0, 5)), 1);
  for (sequence_blocks* s : {&seq, &again, &longer}) bm.release(*s);
}

TEST(PrefixIndex, ADivergingSuffixMatchesOnlyTheCommonBlocks) {
  block_manager bm(64, block_tokens);
  prefix_index index(bm, {});
  const tokens_t prompt = run_of(0, 13);  // three full blocks and one token
  sequence_blocks seq = serve(index, bm, prompt, 1);
  ASSERT_EQ(index.cached_blocks(), 3);

  tokens_t late = prompt;
  late[7] = 999;  // the last token of the second block
  sequence_blocks one = index.match(late, 2);
  EXPECT_EQ(one.table, first_blocks(seq, 1));
  tokens_t early = prompt;
  early[0] = 999;
  sequence_blocks none = index.match(early, 3);
  EXPECT_TRUE(none.table.empty());
  EXPECT_EQ(index.counters().lookups, 3);
  EXPECT_EQ(index.counters().hits, 1) << "serve()'s own lookup missed";
  for (sequence_blocks* s : {&seq, &one, &none}) bm.release(*s);
}

// A sequence that ends can give the index its token buffer (the batcher's finish): a
// whole new path takes it instead of a copy, a path that extends a cached one copies its
// own part; either way the index then matches exactly what was inserted.
TEST(PrefixIndex, AnInsertWithADonorMatchesTheSameAsACopy) {
  block_manager bm(64, block_tokens);
  prefix_index index(bm, {});
  const tokens_t prompt = run_of(0, 13);   // three full blocks and one token
  sequence_blocks seq = index.match(prompt, 1);
  std::vector<engine::block_copy> copies;
  ASSERT_TRUE(bm.reserve(seq, 13, copies));
  tokens_t donor = prompt;
  const std::int32_t* buffer = donor.data();
  index.insert(std::span<const std::int32_t>(donor).first(12), seq.table, 2, donor);
  EXPECT_EQ(index.cached_blocks(), 3);
  EXPECT_NE(donor.data(), buffer) << "a whole new path takes the donor's buffer";
  index.check_invariants();

  // Shares the first two blocks, then its own: only its new part is recorded, by copy.
  const tokens_t longer = concat(through_block(prompt, 1), run_of(500, 9));
  sequence_blocks other = index.match(longer, 3);
  ASSERT_EQ(other.table, first_blocks(seq, 2));
  ASSERT_TRUE(bm.reserve(other, std::int64_t(longer.size()) - other.tokens, copies));
  tokens_t second = longer;
  const std::int32_t* second_buffer = second.data();
  index.insert(std::span<const std::int32_t>(second).first(16), other.table, 4, second);
  EXPECT_EQ(second.data(), second_buffer) << "a path that extends a cached one copies its part";
  EXPECT_EQ(index.cached_blocks(), 5);
  index.check_invariants();

  for (const tokens_t& probe : {prompt, longer}) {
    sequence_blocks hit = index.match(probe, 5);
    EXPECT_EQ(hit.tokens, std::int64_t((probe.size() - 1) / block_tokens) * block_tokens);
    bm.release(hit);
  }
  sequence_blocks diverged = index.match(concat(through_block(prompt, 1), run_of(900, 9)), 6);
  EXPECT_EQ(diverged.table, first_blocks(seq, 2)) << "the donated tokens are compared, not just hashed";
  for (sequence_blocks* s : {&seq, &other, &diverged}) bm.release(*s);
  index.check_invariants();
}

TEST(PrefixIndex, InsertingADuplicatePathKeepsTheCachedBlocks) {
  block_manager bm(64, block_tokens);
  prefix_index index(bm, {});
  const tokens_t prompt = run_of(0, 9);
  sequence_blocks first = serve(index, bm, prompt, 1);

  // The same prompt computed again without the index (it raced the first one).
  sequence_blocks twin;
  std::vector<engine::block_copy> copies;
  ASSERT_TRUE(bm.reserve(twin, std::int64_t(prompt.size()) + 4, copies));
  index.insert(concat(prompt, run_of(500, 4)), twin.table, 2);
  EXPECT_EQ(index.cached_blocks(), 3) << "only the twin's new third block goes in";
  EXPECT_EQ(index.counters().inserted_blocks, 3);
  EXPECT_EQ(bm.refcount(twin.table[0]), 1) << "the twin's duplicate is not referenced";
  EXPECT_EQ(bm.refcount(twin.table[1]), 1);
  EXPECT_EQ(bm.refcount(twin.table[2]), 2);

  sequence_blocks later = index.match(concat(prompt, run_of(500, 4)), 3);
  EXPECT_EQ(later.table,
            (tokens_t{first.table[0], first.table[1], twin.table[2]}));
  for (sequence_blocks* s : {&first, &twin, &later}) bm.release(*s);
  EXPECT_EQ(bm.free_blocks(), 61);
}

TEST(PrefixIndex, EvictFreesLeastRecentlyUsedLeavesFirst) {
  block_manager bm(64, block_tokens);
  prefix_index index(bm, {});
  const tokens_t old_prompt = run_of(0, 13), touched_prompt = run_of(100, 13);
  sequence_blocks old_seq = serve(index, bm, old_prompt, 1);
  sequence_blocks touched = serve(index, bm, touched_prompt, 2);
  const tokens_t old_blocks = first_blocks(old_seq, 3);
  bm.release(old_seq);
  bm.release(touched);
  sequence_blocks reuse = index.match(touched_prompt, 5);  // touched is now the newer path
  bm.release(reuse);
  // The old prompt's blocks, oldest first, from the leaf up: its prefix stays usable.
  for (int step = 0; step < 3; ++step) {
    const std::int32_t free_before = bm.free_blocks();
    EXPECT_EQ(index.evict(1), 1) << "at step " << step;
    EXPECT_EQ(bm.free_blocks(), free_before + 1) << "at step " << step;
    EXPECT_EQ(bm.refcount(old_blocks[std::size_t(2 - step)]), 0) << "at step " << step;
    EXPECT_EQ(index.cached_prefix_blocks(old_prompt), 2 - step) << "at step " << step;
  }
  EXPECT_EQ(index.cached_prefix_blocks(touched_prompt), 3) << "the touched path survives";
  EXPECT_EQ(index.evict(10), 3);
  EXPECT_EQ(index.cached_blocks(), 0);
  EXPECT_EQ(index.counters().evicted_blocks, 6);
  EXPECT_EQ(bm.free_blocks(), 64);
}

TEST(PrefixIndex, EvictLeavesBlocksThatSequencesStillUse) {
  block_manager bm(64, block_tokens);
  prefix_index index(bm, {});
  const tokens_t shared = run_of(0, 8);
  sequence_blocks a = serve(index, bm, concat(shared, run_of(100, 5)), 1);  // blocks 0 1 a
  sequence_blocks b = serve(index, bm, concat(shared, run_of(200, 5)), 2);  // blocks 0 1 b
  ASSERT_EQ(index.cached_blocks(), 4);
  EXPECT_EQ(index.evict(10), 0) << "every cached block is in use";
  EXPECT_EQ(index.cached_blocks(), 4);

  const std::int32_t a_leaf = a.table[2];
  bm.release(a);
  EXPECT_EQ(index.evict(10), 1) << "only a's own block; the shared ones are b's too";
  EXPECT_EQ(bm.refcount(a_leaf), 0);
  EXPECT_EQ(bm.refcount(b.table[0]), 2);
  bm.release(b);
  EXPECT_EQ(index.evict(2), 2) << "b's leaf, then the shared block that became a leaf";
  EXPECT_EQ(index.cached_blocks(), 1);
  EXPECT_EQ(index.evict(0), 0);
  EXPECT_EQ(index.evict(5), 1);
  EXPECT_EQ(bm.free_blocks(), 64);
}

TEST(PrefixIndex, AnUnsharedRunIsOneNodeSplitWhereAMatchEndsAndEvictedFromItsTail) {
  block_manager bm(64, block_tokens);
  prefix_index index(bm, {});
  sequence_blocks a = serve(index, bm, run_of(0, 21), 1);
  const std::vector<std::int32_t> blocks = a.table;
  bm.release(a);
  EXPECT_EQ(index.cached_blocks(), 5);
  EXPECT_EQ(index.nodes(), 1) << "five blocks without a branch are one node";

  sequence_blocks head = index.match(run_of(0, 9), 2);
  ASSERT_EQ(head.table.size(), 2u);
  EXPECT_EQ(index.nodes(), 2) << "the first two blocks were used later than the rest";
  EXPECT_EQ(index.counters().splits, 1);
  bm.release(head);
  index.check_invariants();

  // The older run goes first, block by block from its end; then the head, now a leaf.
  EXPECT_EQ(index.evict(1), 1);
  EXPECT_EQ(bm.refcount(blocks[4]), 0);
  EXPECT_EQ(bm.refcount(blocks[3]), 1);
  EXPECT_EQ(index.cached_prefix_blocks(run_of(0, 21)), 4);
  EXPECT_EQ(index.evict(3), 3);
  EXPECT_EQ(index.cached_prefix_blocks(run_of(0, 21)), 1);
  EXPECT_EQ(index.nodes(), 1);
  index.check_invariants();
  EXPECT_EQ(index.evict(5), 1);
  EXPECT_EQ(index.nodes(), 0);
  EXPECT_EQ(bm.free_blocks(), 64);
}

// A fork that copied its shared last block before the original filled it holds the run's
// first blocks but not its last: eviction takes the last and keeps the rest.
TEST(PrefixIndex, EvictKeepsTheBlocksOfARunThatAForkStillHolds) {
  block_manager bm(64, block_tokens);
  prefix_index index(bm, {});
  sequence_blocks original;
  std::vector<engine::block_copy> copies;
  ASSERT_TRUE(bm.reserve(original, 11, copies));
  sequence_blocks fork = bm.fork(original);
  ASSERT_TRUE(bm.reserve(original, 1, copies));
  ASSERT_EQ(copies.size(), 1u) << "the shared, partly filled last block was copied";
  index.insert(run_of(0, 12), original.table, 1);
  const std::int32_t copied_last = original.table[2];
  bm.release(original);
  EXPECT_EQ(index.nodes(), 1);
  index.check_invariants();

  EXPECT_EQ(index.evict(3), 1) << "only the run's last block is the index's alone";
  EXPECT_EQ(bm.refcount(copied_last), 0);
  EXPECT_EQ(index.cached_blocks(), 2);
  EXPECT_EQ(bm.refcount(fork.table[0]), 2);
  index.check_invariants();
  bm.release(fork);
  EXPECT_EQ(index.evict(3), 2);
  EXPECT_EQ(bm.free_blocks(), 64);
}

TEST(PrefixIndex, InsertStaysWithinCachedBlocksMax) {
  block_manager bm(64, block_tokens);
  prefix_index index(bm, {.cached_blocks_max = 4});
  sequence_blocks a = serve(index, bm, run_of(0, 13), 1);
  sequence_blocks b = serve(index, bm, run_of(100, 13), 2);
  EXPECT_EQ(index.cached_blocks(), 4);
  EXPECT_EQ(index.counters().evicted_blocks, 2) << "a's two deepest blocks made room";
  EXPECT_EQ(index.cached_prefix_blocks(run_of(0, 13)), 1);
  EXPECT_EQ(index.cached_prefix_blocks(run_of(100, 13)), 3);
  EXPECT_EQ(bm.refcount(a.table[2]), 1) << "dropped from the index, still a's";

  // A path longer than the limit alone: the index keeps its head and drops nothing of it.
  sequence_blocks c = serve(index, bm, run_of(300, 25), 3);
  EXPECT_EQ(index.cached_blocks(), 4);
  EXPECT_EQ(index.cached_prefix_blocks(run_of(300, 25)), 4);
  for (sequence_blocks* s : {&a, &b, &c}) bm.release(*s);
  EXPECT_EQ(bm.free_blocks(), 60);

  prefix_index nothing(bm, {.cached_blocks_max = 0});
  sequence_blocks d = serve(nothing, bm, run_of(0, 13), 4);
  EXPECT_EQ(nothing.cached_blocks(), 0);
  bm.release(d);
}

TEST(PrefixIndex, ClearAndTheDestructorReturnEveryBlock) {
  block_manager bm(64, block_tokens);
  sequence_blocks held;
  {
    prefix_index index(bm, {});
    sequence_blocks a = serve(index, bm, run_of(0, 13), 1);
    sequence_blocks b = serve(index, bm, run_of(100, 9), 2);
    bm.release(a);
    bm.release(b);
    EXPECT_EQ(bm.free_blocks(), 64 - 5);
    index.clear();
    EXPECT_EQ(index.cached_blocks(), 0);
    EXPECT_EQ(bm.free_blocks(), 64);
    EXPECT_TRUE(index.match(run_of(0, 13), 3).table.empty());

    sequence_blocks c = serve(index, bm, run_of(0, 13), 4);
    bm.release(c);
    held = index.match(run_of(0, 13), 5);
    ASSERT_EQ(held.table.size(), 3u);
  }  // the index goes; the sequence still holds its blocks
  for (std::int32_t block : held.table) EXPECT_EQ(bm.refcount(block), 1) << "block " << block;
  bm.release(held);
  EXPECT_EQ(bm.free_blocks(), 64);
}

// The block_manager's books balance: every reference is the index's or a live sequence's,
// and every block is free xor referenced.
void check_references(const block_manager& bm, const prefix_index& index,
                      const std::map<int, sequence_blocks>& live, int step) {
  std::int64_t sequence_refs = 0;
  for (const auto& [id, seq] : live) sequence_refs += std::int64_t(seq.table.size());
  std::int64_t refs = 0;
  std::int32_t referenced = 0;
  for (std::int32_t b = 0; b < bm.blocks_total(); ++b) {
    refs += bm.refcount(b);
    referenced += bm.refcount(b) > 0;
  }
  EXPECT_EQ(refs, index.cached_blocks() + sequence_refs) << "at step " << step;
  EXPECT_EQ(bm.free_blocks() + referenced, bm.blocks_total()) << "at step " << step;
}

TEST(PrefixIndex, RandomOperationsKeepTheReferencesBalancedAndMatchesExact) {
  constexpr int steps = 3000;
  constexpr int sequences_max = 8;
  constexpr int families = 4, family_tokens = 32;
  block_manager bm(40, block_tokens);  // short enough that some requests are refused
  prefix_index index(bm, {.cached_blocks_max = 24});
  xoshiro256 random(20240611);
  auto below = [&](int n) { return int(random.next() % std::uint64_t(n)); };
  std::vector<tokens_t> family(families);
  for (tokens_t& f : family) {
    for (int i = 0; i < family_tokens; ++i) f.push_back(below(1000));
  }
  // The prompt prefix whose KV each computed full block holds: a match must agree.
  std::map<std::int32_t, tokens_t> holds;
  std::map<int, sequence_blocks> live;
  int next_id = 0, served = 0, refused = 0, evicted = 0;
  for (int step = 0; step < steps; ++step) {
    const std::uint64_t tick = std::uint64_t(step) + 1;
    const int op = below(10);
    if (op < 5 && int(live.size()) < sequences_max) {
      const tokens_t& f = family[std::size_t(below(families))];
      tokens_t prompt(f.begin(), f.begin() + 1 + below(family_tokens));
      for (int tail = below(7); tail > 0; --tail) prompt.push_back(below(3));
      const std::int32_t expected = index.cached_prefix_blocks(prompt);
      sequence_blocks seq = index.match(prompt, tick);
      ASSERT_EQ(std::int32_t(seq.table.size()), expected) << "at step " << step;
      for (std::size_t i = 0; i < seq.table.size(); ++i) {
        ASSERT_EQ(holds[seq.table[i]], through_block(prompt, i)) << "block " << i << " at step "
                                                                 << step;
      }
      const std::int64_t rest = std::int64_t(prompt.size()) - seq.tokens;
      std::vector<engine::block_copy> copies;
      const std::int32_t short_by = bm.blocks_needed(seq, rest) - bm.free_blocks();
      if (short_by > 0) evicted += index.evict(short_by);
      if (!bm.reserve(seq, rest, copies)) {
        ++refused;
        bm.release(seq);
      } else {
        for (std::size_t i = std::size_t(expected); i < prompt.size() / block_tokens; ++i) {
          holds[seq.table[i]] = through_block(prompt, i);
        }
        index.insert(prompt, seq.table, tick);
        live[next_id++] = std::move(seq);
        ++served;
      }
    } else if (op < 8 && !live.empty()) {
      auto it = live.begin();
      std::advance(it, below(int(live.size())));
      bm.release(it->second);
      live.erase(it);
    } else if (op < 9) {
      const std::int32_t free_before = bm.free_blocks(), wanted = 1 + below(4);
      const std::int32_t freed = index.evict(wanted);
      EXPECT_LE(freed, wanted) << "at step " << step;
      EXPECT_EQ(bm.free_blocks(), free_before + freed) << "at step " << step;
      evicted += freed;
    } else if (below(20) == 0) {
      index.clear();
    }
    EXPECT_LE(index.cached_blocks(), 24) << "at step " << step;
    index.check_invariants();   // the tree's counts and the leaf heap
    check_references(bm, index, live, step);
    if (::testing::Test::HasFailure()) break;  // one broken step is enough to read
  }
  for (auto& [id, seq] : live) bm.release(seq);
  live.clear();
  check_references(bm, index, live, steps);
  index.clear();
  EXPECT_EQ(bm.free_blocks(), bm.blocks_total()) << "blocks leaked";
  const prefix_index::stats& c = index.counters();
  EXPECT_GT(c.hits, 200) << "the walk must share prefixes";
  EXPECT_GT(evicted, 50);
  EXPECT_GT(refused, 0);
  EXPECT_GT(c.splits, 100) << "matches and inserts must end inside runs of blocks";
  std::cout << "random walk: " << served << " served, " << refused << " refused, " << c.hits
            << " hits of " << c.lookups << ", " << evicted << " blocks evicted, " << c.splits << " splits\n";
}

}  // namespace
}  // namespace dsrt::cache
