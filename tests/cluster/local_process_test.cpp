// A process on this host, named by pid and start time: this one runs, a child that exited
// (a zombie until reaped, then no such pid) has ended, an unknown one never counts as ended.
#include "transport/local_process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

namespace dsrt::transport {
namespace {

TEST(LocalProcess, ThisProcessRunsAndAnUnknownOneNeverEnds) {
  const auto self = this_process();
  EXPECT_EQ(self.pid, std::uint32_t(::getpid()));
  EXPECT_GT(self.start_ticks, 0u);
  EXPECT_GT(self.pid_namespace, 0u);
  EXPECT_FALSE(process_gone(self));
  EXPECT_FALSE(process_gone(local_process{}));
  // The same pid with another start time is another process: this one is not it.
  const auto ns = self.pid_namespace, time_ns = self.time_namespace;
  EXPECT_TRUE(process_gone(local_process{self.pid, self.start_ticks + 1, ns, time_ns}));
  // In another pid or time namespace, or without a pid namespace, the pid and start time
  // say nothing here: never "ended".
  EXPECT_FALSE(process_gone(local_process{self.pid, self.start_ticks + 1, ns + 1, time_ns}));
  EXPECT_FALSE(process_gone(local_process{self.pid, self.start_ticks + 1, 0, time_ns}));
  EXPECT_FALSE(process_gone(local_process{self.pid, self.start_ticks + 1, ns, time_ns + 1}));
  // A pid past any pid_max has no /proc entry, and the kernel knows no such process.
  EXPECT_TRUE(process_gone(local_process{4194304u + 1, 1, ns, time_ns}));
}

TEST(LocalProcess, AChildIsGoneOnceItExitedStoppedOrNot) {
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const auto me = this_process();
    [[maybe_unused]] auto n = ::write(ready[1], &me, sizeof(me));
    ::pause();
    ::_exit(0);
  }
  ::close(ready[1]);
  local_process p;
  ASSERT_EQ(::read(ready[0], &p, sizeof(p)), ssize_t(sizeof(p)));
  ::close(ready[0]);
  EXPECT_EQ(p.pid, std::uint32_t(child));
  EXPECT_FALSE(process_gone(p));
  ASSERT_EQ(::kill(child, SIGSTOP), 0);   // stopped is not gone: it may read again
  EXPECT_FALSE(process_gone(p));
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  // A zombie (not reaped yet) has ended: its memory is gone.
  for (int i = 0; i < 2000 && !process_gone(p); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_TRUE(process_gone(p));
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);
  EXPECT_TRUE(process_gone(p));
}

}  // namespace
}  // namespace dsrt::transport
