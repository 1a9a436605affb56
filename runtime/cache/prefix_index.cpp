#include "runtime/cache/prefix_index.h"

#include <algorithm>

#include "kernels/assert.h"
#include "runtime/token_hash.h"

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
  // The key only picks a bucket; find_child compares the exact tokens, so a collision
  // costs a comparison, never a wrong match.
  return hash_tokens(tokens, std::uint64_t(std::uint32_t(parent)));
}

std::span<const std::int32_t> prefix_index::node_block(const node& n, std::size_t i) const {
  return std::span<const std::int32_t>(n.tokens).subspan(i * std::size_t(block_tokens_),
                                                          std::size_t(block_tokens_));
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
  return find_child(parent, tokens, child_key(parent, tokens));
}

std::int32_t prefix_index::find_child(std::int32_t parent, std::span<const std::int32_t> tokens,
                                      std::uint64_t key) const {
  return children_.find_if(key, [&](std::int32_t id) {
    const node& n = nodes_[std::size_t(id)];
    const std::span<const std::int32_t> held = node_block(n, 0);
    return n.parent == parent && std::equal(held.begin(), held.end(), tokens.begin(), tokens.end());
  });
}

std::size_t prefix_index::common_blocks(std::int32_t id, std::span<const std::int32_t> tokens,
                                        std::size_t first, std::size_t blocks) const {
  const node& n = nodes_[std::size_t(id)];
  const std::size_t most = std::min(n.size(), blocks);
  const std::size_t bt = std::size_t(block_tokens_);
  // Token by token over the whole run: the first mismatch ends it, rounded down to a block.
  const auto mine = std::span<const std::int32_t>(n.tokens).first(most * bt);
  const auto theirs = tokens.subspan(first * bt, most * bt);
  const auto differ = std::mismatch(mine.begin(), mine.end(), theirs.begin()).first;
  return std::size_t(differ - mine.begin()) / bt;
}

namespace {
bool older(std::uint64_t a_used, std::int32_t a_id, std::uint64_t b_used, std::int32_t b_id) {
  return a_used != b_used ? a_used < b_used : a_id < b_id;
}
}  // namespace

void prefix_index::put_leaf(std::size_t at, const leaf& l) {
  leaves_[at] = l;
  leaf_at_[std::size_t(l.id)] = std::int32_t(at);
}

void prefix_index::leaf_sift_up(std::size_t at) {
  const leaf l = leaves_[at];
  while (at > 0) {
    const std::size_t up = (at - 1) / leaf_arity;
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
    const std::size_t first = leaf_arity * at + 1;
    if (first >= n) break;
    std::size_t down = first;
    for (std::size_t c = first + 1; c < std::min(first + leaf_arity, n); ++c)
      if (older(leaves_[c].last_used, leaves_[c].id, leaves_[down].last_used, leaves_[down].id)) down = c;
    if (!older(leaves_[down].last_used, leaves_[down].id, l.last_used, l.id)) break;
    put_leaf(at, leaves_[down]);
    at = down;
  }
  put_leaf(at, l);
}

void prefix_index::add_leaf(std::int32_t id) {
  const node& n = nodes_[std::size_t(id)];
  leaves_.push_back({n.last_used, id, n.blocks.back()});
  leaf_sift_up(leaves_.size() - 1);
}

void prefix_index::drop_leaf(std::int32_t id) {
  std::int32_t& place = leaf_at_[std::size_t(id)];
  DSRT_ASSERT(place >= 0, "node {} is not in the leaf heap", id);
  const std::size_t at = std::size_t(place);
  place = -1;
  const leaf last = leaves_.back();
  leaves_.pop_back();
  if (at == leaves_.size()) return;
  put_leaf(at, last);
  leaf_sift_up(at);
  leaf_sift_down(std::size_t(leaf_at_[std::size_t(last.id)]));
}

void prefix_index::touch(std::int32_t id, std::uint64_t tick) {
  node& n = nodes_[std::size_t(id)];
  DSRT_ASSERT(tick >= n.last_used, "tick {} is older than node {}'s last use {}", tick, id, n.last_used);
  n.last_used = tick;
  if (n.children == 0) {  // a leaf's place in leaves_ follows its last use (ticks only grow)
    const auto at = std::size_t(leaf_at_[std::size_t(id)]);
    leaves_[at].last_used = tick;
    leaf_sift_down(at);
  }
}

