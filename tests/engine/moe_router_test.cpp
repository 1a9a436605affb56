// The DeepSeek MoE router against a scalar reference written here from transformers'
// DeepseekV3TopkRouter and DeepSeek-V2's MoEGate: full stable sorts by value (descending),
// so ties keep index order, instead of the router's partial selection. Also: ties, the
// correction bias, group masking, normalisation and scaling, and config plumbing.
//
// The reference computes scores with the same f32 formulas as the router (sigmoid
// 1 / (1 + exp(-x)); softmax with a sequential sum), so both rank bit-identical values and
// the chosen experts must match exactly; weights agree within 1e-6 relative.
#include "runtime/engine/moe_router.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "runtime/random.h"

namespace dsrt::engine {
namespace {

using model::scoring_func;
using model::topk_method;

constexpr double tolerance = 1e-6;

struct routed {
  std::vector<std::int32_t> experts;  // [n * top_k]
  std::vector<float> weights;         // [n * top_k]
};

// One token, the obvious way.
void reference_one(const routing_config& c, const float* logits, const float* bias,
                   std::int32_t* out_experts, float* out_weights) {
  const int e = c.experts;
  std::vector<float> scores(std::size_t(e), 0.0f);
  if (c.scoring == scoring_func::sigmoid) {
    for (int i = 0; i < e; ++i) scores[std::size_t(i)] = 1.0f / (1.0f + std::exp(-logits[i]));
  } else {
    const float max = *std::max_element(logits, logits + e);
    float sum = 0.0f;
    for (int i = 0; i < e; ++i) {
      scores[std::size_t(i)] = std::exp(logits[i] - max);
      sum += scores[std::size_t(i)];
    }
    for (float& s : scores) s /= sum;
  }
  std::vector<float> choice = scores;
  if (c.method == topk_method::noaux_tc)
    for (int i = 0; i < e; ++i) choice[std::size_t(i)] += bias[i];

  // Which experts may be chosen.
  std::vector<bool> allowed(std::size_t(e), true);
  if (c.method != topk_method::greedy) {
    const int size = e / c.groups;
    std::vector<float> group_score(std::size_t(c.groups));
    for (int g = 0; g < c.groups; ++g) {
      std::vector<float> members(choice.begin() + g * size, choice.begin() + (g + 1) * size);
      std::sort(members.begin(), members.end(), std::greater<float>());
      group_score[std::size_t(g)] = c.method == topk_method::group_limited_greedy ? members[0]
                                    : size == 1                                  ? members[0]
                                                                   : members[0] + members[1];
    }
    std::vector<int> order(std::size_t(c.groups));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
      return group_score[std::size_t(a)] > group_score[std::size_t(b)];
    });
    std::fill(allowed.begin(), allowed.end(), false);
    for (int j = 0; j < c.topk_groups; ++j)
      for (int i = 0; i < size; ++i) allowed[std::size_t(order[std::size_t(j)] * size + i)] = true;
  }
  std::vector<int> order;
  for (int i = 0; i < e; ++i)
    if (allowed[std::size_t(i)]) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return choice[std::size_t(a)] > choice[std::size_t(b)];
  });
  std::vector<int> chosen(order.begin(), order.begin() + c.top_k);
  std::sort(chosen.begin(), chosen.end());
  double sum = 0;
  for (int id : chosen) sum += scores[std::size_t(id)];
  for (int j = 0; j < c.top_k; ++j) {
    double w = scores[std::size_t(chosen[std::size_t(j)])];
    if (c.norm_topk_prob && c.top_k > 1) w /= sum + 1e-20;
    out_experts[j] = chosen[std::size_t(j)];
    out_weights[j] = float(w * c.routed_scaling_factor);
  }
}

routed reference(const routing_config& c, const std::vector<float>& logits,
                 const std::vector<float>& bias) {
  const std::int64_t n = std::int64_t(logits.size()) / c.experts;
  routed out{std::vector<std::int32_t>(std::size_t(n * c.top_k)),
             std::vector<float>(std::size_t(n * c.top_k))};
  for (std::int64_t t = 0; t < n; ++t)
    reference_one(c, logits.data() + t * c.experts, bias.data(), out.experts.data() + t * c.top_k,
                  out.weights.data() + t * c.top_k);
  return out;
}

