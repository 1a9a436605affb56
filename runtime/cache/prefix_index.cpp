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

namespace {
bool older(std::uint64_t a_used, std::int32_t a_id, std::uint64_t b_used, std::int32_t b_id) {
  return a_used != b_used ? a_used < b_used : a_id < b_id;
}
}  // namespace

void prefix_index::put_leaf(std::size_t at, const leaf& l) {
  leaves_[at] = l;
  nodes_[std::size_t(l.id)].leaf_at = std::int32_t(at);
}

void prefix_index::leaf_sift_up(std::size_t at) {
  const leaf l = leaves_[at];
  while (at > 0) {
    const std::size_t up = (at - 1) / 2;
    if (!older(l.last_used, l.id, leaves_[up].last_used, leaves_[up].id)) break;
    put_leaf(at, leaves_[up]);
    at = up;
  }
  put_leaf(at, l);
}

void prefix_index::leaf_sift_down(std::size_t at) {
  const leaf l = leaves_[at];
  const std::size_t n = leaves_.size();
  for (;;) {
    std::size_t down = 2 * at + 1;
    if (down >= n) break;
    if (down + 1 < n && older(leaves_[down + 1].last_used, leaves_[down + 1].id, leaves_[down].last_used,
                              leaves_[down].id))
      ++down;
    if (!older(leaves_[down].last_used, leaves_[down].id, l.last_used, l.id)) break;
    put_leaf(at, leaves_[down]);
    at = down;
  }
  put_leaf(at, l);
}

void prefix_index::add_leaf(std::int32_t id) {
  leaves_.push_back({nodes_[std::size_t(id)].last_used, id});
  leaf_sift_up(leaves_.size() - 1);
}

void prefix_index::drop_leaf(std::int32_t id) {
  node& n = nodes_[std::size_t(id)];
  DSRT_ASSERT(n.leaf_at >= 0, "node {} is not in the leaf heap", id);
  const std::size_t at = std::size_t(n.leaf_at);
  n.leaf_at = -1;
  const leaf last = leaves_.back();
  leaves_.pop_back();
  if (at == leaves_.size()) return;
  put_leaf(at, last);
  leaf_sift_up(at);
  leaf_sift_down(std::size_t(nodes_[std::size_t(last.id)].leaf_at));
}

void prefix_index::touch(std::int32_t id, std::uint64_t tick) {
  node& n = nodes_[std::size_t(id)];
  DSRT_ASSERT(tick >= n.last_used, "tick {} is older than node {}'s last use {}", tick, id, n.last_used);
  n.last_used = tick;
  if (n.children == 0) {  // a leaf's place in leaves_ follows its last use (ticks only grow)
    leaves_[std::size_t(n.leaf_at)].last_used = tick;
    leaf_sift_down(std::size_t(n.leaf_at));
  }
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
           .key = child_key(parent, tokens), .last_used = tick, .leaf_at = -1, .in_use = true};
  children_.insert(n.key, id);
  if (parent != root && nodes_[std::size_t(parent)].children++ == 0) drop_leaf(parent);
  add_leaf(id);
  ++nodes_in_use_;
  ++stats_.inserted_blocks;
  return id;
}

