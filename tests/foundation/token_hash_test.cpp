#include "runtime/token_hash.h"

#include <gtest/gtest.h>

#include <set>
#include <vector>

namespace dsrt {
namespace {

std::uint64_t hash(const std::vector<std::int32_t>& tokens, std::uint64_t seed = 7) {
  return hash_tokens(tokens, seed);
}

TEST(TokenHash, EqualSequencesHashEqual) {
  const std::vector<std::int32_t> a{5, 9, 1, 44, 3, 8, 2, 7, 6, 0, 11};
  EXPECT_EQ(hash(a), hash(std::vector<std::int32_t>(a)));
}

TEST(TokenHash, LengthOrderSeedAndEveryPositionChangeTheHash) {
  std::set<std::uint64_t> seen;
  std::vector<std::int32_t> tokens;
  // Every length from 0 to 40 (the lanes' full words, the pairs and the odd tail), each
  // with one token changed at every position, and a zero appended: all distinct.
  std::size_t hashed = 0;
  for (int n = 0; n <= 40; ++n) {
    seen.insert(hash(tokens));
    ++hashed;
    for (std::size_t k = 0; k < tokens.size(); ++k) {
      auto changed = tokens;
      changed[k] ^= 1 << (k % 31);
      seen.insert(hash(changed));
      ++hashed;
    }
    tokens.push_back(n % 3 == 0 ? 0 : 1000 + n);
  }
  EXPECT_EQ(seen.size(), hashed);
  EXPECT_NE(hash({1, 2}), hash({2, 1}));
  EXPECT_NE(hash({1, 2}), hash({1, 2, 0}));
  EXPECT_NE(hash({1, 2}, 1), hash({1, 2}, 2));
  EXPECT_NE(hash({-1}), hash({0, -1}));
}

TEST(TokenHash, IsTheSameEverywhere) {
  // The simulator's traces depend on this value (the router's prefix affinity): a change
  // of the function must be deliberate, and shows here.
  EXPECT_EQ(hash_tokens(std::vector<std::int32_t>{1, 2, 3, 4, 5, 6, 7, 8, 9}, 0x51ed270b27bd6c19ull),
            0xfab771b84773cf28ull);
}

}  // namespace
}  // namespace dsrt
