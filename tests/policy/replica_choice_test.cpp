// Replica choice: least outstanding tokens, prefix affinity within a load slack.
#include <gtest/gtest.h>

#include <vector>

#include "runtime/policy/replica_choice.h"

namespace dsrt::policy {
namespace {

std::vector<std::int32_t> prompt(std::int32_t first) {
  std::vector<std::int32_t> p(100);
  for (std::size_t i = 0; i < p.size(); ++i) p[i] = first + std::int32_t(i);
  return p;
}

TEST(ReplicaChoice, NoneAvailableGivesNothing) {
  std::vector<replica_view> r(3);
  EXPECT_FALSE(choose_replica(r, prompt(1), {}).has_value());
  EXPECT_FALSE(choose_replica({}, prompt(1), {}).has_value());
}

TEST(ReplicaChoice, WithoutAffinityTheLeastLoadedWins) {
  replica_choice_config c;
  c.affinity_prefix_tokens = 0;
  std::vector<replica_view> r = {{true, 500}, {true, 100}, {false, 0}, {true, 100}};
  EXPECT_EQ(choose_replica(r, prompt(1), c), 1) << "ties go to the lower index; down replicas never";
}

TEST(ReplicaChoice, SharedPrefixesMeetOnOneReplicaUntilItIsTooBusy) {
  replica_choice_config c;
  c.affinity_prefix_tokens = 16;
  c.affinity_load_slack_tokens = 1000;
  std::vector<replica_view> r = {{true, 0}, {true, 0}, {true, 0}, {true, 0}};
  const auto home = choose_replica(r, prompt(7), c);
  ASSERT_TRUE(home.has_value());
  auto other = prompt(7);
  other[50] = 999;   // differs only after the affinity prefix
  EXPECT_EQ(choose_replica(r, other, c), home);
  // Different prefixes spread over the replicas.
  std::vector<int> seen(4, 0);
  for (std::int32_t first = 0; first < 64; ++first) ++seen[std::size_t(*choose_replica(r, prompt(first * 1000), c))];
  for (int i = 0; i < 4; ++i) EXPECT_GT(seen[std::size_t(i)], 4) << "replica " << i;
  // The home carries up to the slack more than the least loaded, then the least loaded wins.
  r[std::size_t(*home)].outstanding_tokens = 1000;
  EXPECT_EQ(choose_replica(r, prompt(7), c), home);
  r[std::size_t(*home)].outstanding_tokens = 1001;
  EXPECT_NE(choose_replica(r, prompt(7), c), home);
  // The home going away moves its prefixes to another available replica.
  r[std::size_t(*home)].available = false;
  EXPECT_TRUE(choose_replica(r, prompt(7), c).has_value());
}

TEST(ReplicaChoice, HomesSpreadEvenlyAndALostReplicaMovesOnlyItsOwnPrefixes) {
  // 128 replicas (the scale simulation's) and 64 prefixes each on average: every replica is
  // the home of some, none of more than twice its share (a skewed score would pile them up).
  replica_choice_config c;
  c.affinity_prefix_tokens = 16;
  constexpr int replicas = 128, prefixes = replicas * 64;
  std::vector<replica_view> r(replicas, replica_view{true, 0});
  std::vector<int> homes(prefixes), seen(replicas, 0);
  for (int p = 0; p < prefixes; ++p) {
    homes[std::size_t(p)] = *choose_replica(r, prompt(p * 7919), c);
    ++seen[std::size_t(homes[std::size_t(p)])];
  }
  for (int i = 0; i < replicas; ++i) {
    EXPECT_GT(seen[std::size_t(i)], 32) << "replica " << i;
    EXPECT_LT(seen[std::size_t(i)], 128) << "replica " << i;
  }
  // Rendezvous: with replica 5 down, its prefixes find new homes and no other prefix moves.
  r[5].available = false;
  int moved = 0;
  for (int p = 0; p < prefixes; ++p) {
    const int now = *choose_replica(r, prompt(p * 7919), c);
    if (homes[std::size_t(p)] == 5) {
      EXPECT_NE(now, 5);
      ++moved;
    } else {
      EXPECT_EQ(now, homes[std::size_t(p)]) << "prefix " << p;
    }
  }
  EXPECT_EQ(moved, seen[5]);
}

}  // namespace
}  // namespace dsrt::policy