routed run(moe_router& router, const std::vector<float>& logits, const std::vector<float>& bias) {
  const routing_config& c = router.config();
  const std::int64_t n = std::int64_t(logits.size()) / c.experts;
  routed out{std::vector<std::int32_t>(std::size_t(n * c.top_k), -1),
             std::vector<float>(std::size_t(n * c.top_k), -1.0f)};
  router.route(logits.data(), n, bias.empty() ? nullptr : bias.data(), out.experts.data(),
               out.weights.data());
  return out;
}

routed run(const routing_config& c, const std::vector<float>& logits,
           const std::vector<float>& bias = {}) {
  moe_router router(c);
  return run(router, logits, bias);
}

std::string describe(const routing_config& c) {
  const char* method = c.method == topk_method::greedy                 ? "greedy"
                       : c.method == topk_method::group_limited_greedy ? "group_limited_greedy"
                                                                       : "noaux_tc";
  return fmt::format("{} experts top-{} in {} groups top-{}, {}, {}, norm={} scale={}", c.experts,
                     c.top_k, c.groups, c.topk_groups, method,
                     c.scoring == scoring_func::sigmoid ? "sigmoid" : "softmax", c.norm_topk_prob,
                     c.routed_scaling_factor);
}

// Every token's experts equal and weights within tolerance; the message names the token.
void expect_same(const routing_config& c, const routed& got, const routed& want,
                 const std::string& what) {
  ASSERT_EQ(got.experts.size(), want.experts.size()) << what;
  const std::size_t k = std::size_t(c.top_k);
  for (std::size_t t = 0; t < got.experts.size() / k; ++t) {
    const std::vector<std::int32_t> ge(got.experts.begin() + std::ptrdiff_t(t * k),
                                       got.experts.begin() + std::ptrdiff_t((t + 1) * k));
    const std::vector<std::int32_t> we(want.experts.begin() + std::ptrdiff_t(t * k),
                                       want.experts.begin() + std::ptrdiff_t((t + 1) * k));
    ASSERT_EQ(ge, we) << what << ", token " << t;
    for (std::size_t j = 0; j < k; ++j) {
      const double g = got.weights[t * k + j], w = want.weights[t * k + j];
      ASSERT_NEAR(g, w, tolerance * std::abs(w) + 1e-30)
          << what << ", token " << t << ", expert " << ge[j];
    }
  }
}

std::vector<float> uniform(xoshiro256& r, std::size_t n, double low, double high) {
  std::vector<float> out(n);
  for (float& v : out) v = float(low + (high - low) * r.uniform());
  return out;
}

struct shape {
  int experts, top_k, groups, topk_groups;
};

// DeepSeek-V3 (256/8/8/4), V2 (160/6/8/3), V2-Lite-like (64/6), small and edge shapes:
// one group, groups of one expert, top_k == experts, every group kept, large top_k.
const shape shapes[] = {
    {16, 4, 4, 2}, {64, 6, 8, 4}, {256, 8, 8, 4}, {160, 6, 8, 3}, {8, 2, 1, 1},
    {8, 3, 8, 3},  {12, 1, 4, 1}, {16, 16, 4, 4}, {6, 6, 3, 3},   {32, 4, 4, 4}, {1, 1, 1, 1},
    {96, 24, 32, 20},  // top_k and topk_groups past the router's insertion selection (16)
};

TEST(MoeRouter, MatchesTheReferenceOnRandomLogits) {
  xoshiro256 r(20240601);
  constexpr int tokens = 64;
  for (const shape& s : shapes) {
    for (topk_method method :
         {topk_method::greedy, topk_method::group_limited_greedy, topk_method::noaux_tc}) {
      for (scoring_func scoring : {scoring_func::sigmoid, scoring_func::softmax}) {
        for (int variant = 0; variant < 2; ++variant) {
          const routing_config c{s.experts, s.top_k,  s.groups,     s.topk_groups,
                                 method,    scoring,  variant == 0, variant == 0 ? 2.5f : 1.0f};
          const auto logits = uniform(r, std::size_t(tokens * s.experts), -4.0, 4.0);
          // Bias on the scale of the scores, so it often changes the choice.
          const auto bias = uniform(r, std::size_t(s.experts), -0.3, 0.3);
          const std::string what = describe(c);
          expect_same(c, run(c, logits, bias), reference(c, logits, bias), what);
          if (::testing::Test::HasFatalFailure()) return;
        }
      }
    }
  }
}