std::int32_t prefix_index::take_slot() {
  std::int32_t id;
  if (!free_slots_.empty()) {
    id = free_slots_.back();
    free_slots_.pop_back();
  } else {
    id = std::int32_t(nodes_.size());
    nodes_.emplace_back();
    leaf_at_.push_back(-1);
  }
  ++nodes_in_use_;
  return id;
}

std::int32_t prefix_index::add_node(std::int32_t parent, std::span<const std::int32_t> tokens,
                                    std::span<const std::int32_t> blocks, std::uint64_t tick,
                                    std::vector<std::int32_t>* donor, std::optional<std::uint64_t> key) {
  DSRT_ASSERT(!blocks.empty() && tokens.size() == blocks.size() * std::size_t(block_tokens_) &&
                  blocks_in_use_ + std::int64_t(blocks.size()) <= cached_blocks_max_,
              "{} blocks of {} tokens; {} held, cached_blocks_max={}", blocks.size(), tokens.size(), blocks_in_use_,
              cached_blocks_max_);
  const std::int32_t id = take_slot();
  node& n = nodes_[std::size_t(id)];
  n.parent = parent;
  n.children = 0;
  n.key = key ? *key : child_key(parent, tokens.first(std::size_t(block_tokens_)));
  n.last_used = tick;
  n.in_use = true;
  n.blocks.assign(blocks.begin(), blocks.end());
  if (donor && tokens.data() == donor->data()) {
    n.tokens = std::move(*donor);
    n.tokens.resize(tokens.size());
  } else {
    n.tokens.assign(tokens.begin(), tokens.end());
  }
  for (std::int32_t block : blocks) blocks_.add_ref(block);
  blocks_in_use_ += std::int32_t(blocks.size());
  stats_.inserted_blocks += std::int64_t(blocks.size());
  children_.insert(n.key, id);
  if (parent != root && nodes_[std::size_t(parent)].children++ == 0) drop_leaf(parent);
  add_leaf(id);
  return id;
}

std::int32_t prefix_index::split(std::int32_t id, std::size_t head) {
  DSRT_ASSERT(head > 0 && head < nodes_[std::size_t(id)].size(), "splitting node {} of {} blocks at {}", id,
              nodes_[std::size_t(id)].size(), head);
  const std::int32_t h = take_slot();   // may move nodes_: references are taken after
  node& top = nodes_[std::size_t(h)];
  node& tail = nodes_[std::size_t(id)];
  const auto head_tokens = std::ptrdiff_t(head) * block_tokens_;
  top.parent = tail.parent;
  top.children = 1;
  top.key = tail.key;   // the same first block under the same parent
  top.last_used = tail.last_used;
  top.in_use = true;
  top.blocks.assign(tail.blocks.begin(), tail.blocks.begin() + std::ptrdiff_t(head));
  top.tokens.assign(tail.tokens.begin(), tail.tokens.begin() + head_tokens);
  tail.blocks.erase(tail.blocks.begin(), tail.blocks.begin() + std::ptrdiff_t(head));
  tail.tokens.erase(tail.tokens.begin(), tail.tokens.begin() + head_tokens);
  const bool erased = children_.erase(tail.key, id);
  DSRT_ASSERT(erased, "node {} missing from its parent's children", id);
  children_.insert(top.key, h);
  tail.parent = h;
  tail.key = child_key(h, node_block(tail, 0));
  children_.insert(tail.key, id);
  ++stats_.splits;
  return h;
}

void prefix_index::drop_last_block(std::int32_t id) {
  node& n = nodes_[std::size_t(id)];
  DSRT_ASSERT(n.in_use && n.children == 0 && !n.blocks.empty(), "node {} in_use={} children={}", id, n.in_use,
              n.children);
  blocks_.release_block(n.blocks.back());
  n.blocks.pop_back();
  n.tokens.resize(n.tokens.size() - std::size_t(block_tokens_));
  --blocks_in_use_;
  if (n.blocks.empty()) {
    remove_leaf(id);
    return;
  }
  leaves_[std::size_t(leaf_at_[std::size_t(id)])].last_block = n.blocks.back();
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
  for (std::int32_t block : n.blocks) blocks_.release_block(block);
  blocks_in_use_ -= std::int32_t(n.blocks.size());
  n.blocks.clear();
  n.in_use = false;
  free_slots_.push_back(id);
  --nodes_in_use_;
}

