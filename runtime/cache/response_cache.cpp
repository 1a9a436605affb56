#include "runtime/cache/response_cache.h"

#include <functional>
#include <iterator>
#include <limits>
#include <string_view>
#include <utility>

#include "kernels/assert.h"
#include "runtime/random.h"
#include "runtime/token_hash.h"

namespace dsrt::cache {
namespace {

// Mixes one 64-bit word into a running hash with splitmix64's finalizer.
void mix(std::uint64_t& hash, std::uint64_t word) {
  std::uint64_t state = hash ^ word;
  hash = splitmix64(state);
}

// The tokens' hash takes in their count: [1][2,3] and [1,2][3] in two fields hash apart.
void mix_tokens(std::uint64_t& hash, std::span<const std::int32_t> tokens) {
  mix(hash, hash_tokens(tokens, hash));
}

void mix_string(std::uint64_t& hash, std::string_view text) {
  mix(hash, text.size());
  mix(hash, std::hash<std::string_view>{}(text));
}

// What a container costs beyond its elements (list node, index entry, vector headers),
// roughly; the point is that an entry is never counted as free.
constexpr std::int64_t entry_overhead_bytes = 256;

}  // namespace

response_cache::response_cache(const response_cache_config& config) : config_(config) {
  DSRT_ASSERT(config_.entries_max >= 0 && config_.entries_max <= std::numeric_limits<std::int32_t>::max() &&
                  config_.bytes_max >= 0,
              "entries_max={} bytes_max={}", config_.entries_max, config_.bytes_max);
}

std::uint64_t key_hash(std::string_view model, std::span<const std::int32_t> prompt, std::int32_t max_tokens,
                       std::span<const std::int32_t> stop_token_ids, std::span<const std::string> stop_strings) {
  std::uint64_t hash = 0;
  mix_string(hash, model);
  mix_tokens(hash, prompt);
  mix(hash, std::uint32_t(max_tokens));
  mix_tokens(hash, stop_token_ids);
  mix(hash, stop_strings.size());
  for (const std::string& stop : stop_strings) mix_string(hash, stop);
  return hash;
}

std::uint64_t key_hash(const response_key& key) {
  return key_hash(key.model, key.prompt, key.max_tokens, key.stop_token_ids, key.stop_strings);
}

std::int64_t response_cache::entry_bytes(const response_key& key,
                                         const cached_response& response) {
  std::int64_t bytes = entry_overhead_bytes;
  bytes += std::int64_t(key.model.size());
  bytes += std::int64_t(key.prompt.size() * sizeof(std::int32_t));
  bytes += std::int64_t(key.stop_token_ids.size() * sizeof(std::int32_t));
  for (const std::string& stop : key.stop_strings) {
    bytes += std::int64_t(sizeof(std::string) + stop.size());
  }
  bytes += std::int64_t(response.tokens.size() * sizeof(std::int32_t));
  bytes += std::int64_t(response.text.size());
  return bytes;
}

void response_cache::advance_tick(std::uint64_t tick) {
  // The entries are listed by last use; a tick going back would make that order a lie.
  DSRT_ASSERT(tick >= tick_, "tick={} went back from {}", tick, tick_);
  tick_ = tick;
}

std::int32_t response_cache::find_entry(const response_key& key, std::uint64_t hash) const {
  return index_.find_if(hash, [&](std::int32_t slot) { return entries_[std::size_t(slot)].key == key; });
}

void response_cache::link_newest(std::int32_t slot) {
  entry& e = entries_[std::size_t(slot)];
  e.newer = none;
  e.older = newest_;
  if (newest_ != none) entries_[std::size_t(newest_)].newer = slot;
  newest_ = slot;
  if (oldest_ == none) oldest_ = slot;
}

void response_cache::unlink(std::int32_t slot) {
  entry& e = entries_[std::size_t(slot)];
  (e.newer != none ? entries_[std::size_t(e.newer)].older : newest_) = e.older;
  (e.older != none ? entries_[std::size_t(e.older)].newer : oldest_) = e.newer;
  e.newer = e.older = none;
}

void response_cache::erase(std::int32_t slot) {
  entry& e = entries_[std::size_t(slot)];
  const bool indexed = index_.erase(e.hash, slot);
  DSRT_ASSERT(indexed, "entry {} missing from the index", slot);
  unlink(slot);
  bytes_ -= e.bytes;
  e = entry{};   // gives its key's and response's memory back now
  free_slots_.push_back(slot);
  --size_;
  DSRT_ASSERT(bytes_ >= 0 && std::int64_t(index_.size()) == size_, "bytes={} index={} entries={}", bytes_,
              index_.size(), size_);
}

std::optional<cached_response> response_cache::find(const response_key& key,
                                                    std::uint64_t tick) {
  advance_tick(tick);
  ++stats_.lookups;
  const std::int32_t slot = find_entry(key, key_hash(key));
  if (slot == none) return std::nullopt;
  ++stats_.hits;
  unlink(slot);
  link_newest(slot);
  return entries_[std::size_t(slot)].response;
}

void response_cache::insert(response_key key, cached_response response, std::uint64_t tick) {
  const std::uint64_t hash = key_hash(key);
  insert(std::move(key), hash, std::move(response), tick);
}

void response_cache::insert(response_key key, std::uint64_t hash, cached_response response, std::uint64_t tick) {
#ifndef NDEBUG
  DSRT_ASSERT(hash == key_hash(key), "a key passed with hash {:x}, its own is {:x}", hash, key_hash(key));
#endif
  advance_tick(tick);
  // An older response under the same key is superseded whether or not the new one fits.
  if (const std::int32_t old = find_entry(key, hash); old != none) erase(old);
  const std::int64_t bytes = entry_bytes(key, response);
  if (bytes > config_.bytes_max || config_.entries_max == 0) {
    ++stats_.not_stored;
    return;
  }
  while (oldest_ != none && (size_ + 1 > config_.entries_max || bytes_ + bytes > config_.bytes_max)) {
    erase(oldest_);
    ++stats_.evicted;
  }
  std::int32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = std::int32_t(entries_.size());
    entries_.emplace_back();
  }
  entry& e = entries_[std::size_t(slot)];
  e.key = std::move(key);
  e.response = std::move(response);
  e.hash = hash;
  e.bytes = bytes;
  link_newest(slot);
  index_.insert(hash, slot);
  bytes_ += bytes;
  ++size_;
  ++stats_.inserted;
}

}  // namespace dsrt::cache
