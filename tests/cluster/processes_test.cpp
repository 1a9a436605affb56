// Real processes on 127.0.0.1: dsrun starts dsnode processes (a head and two workers); the
// test talks to the cluster through the remote client, kills a worker with SIGKILL under
// load (every output still equals the single-process runtime's), watches dsrun restart it
// and the restarted node serve, stops dsrun with SIGTERM and checks that no node process is
// left.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "actors/blocking_ask.h"
#include "actors/client.h"
#include "actors/remote_runtime.h"
#include "tests/actors/runtime_test_util.h"
#include "tests/engine/engine_test_util.h"
#include "transport/auth.h"

namespace dsrt::actors {
namespace {

namespace fs = std::filesystem;

const std::string dsrun = std::string(DSRT_BINARY_DIR) + "/apps/dsrun/dsrun";

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

pid_t pid_in(const fs::path& p) {
  pid_t pid = -1;
  std::ifstream(p) >> pid;
  return pid;
}

bool alive(pid_t pid) { return pid > 0 && ::kill(pid, 0) == 0; }

// Runs a shell command to its end: its exit status (-1 when it could not run) and output.
std::pair<int, std::string> run_command(const std::string& command) {
  FILE* p = ::popen(command.c_str(), "r");
  if (!p) return {-1, "popen failed"};
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// The value of `series` (a name with its labels, as the file writes it) in Prometheus text;
// -1 when the text has no such line.
double metric_in(const std::string& text, const std::string& series) {
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);)
    if (line.starts_with(series + " ")) return std::stod(line.substr(series.size() + 1));
  return -1;
}

// dsrun in the background, with its run directory.
struct launched {
  pid_t pid = -1;
  fs::path run;
  int port = 0;
  ~launched() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);   // its nodes die with it (PR_SET_PDEATHSIG)
      ::waitpid(pid, nullptr, 0);
    }
  }
};

// The head's port for this test process's cluster number `slot` (0-3): below the kernel's
// ephemeral range (32768 and up), where any process's outgoing connections and UCX's own
// listeners take ports at random and one of them made a head's bind fail in CI.
int head_port(int slot) { return 24000 + int(::getpid() % 2000) * 4 + slot % 4; }

