#include "runtime/cache/prefix_index.h"

#include <algorithm>

#include "kernels/assert.h"
#include "runtime/random.h"

namespace dsrt::cache {

prefix_index::prefix_index(engine::block_manager& blocks, const prefix_index_config& config)
    : blocks_(blocks),
      cached_blocks_max_(config.cached_blocks_max),
      block_tokens_(blocks.block_tokens()) {
  DSRT_ASSERT(cached_blocks_max_ >= 0, "cached_blocks_max={}", cached_blocks_max_);
}

prefix_index::~prefix_index() { clear(); }

std::uint64_t prefix_index::child_key(std::int32_t parent,
                                      std::span<const std::int32_t> tokens) const {
  // splitmix64 as a mixing step: the key only picks a bucket; find_child compares the
  // exact tokens, so a collision costs a comparison, never a wrong match.
  std::uint64_t hash = std::uint64_t(std::uint32_t(parent));
  for (std::int32_t token : tokens) {
    std::uint64_t state = hash ^ std::uint64_t(std::uint32_t(token));
    hash = splitmix64(state);
  }
  return hash;
}

std::span<const std::int32_t> prefix_index::node_tokens(std::int32_t id) const {
  return std::span<const std::int32_t>(node_tokens_)
      .subspan(std::size_t(id) * std::size_t(block_tokens_), std::size_t(block_tokens_));
}

std::span<const std::int32_t> prefix_index::block_of(std::span<const std::int32_t> tokens,
                                                    std::size_t i) const {
  return tokens.subspan(i * std::size_t(block_tokens_), std::size_t(block_tokens_));
}

std::size_t prefix_index::matchable_blocks(std::span<const std::int32_t> tokens) const {
  // The last token stays uncached: the model computes it to produce the next logits.
  return tokens.empty() ? 0 : (tokens.size() - 1) / std::size_t(block_tokens_);
}

std::int32_t prefix_index::find_child(std::int32_t parent,
                                      std::span<const std::int32_t> tokens) const {
  return children_.find_if(child_key(parent, tokens), [&](std::int32_t id) {
    const std::span<const std::int32_t> held = node_tokens(id);
    return nodes_[std::size_t(id)].parent == parent &&
           std::equal(held.begin(), held.end(), tokens.begin(), tokens.end());
  });
}

void prefix_index::touch(std::int32_t id, std::uint64_t tick) {
  node& n = nodes_[std::size_t(id)];
  if (n.children == 0) {  // a leaf's place in leaves_ follows its last use
    leaves_.erase({n.last_used, id});
    leaves_.insert({tick, id});
  }
  n.last_used = tick;
}

std::int32_t prefix_index::add_node(std::int32_t parent, std::span<const std::int32_t> tokens,
                                    std::int32_t block, std::uint64_t tick) {
  DSRT_ASSERT(nodes_in_use_ < cached_blocks_max_, "nodes={} cached_blocks_max={}",
              nodes_in_use_, cached_blocks_max_);
  blocks_.add_ref(block);
  std::int32_t id;
  if (!free_slots_.empty()) {
    id = free_slots_.back();
    free_slots_.pop_back();
  } else {
    id = std::int32_t(nodes_.size());
    nodes_.emplace_back();
    node_tokens_.resize(node_tokens_.size() + std::size_t(block_tokens_));
  }
  std::copy(tokens.begin(), tokens.end(),
            node_tokens_.begin() + std::ptrdiff_t(id) * block_tokens_);
  node& n = nodes_[std::size_t(id)];
  n = node{.block = block, .parent = parent, .children = 0,
           .key = child_key(parent, tokens), .last_used = tick, .in_use = true};
  children_.insert(n.key, id);
  if (parent != root) {
    node& p = nodes_[std::size_t(parent)];
    if (p.children++ == 0) leaves_.erase({p.last_used, parent});
  }
  leaves_.insert({tick, id});
  ++nodes_in_use_;
  ++stats_.inserted_blocks;
  return id;
}

void prefix_index::remove_leaf(std::int32_t id) {
  node& n = nodes_[std::size_t(id)];
  DSRT_ASSERT(n.in_use && n.children == 0, "node {} in_use={} children={}", id, n.in_use,
              n.children);
  leaves_.erase({n.last_used, id});
  const bool erased = children_.erase(n.key, id);
  DSRT_ASSERT(erased, "node {} missing from its parent's children", id);
  if (n.parent != root) {
    node& p = nodes_[std::size_t(n.parent)];
    DSRT_ASSERT(p.children > 0, "node {} has parent {} without children", id, n.parent);
    if (--p.children == 0) leaves_.insert({p.last_used, n.parent});
  }
  blocks_.release_block(n.block);
  n.in_use = false;
  free_slots_.push_back(id);
  --nodes_in_use_;
}

engine::sequence_blocks prefix_index::match(std::span<const std::int32_t> tokens,
                                            std::uint64_t tick) {
  ++stats_.lookups;
  engine::sequence_blocks seq;
  std::int32_t parent = root;
  for (std::size_t i = 0; i < matchable_blocks(tokens); ++i) {
    const std::int32_t child = find_child(parent, block_of(tokens, i));
    if (child < 0) break;
    touch(child, tick);
    const std::int32_t block = nodes_[std::size_t(child)].block;
    blocks_.add_ref(block);
    seq.table.push_back(block);
    parent = child;
  }
  seq.tokens = std::int64_t(seq.table.size()) * block_tokens_;
  if (!seq.table.empty()) {
    ++stats_.hits;
    stats_.hit_tokens += seq.tokens;
  }
  return seq;
}

std::int32_t prefix_index::cached_prefix_blocks(std::span<const std::int32_t> tokens) const {
  std::int32_t parent = root;
  std::int32_t matched = 0;
  for (std::size_t i = 0; i < matchable_blocks(tokens); ++i) {
    parent = find_child(parent, block_of(tokens, i));
    if (parent < 0) break;
    ++matched;
  }
  return matched;
}

void prefix_index::insert(std::span<const std::int32_t> tokens,
                          std::span<const std::int32_t> table, std::uint64_t tick) {
  const std::size_t full_blocks = tokens.size() / std::size_t(block_tokens_);
  DSRT_ASSERT(table.size() >= full_blocks, "table holds {} blocks for {} full blocks of tokens",
              table.size(), full_blocks);
  std::int32_t parent = root;
  for (std::size_t i = 0; i < full_blocks; ++i) {
    const auto chunk = block_of(tokens, i);
    const std::int32_t child = find_child(parent, chunk);
    if (child >= 0) {
      touch(child, tick);  // the cached block stays; the caller's duplicate is not added
      parent = child;
      continue;
    }
    if (nodes_in_use_ >= cached_blocks_max_) {
      // Make room with the least recently used leaf, never `parent`: it is this call's
      // path, and dropping it would orphan the node about to be added.
      const auto not_parent = [parent](const auto& leaf) { return leaf.second != parent; };
      const auto victim = std::find_if(leaves_.begin(), leaves_.end(), not_parent);
      if (victim == leaves_.end()) return;  // the tree is this path alone: record no more
      remove_leaf(victim->second);
      ++stats_.evicted_blocks;
    }
    parent = add_node(parent, chunk, table[i], tick);
  }
}

std::int32_t prefix_index::evict(std::int32_t blocks_wanted) {
  std::int32_t freed = 0;
  auto it = leaves_.begin();
  while (freed < blocks_wanted && it != leaves_.end()) {
    const std::int32_t id = it->second;
    const node& n = nodes_[std::size_t(id)];
    ++it;  // before remove_leaf, which erases id's entry
    if (blocks_.refcount(n.block) != 1) continue;  // a sequence uses it; so its ancestors
    const std::int32_t parent = n.parent;
    remove_leaf(id);
    ++freed;
    ++stats_.evicted_blocks;
    if (parent != root && nodes_[std::size_t(parent)].children == 0) {
      // The parent just became a leaf; it may be older than where the scan stands, and
      // everything passed over so far is in use, so resume from the parent if it is.
      const auto parent_entry = leaves_.find({nodes_[std::size_t(parent)].last_used, parent});
      if (it == leaves_.end() || *parent_entry < *it) it = parent_entry;
    }
  }
  return freed;
}

void prefix_index::clear() {
  for (const node& n : nodes_) {
    if (n.in_use) blocks_.release_block(n.block);
  }
  nodes_.clear();
  node_tokens_.clear();
  free_slots_.clear();
  children_.clear();
  leaves_.clear();
  nodes_in_use_ = 0;
}

}  // namespace dsrt::cache
