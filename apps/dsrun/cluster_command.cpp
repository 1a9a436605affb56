// dsrun cluster (also: dsrun --nodes N ...): starts a cluster of dsnode processes on this
// machine (or, with --slurm, one per task of a Slurm allocation, through srun; with
// --hostfile, one per listed host, through ssh) — node 0 the
// head, nodes 1..N-1 workers with the replicas spread over them —
// creates the cluster secret (mode 0600) in the run directory, waits until every replica
// is up, and prints how to connect. With --prompt it answers that one request through the
// embedded client over the transport and stops the cluster; otherwise it keeps the nodes
// running and restarts one that dies, at most --restarts-max times in any
// --restart-period-ms. A worker past that budget is left down and the others go on serving
// (one failing host must not stop the replicas of the rest); a head past it, or the last
// worker left down, stops the cluster (exit 1). On SIGINT/SIGTERM it drains the head, then
// stops every node. It never leaves a node process behind.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "actors/remote_runtime.h"
#include "apps/common/engine_setup.h"
#include "apps/common/runtime_setup.h"
#include "apps/common/remote_launch.h"
#include "apps/common/slurm_env.h"
#include "apps/dsrun/commands.h"
#include "apps/common/node_layout.h"
#include "apps/common/node_process.h"
#include "apps/dsrun/stream_answer.h"
#include "runtime/policy/restart_budget.h"
#include "transport/auth.h"