void launch(launched& l, std::vector<std::string> extra, int nodes = 3) {
  static int launches = 0;   // each cluster of this test process on its own port
  l.port = head_port(launches++ % 2);
  l.run = fs::temp_directory_path() / ("dsrt-processes-" + std::to_string(::getpid()));
  fs::remove_all(l.run);
  std::vector<std::string> args = {dsrun, "--nodes", std::to_string(nodes), "--model", engine::test_util::tiny_llama_dir().string(),
                                   "--port", std::to_string(l.port), "--run-dir", l.run.string(), "--threads", "1",
                                   "--node-arg=--heartbeat-interval-ms=100", "--node-arg=--heartbeat-timeout-ms=1000",
                                   "--node-arg=--kv-cache-mb=32"};
  args.insert(args.end(), extra.begin(), extra.end());
  l.pid = ::fork();
  ASSERT_GE(l.pid, 0);
  if (l.pid == 0) {
    // A test process that dies without its destructors (a crash, SIGPIPE) takes dsrun, and
    // so its nodes, with it: no cluster is left holding ports for the next tests.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const auto log = (l.run.parent_path() / ("dsrun-" + std::to_string(::getppid()) + ".log")).string();
    FILE* out = std::freopen(log.c_str(), "w", stdout);
    (void)out;
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  // Ready, or dsrun gave up (it reports why and exits).
  int status = 0;
  ASSERT_TRUE(wait_until(milliseconds(120000), "the cluster ready", [&] {
    if (::waitpid(l.pid, &status, WNOHANG) == l.pid) return true;
    return fs::exists(l.run / "ready");
  }).ok());
  ASSERT_TRUE(fs::exists(l.run / "ready")) << "dsrun exited: " << read_text(l.run / "node-0.log");
}

// A remote client of `l`'s cluster: its secret file, the tiny model's tokenizer.
result<std::unique_ptr<remote_runtime>> connect_to(const launched& l) {
  auto secret = transport::read_secret_file(l.run / "cluster.secret");
  if (!secret) return secret.err();
  auto tok = std::make_shared<tokenizer::tokenizer>(
      engine::test_util::load_tokenizer(engine::test_util::tiny_llama_dir()));
  return remote_runtime::connect("dsrt://127.0.0.1:" + std::to_string(l.port), *secret, tok);
}

std::size_t finals_in(const test::collector& col) {
  std::size_t n = 0;
  for (const auto& [i, r] : col.records()) n += r.finals > 0;
  return n;
}

// `count` requests of the same shape, submitted at once through `c` into `col`.
std::vector<client_request> submit_load(client& c, test::collector& col, int count, const std::string& prompt,
                                        std::int32_t max_tokens = 24) {
  std::vector<client_request> requests;
  for (int i = 0; i < count; ++i) {
    client_request r;
    r.prompt = prompt + " " + std::to_string(i);
    r.max_tokens = max_tokens;
    requests.push_back(r);
    EXPECT_TRUE(c.submit(r, col.on_chunk(i), col.on_final(i)).ok()) << i;
  }
  return requests;
}

// Every request in `col` kept the contract, completed, and answered what the single-process
// runtime answers to it.
void expect_answers_of_one_process(const test::collector& col, const std::vector<client_request>& requests) {
  col.expect_contract();
  const auto records = col.records();
  ASSERT_EQ(records.size(), requests.size());
  for (const auto& [i, r] : records)
    EXPECT_FALSE(r.final.failure) << "request " << i << ": " << r.final.failure->to_string();
  auto local = test::start_tiny(test::test_options(2), test::small_cache());
  ASSERT_TRUE(local.runtime);
  client lc(*local.runtime);
  for (int i = 0; i < int(requests.size()); ++i) {
    const auto alone = lc.generate(requests[std::size_t(i)]);
    ASSERT_FALSE(alone.failure);
    EXPECT_EQ(records.at(i).final.tokens, alone.tokens) << "request " << i;
    EXPECT_EQ(records.at(i).final.text, alone.text) << "request " << i;
  }
}

// A cluster (`nodes` processes, dsrun given `extra`), a remote client of it, and `count`
// requests of `max_tokens` streaming through it. Members go in reverse order: the client,
// the remote runtime, the collector, then dsrun. The collector outlives the runtime, which
// ends what is still open as it goes, so those finals are recorded (a test that failed
// with requests open crashed here).
struct under_load {
  launched l;
  test::collector col;
  std::unique_ptr<remote_runtime> remote;
  std::unique_ptr<client> c;
  std::vector<client_request> requests;
};

void start_under_load(under_load& u, int count, const std::string& prompt, std::int32_t max_tokens,
                      std::vector<std::string> extra = {}, int nodes = 3) {
  ASSERT_NO_FATAL_FAILURE(launch(u.l, std::move(extra), nodes));
  auto remote = connect_to(u.l);
  ASSERT_TRUE(remote.ok()) << remote.err().to_string();
  u.remote = std::move(*remote);
  u.c = std::make_unique<client>(*u.remote);
  u.requests = submit_load(*u.c, u.col, count, prompt, max_tokens);
  ASSERT_TRUE(u.col.wait_chunks(count, std::chrono::seconds(120)));
}

// Waits for a request answered through `c` (only `what` can answer it).
void expect_served(client& c, const std::string& what) {
  client_request r;
  r.prompt = "served by " + what;
  r.max_tokens = 4;
  final_message f;
  ASSERT_TRUE(wait_until(milliseconds(60000), "an answer", [&] {
    f = c.generate(r);
    return !f.failure;
  }).ok()) << what << ": " << f.failure->to_string();
  EXPECT_GT(f.completion_tokens, 0u);
}

// Also with the nodes' transport options that change its paths: frames and tensors kept on
// the connection (--no-data-endpoints) and busy polling.
TEST(ClusterProcesses, DsrunAnswersAPromptThroughATwoNodeClusterAndLeavesNothing) {
  const std::vector<std::string> node_options = {"", " --node-arg=--no-data-endpoints --node-arg=--busy-poll-us=200"};
  for (std::size_t k = 0; k < node_options.size(); ++k) {
    const auto& options = node_options[k];
    SCOPED_TRACE("node options:" + options);
    const auto run = fs::temp_directory_path() / ("dsrt-prompt-" + std::to_string(::getpid()));
    fs::remove_all(run);
    const auto cmd = dsrun + " --nodes 2 --model " + engine::test_util::tiny_llama_dir().string() + " --port " +
                     std::to_string(head_port(2 + int(k))) + " --run-dir " + run.string() +
                     " --threads 1 --prompt hello --max-tokens 8" + options + " 2>&1";
    const auto [rc, out] = run_command(cmd);
    EXPECT_EQ(rc, 0) << out;
    EXPECT_NE(out.find("cluster ready"), std::string::npos) << out;
    EXPECT_NE(out.find("8 generated"), std::string::npos) << out;
    // The secret file is the owner's alone; every node is gone.
    EXPECT_EQ(fs::status(run / "cluster.secret").permissions() & (fs::perms::group_all | fs::perms::others_all),
              fs::perms::none);
    for (int i = 0; i < 2; ++i) EXPECT_FALSE(alive(pid_in(run / ("node-" + std::to_string(i) + ".pid")))) << i;
    fs::remove_all(run);
  }
}

TEST(ClusterProcesses, AWorkerKilledUnderLoadIsRestartedAndNoRequestLosesItsFinal) {
  under_load u;
  ASSERT_NO_FATAL_FAILURE(start_under_load(u, 100, "process load", 24));

  const pid_t victim = pid_in(u.l.run / "node-1.pid");
  ASSERT_TRUE(alive(victim));
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  ASSERT_TRUE(u.col.wait_finals(100, std::chrono::seconds(300)));
  // The same outputs as the single-process runtime, resumptions after the kill included.
  ASSERT_NO_FATAL_FAILURE(expect_answers_of_one_process(u.col, u.requests));

  // dsrun restarts the node; it reconnects to the head.
  ASSERT_TRUE(wait_until(milliseconds(60000), "worker 1 restarted and connected", [&] {
    const pid_t now = pid_in(u.l.run / "node-1.pid");
    return now != victim && alive(now) && count_of(read_text(u.l.run / "node-1.log"), "connected to the head") >= 2;
  }).ok()) << read_text(u.l.run / "node-1.log");
  // With worker 2 gone too, only the restarted worker 1 can answer.
  const pid_t other = pid_in(u.l.run / "node-2.pid");
  ASSERT_EQ(::kill(other, SIGKILL), 0);
  ASSERT_NO_FATAL_FAILURE(expect_served(*u.c, "the restarted node"));

  // SIGTERM: dsrun drains and stops every node; nothing is left.
  std::vector<pid_t> nodes;
  for (int i = 0; i < 3; ++i) nodes.push_back(pid_in(u.l.run / ("node-" + std::to_string(i) + ".pid")));
  u.remote.reset();
  ASSERT_EQ(::kill(u.l.pid, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(u.l.pid, &status, 0), u.l.pid);
  u.l.pid = -1;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  for (auto pid : nodes) EXPECT_FALSE(alive(pid)) << "node process " << pid << " outlived dsrun";
  fs::remove_all(u.l.run);
}

// The only worker killed (SIGKILL) under load: its requests, and those that come while it
// is gone, wait for a replica (routing.replica_wait_ms, here long enough for a restart on a
// machine busy with other tests); dsrun restarts it, and every request is answered as in
// one process.
TEST(ClusterProcesses, TheOnlyWorkerKilledUnderLoadIsRestartedAndEveryRequestAnswered) {
  under_load u;
  ASSERT_NO_FATAL_FAILURE(
      start_under_load(u, 60, "only worker", 400, {"--node-arg=--set=routing.replica_wait_ms=60000"}, 2));
  const pid_t victim = pid_in(u.l.run / "node-1.pid");
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  EXPECT_LT(finals_in(u.col), 60u) << "the kill found nothing streaming";
  ASSERT_TRUE(u.col.wait_finals(60, std::chrono::seconds(300)));
  ASSERT_NO_FATAL_FAILURE(expect_answers_of_one_process(u.col, u.requests));
  EXPECT_NE(pid_in(u.l.run / "node-1.pid"), victim);
  u.remote.reset();
  fs::remove_all(u.l.run);
}

// A worker paused (SIGSTOP) under load for longer than the heartbeat timeout, as a stalled
// VM or a long page-in would: the head declares it down and resumes its requests on the
// other worker; when it continues (SIGCONT) whatever it still sends for them is stale and
// dropped, so every request still has one final and the single process's answer. The
// node is not restarted (it never died), rejoins the head, and serves again.
TEST(ClusterProcesses, AWorkerPausedPastItsHeartbeatTimeoutIsReplacedThenRejoins) {
  under_load u;
  ASSERT_NO_FATAL_FAILURE(start_under_load(u, 100, "paused load", 200));

  const pid_t paused = pid_in(u.l.run / "node-1.pid");
  ASSERT_TRUE(alive(paused));
  ASSERT_EQ(::kill(paused, SIGSTOP), 0);
  EXPECT_LT(finals_in(u.col), 100u) << "the pause found nothing streaming";
  // Well past the nodes' 1,000 ms heartbeat timeout (launch()).
  std::this_thread::sleep_for(std::chrono::milliseconds(3000));
  ASSERT_EQ(::kill(paused, SIGCONT), 0);
  ASSERT_TRUE(u.col.wait_finals(100, std::chrono::seconds(300)));
  ASSERT_NO_FATAL_FAILURE(expect_answers_of_one_process(u.col, u.requests));

  // The same process (no restart) connects to the head again and is the one that answers
  // once worker 2 is gone.
  ASSERT_TRUE(wait_until(milliseconds(60000), "worker 1 connected again", [&] {
    return count_of(read_text(u.l.run / "node-1.log"), "connected to the head") >= 2;
  }).ok()) << read_text(u.l.run / "node-1.log");
  EXPECT_EQ(pid_in(u.l.run / "node-1.pid"), paused);
  ASSERT_EQ(::kill(pid_in(u.l.run / "node-2.pid"), SIGKILL), 0);
  ASSERT_NO_FATAL_FAILURE(expect_served(*u.c, "the node that was paused"));
  u.remote.reset();
  fs::remove_all(u.l.run);
}

// The head paused under load past its workers' heartbeat timeout (1 s) but within its
// client's (3 s, the default): the workers find it silent and leave. The head, running
// again, does not blame the client for the silence of its own pause, the workers connect
// again, and every request is answered.
// The workers drop the head while it is stopped, their frames filling its FIFOs: once it runs
// again, it keeps those connections' data workers a while (it stalled), their frames arrive
// and no send is left in a worker (their metrics files say), as none would be in it.
TEST(ClusterProcesses, AHeadPausedUnderLoadKeepsItsClientAndAnswersEveryRequest) {
  under_load u;
  ASSERT_NO_FATAL_FAILURE(start_under_load(u, 100, "paused head", 200, {"--node-arg=--metrics-interval-ms=100"}));
  const auto stuck_in_workers = [&] {
    double n = 0;
    for (int w = 1; w <= 2; ++w)
      n += std::max(0.0, metric_in(read_text(u.l.run / ("node-" + std::to_string(w) + ".prom")),
                                   "dsrt_transport_sends_stuck{node=\"" + std::to_string(w) + "\"}"));
    return n;
  };

  const pid_t head = pid_in(u.l.run / "node-0.pid");
  ASSERT_EQ(::kill(head, SIGSTOP), 0);
  EXPECT_LT(finals_in(u.col), 100u) << "the pause found nothing streaming";
  double stuck_seen = 0;
  for (const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(2000);
       std::chrono::steady_clock::now() < until;) {
    stuck_seen = std::max(stuck_seen, stuck_in_workers());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(::kill(head, SIGCONT), 0);
  ASSERT_TRUE(u.col.wait_finals(100, std::chrono::seconds(300)));
  u.col.expect_contract();
  // Every request is answered: the head, running again, finds both workers gone, its
  // requests wait for a replica (routing.replica_wait_ms) and go on on the workers that
  // connect again, whose breakers did not count their leaving as failures.
  for (const auto& [i, r] : u.col.records())
    EXPECT_FALSE(r.final.failure) << "request " << i << ": " << r.final.failure->to_string();
  // The head was paused 2 s, the client's own timeout is 3 s: the head, once it ran again,
  // excused the client's silence instead of closing it, so the client never reconnected.
  const auto stats = u.remote->stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_TRUE(stats.value().connected);
  EXPECT_EQ(stats.value().connects, 1) << "the client lost the head: "
                                       << (stats.value().last_failure ? stats.value().last_failure->to_string() : "");

  EXPECT_EQ(pid_in(u.l.run / "node-0.pid"), head) << "the head was restarted, not continued";
  ASSERT_NO_FATAL_FAILURE(expect_served(*u.c, "the continued head"));
  // The workers' sends fill the head's FIFOs only if they stream fast enough before they drop
  // it (a machine busy with other tests may slow them below that): then the check is moot.
  if (stuck_seen > 0)
    EXPECT_TRUE(wait_until(milliseconds(20000), "the workers' sends to the head to go", [&] {
      return stuck_in_workers() == 0;
    }).ok()) << stuck_in_workers() << " sends still stuck in the workers";
  else
    std::printf("note: the workers had no send left to the stopped head; the linger went unchecked\n");
  u.remote.reset();
  fs::remove_all(u.l.run);
}

// The head killed (SIGKILL) under load: its client's requests each end once, UNAVAILABLE
// unless they had finished; dsrun restarts the head on its port, the workers and the same
// client connect to the new one, and it answers.
TEST(ClusterProcesses, AHeadKilledUnderLoadIsRestartedAndItsClientReconnects) {
  under_load u;
  ASSERT_NO_FATAL_FAILURE(start_under_load(u, 100, "killed head", 200));

  const pid_t head = pid_in(u.l.run / "node-0.pid");
  ASSERT_EQ(::kill(head, SIGKILL), 0);
  ASSERT_TRUE(u.col.wait_finals(100, std::chrono::seconds(120)));
  u.col.expect_contract();
  std::size_t cut = 0;
  for (const auto& [i, r] : u.col.records()) {
    if (!r.final.failure) continue;
    ++cut;
    EXPECT_EQ(r.final.failure->code, error_code::unavailable) << "request " << i << ": " << r.final.failure->to_string();
  }
  EXPECT_GT(cut, 0u) << "the kill found nothing streaming";

  ASSERT_TRUE(wait_until(milliseconds(60000), "the head restarted", [&] {
    const pid_t now = pid_in(u.l.run / "node-0.pid");
    return now != head && alive(now);
  }).ok());
  ASSERT_NO_FATAL_FAILURE(expect_served(*u.c, "the restarted head"));
  const auto stats = u.remote->stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_GE(stats.value().connects, 2);
  u.remote.reset();
  fs::remove_all(u.l.run);
}

// Restart budgets (--restarts-max 0: no restarts at all): a worker that dies past its
// budget is left down while the head and the other worker go on serving; a head that dies
// past its budget stops the cluster, dsrun exits 1 and no node process is left.
TEST(ClusterProcesses, AWorkerPastItsRestartBudgetIsLeftDownAndAHeadPastItStopsTheCluster) {
  launched l;
  ASSERT_NO_FATAL_FAILURE(launch(l, {"--restarts-max", "0"}));
  auto remote = connect_to(l);
  ASSERT_TRUE(remote.ok()) << remote.err().to_string();
  client c(**remote);
  const auto log = l.run.parent_path() / ("dsrun-" + std::to_string(::getpid()) + ".log");

  const pid_t worker = pid_in(l.run / "node-1.pid");
  ASSERT_EQ(::kill(worker, SIGKILL), 0);
  ASSERT_TRUE(wait_until(milliseconds(30000), "worker 1 left down", [&] {
    return read_text(log).find("worker 1 killed by signal 9 and its restart budget") != std::string::npos;
  }).ok()) << read_text(log);
  EXPECT_NE(read_text(log).find("left down; 1 of 2 workers serve on"), std::string::npos) << read_text(log);
  EXPECT_FALSE(fs::exists(l.run / "node-1.pid"));
  EXPECT_EQ(::waitpid(l.pid, nullptr, WNOHANG), 0) << "dsrun stopped";
  ASSERT_NO_FATAL_FAILURE(expect_served(c, "worker 2, the one left"));

  std::vector<pid_t> nodes = {pid_in(l.run / "node-0.pid"), pid_in(l.run / "node-2.pid")};
  ASSERT_EQ(::kill(nodes[0], SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(l.pid, &status, 0), l.pid);
  l.pid = -1;
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_NE(read_text(log).find("nothing serves without the head; stopping the cluster"), std::string::npos)
      << read_text(log);
  for (auto pid : nodes) EXPECT_FALSE(alive(pid)) << "node process " << pid << " outlived dsrun";
  EXPECT_FALSE(alive(worker));
  remote->reset();
  fs::remove_all(l.run);
}

// SIGTERM while a remote client's request streams: the head drains it -- the client gets
// every token and its final, not a lost connection -- and then every node stops. (The
// ssh test checks the same over ssh, where it once lost the stream's tail: the router was
// done while its last chunks still waited in the head's link and transport.)
// The nodes' last metrics, written as each stops, count that request (with an hour between
// writes, only the first, at the start, and the last are made).
TEST(ClusterProcesses, SigtermWhileARequestStreamsLetsItFinishThenStopsEveryNode) {
  launched l;
  // No end-of-sequence stop: the answer runs to its max_tokens.
  ASSERT_NO_FATAL_FAILURE(launch(l, {"--node-arg=--ignore-eos", "--node-arg=--metrics-interval-ms=3600000"}));
  auto remote = connect_to(l);
  ASSERT_TRUE(remote.ok()) << remote.err().to_string();
  client c(**remote);
  test::collector col;
  client_request r;
  r.prompt = "hello";
  r.max_tokens = 2000;
  ASSERT_TRUE(c.submit(r, col.on_chunk(0), col.on_final(0)).ok());
  ASSERT_TRUE(col.wait_chunks(1, std::chrono::seconds(60)));   // streaming

  std::vector<pid_t> nodes;
  for (int i = 0; i < 3; ++i) nodes.push_back(pid_in(l.run / ("node-" + std::to_string(i) + ".pid")));
  ASSERT_EQ(::kill(l.pid, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(l.pid, &status, 0), l.pid);
  l.pid = -1;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_TRUE(col.wait_finals(1, std::chrono::seconds(60)));
  col.expect_contract();
  const auto final = col.records().at(0).final;
  EXPECT_FALSE(final.failure) << final.failure->to_string();
  EXPECT_EQ(final.completion_tokens, 2000u);
  EXPECT_EQ(read_text(l.run / "drained"), "0 requests still in flight\n");
  for (auto pid : nodes) EXPECT_FALSE(alive(pid)) << "node process " << pid << " outlived dsrun";
  const auto head = read_text(l.run / "node-0.prom");
  EXPECT_EQ(metric_in(head, "dsrt_requests_total{outcome=\"completed\"}"), 1) << head;
  double steps = 0;
  for (int w = 1; w <= 2; ++w)
    steps += std::max(0.0, metric_in(read_text(l.run / ("node-" + std::to_string(w) + ".prom")),
                                      "dsrt_step_seconds_count{replica=\"" + std::to_string(w - 1) + "\"}"));
  EXPECT_GE(steps, 2000 / 8.0) << "the workers' last metrics miss the answer's steps";
  EXPECT_FALSE(fs::exists(l.run / "node-0.prom.tmp"));
  remote->reset();
  fs::remove_all(l.run);
}

// SIGINT while `dsrun --nodes N --prompt` streams: the request is cancelled (not waited
// out), every node stops, and dsrun exits with the error.
TEST(ClusterProcesses, SigintWhileAPromptStreamsCancelsItAndStopsEveryNode) {
  launched l;
  // No end-of-sequence stop: the answer streams its 4,000 tokens unless interrupted.
  launch(l, {"--node-arg=--ignore-eos", "--prompt", "hello", "--max-tokens", "4000"});
  const auto log = l.run.parent_path() / ("dsrun-" + std::to_string(::getpid()) + ".log");
  ASSERT_TRUE(wait_until(milliseconds(60000), "the answer streaming", [&] {
    const auto text = read_text(log);
    const auto ready = text.find("cluster ready");
    const auto line_end = ready == std::string::npos ? std::string::npos : text.find('\n', ready);
    return line_end != std::string::npos && text.size() > line_end + 20;   // answer text after the ready line
  }).ok());
  std::vector<pid_t> nodes;
  for (int i = 0; i < 3; ++i) nodes.push_back(pid_in(l.run / ("node-" + std::to_string(i) + ".pid")));
  ASSERT_EQ(::kill(l.pid, SIGINT), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(l.pid, &status, 0), l.pid);
  l.pid = -1;
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1) << "the answer ran to its end instead of being cancelled";
  for (auto pid : nodes) EXPECT_FALSE(alive(pid)) << "node process " << pid << " outlived dsrun";
  fs::remove_all(l.run);
}

// dsrun refuses a replica count its head could not take (dsnode head --replicas shares
// runtime.replicas' bound) before it starts anything.
TEST(ClusterProcesses, DsrunRefusesMoreReplicasThanItsHeadTakesOrOneMetricsFileForEveryNode) {
  const auto cmd = dsrun + " --nodes 3 --replicas 65 --model " + engine::test_util::tiny_llama_dir().string() +
                   " --prompt hi 2>&1";
  const auto [rc, out] = run_command(cmd);
  EXPECT_NE(rc, 0) << out;
  EXPECT_NE(out.find("--replicas"), std::string::npos) << out;
  EXPECT_EQ(out.find("cluster ready"), std::string::npos) << out;
  // --node-arg goes to every node: one metrics file for them all is refused.
  const auto [rc2, out2] = run_command(dsrun + " --nodes 2 --model " + engine::test_util::tiny_llama_dir().string() +
                                       " --node-arg=--metrics-file=/tmp/all.prom --prompt hi 2>&1");
  EXPECT_NE(rc2, 0) << out2;
  EXPECT_NE(out2.find("--metrics-dir"), std::string::npos) << out2;
  EXPECT_EQ(out2.find("cluster ready"), std::string::npos) << out2;
}

// `dsbench load --connect` to `l`'s cluster with `args`, in the background, its output in
// RUN/paused.log; it dies with this process. The pid, or -1.
pid_t start_load(const launched& l, const std::vector<std::string>& args) {
  std::vector<std::string> all = {std::string(DSRT_BINARY_DIR) + "/apps/dsbench/dsbench", "load", "--connect",
                                  "dsrt://127.0.0.1:" + std::to_string(l.port), "--secret-file",
                                  (l.run / "cluster.secret").string(), "--model",
                                  engine::test_util::tiny_llama_dir().string()};
  all.insert(all.end(), args.begin(), args.end());
  const pid_t bench = ::fork();
  if (bench == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    FILE* out = std::freopen((l.run / "paused.log").c_str(), "w", stdout);
    (void)out;
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return bench;
}

// A client process paused (SIGSTOP) under load past the head's heartbeat timeout: the head
// drops it. Running again, the client loses only the streams it had started (UNAVAILABLE:
// the app holds part of them); the requests that had no output yet and those it makes
// while it reconnects wait for the new connection and are served.
TEST(ClusterProcesses, AClientPausedPastTheHeadsTimeoutLosesOnlyTheStreamsItHadStarted) {
  launched l;
  ASSERT_NO_FATAL_FAILURE(launch(l, {"--node-arg=--ignore-eos"}));
  const int requests = 60, concurrency = 8;
  const auto json = l.run / "paused.json";
  const pid_t bench = start_load(l, {"--requests", std::to_string(requests), "--concurrency", std::to_string(concurrency),
                                     "--prompt-len", "16", "--gen", "2000", "--timeout-s", "120", "--json", json.string()});
  ASSERT_GE(bench, 0);
  // Paused once its first streams run (they start within milliseconds of its connection),
  // for 2.5 heartbeat timeouts of the head (1 s).
  ASSERT_TRUE(wait_until(milliseconds(60000), "the load connected", [&] {
                return read_text(l.run / "paused.log").find("dsbench load: connected to") != std::string::npos;
              }).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  ASSERT_EQ(::kill(bench, SIGSTOP), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  ASSERT_EQ(::kill(bench, SIGCONT), 0);
  int status = 0;
  ASSERT_TRUE(wait_until(milliseconds(180000), "the load's end", [&] { return ::waitpid(bench, &status, WNOHANG) == bench; }).ok());
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << read_text(l.run / "paused.log");
  EXPECT_GE(count_of(read_text(l.run / "node-0.log"), "silent for"), 1u) << "the head never dropped the client";
  const auto j = nlohmann::json::parse(read_text(json));
  EXPECT_EQ(j["finals"], requests);
  EXPECT_EQ(j["extra_finals"], 0);
  EXPECT_EQ(j["duplicate_chunks"], 0);
  EXPECT_EQ(j["missing_chunks"], 0);
  const int lost = j["errors_by_code"].value("UNAVAILABLE", 0);
  EXPECT_GE(lost, 1) << j.dump();
  EXPECT_LE(lost, concurrency) << j.dump();
  EXPECT_EQ(j["completed"], requests - lost) << j.dump();
}

TEST(ClusterProcesses, DsbenchLoadConnectReportsTheContractCounters) {
  launched l;
  ASSERT_NO_FATAL_FAILURE(launch(l, {}));
  const auto json = l.run / "load.json";
  const auto cmd = std::string(DSRT_BINARY_DIR) + "/apps/dsbench/dsbench load --connect dsrt://127.0.0.1:" +
                   std::to_string(l.port) + " --secret-file " + (l.run / "cluster.secret").string() + " --model " +
                   engine::test_util::tiny_llama_dir().string() +
                   " --requests 40 --concurrency 8 --prompt-len 16 --gen 8 --json " + json.string() + " > /dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  const auto j = nlohmann::json::parse(read_text(json));
  EXPECT_EQ(j["mode"], "connect");
  EXPECT_EQ(j["requests"], 40);
  EXPECT_EQ(j["finals"], 40);
  EXPECT_EQ(j["completed"], 40);
  EXPECT_EQ(j["duplicate_chunks"], 0);
  EXPECT_EQ(j["missing_chunks"], 0);
  EXPECT_EQ(j["extra_finals"], 0);
  EXPECT_TRUE(j["kv_blocks_leaked"].is_null());
  // A wrong secret file is refused: the run fails, nothing is served.
  const auto wrong = l.run / "wrong.secret";
  ASSERT_TRUE(transport::create_secret_file(wrong).ok());
  const auto refused = std::string(DSRT_BINARY_DIR) + "/apps/dsbench/dsbench load --connect dsrt://127.0.0.1:" +
                       std::to_string(l.port) + " --secret-file " + wrong.string() + " --model " +
                       engine::test_util::tiny_llama_dir().string() + " --requests 1 > /dev/null 2>&1";
  EXPECT_NE(std::system(refused.c_str()), 0);
}


// dsrun has every node write its metrics to RUN_DIR/node-N.prom as it serves: the head its
// router's and transport's series, each worker its batchers' and its transport's, every
// transport series labelled with its node. (The last write, as a node stops: the SIGTERM
// test above.)
TEST(ClusterProcesses, EveryNodeWritesItsMetricsToTheRunDirectory) {
  launched l;
  ASSERT_NO_FATAL_FAILURE(launch(l, {"--node-arg=--metrics-interval-ms=100"}));
  const auto load = std::string(DSRT_BINARY_DIR) + "/apps/dsbench/dsbench load --connect dsrt://127.0.0.1:" +
                    std::to_string(l.port) + " --secret-file ";
  const auto args = " --model " + engine::test_util::tiny_llama_dir().string() + " --prompt-len 16 --gen 8";
  ASSERT_EQ(std::system((load + (l.run / "cluster.secret").string() + args + " --requests 24 --concurrency 8 > /dev/null").c_str()), 0);
  const auto wrong = l.run / "wrong.secret";
  ASSERT_TRUE(transport::create_secret_file(wrong).ok());
  EXPECT_NE(std::system((load + wrong.string() + args + " --requests 1 > /dev/null 2>&1").c_str()), 0);

  const auto head = l.run / "node-0.prom";
  EXPECT_TRUE(wait_until(milliseconds(20000), "the head's metrics", [&] {
    const auto text = read_text(head);
    return metric_in(text, "dsrt_requests_total{outcome=\"completed\"}") == 24 &&
           metric_in(text, "dsrt_requests_in_flight") == 0 &&   // set after the outcome's count
           metric_in(text, "dsrt_transport_peers_rejected_total{node=\"0\"}") >= 1;
  }).ok()) << read_text(head);
  const auto text = read_text(head);
  EXPECT_EQ(metric_in(text, "dsrt_ttft_seconds_count"), 24);
  EXPECT_EQ(metric_in(text, "dsrt_replicas_up"), 2);
  EXPECT_EQ(metric_in(text, "dsrt_worker_nodes_connected"), 2);
  EXPECT_EQ(metric_in(text, "dsrt_requests_in_flight"), 0);
  EXPECT_GE(metric_in(text, "dsrt_transport_peers_up_total{node=\"0\"}"), 3);   // two workers and the client
  EXPECT_GT(metric_in(text, "dsrt_transport_frames_received_total{node=\"0\"}"), 24);
  EXPECT_EQ(metric_in(text, "dsrt_transport_sends_stuck{node=\"0\"}"), 0);
  double steps = 0;
  for (int w = 1; w <= 2; ++w) {
    SCOPED_TRACE("worker " + std::to_string(w));
    const auto worker = read_text(l.run / ("node-" + std::to_string(w) + ".prom"));
    const auto node = "{node=\"" + std::to_string(w) + "\"}";
    EXPECT_GE(metric_in(worker, "dsrt_transport_peers_up_total" + node), 1) << worker;
    EXPECT_EQ(metric_in(worker, "dsrt_head_connected"), 1) << worker;
    EXPECT_GT(metric_in(worker, "dsrt_transport_frames_sent_total" + node), 0) << worker;
    const auto count = metric_in(worker, "dsrt_step_seconds_count{replica=\"" + std::to_string(w - 1) + "\"}");
    EXPECT_GE(count, 0) << worker;   // the replica's series is there
    steps += count;
  }
  EXPECT_GT(steps, 0);
}

// A client paused past the head's heartbeat timeout with the head's frames filling its
// shared-memory FIFO: the head drops it with sends unfinished (its metrics count them). Once
// the client runs again those sends go -- its data worker lingers, read, after its
// connection went -- while the client lives on, reconnected, under load. They used to stay
// in the head (with its data worker) until the client ended.
TEST(ClusterProcesses, AHeadKeepsNoSendsForAClientThatWasPausedAndRunsAgain) {
  launched l;
  ASSERT_NO_FATAL_FAILURE(launch(l, {"--node-arg=--ignore-eos", "--node-arg=--metrics-interval-ms=100"}));
  const pid_t bench = start_load(l, {"--requests", "100000", "--concurrency", "8", "--prompt-len", "16", "--gen", "2000",
                                     "--timeout-s", "300"});
  ASSERT_GE(bench, 0);
  struct killed {
    pid_t pid;
    ~killed() {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  } end_bench{bench};
  const auto stuck = [&] {
    return metric_in(read_text(l.run / "node-0.prom"), "dsrt_transport_sends_stuck{node=\"0\"}");
  };
  EXPECT_TRUE(wait_until(milliseconds(60000), "requests in flight from a connected client", [&] {
    const auto text = read_text(l.run / "node-0.prom");
    return metric_in(text, "dsrt_requests_in_flight") > 0 && metric_in(text, "dsrt_clients_connected") == 1;
  }).ok());
  ASSERT_TRUE(wait_until(milliseconds(60000), "the load connected", [&] {
                return read_text(l.run / "paused.log").find("dsbench load: connected to") != std::string::npos;
              }).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  ASSERT_EQ(::kill(bench, SIGSTOP), 0);
  // Dropped after the head's heartbeat timeout (1 s), its sends left unfinished.
  const bool left = wait_until(milliseconds(10000), "sends left to the paused client", [&] { return stuck() > 0; }).ok();
  ASSERT_EQ(::kill(bench, SIGCONT), 0);
  ASSERT_TRUE(left) << read_text(l.run / "node-0.prom");
  EXPECT_TRUE(wait_until(milliseconds(20000), "the head's sends to go", [&] { return stuck() == 0; }).ok())
      << stuck() << " sends still stuck";
  int status = 0;
  EXPECT_EQ(::waitpid(bench, &status, WNOHANG), 0) << "the client ended: its end, not its return, freed the sends";
  EXPECT_NE(read_text(l.run / "paused.log").find("client: lost the head"), std::string::npos);
  // Reconnected, it is served again.
  const auto completed = [&] {
    return metric_in(read_text(l.run / "node-0.prom"), "dsrt_requests_total{outcome=\"completed\"}");
  };
  const double before = completed();
  EXPECT_TRUE(wait_until(milliseconds(60000), "a request completed after the return", [&] {
    return completed() > before;
  }).ok());
}

}  // namespace
}  // namespace dsrt::actors