TEST(MoeRouter, TiesGoToTheLowerIndexLikeAStableSort) {
  xoshiro256 r(7);
  for (const shape& s : shapes) {
    for (topk_method method :
         {topk_method::greedy, topk_method::group_limited_greedy, topk_method::noaux_tc}) {
      for (scoring_func scoring : {scoring_func::sigmoid, scoring_func::softmax}) {
        const routing_config c{s.experts, s.top_k, s.groups, s.topk_groups,
                               method,    scoring, true,     1.0f};
        // Logits from a handful of values: many equal scores, equal groups, equal sums.
        std::vector<float> logits(std::size_t(32 * s.experts));
        for (float& v : logits) v = float(int(r.uniform() * 4)) * 0.5f;
        // Bias with duplicates too, and as often zero.
        std::vector<float> bias(std::size_t(s.experts));
        for (float& v : bias) v = float(int(r.uniform() * 3)) * 0.125f;
        const std::string what = describe(c) + " (quantised logits)";
        expect_same(c, run(c, logits, bias), reference(c, logits, bias), what);
        if (::testing::Test::HasFatalFailure()) return;

        // All equal: the lowest ids, from the lowest groups.
        const std::vector<float> flat(std::size_t(s.experts), 0.25f);
        const std::vector<float> zero(std::size_t(s.experts), 0.0f);
        const routed got = run(c, flat, zero);
        std::vector<std::int32_t> lowest(std::size_t(s.top_k));
        std::iota(lowest.begin(), lowest.end(), 0);
        EXPECT_EQ(got.experts, lowest) << describe(c) << " (all logits equal)";
      }
    }
  }
}

TEST(MoeRouter, SmallTieExamples) {
  // Greedy: experts 1, 2, 4 tie at the top; the two lowest win.
  const routing_config greedy{5, 2, 1, 1, topk_method::greedy, scoring_func::softmax, false, 1.0f};
  EXPECT_EQ(run(greedy, {1, 2, 2, 1, 2}).experts, (std::vector<std::int32_t>{1, 2}));
  // Group-limited: groups {0,1} {2,3} {4,5} have equal maxima; groups 0 and 1 are kept, so
  // expert 5 (tied with 1 and 3) loses to them, and expert 4 never enters.
  const routing_config grouped{6, 2, 3, 2, topk_method::group_limited_greedy,
                               scoring_func::sigmoid, false, 1.0f};
  EXPECT_EQ(run(grouped, {0, 3, 1, 3, 2, 3}).experts, (std::vector<std::int32_t>{1, 3}));
  // noaux_tc: groups {0,1} and {2,3} hold the same pair of scores, so their top-2 sums are
  // equal; group 0 wins, and with it expert 1 (not 2, which ties with it).
  const routing_config tc{4, 1, 2, 1, topk_method::noaux_tc, scoring_func::sigmoid, false, 1.0f};
  EXPECT_EQ(run(tc, {1, 3, 3, 1}, {0, 0, 0, 0}).experts, (std::vector<std::int32_t>{1}));
}

