#pragma once
// The response cache: final outputs of deterministic requests, found again by an exact
// match on everything that decides the output. A greedy (temperature 0) request with the
// same model, prompt, token budget and stop conditions produces the same tokens, so a
// repeat is answered without a replica; the router also uses it as the fallback when no
// replica can serve a request.
//
// Ownership: the cache owns copies of its keys and responses; find() returns a copy so the
// answer stays valid after later inserts evict the entry.
// Thread safety: none; one owner calls it.
// Time: recency is a logical tick passed in by the caller, never decreasing; the cache
// reads no clock.
//
// REQUIRES of callers: only deterministic requests (temperature 0) go in; the cache cannot
// tell a sampled output from a greedy one.
//
// Invariants:
//  - size() <= entries_max and bytes() <= bytes_max;
//  - bytes() is the sum of entry_bytes() over the entries held;
//  - the entries in use form one list by last use (newest_ to oldest_ through `older`, and
//    back through `newer`), and index_ holds one element per entry, under its key's hash.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/cache/key_slots.h"

namespace dsrt::cache {

// Why a generation ended. It mirrors engine::finish_reason; defined here so the router can
// use this header without the engine's model headers.
enum class finish_reason { stop, length };

// Everything that decides a deterministic output. Two requests hit the same entry only
// when every field is equal.
struct response_key {
  std::string model;                          // the model name and revision served
  std::vector<std::int32_t> prompt;           // token ids after the chat template
  std::int32_t max_tokens = 0;
  std::vector<std::int32_t> stop_token_ids;
  std::vector<std::string> stop_strings;

  bool operator==(const response_key&) const = default;
};

// The hash the cache files a key under: the same in every process and build. The second
// form takes a key's parts, for a caller that holds them but builds the key later (the
// router hashes a prompt at admission, while it is in the CPU's cache, and hands the hash
// over with the key when the request completes).
std::uint64_t key_hash(const response_key& key);
std::uint64_t key_hash(std::string_view model, std::span<const std::int32_t> prompt, std::int32_t max_tokens,
                       std::span<const std::int32_t> stop_token_ids, std::span<const std::string> stop_strings);

struct cached_response {
  std::vector<std::int32_t> tokens;  // generated tokens, without a stop token
  std::string text;
  finish_reason reason = finish_reason::length;

  bool operator==(const cached_response&) const = default;
};

struct response_cache_config {
  std::int64_t entries_max = 4096;             // at most 2^31 - 1
  std::int64_t bytes_max = std::int64_t(64) << 20;  // as counted by entry_bytes()
};

class response_cache {
 public:
  struct stats {
    std::int64_t lookups = 0;
    std::int64_t hits = 0;
    std::int64_t inserted = 0;
    std::int64_t evicted = 0;     // entries dropped to stay within entries_max or bytes_max
    std::int64_t not_stored = 0;  // inserts refused: past bytes_max, or entries_max is 0
  };

  explicit response_cache(const response_cache_config& config);

  // The response stored under `key`, marked used at `tick`; counts a lookup and a hit.
  // REQUIRES: tick >= every tick passed before.
  std::optional<cached_response> find(const response_key& key, std::uint64_t tick);

  // Stores `response` under `key` as the most recently used entry, replacing one stored
  // under an equal key, and drops least recently used entries until both limits hold. An
  // entry whose entry_bytes() exceed bytes_max (or any entry when entries_max is 0) is not
  // stored, and an older entry under the same key is dropped since it is superseded.
  // REQUIRES: tick >= every tick passed before.
  void insert(response_key key, cached_response response, std::uint64_t tick);
  // The same with the key's hash known. REQUIRES: hash == key_hash(key) (checked in debug
  // builds; a wrong one files the entry where no lookup finds it).
  void insert(response_key key, std::uint64_t hash, cached_response response, std::uint64_t tick);

  // The bytes an entry counts against bytes_max: its token ids and strings plus a fixed
  // per-entry overhead for the containers, so many tiny entries still add up.
  static std::int64_t entry_bytes(const response_key& key, const cached_response& response);

  std::int64_t size() const { return size_; }
  std::int64_t bytes() const { return bytes_; }
  const stats& counters() const { return stats_; }

 private:
  static constexpr std::int32_t none = -1;
  // A slot of entries_: an entry in use, or a free one (empty key and response).
  struct entry {
    response_key key;
    cached_response response;
    std::uint64_t hash = 0;
    std::int64_t bytes = 0;
    std::int32_t newer = none, older = none;   // neighbours by last use
  };

  // The slot holding `key`, or none.
  std::int32_t find_entry(const response_key& key, std::uint64_t hash) const;
  void erase(std::int32_t slot);
  void link_newest(std::int32_t slot);
  void unlink(std::int32_t slot);
  void advance_tick(std::uint64_t tick);

  const response_cache_config config_;
  std::vector<entry> entries_;            // slots; at most entries_max
  std::vector<std::int32_t> free_slots_;  // slots of erased entries, reused first
  std::int32_t newest_ = none, oldest_ = none;
  std::int64_t size_ = 0;
  // key hash -> slot, a flat multimap (keys can collide; lookups compare the whole key).
  // One element per entry, so bounded by entries_max.
  key_slots index_;
  std::int64_t bytes_ = 0;
  std::uint64_t tick_ = 0;  // the latest tick seen
  stats stats_;
};

}  // namespace dsrt::cache
