#include "apps/common/node_process.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <thread>

namespace dsrt::apps {

status node_process::start() {
  std::vector<char*> args;
  for (auto& a : argv_) args.push_back(a.data());
  args.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return make_error(error_code::internal, "fork for {}: {}", name_, std::strerror(errno));
  if (pid == 0) {
    // The child: only async-signal-safe calls until exec.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);   // dsrun died before prctl took effect
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    const int fd = ::open(log_file_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
    }
    ::execvp(args[0], args.data());   // PATH lookup: "srun" for --slurm
    ::_exit(127);
  }
  pid_ = pid;
  ended_.clear();
  return ok_t{};
}

bool node_process::running() {
  if (pid_ <= 0) return false;
  int st = 0;
  const pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == 0) return true;
  if (r == pid_) {
    ended_ = WIFEXITED(st) ? "exited with " + std::to_string(WEXITSTATUS(st))
                           : WIFSIGNALED(st) ? std::string("killed by signal ") + std::to_string(WTERMSIG(st)) : "ended";
  }
  pid_ = -1;
  return false;
}

void node_process::signal(int sig) {
  if (pid_ > 0) ::kill(pid_, sig);
}

void node_process::stop(int grace_ms) {
  if (!running()) return;
  signal(SIGTERM);
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(grace_ms);
  while (running()) {
    if (std::chrono::steady_clock::now() > give_up) {
      signal(SIGKILL);
      int st = 0;
      ::waitpid(pid_, &st, 0);
      ended_ = "killed after the grace period";
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

node_process::~node_process() { stop(0); }

}  // namespace dsrt::apps
