// key_slots (runtime/cache/key_slots.h) against std::multimap under random inserts and
// erases, with keys chosen to collide in their low bits so that runs wrap and shift.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>

#include "runtime/cache/key_slots.h"

namespace dsrt::cache {
namespace {

std::set<std::int32_t> values_of(const key_slots& t, std::uint64_t key) {
  std::set<std::int32_t> out;
  // find_if visits the key's values in probe order; collect them all.
  t.find_if(key, [&](std::int32_t v) {
    out.insert(v);
    return false;
  });
  return out;
}

TEST(KeySlots, MatchesAMultimapUnderRandomInsertsAndErases) {
  std::mt19937_64 rng(7);
  key_slots table;
  std::multimap<std::uint64_t, std::int32_t> reference;
  // 64 distinct keys whose low 4 bits take only 4 values: long runs around few home slots.
  std::vector<std::uint64_t> keys;
  for (int i = 0; i < 64; ++i) keys.push_back((rng() << 4) | std::uint64_t(i % 4));
  std::int32_t next_value = 0;
  for (int step = 0; step < 20000; ++step) {
    const std::uint64_t key = keys[rng() % keys.size()];
    if (rng() % 3 != 0 || reference.empty()) {
      table.insert(key, next_value);
      reference.emplace(key, next_value++);
    } else {
      auto it = reference.begin();
      std::advance(it, std::ptrdiff_t(rng() % reference.size()));
      ASSERT_TRUE(table.erase(it->first, it->second)) << "step " << step;
      reference.erase(it);
    }
    ASSERT_EQ(table.size(), reference.size());
    if (step % 97 == 0) {
      for (std::uint64_t k : keys) {
        std::set<std::int32_t> expected;
        for (auto [a, b] = reference.equal_range(k); a != b; ++a) expected.insert(a->second);
        ASSERT_EQ(values_of(table, k), expected) << "step " << step << " key " << k;
      }
    }
  }
  EXPECT_FALSE(table.erase(keys[0], next_value));   // never inserted
  table.clear();
  EXPECT_EQ(table.size(), 0u);
  EXPECT_EQ(table.find_if(keys[0], [](std::int32_t) { return true; }), -1);
}

TEST(KeySlots, FindIfReturnsTheFirstValueThePredicateAccepts) {
  key_slots table;
  for (std::int32_t v = 0; v < 10; ++v) table.insert(42, v);
  table.insert(43, 100);
  EXPECT_EQ(table.find_if(42, [](std::int32_t v) { return v == 7; }), 7);
  EXPECT_EQ(table.find_if(42, [](std::int32_t v) { return v == 100; }), -1);
  EXPECT_EQ(table.find_if(43, [](std::int32_t) { return true; }), 100);
  EXPECT_EQ(table.find_if(44, [](std::int32_t) { return true; }), -1);
}

}  // namespace
}  // namespace dsrt::cache