void prefix_index::remove_leaf(std::int32_t id) {
  node& n = nodes_[std::size_t(id)];
  DSRT_ASSERT(n.in_use && n.children == 0, "node {} in_use={} children={}", id, n.in_use,
              n.children);
  drop_leaf(id);
  const bool erased = children_.erase(n.key, id);
  DSRT_ASSERT(erased, "node {} missing from its parent's children", id);
  if (n.parent != root) {
    node& p = nodes_[std::size_t(n.parent)];
    DSRT_ASSERT(p.children > 0, "node {} has parent {} without children", id, n.parent);
    if (--p.children == 0) add_leaf(n.parent);
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
  bool added = false;   // parent is a node this call added: it has no children to find
  for (std::size_t i = 0; i < full_blocks; ++i) {
    const auto chunk = block_of(tokens, i);
    const std::int32_t child = added ? -1 : find_child(parent, chunk);
    if (child >= 0) {
      touch(child, tick);  // the cached block stays; the caller's duplicate is not added
      parent = child;
      continue;
    }
    if (nodes_in_use_ >= cached_blocks_max_) {
      // Make room with the least recently used leaf, never `parent`: it is this call's
      // path, and dropping it would orphan the node about to be added.
      std::int32_t victim = -1;
      if (!leaves_.empty() && leaves_[0].id != parent) {
        victim = leaves_[0].id;
      } else {   // the oldest leaf but `parent` is one of the top's children
        for (std::size_t at : {std::size_t(1), std::size_t(2)})
          if (at < leaves_.size() &&
              (victim < 0 || older(leaves_[at].last_used, leaves_[at].id, nodes_[std::size_t(victim)].last_used, victim)))
            victim = leaves_[at].id;
      }
      if (victim < 0) return;  // the tree is this path alone: record no more
      remove_leaf(victim);
      ++stats_.evicted_blocks;
    }
    parent = add_node(parent, chunk, table[i], tick);
    added = true;
  }
}

std::int32_t prefix_index::evict(std::int32_t blocks_wanted) {
  // Oldest leaf first (a parent left without children joins the heap by its own age);
  // leaves in use step out of the heap while the scan passes them and go back after.
  std::int32_t freed = 0;
  std::vector<std::int32_t> in_use;
  while (freed < blocks_wanted && !leaves_.empty()) {
    const std::int32_t id = leaves_[0].id;
    if (blocks_.refcount(nodes_[std::size_t(id)].block) != 1) {   // a sequence uses it; so its ancestors
      drop_leaf(id);
      in_use.push_back(id);
      continue;
    }
    remove_leaf(id);
    ++freed;
    ++stats_.evicted_blocks;
  }
  for (std::int32_t id : in_use) add_leaf(id);
  return freed;
}

void prefix_index::check_invariants() const {
  std::vector<std::int32_t> children(nodes_.size(), 0);
  std::int32_t live = 0;
  for (const node& n : nodes_) {
    if (!n.in_use) continue;
    ++live;
    DSRT_ASSERT(blocks_.refcount(n.block) >= 1, "a node's block {} has no reference", n.block);
    if (n.parent != root) {
      DSRT_ASSERT(nodes_[std::size_t(n.parent)].in_use, "a node's parent {} is gone", n.parent);
      ++children[std::size_t(n.parent)];
    }
  }
  DSRT_ASSERT(live == nodes_in_use_ && live <= cached_blocks_max_, "{} live nodes, {} counted, at most {}", live,
              nodes_in_use_, cached_blocks_max_);
  std::size_t leaves = 0;
  for (std::size_t id = 0; id < nodes_.size(); ++id) {
    const node& n = nodes_[id];
    if (!n.in_use) continue;
    DSRT_ASSERT(n.children == children[id], "node {} counts {} children, has {}", id, n.children, children[id]);
    DSRT_ASSERT((n.children == 0) == (n.leaf_at >= 0), "node {} with {} children has leaf place {}", id,
                n.children, n.leaf_at);
    leaves += n.children == 0;
  }
  DSRT_ASSERT(leaves == leaves_.size(), "{} leaves, {} in the heap", leaves, leaves_.size());
  for (std::size_t at = 0; at < leaves_.size(); ++at) {
    const leaf& l = leaves_[at];
    const node& n = nodes_[std::size_t(l.id)];
    DSRT_ASSERT(n.in_use && n.leaf_at == std::int32_t(at) && n.last_used == l.last_used,
                "heap entry {} (node {}) is out of step with its node", at, l.id);
    if (at > 0) {
      const leaf& up = leaves_[(at - 1) / 2];
      DSRT_ASSERT(!older(l.last_used, l.id, up.last_used, up.id), "heap order broken at {}", at);
    }
  }
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
