#pragma once
// The KV prefix index: a radix tree over full KV blocks, so a prompt prefix that many
// requests share (a system prompt, a few-shot preamble, an earlier turn of a chat) is
// computed once and its blocks are shared, like vLLM's automatic prefix caching and
// SGLang's RadixAttention.
//
// The tree is over FULL blocks of block_tokens tokens: the path from the root to a block is
// the prefix whose keys and values that block holds. Only full blocks go in because the
// engine never writes a full block again: sharing it is safe, and a sequence that continues
// after a shared prefix appends fresh blocks of its own.
//
// A node is a run of one or more blocks with no branch inside it and one last use (as in
// SGLang's radix tree, where a node is a run of tokens): a request's unshared tail is one
// node, not one per block, so recording and evicting a request costs a node or two, not a
// heap entry and a hash-table entry per block. A node splits where a match or an insert
// touches only its first blocks (so every block of a node was last used together) or
// where paths diverge. Eviction still goes block by block, from the tail of the least
// recently used leaf: with strictly increasing ticks (the batcher's), blocks go back in the
// order a tree of one block per node gives. A split copies the tail's blocks forward: it
// costs the run's length.
//
// Ownership: the index holds one block_manager reference per block it records and gives
// them back in clear() and the destructor; it does not own the block_manager, which must
// outlive it. The batcher owns one index per replica together with that replica's
// block_manager.
// Thread safety: none; one owner calls it.
// Time: recency is a logical tick passed in by the caller; the index reads no clock. Ticks
// must not decrease from call to call (the batcher counts them up).
//
// Invariants:
//  - every recorded block holds exactly one reference of the index (so refcount >= 1), and
//    the sum of the block_manager's refcounts is the index's blocks plus the references
//    the sequences hold;
//  - cached blocks <= cached_blocks_max; every node holds at least one block;
//  - no two children of one node start with the same block of tokens;
//  - matches and inserts split nodes at their ends, so a sequence the index served holds
//    either all of a node's blocks or none; evict() still checks each block before it goes
//    (a fork that copied its last block holds the others);
//  - leaves_ holds exactly the nodes without children, as a heap by (last use, node id),
//    each entry with its node's last block.
#include <cstdint>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "runtime/cache/key_slots.h"
#include "runtime/engine/block_manager.h"

namespace dsrt::cache {

struct prefix_index_config {
  // Blocks the index may hold references to. Blocks a request is using
  // are not freed by the index anyway, so this bounds what idle cached prefixes can keep
  // from the free list; a value above the block_manager's blocks_total means "no limit
  // but the cache itself".
  std::int32_t cached_blocks_max = 1 << 16;
};

class prefix_index {
 public:
  struct stats {
    std::int64_t lookups = 0;          // match() calls
    std::int64_t hits = 0;             // matches of at least one block
    std::int64_t hit_tokens = 0;       // prompt tokens whose KV came from the index
    std::int64_t inserted_blocks = 0;  // blocks recorded
    std::int64_t evicted_blocks = 0;   // blocks dropped by evict() or to stay within the limit
    std::int64_t splits = 0;           // nodes split where a match or an insert ended or diverged
  };

  prefix_index(engine::block_manager& blocks, const prefix_index_config& config);
  ~prefix_index();  // releases the index's references
  prefix_index(const prefix_index&) = delete;
  prefix_index& operator=(const prefix_index&) = delete;

  // The longest cached prefix of `tokens` in whole blocks, leaving at least one token
  // uncached because the model must compute the last prompt token to produce logits: at
  // most (tokens.size() - 1) / block_tokens blocks. The returned sequence holds those
  // blocks with one reference taken for the caller (release it with
  // block_manager::release like any sequence) and tokens = blocks * block_tokens; grow it
  // with block_manager::reserve for the rest of the prompt. Marks the matched nodes used at
  // `tick` and counts a lookup, and a hit when at least one block matched.
  engine::sequence_blocks match(std::span<const std::int32_t> tokens, std::uint64_t tick);

  // How many blocks match() would return now, without taking references, touching nodes
  // or counting: for estimating the blocks a request needs before admitting it.
  std::int32_t cached_prefix_blocks(std::span<const std::int32_t> tokens) const;

  // Records the full blocks of a computed sequence: table[i] holds the keys and values of
  // tokens [i * block_tokens, (i + 1) * block_tokens). The full blocks not yet in the tree
  // become one new node, with a reference of the index's on each block; where the tree
  // already holds a block for that path it is kept and the caller's duplicate is not added. Marks the path used at `tick`.
  // Stays within cached_blocks_max by dropping least recently used leaves, never the node
  // this call just reached; when nothing can go, the rest of the sequence is not recorded.
  // REQUIRES: table.size() >= tokens.size() / block_tokens, every listed block referenced
  // by the caller, and the KV of all those tokens computed.
  void insert(std::span<const std::int32_t> tokens, std::span<const std::int32_t> table,
              std::uint64_t tick);
  // The same for a sequence that ends here: `tokens` is a prefix of *donor, whose buffer a
  // new node takes instead of a copy when the whole path is new (no token is read or
  // written twice: the sequence's tokens are cold by the time it finishes). *donor is
  // left valid but unspecified.
  void insert(std::span<const std::int32_t> tokens, std::span<const std::int32_t> table,
              std::uint64_t tick, std::vector<std::int32_t>& donor);

  // Drops blocks from the tails of the least recently used leaves whose blocks only the index
  // references (refcount 1) until `blocks_wanted` blocks have gone back to the free list or
  // no such leaf is left; a leaf in use by a sequence stays, and so do its ancestors.
  // Returns the blocks freed. The batcher calls this when block_manager::reserve fails,
  // then retries. Cost: O(1) per block freed, O(log leaves) per node emptied and per
  // in-use leaf passed over.
  std::int32_t evict(std::int32_t blocks_wanted);