TEST(MoeRouter, CorrectionBiasPicksExpertsButWeightsAreUnbiasedScores) {
  const routing_config c{4, 2, 1, 1, topk_method::noaux_tc, scoring_func::sigmoid, false, 1.0f};
  const std::vector<float> logits = {2.0f, 1.0f, 0.0f, -1.0f};
  auto sigmoid = [](float x) { return 1.0f / (1.0f + std::exp(-x)); };
  // Without bias: experts 0 and 1.
  EXPECT_EQ(run(c, logits, {0, 0, 0, 0}).experts, (std::vector<std::int32_t>{0, 1}));
  // A bias of +0.6 lifts expert 3 (0.27 + 0.6 = 0.87) above expert 1 (0.73), not above
  // expert 0 (0.88); its weight is still sigmoid(-1) = 0.27.
  const routed got = run(c, logits, {0, 0, 0, 0.6f});
  EXPECT_EQ(got.experts, (std::vector<std::int32_t>{0, 3}));
  EXPECT_NEAR(got.weights[0], sigmoid(2.0f), 1e-7);
  EXPECT_NEAR(got.weights[1], sigmoid(-1.0f), 1e-7);
  // With normalisation and scaling, still from the unbiased scores.
  const routing_config scaled{4, 2, 1, 1, topk_method::noaux_tc, scoring_func::sigmoid, true, 2.5f};
  const routed norm = run(scaled, logits, {0, 0, 0, 0.6f});
  const double sum = double(sigmoid(2.0f)) + sigmoid(-1.0f);
  EXPECT_NEAR(norm.weights[0], 2.5 * sigmoid(2.0f) / sum, 1e-6);
  EXPECT_NEAR(norm.weights[1], 2.5 * sigmoid(-1.0f) / sum, 1e-6);
}

TEST(MoeRouter, ExpertsInDroppedGroupsAreNeverChosen) {
  // group_limited_greedy: group 1's max (4.8) loses to group 0's (5), so expert 2 is out
  // although it outscores expert 1.
  const routing_config limited{4, 2, 2, 1, topk_method::group_limited_greedy,
                               scoring_func::softmax, false, 1.0f};
  EXPECT_EQ(run(limited, {5.0f, 4.5f, 4.8f, -3.0f}).experts, (std::vector<std::int32_t>{0, 1}));
  // noaux_tc ranks groups by their top-2 sum: group 1 {4, 4} beats group 0 {5, -5}, so the
  // single best expert (0) is dropped with its group.
  const routing_config tc{4, 2, 2, 1, topk_method::noaux_tc, scoring_func::sigmoid, false, 1.0f};
  EXPECT_EQ(run(tc, {5.0f, -5.0f, 4.0f, 4.0f}, {0, 0, 0, 0}).experts,
            (std::vector<std::int32_t>{2, 3}));
  // Dropped experts are out as -inf, not 0: with every biased choice negative, the kept
  // group's experts still win over the dropped ones (transformers' 0.0 fill would pick 2, 3).
  EXPECT_EQ(run(tc, {3.0f, 3.0f, -3.0f, -3.0f}, {-1, -1, -1, -1}).experts,
            (std::vector<std::int32_t>{0, 1}));
  // V3's shape (8 groups of 32, 4 kept): the single best expert (5) sits in group 0 with
  // hopeless neighbours (top-2 sum ~1.0); groups 1, 3, 4 and 6 each hold three good experts
  // (top-2 sum ~1.9). Group 0 is dropped and expert 5 is not chosen.
  const routing_config v3{256, 8, 8, 4, topk_method::noaux_tc, scoring_func::sigmoid, true, 2.5f};
  std::vector<float> logits(256, -6.0f);
  logits[5] = 6.0f;
  for (int g : {1, 3, 4, 6})
    for (int i = 0; i < 3; ++i) logits[std::size_t(g * 32 + i)] = 3.0f;
  const std::vector<float> zero(256, 0.0f);
  const routed got = run(v3, logits, zero);
  EXPECT_EQ(got.experts, (std::vector<std::int32_t>{32, 33, 34, 96, 97, 98, 128, 129}));
  expect_same(v3, got, reference(v3, logits, zero), describe(v3));
}

