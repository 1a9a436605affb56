// The response cache stepped one call at a time: exact-match hits, misses on every field
// that decides an output, LRU eviction by entries and by bytes, and the byte accounting.
#include "runtime/cache/response_cache.h"

#include <gtest/gtest.h>

#include <functional>

namespace dsrt::cache {
namespace {

response_key key_of(std::int32_t first_token) {
  return response_key{.model = "deepseek-v3@r1",
                      .prompt = {first_token, 2, 3},
                      .max_tokens = 16,
                      .stop_token_ids = {1},
                      .stop_strings = {"\n\n"}};
}

cached_response response_of(std::string text) {
  return cached_response{.tokens = {7, 8}, .text = std::move(text), .reason = finish_reason::stop};
}

TEST(ResponseCache, AKeysHashFromItsPartsIsItsOwnAndFindsIt) {
  const auto k = key_of(1);
  const auto hash = key_hash(k.model, k.prompt, k.max_tokens, k.stop_token_ids, k.stop_strings);
  EXPECT_EQ(hash, key_hash(k));
  // Each part counts, and so do the boundaries between the token lists.
  EXPECT_NE(key_hash(key_of(2)), hash);
  EXPECT_NE(key_hash(k.model, k.prompt, k.max_tokens + 1, k.stop_token_ids, k.stop_strings), hash);
  EXPECT_NE(key_hash(k.model, k.prompt, k.max_tokens, {}, k.stop_strings), hash);
  EXPECT_NE(key_hash("other", k.prompt, k.max_tokens, k.stop_token_ids, k.stop_strings), hash);
  response_cache cache({});
  cache.insert(key_of(1), hash, response_of("hello"), 1);
  ASSERT_TRUE(cache.find(key_of(1), 2).has_value());
  EXPECT_EQ(cache.find(key_of(1), 3)->text, "hello");
}

TEST(ResponseCache, FindsWhatWasInserted) {
  response_cache cache({});
  EXPECT_FALSE(cache.find(key_of(1), 1).has_value());
  cache.insert(key_of(1), response_of("hello"), 2);
  const std::optional<cached_response> found = cache.find(key_of(1), 3);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(*found, response_of("hello"));
  EXPECT_EQ(cache.size(), 1);
  EXPECT_EQ(cache.bytes(), response_cache::entry_bytes(key_of(1), response_of("hello")));
  EXPECT_EQ(cache.counters().lookups, 2);
  EXPECT_EQ(cache.counters().hits, 1);
  EXPECT_EQ(cache.counters().inserted, 1);

  // Inserting under an equal key replaces the response and its bytes.
  cache.insert(key_of(1), response_of("hello there"), 4);
  EXPECT_EQ(cache.size(), 1);
  EXPECT_EQ(cache.find(key_of(1), 5)->text, "hello there");
  EXPECT_EQ(cache.bytes(), response_cache::entry_bytes(key_of(1), response_of("hello there")));
}

TEST(ResponseCache, AnyDifferingFieldMisses) {
  response_cache cache({});
  cache.insert(key_of(1), response_of("hello"), 1);
  const std::vector<std::pair<const char*, std::function<void(response_key&)>>> changes = {
      {"model", [](response_key& k) { k.model = "deepseek-v3@r2"; }},
      {"prompt token", [](response_key& k) { k.prompt[2] = 4; }},
      {"prompt longer", [](response_key& k) { k.prompt.push_back(3); }},
      {"prompt shorter", [](response_key& k) { k.prompt.pop_back(); }},
      {"max_tokens", [](response_key& k) { k.max_tokens = 17; }},
      {"stop token", [](response_key& k) { k.stop_token_ids = {2}; }},
      {"no stop token", [](response_key& k) { k.stop_token_ids.clear(); }},
      {"stop string", [](response_key& k) { k.stop_strings = {"\n"}; }},
      {"extra stop string", [](response_key& k) { k.stop_strings.push_back("END"); }},
  };
  std::uint64_t tick = 2;
  for (const auto& [name, change] : changes) {
    response_key key = key_of(1);
    change(key);
    EXPECT_FALSE(cache.find(key, tick++).has_value()) << "changed " << name;
  }
  EXPECT_TRUE(cache.find(key_of(1), tick).has_value());
  EXPECT_EQ(cache.counters().hits, 1);
}

TEST(ResponseCache, EvictsTheLeastRecentlyUsedEntryPastEntriesMax) {
  response_cache cache({.entries_max = 3});
  std::uint64_t tick = 1;
  for (std::int32_t k = 1; k <= 3; ++k) cache.insert(key_of(k), response_of("r"), tick++);
  ASSERT_TRUE(cache.find(key_of(1), tick++).has_value());  // 2 is now the oldest
  cache.insert(key_of(4), response_of("r"), tick++);
  EXPECT_EQ(cache.size(), 3);
  EXPECT_FALSE(cache.find(key_of(2), tick++).has_value()) << "the least recently used goes";
  for (std::int32_t k : {1, 3, 4}) {
    EXPECT_TRUE(cache.find(key_of(k), tick++).has_value()) << "key " << k;
  }
  EXPECT_EQ(cache.counters().evicted, 1);
}

TEST(ResponseCache, EvictsByBytesAndTheBytesReturnToZero) {
  const std::string text(1000, 'x');
  const std::int64_t one = response_cache::entry_bytes(key_of(1), response_of(text));
  response_cache cache({.entries_max = 100, .bytes_max = 2 * one + one / 2});
  cache.insert(key_of(1), response_of(text), 1);
  cache.insert(key_of(2), response_of(text), 2);
  EXPECT_EQ(cache.bytes(), 2 * one);
  cache.insert(key_of(3), response_of(text), 3);
  EXPECT_EQ(cache.size(), 2) << "two fit in the bytes, whatever entries_max allows";
  EXPECT_EQ(cache.bytes(), 2 * one);
  EXPECT_FALSE(cache.find(key_of(1), 4).has_value());

  // One big entry pushes out both small ones; then one more small one pushes it out.
  const std::string big_text(std::size_t(2 * one), 'y');
  const std::int64_t big = response_cache::entry_bytes(key_of(9), response_of(big_text));
  ASSERT_LE(big, 2 * one + one / 2);
  cache.insert(key_of(9), response_of(big_text), 5);
  EXPECT_EQ(cache.size(), 1);
  EXPECT_EQ(cache.bytes(), big);
  cache.insert(key_of(1), response_of(text), 6);
  EXPECT_EQ(cache.size(), 1);
  EXPECT_EQ(cache.bytes(), one);
  EXPECT_EQ(cache.counters().evicted, 4);
}

TEST(ResponseCache, AnEntryPastBytesMaxIsNotStored) {
  const std::int64_t small = response_cache::entry_bytes(key_of(1), response_of("r"));
  response_cache cache({.entries_max = 10, .bytes_max = small + 10});
  cache.insert(key_of(1), response_of("r"), 1);
  cache.insert(key_of(2), response_of(std::string(100, 'z')), 2);
  EXPECT_FALSE(cache.find(key_of(2), 3).has_value());
  EXPECT_TRUE(cache.find(key_of(1), 4).has_value()) << "a refused entry evicts nothing";
  EXPECT_EQ(cache.counters().not_stored, 1);

  // A response too big to store supersedes an older one under the same key.
  cache.insert(key_of(1), response_of(std::string(100, 'z')), 5);
  EXPECT_FALSE(cache.find(key_of(1), 6).has_value());
  EXPECT_EQ(cache.size(), 0);
  EXPECT_EQ(cache.bytes(), 0);

  response_cache none({.entries_max = 0});
  none.insert(key_of(1), response_of("r"), 1);
  EXPECT_EQ(none.size(), 0);
  EXPECT_EQ(none.bytes(), 0);
}

TEST(ResponseCache, ManyInsertsStayWithinBothLimits) {
  response_cache cache({.entries_max = 8, .bytes_max = 4000});
  for (int step = 0; step < 200; ++step) {
    const std::int32_t k = step % 13;
    cache.insert(key_of(k), response_of(std::string(std::size_t(50 + 37 * k), 'a')),
                 std::uint64_t(step));
    EXPECT_LE(cache.size(), 8) << "at step " << step;
    EXPECT_LE(cache.bytes(), 4000) << "at step " << step;
    EXPECT_TRUE(cache.find(key_of(k), std::uint64_t(step)).has_value()) << "at step " << step;
  }
}

}  // namespace
}  // namespace dsrt::cache