namespace dsrt::apps {
namespace {

struct cluster_flags {
  std::string model_dir;
  std::int32_t nodes = 2;
  bool slurm = false;                 // place the nodes on the tasks of this Slurm allocation
  std::string hostfile;               // or on these hosts, over ssh
  std::string ssh = "ssh -o BatchMode=yes -tt";
  std::int32_t replicas = 0;          // 0: one per worker
  std::int32_t port = 7400;
  std::string run_dir;
  std::string metrics_dir;            // "" = the run directory: node-N.prom there
  std::string dsnode;                 // "" = next to dsrun in the build tree
  std::int32_t threads = 0;           // per worker; 0 = cores / workers
  std::string device = "cpu";         // "cpu" or "cuda": where the workers' replicas run
  std::int64_t ready_timeout_ms = 120000;
  std::int64_t drain_timeout_ms = 30000;
  std::int32_t restarts_max = policy::restart_config{}.restarts_max;   // per node, in any period
  std::int64_t restart_period_ms = policy::restart_config{}.period_ms.count();
  std::vector<std::string> node_args; // passed to every dsnode (--node-arg=--set=...)
  prompt_flags ask;                   // ask.prompt empty: keep the cluster up
};

std::string find_dsnode(const cluster_flags& f) {
  if (!f.dsnode.empty()) return f.dsnode;
  const auto self = std::filesystem::read_symlink("/proc/self/exe").parent_path();
  for (const auto& p : {self / "dsnode", self / ".." / "dsnode" / "dsnode"})
    if (std::filesystem::exists(p)) return std::filesystem::canonical(p).string();
  return "dsnode";
}

constexpr std::int64_t restart_period_ms_max = 24 * 3600 * 1000;   // --restart-period-ms: a day
// How long a stopping node has after SIGTERM before SIGKILL: a worker this, the head its
// drain (--drain-timeout-ms) and this.
constexpr int stop_grace_ms = 5000;
// CPUs the head's Slurm step asks for (at most the job's on its host): its transport
// thread and the router's scheduler threads.
constexpr int head_step_cpus_max = 4;
constexpr std::int64_t drain_timeout_ms_max = 3600 * 1000;   // --drain-timeout-ms: an hour, as dsnode's
constexpr std::int64_t ready_timeout_ms_max = 24 * 3600 * 1000;   // --ready-timeout-ms: a day

volatile std::sig_atomic_t stop_signal = 0;
void on_stop(int sig) { stop_signal = sig; }

// Answers one prompt through the cluster, streaming to stdout. Returns the exit code.
int ask(const cluster_flags& f, const std::string& url, const transport::cluster_secret& secret) {
  auto tok = tokenizer::tokenizer::load(f.model_dir);
  if (!tok) return report(tok.err());
  auto rt = actors::remote_runtime::connect(url, secret, std::make_shared<tokenizer::tokenizer>(std::move(*tok)));
  if (!rt) return report(rt.err());
  return stream_answer(**rt, f.ask, "through " + url, [] { return stop_signal != 0; });
}

// Where each node runs and how it is started: locally (127.0.0.1), as a Slurm job step on
// its task's host, or over ssh on its host-file line's host.
struct placement {
  enum class how { local, slurm, ssh };
  std::vector<std::string> hosts;    // node k runs on hosts[k]; hosts[0] has the head
  std::string listen_host;           // the head's listening address
  how launch = how::local;
  std::vector<std::string> ssh_argv; // with how::ssh
  std::map<std::string, int> cpus_per_host;   // with how::slurm: the job's CPUs on each host
};

result<placement> place(const cluster_flags& f) {
  placement p;
  if (f.slurm && !f.hostfile.empty())
    return make_error(error_code::invalid_argument, "--slurm and --hostfile exclude each other");
  if (f.slurm) {
    auto hosts = slurm_task_hosts(slurm_environment());
    if (!hosts) return hosts.err();
    p.hosts = std::move(*hosts);
    p.listen_host = "0.0.0.0";   // reachable from the other hosts of the allocation
    p.launch = placement::how::slurm;
    if (auto cpus = slurm_cpus_per_host(slurm_environment()); cpus)
      p.cpus_per_host = std::move(*cpus);
    else if (f.threads == 0)
      spdlog::warn("dsrun: {}: each worker's step gets Slurm's default CPUs (give --threads)", cpus.err().message);
  } else if (!f.hostfile.empty()) {
    std::ifstream in(f.hostfile);
    if (!in) return make_error(error_code::not_found, "cannot read host file {}", f.hostfile);
    std::stringstream text;
    text << in.rdbuf();
    auto hosts = parse_hostfile(text.str());
    if (!hosts) return make_error(error_code::invalid_argument, "{}: {}", f.hostfile, hosts.err().message);
    p.hosts = std::move(*hosts);
    p.listen_host = "0.0.0.0";
    p.launch = placement::how::ssh;
    std::istringstream words(f.ssh);
    for (std::string w; words >> w;) p.ssh_argv.push_back(w);
    if (p.ssh_argv.empty()) return make_error(error_code::invalid_argument, "--ssh is empty");
  } else {
    p.hosts.assign(std::size_t(f.nodes), "127.0.0.1");
    p.listen_host = "127.0.0.1";
  }
  if (p.hosts.size() < 2)
    return make_error(error_code::invalid_argument, "a cluster needs at least 2 nodes (a head and a worker), got {}; "
                      "`dsrun ask` runs everything in one process", p.hosts.size());
  return p;
}

// The command that starts `argv` on node k's host: as it is; as a one-task Slurm step
// pinned to that host (--overlap: steps share the allocation's CPUs), with `cpus` CPUs
// when above 0 (a step's threads see only the CPUs it asked for); or through ssh (with a
// terminal, -tt by default, so the remote node gets SIGHUP when dsrun's ssh goes).
std::vector<std::string> launcher(const placement& p, std::size_t k, std::vector<std::string> argv, int cpus = 0) {
  if (p.launch == placement::how::local) return argv;
  if (p.launch == placement::how::ssh) return ssh_command(p.ssh_argv, p.hosts[k], argv);
  std::vector<std::string> cmd = {"srun", "--overlap", "--nodes=1", "--ntasks=1", "--nodelist=" + p.hosts[k],
                                  "--kill-on-bad-exit=1", "--quiet"};
  if (cpus > 0) cmd.push_back(fmt::format("--cpus-per-task={}", cpus));
  cmd.insert(cmd.end(), argv.begin(), argv.end());
  return cmd;
}

int run_cluster(const cluster_flags& f) {
  auto where = place(f);
  if (!where) return report(where.err());
  // --node-arg goes to every node, after the flags dsrun gives each (node_layout.h).
  for (const auto& a : f.node_args)
    if (auto s = check_node_arg(a); !s) return report(s.err());
  // Remote nodes read the secret and write the ready file in the run directory: a default
  // one under this host's /tmp is not theirs.
  if (where->launch != placement::how::local && f.run_dir.empty())
    return report(make_error(error_code::invalid_argument,
                             "--{} needs --run-dir on a filesystem every host shares (the nodes read the cluster "
                             "secret and write their ready file and logs there)",
                             f.slurm ? "slurm" : "hostfile"));
  const int node_count = int(where->hosts.size());
  const int workers = node_count - 1;
  const int replicas = f.replicas > 0 ? f.replicas : workers;
  if (replicas < workers)
    return report(make_error(error_code::invalid_argument, "{} replicas cannot cover {} workers", replicas, workers));
  if (f.device != "cpu" && f.device != "cuda")
    return report(make_error(error_code::invalid_argument, "--device {}: expected cpu or cuda", f.device));
  if (replicas > replicas_max)   // the default, one per worker, included
    return report(make_error(error_code::invalid_argument, "{} replicas: the head takes at most {}", replicas,
                             replicas_max));
  // Absolute paths: nodes may start elsewhere (srun, ssh) and in another directory.
  const std::filesystem::path run = std::filesystem::absolute(
      f.run_dir.empty() ? std::filesystem::path(fmt::format("/tmp/dsrun-{}", ::getpid())) : std::filesystem::path(f.run_dir));
  const std::string model_dir = std::filesystem::absolute(f.model_dir).string();
  std::error_code ec;
  std::filesystem::create_directories(run, ec);
  const auto secret_file = run / "cluster.secret";
  const auto ready_file = run / "ready";
  const auto drained_file = run / "drained";
  std::filesystem::remove(secret_file, ec);
  std::filesystem::remove(ready_file, ec);
  std::filesystem::remove(drained_file, ec);
  auto secret = transport::create_secret_file(secret_file);
  if (!secret) return report(secret.err());

  const auto dsnode = find_dsnode(f);
  const auto head_addr = fmt::format("{}:{}", where->hosts[0], f.port);
  std::vector<std::unique_ptr<node_process>> nodes;
  // Node i's metrics file, and its common arguments.
  const std::filesystem::path metrics_dir =
      f.metrics_dir.empty() ? run : std::filesystem::absolute(std::filesystem::path(f.metrics_dir));
  std::filesystem::create_directories(metrics_dir, ec);
  const auto metrics_file = [&](std::size_t i) { return metrics_dir / fmt::format("node-{}.prom", i); };
  auto common = [&](std::size_t i, std::vector<std::string> a) {
    for (const auto& x : {std::string("--model"), model_dir, std::string("--secret-file"), secret_file.string(),
                          std::string("--metrics-file"), metrics_file(i).string()})
      a.push_back(x);
    for (const auto& x : f.node_args) a.push_back(x);
    return a;
  };
  // A Slurm step's CPUs: as many as asked, at most what the job holds on its host (0: Slurm's
  // default, where that is not known).
  auto step_cpus = [&](const std::string& host, int want) {
    const auto c = where->cpus_per_host.find(host);
    return c == where->cpus_per_host.end() ? 0 : std::min(want, c->second);
  };
  nodes.push_back(std::make_unique<node_process>(
      "head",
      launcher(*where, 0,
               common(0, {dsnode, "head", "--listen", fmt::format("{}:{}", where->listen_host, f.port), "--replicas",
                       std::to_string(replicas), "--ready-file", ready_file.string(), "--drained-file",
                       drained_file.string(), "--drain-timeout-ms", std::to_string(f.drain_timeout_ms)}),
               step_cpus(where->hosts[0], head_step_cpus_max)),
      (run / "node-0.log").string()));
  // One GPU per replica: workers sharing a host take consecutive ordinals there.
  const auto layout = lay_out_workers(where->hosts, replicas);
  for (int w = 0; w < workers; ++w) {
    const auto& l = layout[std::size_t(w)];
    std::vector<std::string> argv = {dsnode, "worker", "--head", head_addr, "--node-id", std::to_string(w + 1),
                                     "--replicas", std::to_string(l.replicas), "--replica-base",
                                     std::to_string(l.replica_base), "--device",
                                     f.device == "cpu" ? std::string("cpu") : fmt::format("cuda:{}", l.first_gpu)};
    // Its threads: --threads; else its share of its host's CPUs: on this machine of those
    // dsrun may use, in a Slurm job of the job's there (its step asks for as many), over
    // ssh of the host's, which the node counts itself (--host-workers).
    int threads = f.threads;
    if (threads == 0 && where->launch == placement::how::local) threads = std::max(1, usable_cores() / workers);
    if (const auto c = where->cpus_per_host.find(l.host); threads == 0 && c != where->cpus_per_host.end())
      threads = std::max(1, c->second / l.host_workers);
    if (threads > 0)
      argv.insert(argv.end(), {"--threads", std::to_string(threads)});
    else if (l.host_workers > 1)
      argv.insert(argv.end(), {"--host-workers", std::to_string(l.host_workers)});
    nodes.push_back(std::make_unique<node_process>(
        fmt::format("worker {}", w + 1),
        launcher(*where, std::size_t(w + 1), common(std::size_t(w + 1), argv), step_cpus(l.host, threads)),
        (run / fmt::format("node-{}.log", w + 1)).string()));
  }
  // Starts node i and records its pid in run/node-I.pid (for operators and tests).
  auto start_node = [&](std::size_t i) -> status {
    if (i == 0) std::filesystem::remove(drained_file, ec);   // a restarted head drains anew
    DSRT_TRY(nodes[i]->start());
    std::ofstream(run / fmt::format("node-{}.pid", i)) << nodes[i]->pid() << "\n";
    return ok_t{};
  };
  std::signal(SIGINT, on_stop);
  std::signal(SIGTERM, on_stop);
  for (std::size_t i = 0; i < nodes.size(); ++i)
    if (auto s = start_node(i); !s) return report(s.err());

  // A run directory dsrun chose itself goes after a clean stop; a failed run keeps it (the
  // logs say why), and one the user named is theirs.
  auto forget_run_dir = [&] {
    if (f.run_dir.empty()) std::filesystem::remove_all(run, ec);
  };
  // Stops the head first (it drains), then the workers. Over ssh the process dsrun signals
  // is the local ssh, which ends at once while the remote head is still draining: then the
  // head's drained file (on the run directory the hosts share) says when it is done.
  auto stop_all = [&] {
    const int drain_ms = int(f.drain_timeout_ms) + stop_grace_ms;
    nodes.front()->stop(drain_ms);
    if (where->launch == placement::how::ssh && std::filesystem::exists(ready_file)) {
      const auto give_up = std::chrono::steady_clock::now() + milliseconds(drain_ms);
      while (!std::filesystem::exists(drained_file) && std::chrono::steady_clock::now() < give_up)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    for (std::size_t i = 1; i < nodes.size(); ++i) nodes[i]->stop(stop_grace_ms);
  };
  const auto url = "dsrt://" + head_addr;
  const auto give_up = std::chrono::steady_clock::now() + milliseconds(f.ready_timeout_ms);
  while (!std::filesystem::exists(ready_file)) {
    for (auto& n : nodes)
      if (!n->running()) {
        const auto why = fmt::format("{} {} before the cluster was ready (log: {})", n->name(), n->how_it_ended(),
                                     (run / fmt::format("node-{}.log", &n - &nodes.front())).string());
        stop_all();
        return report(make_error(error_code::unavailable, "{}", why));
      }
    if (stop_signal || std::chrono::steady_clock::now() > give_up) {
      stop_all();
      return report(make_error(error_code::unavailable, "the cluster was not ready within {} ms (logs in {})",
                               f.ready_timeout_ms, run.string()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::printf("dsrun: cluster ready: %d nodes, %d replicas at %s (secret file %s, logs in %s)\n", node_count, replicas,
              url.c_str(), secret_file.c_str(), run.c_str());
  std::fflush(stdout);
  if (!f.ask.prompt.empty()) {
    const int rc = ask(f, url, *secret);
    stop_all();
    if (rc == 0) forget_run_dir();
    return rc;
  }

  // Keep the nodes alive until told to stop.
  const policy::restart_config restarts{f.restarts_max, milliseconds(f.restart_period_ms)};
  std::vector<policy::restart_budget> budgets(nodes.size(), policy::restart_budget(restarts));
  std::vector<bool> left_down(nodes.size(), false);
  int workers_left = workers;
  const auto budget_text = fmt::format("{} restarts in {} ms, --restarts-max/--restart-period-ms",
                                       f.restarts_max, f.restart_period_ms);
  while (!stop_signal) {
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      auto& n = *nodes[i];
      if (left_down[i] || n.running()) continue;
      const auto decision = budgets[i].on_failure(std::chrono::steady_clock::now());
      if (decision == policy::restart_decision::restart) {
        spdlog::warn("dsrun: {} {}: restarting it", n.name(), n.how_it_ended());
        if (auto s = start_node(i); !s) spdlog::error("dsrun: {}", s.err().to_string());
        continue;
      }
      if (i == 0 || workers_left == 1) {
        spdlog::error("dsrun: {} {} and its restart budget ({}) is spent: {}; stopping the cluster", n.name(),
                      n.how_it_ended(), budget_text, i == 0 ? "nothing serves without the head" : "no worker is left");
        stop_all();
        return 1;
      }
      left_down[i] = true;
      --workers_left;
      std::filesystem::remove(run / fmt::format("node-{}.pid", i), ec);
      std::filesystem::remove(metrics_file(i), ec);   // its figures are no longer a node's
      spdlog::error("dsrun: {} {} and its restart budget ({}) is spent: left down; {} of {} workers serve on",
                    n.name(), n.how_it_ended(), budget_text, workers_left, workers);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::printf("dsrun: signal %d: draining and stopping every node\n", int(stop_signal));
  std::fflush(stdout);
  stop_all();
  forget_run_dir();
  return 0;
}

}  // namespace

std::function<int()> add_cluster_command(CLI::App& app) {
  auto f = std::make_shared<cluster_flags>();
  auto* cmd = app.add_subcommand("cluster", "start a local cluster of dsnode processes (same as dsrun --nodes N)");
  cmd->add_option("--model", f->model_dir, "model directory")->required();
  cmd->add_option("--nodes", f->nodes, "node processes: a head and N-1 workers")->capture_default_str()
      ->check(CLI::Range(2, replicas_max + 1));
  cmd->add_option("--replicas", f->replicas, "model replicas over the workers (default: one per worker)")
      ->check(CLI::Range(1, replicas_max));
  cmd->add_flag("--slurm", f->slurm,
                "inside a Slurm allocation: one node per task (SLURM_NTASKS), started with srun on its "
                "task's host; --run-dir must be on a filesystem the hosts share");
  cmd->add_option("--hostfile", f->hostfile,
                  "one host per line (the first runs the head): start the nodes there over ssh; paths must be "
                  "valid on every host");
  cmd->add_option("--ssh", f->ssh, "the ssh command for --hostfile (split at spaces)")->capture_default_str();
  cmd->add_option("--port", f->port, "the head's port (on 127.0.0.1; with --slurm/--hostfile on every address of its host)")->capture_default_str()->check(CLI::Range(1, 65535));
  cmd->add_option("--run-dir", f->run_dir,
                  "where the secret, the ready file, node logs and metrics go (default /tmp/dsrun-PID, removed "
                  "after a clean stop; with --slurm/--hostfile required, on a filesystem every host shares)");
  cmd->add_option("--metrics-dir", f->metrics_dir,
                  "where each node writes its metrics, node-N.prom (default: the run directory)");
  cmd->add_option("--dsnode", f->dsnode, "the dsnode binary (default: next to dsrun)");
  cmd->add_option("--threads", f->threads,
                  "CPU threads per worker (default: its share of its host's CPUs among the workers there: on "
                  "this machine of dsrun's, with --slurm of the job's on the host, with --hostfile of the host's)");
  cmd->add_option("--device", f->device,
                  "cpu, or cuda: one GPU per replica (workers sharing a host take consecutive ordinals "
                  "there, from cuda:0)")
      ->capture_default_str();
  cmd->add_option("--ready-timeout-ms", f->ready_timeout_ms, "how long to wait for every replica")
      ->capture_default_str()->check(CLI::Range(std::int64_t(1), ready_timeout_ms_max));
  cmd->add_option("--drain-timeout-ms", f->drain_timeout_ms, "how long in-flight requests may take on stop")
      ->capture_default_str()->check(CLI::Range(std::int64_t(0), drain_timeout_ms_max));
  cmd->add_option("--restarts-max", f->restarts_max,
                  "restarts of one node allowed in any --restart-period-ms (0: never restart); a worker past "
                  "it is left down, a head past it stops the cluster")
      ->capture_default_str()
      ->check(CLI::Range(0, policy::restart_restarts_max_limit));
  cmd->add_option("--restart-period-ms", f->restart_period_ms, "the window --restarts-max counts in")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t(1), restart_period_ms_max));
  cmd->add_option("--node-arg", f->node_args, "an extra argument for every dsnode (repeat; e.g. --node-arg=--null-backend)");
  add_prompt_flags(*cmd, f->ask, /*prompt_required=*/false);   // --prompt: answer it, then stop
  return [f] { return run_cluster(*f); };
}

}  // namespace dsrt::apps