  // Drops every node, releasing all the index's references.
  void clear();

  std::int32_t cached_blocks() const { return blocks_in_use_; }
  std::int32_t nodes() const { return nodes_in_use_; }
  // DSRT_ASSERTs the invariants above on the whole tree (for tests: O(nodes)).
  void check_invariants() const;
  const stats& counters() const { return stats_; }

 private:
  static constexpr std::int32_t root = -1;

  struct node {
    std::int32_t parent = root;
    std::int32_t children = 0;
    std::uint64_t key = 0;        // hash of (parent, first block's tokens): its entry in children_
    std::uint64_t last_used = 0;  // tick of the latest match or insert through this node
    bool in_use = false;          // a slot of nodes_ holding a live node
    std::vector<std::int32_t> blocks;  // in path order; a free slot keeps the capacity
    std::vector<std::int32_t> tokens;  // blocks.size() * block_tokens
    std::size_t size() const { return blocks.size(); }
  };
  // A leaf's heap entry carries its node's last block, so eviction checks that block's
  // reference count without loading the cold node and its block vector first.
  struct leaf {
    std::uint64_t last_used;
    std::int32_t id;
    std::int32_t last_block;
  };

  std::uint64_t child_key(std::int32_t parent, std::span<const std::int32_t> tokens) const;
  std::int32_t find_child(std::int32_t parent, std::span<const std::int32_t> tokens) const;
  // The same with child_key(parent, tokens) already computed.
  std::int32_t find_child(std::int32_t parent, std::span<const std::int32_t> tokens, std::uint64_t key) const;
  std::span<const std::int32_t> node_block(const node& n, std::size_t i) const;
  // Block i of a token sequence: tokens [i * block_tokens, (i + 1) * block_tokens).
  std::span<const std::int32_t> block_of(std::span<const std::int32_t> tokens, std::size_t i) const;
  std::size_t matchable_blocks(std::span<const std::int32_t> tokens) const;
  // How many of node `id`'s blocks, from its first, equal blocks first.. of `tokens`
  // (at most `blocks` of them).
  std::size_t common_blocks(std::int32_t id, std::span<const std::int32_t> tokens, std::size_t first,
                            std::size_t blocks) const;
  void touch(std::int32_t id, std::uint64_t tick);
  std::int32_t take_slot();
  // A new leaf under `parent` holding `blocks` (at least one; tokens are theirs, in order),
  // with a reference of the index's on each. REQUIRES: room for them within cached_blocks_max.
  // With a donor whose buffer starts with `tokens`, the node takes that buffer. `key`:
  // child_key(parent, first block of tokens), when the caller has it.
  std::int32_t add_node(std::int32_t parent, std::span<const std::int32_t> tokens,
                        std::span<const std::int32_t> blocks, std::uint64_t tick,
                        std::vector<std::int32_t>* donor = nullptr, std::optional<std::uint64_t> key = std::nullopt);
  void insert_path(std::span<const std::int32_t> tokens, std::span<const std::int32_t> table,
                   std::uint64_t tick, std::vector<std::int32_t>* donor);
  // Splits node `id` after its first `head` blocks (0 < head < size): a new node takes
  // them and `id` keeps the rest (and its children, whose keys name it). Returns the head.
  std::int32_t split(std::int32_t id, std::size_t head);
  // Drops the last block of leaf `id`, and the node once it has none.
  void drop_last_block(std::int32_t id);
  void remove_leaf(std::int32_t id);
  // The leaf whose last block goes when an insert must make room, never `keep` (the node
  // the insert is extending or hanging new blocks under); -1 when none.
  std::int32_t insert_victim(std::int32_t keep) const;
  // leaves_, a 4-ary min-heap by (last_used, id) whose nodes know their place in it: half
  // the levels of a binary heap, and a level's four children are 64 contiguous bytes
  // (eviction pops the oldest leaf per node evicted, and the heap is cold by then). Keys
  // are unique, so any arity pops the same order.
  static constexpr std::size_t leaf_arity = 4;
  void add_leaf(std::int32_t id);
  void drop_leaf(std::int32_t id);
  void leaf_sift_up(std::size_t at);
  void leaf_sift_down(std::size_t at);
  void put_leaf(std::size_t at, const leaf& l);

  engine::block_manager& blocks_;
  const std::int32_t cached_blocks_max_;
  const int block_tokens_;
  std::vector<node> nodes_;                 // slots, at most cached_blocks_max
  // Each slot's place in leaves_ (-1 unless a leaf), beside nodes_ rather than in them: a
  // heap move writes the place of every entry it shifts, and a dense array of 4-byte places
  // stays in cache where the nodes (cold since their last use) would each cost a miss.
  std::vector<std::int32_t> leaf_at_;
  std::vector<std::int32_t> free_slots_;    // slots of removed nodes, reused first
  std::int32_t nodes_in_use_ = 0;
  std::int32_t blocks_in_use_ = 0;
  // Children of every node under one table: child_key(parent, tokens) -> child. Several
  // values per key because two keys can collide; lookups compare the exact tokens. At most
  // one entry per node, so bounded by cached_blocks_max.
  key_slots children_;
  // The leaves, least recently used (then lowest id) first: eviction takes them oldest
  // first without scanning the tree. One entry per leaf: a few per cached sequence.
  std::vector<leaf> leaves_;
  stats stats_;
};

}  // namespace dsrt::cache
