// ucx_transport against a peer in another process that stops reading (SIGSTOP) with its
// shared-memory FIFO full of this side's frames: the sends past data_sends_posted_max wait
// in the connection and arrive, in order, once the peer reads again; a connection closed
// meanwhile leaves at most data_sends_posted_max of them in UCX; and once the peer is
// killed they keep neither the progress thread awake nor their data worker.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "tests/cluster/transport_recorder.h"
#include "transport/auth.h"
#include "transport/ucx_transport.h"
#include "transport/wire.h"

namespace dsrt::transport {
namespace {

namespace fs = std::filesystem;
using test::recorder;
using test::wait_until_true;

// A port the kernel says is free now (bound to 0, then released): an ephemeral port, apart
// from those other test processes derive from their pids.
std::uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(addr);
  const bool got = fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
                   ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) == 0;
  if (fd >= 0) ::close(fd);
  EXPECT_TRUE(got) << "no free port";
  return got ? ntohs(addr.sin_port) : 0;
}

// dsbench's echoing transport process (`dsbench transport --serve --no-actors`: it listens
// and echoes each Cancel), with a secret of its own in a scratch folder. Killed and reaped,
// and the folder removed, when this goes.
class echo_process {
 public:
  // Whether it started and said it is ready.
  bool start(const std::string& name) {
    dir_ = fs::temp_directory_path() / ("dsrt-" + name + "-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    auto made = create_secret_file(dir_ / "secret");
    if (!made.ok()) {
      ADD_FAILURE() << made.err().to_string();
      return false;
    }
    secret_ = *made;
    const std::string dsbench = std::string(DSRT_BINARY_DIR) + "/apps/dsbench/dsbench";
    port_ = free_port();
    const std::string port = std::to_string(port_), secret_path = (dir_ / "secret").string();
    int out[2];
    if (::pipe(out) != 0) return false;
    pid_ = ::fork();
    if (pid_ < 0) return false;
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      ::close(out[0]);
      ::execl(dsbench.c_str(), dsbench.c_str(), "transport", "--serve", "--no-actors", "--secret-file",
              secret_path.c_str(), "--port", port.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(out[1]);
    std::string said;
    char c = 0;
    while (said.find("ready") == std::string::npos && ::read(out[0], &c, 1) == 1) said += c;
    ::close(out[0]);
    EXPECT_NE(said.find("ready"), std::string::npos) << said;
    return said.find("ready") != std::string::npos;
  }
  ~echo_process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  bool signal(int sig) const { return ::kill(pid_, sig) == 0; }
  const cluster_secret& secret() const { return secret_; }
  std::uint16_t port() const { return port_; }

 private:
  fs::path dir_;
  cluster_secret secret_{};
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

// A client transport connected to `echo` over a data endpoint, one Cancel (id 1) echoed.
// The transport goes before the recorder it reports to.
struct echo_client {
  recorder r;
  std::unique_ptr<ucx_transport> t;
  peer_id peer = 0;

  bool connect(const echo_process& echo, transport_config config) {
    config.listen = false;
    config.session.heartbeat_interval_ms = milliseconds(100);
    auto started = ucx_transport::start(config, echo.secret(), {node_role::worker, 5, 1005u}, r);
    if (!started.ok()) {
      ADD_FAILURE() << started.err().to_string();
      return false;
    }
    t = std::move(*started);
    peer = t->connect("127.0.0.1", echo.port());
    if (!r.wait([&](recorder& x) { return x.up_.count(peer) > 0; })) return false;
    if (!wait_until_true([&] { return t->stats().data_endpoints == 1; })) return false;
    if (!t->send(peer, encode_cancel(frame_type::cancel, 1)).ok()) return false;   // over the data endpoint
    return r.wait([&](recorder& x) { return x.ids_[peer].size() == 1; }) && t->stats().frames_direct >= 1;
  }
  // Sends Cancels first..last (inclusive).
  bool send(std::uint64_t first, std::uint64_t last) {
    for (auto id = first; id <= last; ++id)
      if (!t->send(peer, encode_cancel(frame_type::cancel, id)).ok()) return false;
    return true;
  }
  // The same while the peer is stopped, then waits until the transport has taken them all:
  // handed to UCX on the data endpoint, or waiting in the connection.
  bool send_while_stopped(std::uint64_t first, std::uint64_t last) {
    const auto handed_before = t->stats().frames_direct;   // not heartbeats: they take the connection
    if (!send(first, last)) return false;
    return wait_until_true([&] {
      const auto s = t->stats();
      return s.frames_direct - handed_before + s.data_sends_waiting >= last - first + 1;
    });
  }
  ~echo_client() { t.reset(); }
};

// While the peer does not read, the sends past data_sends_posted_max wait in the
// connection; when it reads again they all arrive, in the order sent, and so do those sent
// while it catches up (after those still waiting).
TEST(UcxPeerProcess, SendsPastDataSendsPostedMaxWaitForAStoppedPeerAndArriveInOrderWhenItReads) {
  echo_process echo;
  ASSERT_TRUE(echo.start("stopped-peer"));
  transport_config config;
  config.data_sends_posted_max = 16;
  echo_client c;
  ASSERT_TRUE(c.connect(echo, config));

  ASSERT_TRUE(echo.signal(SIGSTOP));   // stops reading: its FIFO fills, the rest wait here
  constexpr std::uint64_t held = 3001, last = 6000;
  ASSERT_TRUE(c.send_while_stopped(2, held));
  const auto stopped = c.t->stats();
  EXPECT_GT(stopped.data_sends_waiting, 0u) << "the FIFO took them all: nothing was held back";
  ASSERT_TRUE(echo.signal(SIGCONT));   // well within the heartbeat timeout
  ASSERT_TRUE(c.send(held + 1, last));

  ASSERT_TRUE(c.r.wait([&](recorder& x) { return x.ids_[c.peer].size() == last; }))
      << c.r.ids_[c.peer].size() << " of " << last << " echoed";
  std::vector<std::int64_t> sent(last);
  std::iota(sent.begin(), sent.end(), 1);
  EXPECT_EQ(c.r.ids_[c.peer], sent);
  EXPECT_TRUE(wait_until_true([&] { return c.t->stats().data_sends_waiting == 0; }));
  EXPECT_EQ(c.r.downs(), 0u);
}

// A peer process killed while this side's sends to it wait in its full shared-memory FIFO:
// those sends never finish (a data endpoint has no failure handling to fail them), yet once
// the connection is gone the progress thread sleeps again as an idle one does. It used to
// spin a core for good: the data worker, armed for send completions too, kept answering
// "busy" (a head after a client was killed mid-stream). Nor do they keep the data worker
// once the peer has ended (each killed client kept ~1.7 MB in a head before), and while it
// lives at most data_sends_posted_max of them are left in UCX (a head kept ~7,400 for each
// client paused past its heartbeat timeout, for as long as the client lived).
TEST(UcxPeerProcess, SendsLeftToAKilledPeerDoNotKeepTheProgressThreadAwakeNorItsDataWorker) {
  echo_process echo;
  ASSERT_TRUE(echo.start("killed-peer"));
  transport_config config;
  config.data_endpoints_per_worker = 1;   // the peer's data worker takes no one else: it may go
  echo_client c;
  ASSERT_TRUE(c.connect(echo, config));

  ASSERT_TRUE(echo.signal(SIGSTOP));   // stops reading: its FIFO fills, the rest wait here
  ASSERT_TRUE(c.send_while_stopped(2, 2001));
  // Closed while the peer is stopped: the sends it has not taken keep its data worker, for
  // it may yet read them; those that waited in the connection go with it.
  c.t->close(c.peer, "test: a peer that does not read");
  ASSERT_TRUE(c.r.wait([&](recorder& x) { return x.down_.count(c.peer) > 0; }));
  const auto closed = c.t->stats();
  EXPECT_GT(closed.sends_stuck, 0u);
  EXPECT_LE(closed.sends_stuck, config.data_sends_posted_max);
  EXPECT_EQ(closed.data_sends_waiting, 0u);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));   // more than a check's interval
  EXPECT_EQ(c.t->stats().data_workers_destroyed, 0u);
  // Killed (a zombie until the echo_process reaps it): they can never finish, and the
  // worker goes with them.
  ASSERT_TRUE(echo.signal(SIGKILL));
  EXPECT_TRUE(wait_until_true([&] { return c.t->stats().data_workers_destroyed == 1; }))
      << "the dead peer's data worker was kept";
  EXPECT_EQ(c.t->stats().sends_stuck, 0u);
  const auto sleeps = c.t->stats().sleeps;
  EXPECT_TRUE(wait_until_true([&] { return c.t->stats().sleeps >= sleeps + 3; }))
      << "the progress thread never slept again (" << c.t->stats().sleeps - sleeps << " sleeps)";
}

}  // namespace
}  // namespace dsrt::transport