TEST(MoeRouter, NormalisationAndScaling) {
  const std::vector<float> logits = {0.5f, -1.0f, 2.0f, 1.0f};
  auto sigmoid = [](float x) { return 1.0 / (1.0 + std::exp(-double(x))); };
  // norm_topk_prob: the weights sum to routed_scaling_factor.
  const routing_config norm{4, 3, 1, 1, topk_method::greedy, scoring_func::sigmoid, true, 2.5f};
  const routed a = run(norm, logits);
  EXPECT_EQ(a.experts, (std::vector<std::int32_t>{0, 2, 3}));
  EXPECT_NEAR(a.weights[0] + a.weights[1] + a.weights[2], 2.5, 1e-6);
  EXPECT_NEAR(a.weights[1] / a.weights[0], sigmoid(2.0f) / sigmoid(0.5f), 1e-6);
  // Without it: score x scale.
  const routing_config plain{4, 3, 1, 1, topk_method::greedy, scoring_func::sigmoid, false, 2.0f};
  const routed b = run(plain, logits);
  EXPECT_NEAR(b.weights[0], 2.0 * sigmoid(0.5f), 1e-6);
  EXPECT_NEAR(b.weights[1], 2.0 * sigmoid(2.0f), 1e-6);
  EXPECT_NEAR(b.weights[2], 2.0 * sigmoid(1.0f), 1e-6);
  // top_k 1 is never normalised (transformers: `top_k > 1 and norm_topk_prob`), only scaled.
  const routing_config one{4, 1, 1, 1, topk_method::greedy, scoring_func::sigmoid, true, 2.5f};
  const routed c = run(one, logits);
  EXPECT_EQ(c.experts, (std::vector<std::int32_t>{2}));
  EXPECT_NEAR(c.weights[0], 2.5 * sigmoid(2.0f), 1e-6);
}

TEST(MoeRouter, TopKOfAllExpertsReturnsEveryScore) {
  xoshiro256 r(11);
  const auto logits = uniform(r, 64, -3.0, 3.0);
  std::vector<std::int32_t> all(64);
  std::iota(all.begin(), all.end(), 0);
  // Softmax scores over all experts sum to 1.
  const routing_config soft{64, 64, 8, 8, topk_method::group_limited_greedy,
                            scoring_func::softmax, false, 1.0f};
  const routed s = run(soft, logits);
  EXPECT_EQ(s.experts, all);
  EXPECT_NEAR(std::accumulate(s.weights.begin(), s.weights.end(), 0.0), 1.0, 1e-6);
  double max = logits[0];
  for (float v : logits) max = std::max(max, double(v));
  double total = 0;
  for (float v : logits) total += std::exp(double(v) - max);
  for (std::size_t i = 0; i < 64; ++i)
    EXPECT_NEAR(s.weights[i], std::exp(double(logits[i]) - max) / total, 1e-7) << "expert " << i;
  // Sigmoid: each weight is its own expert's sigmoid.
  const routing_config sig{64, 64, 1, 1, topk_method::greedy, scoring_func::sigmoid, false, 1.0f};
  const routed g = run(sig, logits);
  EXPECT_EQ(g.experts, all);
  for (std::size_t i = 0; i < 64; ++i)
    EXPECT_NEAR(g.weights[i], 1.0 / (1.0 + std::exp(-double(logits[i]))), 1e-7) << "expert " << i;
}

TEST(MoeRouter, ReusedRouterAndOneShotRouteAgree) {
  const routing_config c{64, 6, 8, 4, topk_method::noaux_tc, scoring_func::sigmoid, true, 2.5f};
  xoshiro256 r(3);
  moe_router router(c);
  for (int call = 0; call < 5; ++call) {
    const auto logits = uniform(r, std::size_t((call + 1) * 64), -4.0, 4.0);
    const auto bias = uniform(r, 64, -0.2, 0.2);
    const routed reused = run(router, logits, bias);
    routed once{std::vector<std::int32_t>(reused.experts.size()),
                std::vector<float>(reused.weights.size())};
    route(c, logits.data(), call + 1, bias.data(), once.experts.data(), once.weights.data());
    EXPECT_EQ(reused.experts, once.experts) << "call " << call;
    EXPECT_EQ(reused.weights, once.weights) << "call " << call;
  }
  // n == 0 writes nothing.
  std::int32_t e = -7;
  float w = -7.0f;
  const std::vector<float> bias(64, 0.0f);
  router.route(nullptr, 0, bias.data(), &e, &w);
  EXPECT_EQ(e, -7);
}

