// How dsrun lays a cluster out over its hosts, and which --node-args it refuses.
#include "apps/common/node_layout.h"

#include <gtest/gtest.h>

namespace dsrt::apps {
namespace {

std::vector<int> gpus_of(const std::vector<worker_layout>& l) {
  std::vector<int> out;
  for (const auto& w : l) out.push_back(w.first_gpu);
  return out;
}

TEST(NodeLayout, ReplicasSpreadOverTheWorkersTheFirstTakingOneMore) {
  const auto l = lay_out_workers({"h0", "h1", "h2", "h3"}, 8);
  ASSERT_EQ(l.size(), 3u);
  EXPECT_EQ(l[0].host, "h1");
  EXPECT_EQ(l[2].host, "h3");
  EXPECT_EQ((std::vector<int>{l[0].replicas, l[1].replicas, l[2].replicas}), (std::vector<int>{3, 3, 2}));
  EXPECT_EQ((std::vector<int>{l[0].replica_base, l[1].replica_base, l[2].replica_base}), (std::vector<int>{0, 3, 6}));
}

// One GPU per replica: on one machine the workers take consecutive ordinals; on hosts of
// their own each starts at 0; workers sharing a host (two Slurm tasks on a node, a host
// listed twice) take consecutive ordinals there. The head's host takes none for the head.
TEST(NodeLayout, WorkersSharingAHostTakeConsecutiveGpusThere) {
  EXPECT_EQ(gpus_of(lay_out_workers({"127.0.0.1", "127.0.0.1", "127.0.0.1"}, 4)), (std::vector<int>{0, 2}));
  EXPECT_EQ(gpus_of(lay_out_workers({"a", "b", "c"}, 4)), (std::vector<int>{0, 0}));
  EXPECT_EQ(gpus_of(lay_out_workers({"a", "a", "b", "a", "b"}, 4)), (std::vector<int>{0, 0, 1, 1}));
  EXPECT_EQ(gpus_of(lay_out_workers({"a", "b", "b", "b"}, 5)), (std::vector<int>{0, 2, 4}));
}

// Workers sharing a host share its cores: each knows how many they are.
TEST(NodeLayout, EachWorkerKnowsHowManyWorkersShareItsHost) {
  std::vector<int> shares;
  for (const auto& w : lay_out_workers({"a", "a", "b", "a", "c"}, 4)) shares.push_back(w.host_workers);
  EXPECT_EQ(shares, (std::vector<int>{2, 1, 2, 1}));
}

TEST(NodeLayout, NodeArgsNamingAFlagDsrunSetsAreRefusedWithWhatToUseInstead) {
  for (const char* arg : {"--threads=4", "--threads", "--device=cuda:1", "--node-id", "--replica-base=2",
                          "--drain-timeout-ms=5", "--listen=0.0.0.0:1", "--metrics-file=/tmp/x",
                          "--host-workers=2"}) {
    const auto s = check_node_arg(arg);
    ASSERT_FALSE(s.ok()) << arg;
    EXPECT_EQ(s.err().code, error_code::invalid_argument) << arg;
    EXPECT_NE(s.err().message.find("dsrun sets"), std::string::npos) << s.err().message;
  }
  EXPECT_NE(check_node_arg("--metrics-file=/tmp/x").err().message.find("--metrics-dir"), std::string::npos);
  EXPECT_NE(check_node_arg("--threads=4").err().message.find("dsrun's --threads"), std::string::npos);
  // Others pass, including ones that merely start like a refused flag.
  for (const char* arg : {"--null-backend", "--ignore-eos", "--set=batcher.sequences_max=8", "--busy-poll-us=100",
                          "--threadsafe", "--heartbeat-interval-ms=1000", "4"})
    EXPECT_TRUE(check_node_arg(arg).ok()) << arg;
}

}  // namespace
}  // namespace dsrt::apps