engine::sequence_blocks prefix_index::match(std::span<const std::int32_t> tokens,
                                            std::uint64_t tick) {
  ++stats_.lookups;
  engine::sequence_blocks seq;
  const std::size_t matchable = matchable_blocks(tokens);
  std::int32_t parent = root;
  std::size_t i = 0;
  while (i < matchable) {
    std::int32_t child = find_child(parent, block_of(tokens, i));
    if (child < 0) break;
    const std::size_t common = common_blocks(child, tokens, i, matchable - i);
    const bool partly = common < nodes_[std::size_t(child)].size();
    if (partly) child = split(child, common);   // only its first blocks are used now
    touch(child, tick);
    for (std::int32_t block : nodes_[std::size_t(child)].blocks) {
      blocks_.add_ref(block);
      seq.table.push_back(block);
    }
    i += common;
    if (partly) break;
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
  const std::size_t matchable = matchable_blocks(tokens);
  std::int32_t parent = root;
  std::size_t i = 0;
  while (i < matchable) {
    const std::int32_t child = find_child(parent, block_of(tokens, i));
    if (child < 0) break;
    const std::size_t common = common_blocks(child, tokens, i, matchable - i);
    i += common;
    if (common < nodes_[std::size_t(child)].size()) break;
    parent = child;
  }
  return std::int32_t(i);
}

std::int32_t prefix_index::insert_victim(std::int32_t keep) const {
  // The least recently used leaf, unless that is `keep`; then the oldest of its heap
  // children, the next oldest leaves.
  if (!leaves_.empty() && leaves_[0].id != keep) return leaves_[0].id;
  std::size_t victim = 0;
  for (std::size_t at = 1; at <= leaf_arity && at < leaves_.size(); ++at)
    if (victim == 0 || older(leaves_[at].last_used, leaves_[at].id, leaves_[victim].last_used, leaves_[victim].id))
      victim = at;
  return victim == 0 ? -1 : leaves_[victim].id;
}

void prefix_index::insert(std::span<const std::int32_t> tokens,
                          std::span<const std::int32_t> table, std::uint64_t tick) {
  insert_path(tokens, table, tick, nullptr);
}

void prefix_index::insert(std::span<const std::int32_t> tokens, std::span<const std::int32_t> table,
                          std::uint64_t tick, std::vector<std::int32_t>& donor) {
  DSRT_ASSERT(tokens.empty() || (tokens.data() == donor.data() && tokens.size() <= donor.size()),
              "the tokens are not a prefix of the donor");
  insert_path(tokens, table, tick, &donor);
}

void prefix_index::insert_path(std::span<const std::int32_t> tokens, std::span<const std::int32_t> table,
                               std::uint64_t tick, std::vector<std::int32_t>* donor) {
  const std::size_t full_blocks = tokens.size() / std::size_t(block_tokens_);
  DSRT_ASSERT(table.size() >= full_blocks, "table holds {} blocks for {} full blocks of tokens",
              table.size(), full_blocks);
  std::int32_t parent = root;
  std::size_t i = 0;
  std::optional<std::uint64_t> new_key;   // the new node's key, when the walk computed it
  while (i < full_blocks) {   // the blocks the tree already holds stay; the caller's duplicates are not added
    const std::uint64_t key = child_key(parent, block_of(tokens, i));
    std::int32_t child = find_child(parent, block_of(tokens, i), key);
    if (child < 0) {
      new_key = key;
      break;
    }
    const std::size_t common = common_blocks(child, tokens, i, full_blocks - i);
    if (common < nodes_[std::size_t(child)].size()) child = split(child, common);
    touch(child, tick);
    parent = child;
    i += common;
  }
  // The rest is new: one node under `parent`. Room first, within cached_blocks_max, by
  // dropping least recently used leaves' last blocks, never `parent` (dropping the path this
  // call holds would orphan what is being added); then the blocks that fit go in at once.
  // The same blocks go, in the same order, as making room block by block while appending:
  // the new node is the newest leaf, which no drop would take while another leaf is left.
  std::size_t room = std::size_t(cached_blocks_max_ - blocks_in_use_);
  while (room < full_blocks - i) {
    const std::int32_t victim = insert_victim(parent);
    if (victim < 0) break;   // the tree is this path alone: record what fits
    drop_last_block(victim);
    ++stats_.evicted_blocks;
    ++room;
  }
  const std::size_t end = std::min(full_blocks, i + room);
  if (i < end) add_node(parent, tokens.subspan(i * std::size_t(block_tokens_), (end - i) * std::size_t(block_tokens_)),
                        table.subspan(i, end - i), tick, donor, new_key);
}

std::int32_t prefix_index::evict(std::int32_t blocks_wanted) {
  // Oldest leaf first, from its last block (a parent left without children joins the heap
  // by its own age); leaves in use step out of the heap while the scan passes them and go
  // back after.
  std::int32_t freed = 0;
  std::vector<std::int32_t> in_use;
  while (freed < blocks_wanted && !leaves_.empty()) {
    const std::int32_t id = leaves_[0].id;
    // The next oldest leaves are the root's children in the heap: their nodes and their
    // last blocks' counts (cold since their last use) load while this one's blocks go.
    for (std::size_t at = 1; at <= leaf_arity && at < leaves_.size(); ++at) {
      __builtin_prefetch(&nodes_[std::size_t(leaves_[at].id)]);
      blocks_.prefetch_refcount(leaves_[at].last_block);
    }
    if (blocks_.refcount(leaves_[0].last_block) != 1) {   // a sequence uses it; so its ancestors
      drop_leaf(id);
      in_use.push_back(id);
      continue;
    }
    drop_last_block(id);
    ++freed;
    ++stats_.evicted_blocks;
  }
  for (std::int32_t id : in_use) add_leaf(id);
  return freed;
}

void prefix_index::check_invariants() const {
  std::vector<std::int32_t> children(nodes_.size(), 0);
  std::int32_t live = 0, blocks = 0;
  for (const node& n : nodes_) {
    if (!n.in_use) continue;
    ++live;
    blocks += std::int32_t(n.size());
    DSRT_ASSERT(!n.blocks.empty() && n.tokens.size() == n.size() * std::size_t(block_tokens_),
                "a node holds {} blocks and {} tokens", n.size(), n.tokens.size());
    for (std::int32_t block : n.blocks)
      DSRT_ASSERT(blocks_.refcount(block) >= 1, "a node's block {} has no reference", block);
    if (n.parent != root) {
      DSRT_ASSERT(nodes_[std::size_t(n.parent)].in_use, "a node's parent {} is gone", n.parent);
      ++children[std::size_t(n.parent)];
    }
    DSRT_ASSERT(n.key == child_key(n.parent, node_block(n, 0)), "a node's key does not name its parent and block");
  }
  DSRT_ASSERT(live == nodes_in_use_ && blocks == blocks_in_use_ && blocks <= cached_blocks_max_,
              "{} live nodes ({} counted) hold {} blocks ({} counted), at most {}", live, nodes_in_use_, blocks,
              blocks_in_use_, cached_blocks_max_);
  DSRT_ASSERT(children_.size() == std::size_t(live), "{} child entries for {} nodes", children_.size(), live);
  std::size_t leaves = 0;
  for (std::size_t id = 0; id < nodes_.size(); ++id) {
    const node& n = nodes_[id];
    if (!n.in_use) continue;
    DSRT_ASSERT(find_child(n.parent, node_block(n, 0)) == std::int32_t(id), "node {} is not its parent's child", id);
    DSRT_ASSERT(n.children == children[id], "node {} counts {} children, has {}", id, n.children, children[id]);
    DSRT_ASSERT((n.children == 0) == (leaf_at_[id] >= 0), "node {} with {} children has leaf place {}", id,
                n.children, leaf_at_[id]);
    leaves += n.children == 0;
  }
  DSRT_ASSERT(leaves == leaves_.size(), "{} leaves, {} in the heap", leaves, leaves_.size());
  for (std::size_t at = 0; at < leaves_.size(); ++at) {
    const leaf& l = leaves_[at];
    const node& n = nodes_[std::size_t(l.id)];
    DSRT_ASSERT(n.in_use && leaf_at_[std::size_t(l.id)] == std::int32_t(at) && n.last_used == l.last_used &&
                    !n.blocks.empty() && n.blocks.back() == l.last_block,
                "heap entry {} (node {}) is out of step with its node", at, l.id);
    if (at > 0) {
      const leaf& up = leaves_[(at - 1) / leaf_arity];
      DSRT_ASSERT(!older(l.last_used, l.id, up.last_used, up.id), "heap order broken at {}", at);
    }
  }
}

void prefix_index::clear() {
  for (node& n : nodes_) {
    if (!n.in_use) continue;
    for (std::int32_t block : n.blocks) blocks_.release_block(block);
  }
  nodes_.clear();
  leaf_at_.clear();
  free_slots_.clear();
  children_.clear();
  leaves_.clear();
  nodes_in_use_ = 0;
  blocks_in_use_ = 0;
}

}  // namespace dsrt::cache