TEST(MoeRouter, NanLogitsStillGiveDistinctExpertsInRange) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (topk_method method :
       {topk_method::greedy, topk_method::group_limited_greedy, topk_method::noaux_tc}) {
    for (scoring_func scoring : {scoring_func::sigmoid, scoring_func::softmax}) {
      const routing_config c{16, 4, 4, 2, method, scoring, true, 1.0f};
      std::vector<float> logits = {nan, 1, 2, nan, 0, nan, nan, nan, 3, 1, 0, 0, nan, nan, nan, 5};
      const std::vector<float> all_nan(16, nan);
      logits.insert(logits.end(), all_nan.begin(), all_nan.end());
      const routed got = run(c, logits, std::vector<float>(16, 0.0f));
      for (std::size_t t = 0; t < 2; ++t) {
        std::set<std::int32_t> seen;
        for (std::size_t j = 0; j < 4; ++j) {
          const std::int32_t e = got.experts[t * 4 + j];
          EXPECT_TRUE(e >= 0 && e < 16) << describe(c) << " token " << t << " expert " << e;
          seen.insert(e);
        }
        EXPECT_EQ(seen.size(), 4u) << describe(c) << " token " << t;
      }
      // Sigmoid scores are per expert: NaN logits rank last and the rest route normally.
      if (scoring == scoring_func::sigmoid && method == topk_method::greedy) {
        EXPECT_EQ(std::vector<std::int32_t>(got.experts.begin(), got.experts.begin() + 4),
                  (std::vector<std::int32_t>{1, 2, 8, 15}));
      }
    }
  }
}

TEST(MoeRouter, RoutingFromConfigAndInvalidConfigs) {
  const model::deepseek_config v3;  // DeepseekV3Config defaults
  const routing_config c = routing_from(v3);
  EXPECT_EQ(c.experts, 256);
  EXPECT_EQ(c.top_k, 8);
  EXPECT_EQ(c.groups, 8);
  EXPECT_EQ(c.topk_groups, 4);
  EXPECT_EQ(c.method, topk_method::noaux_tc);
  EXPECT_EQ(c.scoring, scoring_func::sigmoid);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.routed_scaling_factor, 2.5f);
  EXPECT_EQ(routing_config_problem(c), "");

  auto problem = [&](auto change) {
    routing_config bad = c;
    change(bad);
    return routing_config_problem(bad);
  };
  EXPECT_NE(problem([](routing_config& b) { b.top_k = 0; }).find("top_k"), std::string::npos);
  EXPECT_NE(problem([](routing_config& b) { b.top_k = 257; }).find("top_k"), std::string::npos);
  EXPECT_NE(problem([](routing_config& b) { b.groups = 7; }).find("groups"), std::string::npos);
  EXPECT_NE(problem([](routing_config& b) { b.topk_groups = 9; }).find("topk_groups"),
            std::string::npos);
  EXPECT_NE(problem([](routing_config& b) { b.topk_groups = 0; }).find("topk_groups"),
            std::string::npos);
  // One kept group of 32 can supply top-8, not top-33.
  EXPECT_EQ(problem([](routing_config& b) { b.topk_groups = 1; }), "");
  EXPECT_NE(problem([](routing_config& b) { b.topk_groups = 1; b.top_k = 33; }).find("top_k"),
            std::string::npos);
  EXPECT_NE(problem([](routing_config& b) { b.routed_scaling_factor = 0; }).find("scaling"),
            std::string::npos);
  // greedy ignores the group fields.
  EXPECT_EQ(problem([](routing_config& b) { b.method = topk_method::greedy; b.groups = 7; }), "");
}

TEST(MoeRouterDeathTest, NoauxTcWithoutBiasAndInvalidConfigsCrash) {
  const routing_config c{16, 4, 4, 2, topk_method::noaux_tc, scoring_func::sigmoid, true, 1.0f};
  const std::vector<float> logits(16, 0.0f);
  std::vector<std::int32_t> e(4);
  std::vector<float> w(4);
  EXPECT_DEATH(route(c, logits.data(), 1, nullptr, e.data(), w.data()),
               "e_score_correction_bias");
  routing_config bad = c;
  bad.top_k = 9;  // more than the 8 experts in 2 groups of 4
  EXPECT_DEATH(moe_router{bad}, "top_k");
}

}  // namespace
}  // namespace dsrt::engine
