// dsrun --slurm's reading of the allocation: Slurm's compressed host and task lists, and
// the host of every task; malformed or inconsistent variables are clear errors.
#include <gtest/gtest.h>

#include "apps/common/slurm_env.h"

namespace dsrt::apps {
namespace {

using strings = std::vector<std::string>;

TEST(SlurmEnv, HostListsExpandWithRangesAndPadding) {
  EXPECT_EQ(expand_hostlist("localhost").value(), strings{"localhost"});
  EXPECT_EQ(expand_hostlist("gpu[01-03,07],login2").value(), (strings{"gpu01", "gpu02", "gpu03", "gpu07", "login2"}));
  EXPECT_EQ(expand_hostlist("n[8-10]").value(), (strings{"n8", "n9", "n10"}));
  EXPECT_EQ(expand_hostlist("a[1],b[2-3]").value(), (strings{"a1", "b2", "b3"}));
}

TEST(SlurmEnv, BadHostListsAreErrors) {
  for (const char* bad : {"", "a[1-", "a]1", "a[3-1]", "a[x]", "a[1]b", "a,,b", "a[1-2][3]", "a[0-99999999]"}) {
    auto r = expand_hostlist(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.err().code, error_code::invalid_argument) << bad;
  }
}

TEST(SlurmEnv, TasksPerNodeExpand) {
  EXPECT_EQ(expand_tasks_per_node("2").value(), (std::vector<int>{2}));
  EXPECT_EQ(expand_tasks_per_node("2(x3),1").value(), (std::vector<int>{2, 2, 2, 1}));
  for (const char* bad : {"", "0", "2(x0)", "2(x", "x", "2(3)", "-1"}) EXPECT_FALSE(expand_tasks_per_node(bad).ok()) << bad;
}

TEST(SlurmEnv, TaskHostsFollowBlockPlacement) {
  auto hosts = slurm_task_hosts({{"SLURM_JOB_NODELIST", "gpu[1-2]"},
                                 {"SLURM_TASKS_PER_NODE", "2,1"},
                                 {"SLURM_NTASKS", "3"}});
  ASSERT_TRUE(hosts.ok()) << hosts.err().to_string();
  EXPECT_EQ(*hosts, (strings{"gpu1", "gpu1", "gpu2"}));
  auto single = slurm_task_hosts({{"SLURM_JOB_NODELIST", "localhost"},
                                  {"SLURM_TASKS_PER_NODE", "2"},
                                  {"SLURM_NTASKS", "2"}});
  ASSERT_TRUE(single.ok());
  EXPECT_EQ(*single, (strings{"localhost", "localhost"}));
}

TEST(SlurmEnv, MissingOrInconsistentVariablesAreNamed) {
  auto none = slurm_task_hosts({});
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.err().message.find("SLURM_JOB_NODELIST"), std::string::npos);
  auto count = slurm_task_hosts({{"SLURM_JOB_NODELIST", "a[1-2]"}, {"SLURM_TASKS_PER_NODE", "1"}, {"SLURM_NTASKS", "2"}});
  ASSERT_FALSE(count.ok());
  EXPECT_NE(count.err().message.find("SLURM_TASKS_PER_NODE"), std::string::npos);
  auto total = slurm_task_hosts({{"SLURM_JOB_NODELIST", "a"}, {"SLURM_TASKS_PER_NODE", "2"}, {"SLURM_NTASKS", "3"}});
  ASSERT_FALSE(total.ok());
  EXPECT_NE(total.err().message.find("SLURM_NTASKS"), std::string::npos);
}

// A job step sees only the CPUs it asks for: dsrun reads what the job holds on each host.
TEST(SlurmEnv, CpusPerHostFollowTheJobsHosts) {
  const std::map<std::string, std::string> env = {{"SLURM_JOB_NODELIST", "gpu[01-03],cpu7"},
                                                  {"SLURM_JOB_CPUS_PER_NODE", "32(x3),8"}};
  EXPECT_EQ(slurm_cpus_per_host(env).value(),
            (std::map<std::string, int>{{"gpu01", 32}, {"gpu02", 32}, {"gpu03", 32}, {"cpu7", 8}}));
  auto missing = env;
  missing.erase("SLURM_JOB_CPUS_PER_NODE");
  EXPECT_NE(slurm_cpus_per_host(missing).err().message.find("SLURM_JOB_CPUS_PER_NODE"), std::string::npos);
  auto short_list = env;
  short_list["SLURM_JOB_CPUS_PER_NODE"] = "32(x2)";
  EXPECT_NE(slurm_cpus_per_host(short_list).err().message.find("names 2 hosts"), std::string::npos);
  short_list["SLURM_JOB_CPUS_PER_NODE"] = "lots";
  EXPECT_FALSE(slurm_cpus_per_host(short_list).ok());
}

}  // namespace
}  // namespace dsrt::apps
