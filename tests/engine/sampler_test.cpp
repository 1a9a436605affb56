// Token sampling: greedy, seeding, top-k, top-p, min-p, the distribution at temperature 1,
// and parameter validation.
#include "runtime/engine/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <limits>
#include <set>

namespace dsrt::engine {
namespace {

// Logits whose softmax is the given probabilities.
std::vector<float> logits_of(const std::vector<double>& probs) {
  std::vector<float> out;
  for (double p : probs) out.push_back(float(std::log(p)));
  return out;
}

std::vector<float> random_logits(std::size_t n, std::uint64_t seed) {
  rng r(seed);
  std::vector<float> out;
  for (std::size_t i = 0; i < n; ++i) out.push_back(float(r.uniform() * 4.0 - 2.0));
  return out;
}

TEST(Sampler, GreedyIsArgmaxWithTheLowestIdOnTies) {
  sampler s({.temperature = 0.0f});
  EXPECT_EQ(s.sample(std::vector<float>{1.0f, 3.0f, 3.0f, 2.0f}), 1);
  EXPECT_EQ(s.sample(std::vector<float>{5.0f, 5.0f}), 0);
  EXPECT_EQ(s.sample(std::vector<float>{-1.0f, -0.5f, -0.25f}), 2);
  for (std::uint64_t seed = 0; seed < 50; ++seed) {
    const auto logits = random_logits(100, seed);
    const auto best = std::max_element(logits.begin(), logits.end()) - logits.begin();
    EXPECT_EQ(s.sample(logits), best) << "row " << seed;
  }
}

TEST(Sampler, NanLogitsAreNeverChosenAndTinyTemperatureIsGreedy) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> logits = {nan, 0.5f, nan, 2.0f, 1.0f, nan};
  for (std::uint64_t seed = 0; seed < 200; ++seed) {
    sampler s({.temperature = 1.0f, .top_p = 0.95f, .seed = seed});
    const auto id = s.sample(logits);
    EXPECT_FALSE(std::isnan(logits[std::size_t(id)])) << "seed " << seed << " chose NaN id " << id;
  }
  sampler tiny({.temperature = 1e-30f, .seed = 3});
  EXPECT_EQ(tiny.sample(std::vector<float>{0.1f, 0.3f, 0.2f}), 1);
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDifferentTokens) {
  const auto logits = random_logits(64, 1);
  const sampling_params p{.temperature = 1.0f, .seed = 7};
  sampler a(p), b(p), c({.temperature = 1.0f, .seed = 8});
  std::vector<std::int32_t> ta, tb, tc;
  for (int i = 0; i < 200; ++i) {
    ta.push_back(a.sample(logits));
    tb.push_back(b.sample(logits));
    tc.push_back(c.sample(logits));
  }
  EXPECT_EQ(ta, tb);
  EXPECT_NE(ta, tc);
  EXPECT_GT(std::set<std::int32_t>(ta.begin(), ta.end()).size(), 10u) << "not sampling at all";
}

TEST(Sampler, TopKOneIsGreedy) {
  sampler s({.temperature = 0.8f, .top_k = 1, .seed = 3});
  for (std::uint64_t row = 0; row < 200; ++row) {
    const auto logits = random_logits(50, 100 + row);
    const auto best = std::max_element(logits.begin(), logits.end()) - logits.begin();
    EXPECT_EQ(s.sample(logits), best) << "row " << row;
  }
}

TEST(Sampler, TopKNeverLeavesTheKBest) {
  constexpr int k = 5;
  const auto logits = random_logits(50, 9);
  std::vector<std::int32_t> order(logits.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = std::int32_t(i);
  std::sort(order.begin(), order.end(), [&](auto a, auto b) { return logits[a] > logits[b]; });
  const std::set<std::int32_t> best(order.begin(), order.begin() + k);
  sampler s({.temperature = 2.0f, .top_k = k, .seed = 11});
  std::set<std::int32_t> seen;
  for (int draw = 0; draw < 5000; ++draw) {
    const std::int32_t t = s.sample(logits);
    EXPECT_TRUE(best.count(t)) << "token " << t << " outside the top " << k << " at draw " << draw;
    seen.insert(t);
  }
  EXPECT_EQ(seen, best) << "every one of the k best should come up in 5000 draws";
}

TEST(Sampler, SmallTopPKeepsOnlyADominantToken) {
  const auto logits = logits_of({0.97, 0.01, 0.01, 0.01});
  sampler narrow({.temperature = 1.0f, .top_p = 0.5f, .seed = 5});
  for (int draw = 0; draw < 2000; ++draw) EXPECT_EQ(narrow.sample(logits), 0) << "at draw " << draw;
  // Wide enough to include the others: they do come up.
  sampler wide({.temperature = 1.0f, .top_p = 0.999f, .seed = 5});
  int others = 0;
  for (int draw = 0; draw < 2000; ++draw) others += wide.sample(logits) != 0;
  EXPECT_GT(others, 20);
}

// A nearly flat distribution over 1,000 ids: top-p's set is hundreds of tokens, past the
// first rounds of the sampler's progressive sort (64, 256, then 1,024). No draw may leave the
// smallest set of the most probable tokens whose mass reaches top_p, computed here by a full
// sort, and draws reach deep into it.
TEST(Sampler, TopPOverAFlatDistributionKeepsExactlyTheSmallestSetReachingTheMass) {
  std::vector<float> logits(1000);
  for (std::size_t i = 0; i < logits.size(); ++i)
    logits[i] = 0.001f * float((i * 7919) % 1000);   // distinct values, shuffled over the ids
  const float top_p = 0.8f;
  std::vector<std::pair<double, std::int32_t>> ranked;
  double total = 0;
  const float max = *std::max_element(logits.begin(), logits.end());
  for (std::size_t i = 0; i < logits.size(); ++i) {
    ranked.emplace_back(std::exp(double(logits[i] - max)), std::int32_t(i));
    total += ranked.back().first;
  }
  std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::set<std::int32_t> allowed;
  double mass = 0;
  for (const auto& [p, id] : ranked) {
    allowed.insert(id);
    mass += p / total;
    if (mass >= top_p) break;
  }
  ASSERT_GT(allowed.size(), 300u) << "the case must need more than the first sorting rounds";
  sampler s({.temperature = 1.0f, .top_p = top_p, .seed = 11});
  std::set<std::int32_t> seen;
  for (int draw = 0; draw < 3000; ++draw) {
    const std::int32_t t = s.sample(logits);
    ASSERT_TRUE(allowed.count(t)) << "token " << t << " is outside the top-p set at draw " << draw;
    seen.insert(t);
  }
  EXPECT_GT(seen.size(), allowed.size() / 2) << "draws should spread over the set";
}

TEST(Sampler, MinPDropsTokensBelowTheThreshold) {
  // min_p 0.2 x top probability 0.5 = 0.1: token 3 (0.05) is out, token 2 (0.15) is in.
  const auto logits = logits_of({0.5, 0.3, 0.15, 0.05});
  sampler s({.temperature = 1.0f, .min_p = 0.2f, .seed = 17});
  std::vector<int> counts(4, 0);
  for (int draw = 0; draw < 10000; ++draw) {
    const std::int32_t t = s.sample(logits);
    EXPECT_NE(t, 3) << "at draw " << draw;
    ++counts[std::size_t(t)];
  }
  EXPECT_GT(counts[2], 1000) << "token 2 (0.15 / 0.95 after renormalizing) must stay";
}

TEST(Sampler, FrequenciesAtTemperatureOneMatchSoftmax) {
  const std::vector<double> probs = {0.1, 0.2, 0.3, 0.4};
  // Shifted logits: softmax must not depend on the offset.
  auto logits = logits_of(probs);
  for (float& l : logits) l += 3.0f;
  constexpr int draws = 20000;
  sampler s({.temperature = 1.0f, .seed = 2024});
  std::vector<int> counts(probs.size(), 0);
  for (int draw = 0; draw < draws; ++draw) ++counts[std::size_t(s.sample(logits))];
  for (std::size_t i = 0; i < probs.size(); ++i) {
    const double expected = draws * probs[i];
    const double standard_error = std::sqrt(draws * probs[i] * (1 - probs[i]));
    EXPECT_LE(std::abs(counts[i] - expected), 4 * standard_error)
        << "token " << i << ": " << counts[i] << " draws, expected " << expected;
    std::cout << "token " << i << ": " << counts[i] << " of " << draws << " (expected " << expected
              << ", " << (counts[i] - expected) / standard_error << " standard errors)\n";
  }
}

TEST(Sampler, ValidateRejectsEachBadFieldByName) {
  EXPECT_TRUE(validate({}).ok());
  EXPECT_TRUE(validate({.temperature = 100.0f, .top_k = 3, .top_p = 1.0f, .min_p = 1.0f}).ok());
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct bad_case {
    sampling_params params;
    const char* field;
  };
  const bad_case cases[] = {
      {{.temperature = -0.1f}, "temperature"}, {{.temperature = 100.5f}, "temperature"},
      {{.temperature = nan}, "temperature"},   {{.top_k = -1}, "top_k"},
      {{.top_p = 0.0f}, "top_p"},              {{.top_p = 1.01f}, "top_p"},
      {{.top_p = nan}, "top_p"},               {{.min_p = -0.01f}, "min_p"},
      {{.min_p = 1.5f}, "min_p"},              {{.min_p = nan}, "min_p"},
  };
  for (std::size_t i = 0; i < std::size(cases); ++i) {
    const auto s = validate(cases[i].params);
    ASSERT_FALSE(s.ok()) << "case " << i << " (" << cases[i].field << ")";
    EXPECT_EQ(s.err().code, error_code::invalid_argument) << "case " << i;
    EXPECT_NE(s.err().message.find(cases[i].field), std::string::npos)
        << "case " << i << ": message '" << s.err().message << "' does not name " << cases[i].field;
  }
}

}  // namespace
}  // namespace dsrt::engine
