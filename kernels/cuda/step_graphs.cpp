#include "kernels/cuda/step_graphs.h"

#include "kernels/assert.h"

namespace dsrt::kernels::cuda {
namespace {

std::uint64_t hash_bytes(std::span<const std::byte> bytes) {
  std::uint64_t h = 0x9e3779b97f4a7c15ull ^ bytes.size();
  std::size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    std::uint64_t word;
    std::memcpy(&word, bytes.data() + i, 8);
    h = (h ^ word) * 0xff51afd7ed558ccdull;
    h ^= h >> 32;
  }
  for (; i < bytes.size(); ++i) h = (h ^ std::uint64_t(bytes[i])) * 0x100000001b3ull;
  return h ^ (h >> 29);
}

}  // namespace

step_recorder::step_recorder(hooks h, bool enabled, std::size_t graphs_max,
                             std::size_t segment_launches, std::size_t first_segment_launches)
    : hooks_(std::move(h)),
      enabled_(enabled),
      graphs_max_(graphs_max),
      segment_launches_(segment_launches),
      first_segment_launches_(first_segment_launches) {
  DSRT_ASSERT(graphs_max_ > 0 && segment_launches_ > 0 && first_segment_launches_ > 0,
              "graphs_max {} segment_launches {} first {}", graphs_max_, segment_launches_,
              first_segment_launches_);
}

void step_recorder::idle() {
  flush();
  first_segment_ = true;
}

step_recorder::~step_recorder() {
  for (auto& e : entries_)
    if (e.graph != nullptr) hooks_.destroy(e.graph);
}

void step_recorder::record(std::span<const std::byte> key, std::function<void()> run) {
  if (!enabled_) {
    run();
    return;
  }
  // Each launch's key with its length first, so that boundaries cannot shift.
  const auto length = std::uint32_t(key.size());
  const auto* l = reinterpret_cast<const std::byte*>(&length);
  key_.insert(key_.end(), l, l + sizeof length);
  key_.insert(key_.end(), key.begin(), key.end());
  runs_.push_back(std::move(run));
  if (runs_.size() >= (first_segment_ ? first_segment_launches_ : segment_launches_)) flush();
}

void step_recorder::run_eagerly() {
  for (auto& run : runs_) run();
  ++stats_.eager_segments;
}

void step_recorder::evict_one() {
  const std::size_t slot = lru_.back();
  lru_.pop_back();
  entry& e = entries_[slot];
  if (e.graph != nullptr) hooks_.destroy(e.graph);
  for (auto [it, end] = by_hash_.equal_range(e.hash); it != end; ++it)
    if (it->second == slot) {
      by_hash_.erase(it);
      break;
    }
  e = entry{};
  free_slots_.push_back(slot);
  ++stats_.evictions;
}

void step_recorder::flush() {
  if (runs_.empty()) return;
  const std::uint64_t h = hash_bytes(key_);
  entry* found = nullptr;
  for (auto [it, end] = by_hash_.equal_range(h); it != end; ++it) {
    entry& e = entries_[it->second];
    if (e.key.size() == key_.size() && std::memcmp(e.key.data(), key_.data(), key_.size()) == 0) {
      found = &e;
      break;
    }
  }
  if (found == nullptr) {
    // First sighting: run it, remember it.
    run_eagerly();
    if (sequences() >= graphs_max_) evict_one();
    std::size_t slot;
    if (!free_slots_.empty()) {
      slot = free_slots_.back();
      free_slots_.pop_back();
    } else {
      slot = entries_.size();
      entries_.emplace_back();
    }
    entry& e = entries_[slot];
    e.hash = h;
    e.key = key_;
    lru_.push_front(slot);
    e.lru = lru_.begin();
    by_hash_.emplace(h, slot);
  } else {
    lru_.splice(lru_.begin(), lru_, found->lru);
    if (found->graph == nullptr && !found->capture_failed) {
      // Second sighting: capture it (the capture issues nothing; the launch below runs it).
      found->graph = hooks_.capture([this] {
        for (auto& run : runs_) run();
      });
      if (found->graph != nullptr) {
        ++stats_.captures;
      } else {
        found->capture_failed = true;
        ++stats_.capture_failures;
      }
    }
    if (found->graph != nullptr) {
      hooks_.launch(found->graph);
      ++stats_.graph_launches;
    } else {
      run_eagerly();
    }
  }
  key_.clear();
  runs_.clear();
  first_segment_ = false;
}

}  // namespace dsrt::kernels::cuda
