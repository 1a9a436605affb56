// dsrun, dsnode and the clients of a cluster as a user runs them: what they refuse before
// they start anything, and what a node says while it cannot reach its head.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "tests/apps/app_runner.h"

namespace {

using namespace dsrt::test;

// A cluster secret file (64 hex characters, mode 0600) for starting nodes by hand.
fs::path secret_file() {
  const fs::path secret = fs::temp_directory_path() / ("dsrt-apps-secret-" + std::to_string(::getpid()));
  std::ofstream(secret) << std::string(64, 'a') << "\n";
  fs::permissions(secret, fs::perms::owner_read | fs::perms::owner_write);
  return secret;
}

// Connecting to a cluster takes its secret: without --secret-file the tool says so. And the
// cluster's nodes hold the settings: flags that configure an in-process runtime are
// refused with --connect rather than ignored.
TEST_F(Apps, ConnectingToAClusterTakesItsSecretFileAndNoInProcessSettings) {
  const fs::path secret = secret_file();
  for (const std::string cmd : {"dsrun/dsrun ask --prompt x", "dsbench/dsbench load --requests 1"}) {
    const std::string connect = bin + "/" + cmd + " --model " + model_.string() + " --connect dsrt://127.0.0.1:1";
    const auto r = run(connect);
    EXPECT_NE(r.exit_code, 0) << cmd;
    EXPECT_NE((r.out + r.err).find("--connect requires --secret-file"), std::string::npos) << cmd << ": " << r.out << r.err;
    for (const std::string flag :
         {"--set=batcher.sequences_max=8", "--config=/tmp/settings.json", "--null-backend", "--ignore-eos",
          "--threads=3", "--kv-cache-mb=64", "--device=cuda"}) {
      const auto refused = run(connect + " --secret-file " + secret.string() + " " + flag);
      EXPECT_EQ(refused.exit_code, 2) << cmd << " " << flag << ": " << refused.err;
      EXPECT_NE(refused.err.find("configures an in-process runtime"), std::string::npos) << refused.err;
    }
  }
  fs::remove(secret);
}

// dsrun refuses what it cannot honour before it starts a node: a --node-arg naming a flag it
// gives the nodes itself (the node would refuse it twice; a head-only or worker-only one
// would stop the other kind), and nodes on other hosts without a run directory they share.
TEST_F(Apps, DsrunClusterRefusesNodeArgsItSetsAndRemoteNodesWithoutARunDirectory) {
  const std::string cluster = bin + "/dsrun/dsrun cluster --model " + model_.string() + " --prompt x";
  for (const std::string arg : {"--threads=4", "--node-id=3", "--replicas", "--drain-timeout-ms=10"}) {
    const auto r = run(cluster + " --nodes 2 --node-arg=" + arg);
    EXPECT_EQ(r.exit_code, 2) << arg << ": " << r.err;
    EXPECT_NE(r.err.find("--node-arg=" + arg + ": dsrun sets"), std::string::npos) << r.err;
    EXPECT_EQ(r.out.find("cluster ready"), std::string::npos) << r.out;
  }
  const fs::path hosts = fs::temp_directory_path() / ("dsrt-apps-hosts-" + std::to_string(::getpid()));
  std::ofstream(hosts) << "127.0.0.1\n127.0.0.1\n";
  const auto r = run(cluster + " --hostfile " + hosts.string() + " --ssh false");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--hostfile needs --run-dir"), std::string::npos) << r.err;
  fs::remove(hosts);
}

// A node's replicas come from --replicas: settings naming another count are refused before
// anything loads, not half applied (the worker used to load the settings' count of models
// and then fail on the mismatch; the head ignored it).
TEST_F(Apps, DsnodeRefusesSettingsWithAnotherReplicaCount) {
  const fs::path secret = secret_file();
  for (const std::string kind : {"head", "worker"}) {
    const auto r = run(bin + "/dsnode/dsnode " + kind + " --model " + model_.string() + " --secret-file " +
                       secret.string() + " --replicas 1 --set runtime.replicas=2");
    EXPECT_EQ(r.exit_code, 2) << kind << ": " << r.err;
    EXPECT_NE(r.err.find("runtime.replicas is 2 in the settings but --replicas is 1"), std::string::npos) << r.err;
  }
  fs::remove(secret);
}

// A port nothing listens on (the kernel's choice, released at once).
int unused_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    return 1;
  ::close(fd);
  return ntohs(a.sin_port);
}

// A worker whose head cannot be reached says so (at once, then every 10 s) and keeps trying
// until it is stopped; it also runs with heartbeats faster than the transport's 20 ms tick
// (which used to refuse them with a message about a field no flag sets).
TEST_F(Apps, ADsnodeWorkerThatCannotReachItsHeadSaysSoAndKeepsTrying) {
  const fs::path secret = secret_file();
  const std::string head = "127.0.0.1:" + std::to_string(unused_port());
  const auto r = run("timeout -s TERM 12 " + bin + "/dsnode/dsnode worker --model " + model_.string() +
                     " --null-backend --secret-file " + secret.string() + " --head " + head +
                     " --heartbeat-interval-ms 10 --heartbeat-timeout-ms 100");
  EXPECT_EQ(r.exit_code, 124) << r.out << r.err;   // still trying when timeout stopped it
  const std::string log = r.out + r.err;
  // The first try at once, then at most one more in the 10 s after it.
  const auto warnings = count_of(log, "cannot reach the head at " + head);
  EXPECT_GE(warnings, 1u) << log;
  EXPECT_LE(warnings, 2u) << log;
  EXPECT_NE(log.find("(1 tries; trying again every 200 ms)"), std::string::npos) << log;
  EXPECT_NE(log.find("stopping"), std::string::npos) << log;
  fs::remove(secret);
}

}  // namespace
