// dsnode: one node of a dsrt cluster (ARCHITECTURE.md, "Cluster and operations"). dsrun
// starts these; run by hand only to place nodes yourself.
//
//   dsnode head   --model DIR --secret-file F --listen 127.0.0.1:7400 --replicas R [--ready-file F]
//   dsnode worker --model DIR --secret-file F --head 127.0.0.1:7400 --node-id N
//                 --replicas r --replica-base b
//
// The head runs the router, the response cache and the head link, and listens for workers
// and clients; it writes --ready-file (its address) once the router knows all R replicas.
// A worker runs r replicas (cluster replicas b .. b+r-1) under its node supervisor and
// connects to the head, reconnecting when the connection is lost.
// With --metrics-file each writes its metrics (Prometheus text: its actors' series and its
// transport's) there every --metrics-interval-ms, and once more as it stops.
// SIGTERM / SIGINT / SIGHUP: the head drains (new requests get UNAVAILABLE, accepted ones finish,
// at most --drain-timeout-ms) and exits; a worker exits at once.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <thread>

#include "actors/cluster_node.h"
#include "actors/remote_runtime.h"
#include "apps/common/runtime_setup.h"
#include "apps/dsnode/metrics_file.h"
#include "transport/auth.h"

namespace dsrt::apps {
namespace {

struct node_flags {
  engine_flags engine;
  runtime_flags runtime;
  std::string secret_file;
  std::string listen = "127.0.0.1:7400";
  std::string head = "127.0.0.1:7400";
  std::string ready_file;
  std::string drained_file;
  std::string metrics_file;
  std::int64_t metrics_interval_ms = 5000;
  std::int32_t node_id = 1;
  std::int32_t replica_base = 0;
  std::int32_t host_workers = 1;   // workers sharing this host's cores (without --threads)
  std::int64_t drain_timeout_ms = 30000;
  std::int64_t heartbeat_interval_ms = 500;
  std::int64_t heartbeat_timeout_ms = 3000;
  std::int64_t busy_poll_us = 0;
  bool data_endpoints = true;
  std::int64_t data_endpoints_max = std::int64_t(dsrt::transport::transport_config{}.data_endpoints_max);
  std::int64_t data_endpoints_per_worker =
      std::int64_t(dsrt::transport::transport_config{}.data_endpoints_per_worker);
  std::int64_t link_messages_per_turn = actors::bridge_limits{}.link_messages_per_turn;
};

result<actors::cluster_address> parse_host_port(const std::string& text) {
  return actors::parse_cluster_url("dsrt://" + text);
}

// The transport settings both kinds of node take from their flags. The transport checks
// deadlines every tick_interval_ms (20 ms), at most once a heartbeat interval.
void apply_transport_flags(const node_flags& f, transport::transport_config& t) {
  t.session.heartbeat_interval_ms = milliseconds(f.heartbeat_interval_ms);
  t.session.heartbeat_timeout_ms = milliseconds(f.heartbeat_timeout_ms);
  t.tick_interval_ms = std::min(t.tick_interval_ms, t.session.heartbeat_interval_ms);
  t.busy_poll_us = std::chrono::microseconds(f.busy_poll_us);
  t.data_endpoints = f.data_endpoints;
  t.data_endpoints_max = std::size_t(f.data_endpoints_max);
  t.data_endpoints_per_worker = std::size_t(f.data_endpoints_per_worker);
}

// SIGINT and SIGTERM are blocked in every thread and taken here, so no handler runs inside
// the actors. Returns the signal, or 0 after `wait`.
int wait_signal(const sigset_t& set, milliseconds wait) {
  timespec ts{time_t(wait.count() / 1000), long(wait.count() % 1000) * 1000000L};
  const int sig = ::sigtimedwait(&set, nullptr, &ts);
  return sig > 0 ? sig : 0;
}

// Writes `line` to `path` at once (replace_file); nothing when path is empty.
void write_marker(const std::string& path, const std::string& line) {
  if (path.empty()) return;
  if (auto s = replace_file(path, line + "\n"); !s) spdlog::warn("dsnode: {}", s.err().to_string());
}

int run_head(const node_flags& f, const sigset_t& signals) {
  auto secret = transport::read_secret_file(f.secret_file);
  if (!secret) return report(secret.err());
  auto listen = parse_host_port(f.listen);
  if (!listen) return report(listen.err());
  // The head loads the tokenizer and the model's config only.
  auto loaded = load_replicas(f.engine, f.runtime, actors::runtime_options{}, /*models=*/false);
  if (!loaded) return report(loaded.err());
  actors::head_node_options options;
  options.transport.listen_host = listen->host;
  options.transport.listen_port = listen->port;
  apply_transport_flags(f, options.transport);
  options.scheduler_threads = loaded->options.scheduler_threads;
  options.ask_timeout_ms = loaded->options.ask_timeout_ms;
  options.bridge.link_messages_per_turn = std::size_t(f.link_messages_per_turn);
  options.router = loaded->options.router;
  options.replicas = f.runtime.replicas;
  options.priority_classes = loaded->options.supervisor.scheduler.priority_classes;
  auto head = actors::head_node::start(options, *secret, loaded->tokenizer);
  if (!head) return report(head.err());
  spdlog::info("dsnode head: listening on {}:{}, waiting for {} replicas", listen->host, (*head)->port(),
               f.runtime.replicas);
  metrics_file metrics(f.metrics_file, milliseconds(f.metrics_interval_ms));
  const auto metrics_text = [&] { return (*head)->metrics_text(); };
  bool ready = false;
  for (;;) {
    metrics.write_when_due(metrics_text);
    if (const int sig = wait_signal(signals, milliseconds(100))) {
      spdlog::info("dsnode head: signal {}: draining", sig);
      break;
    }
    if (!ready && (*head)->wait_ready(milliseconds(0))) {
      ready = true;
      const auto url = fmt::format("dsrt://{}:{}", listen->host, (*head)->port());
      std::printf("dsnode head: ready %s\n", url.c_str());
      std::fflush(stdout);
      write_marker(f.ready_file, url);
    }
  }
  (*head)->drain();
  const auto give_up = std::chrono::steady_clock::now() + milliseconds(f.drain_timeout_ms);
  while ((*head)->in_flight() > 0 && std::chrono::steady_clock::now() < give_up) {
    metrics.write_when_due(metrics_text);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const auto left = (*head)->in_flight();
  metrics.write_when_due(metrics_text, /*now=*/true);
  spdlog::info("dsnode head: drained ({} requests still in flight), stopping", left);
  write_marker(f.drained_file, fmt::format("{} requests still in flight", left));
  return 0;
}

int run_worker(const node_flags& f, const sigset_t& signals) {
  auto secret = transport::read_secret_file(f.secret_file);
  if (!secret) return report(secret.err());
  auto head = parse_host_port(f.head);
  if (!head) return report(head.err());
  engine_flags engine = f.engine;
  if (engine.threads <= 0 && f.host_workers > 1) engine.threads = std::max(1, usable_cores() / f.host_workers);
  auto loaded = load_replicas(engine, f.runtime, actors::runtime_options{});
  if (!loaded) return report(loaded.err());
  actors::worker_node_options options;
  apply_transport_flags(f, options.transport);
  options.scheduler_threads = loaded->options.scheduler_threads;
  options.ask_timeout_ms = loaded->options.ask_timeout_ms;
  options.bridge.link_messages_per_turn = std::size_t(f.link_messages_per_turn);
  options.link.head_host = head->host;
  options.link.head_port = head->port;
  options.link.replica_base = f.replica_base;
  options.link.replicas = f.runtime.replicas;
  options.supervisor = loaded->options.supervisor;
  options.supervisor.executors = loaded->executors;
  options.node_id = f.node_id;
  auto node = actors::worker_node::start(options, *secret);
  if (!node) return report(node.err());
  spdlog::info("dsnode worker {}: replicas {}..{}, head {}:{}", f.node_id, f.replica_base,
               f.replica_base + f.runtime.replicas - 1, head->host, head->port);
  metrics_file metrics(f.metrics_file, milliseconds(f.metrics_interval_ms));
  const auto metrics_text = [&] { return (*node)->metrics_text(); };
  do metrics.write_when_due(metrics_text);
  while (!wait_signal(signals, milliseconds(100)));
  metrics.write_when_due(metrics_text, /*now=*/true);
  spdlog::info("dsnode worker {}: stopping", f.node_id);
  return 0;
}

void add_common(CLI::App& cmd, node_flags& f) {
  add_engine_flags(cmd, f.engine);
  add_runtime_flags(cmd, f.runtime);
  cmd.add_option("--secret-file", f.secret_file, "the cluster secret (dsrun creates it, mode 0600)")->required();
  cmd.add_option("--heartbeat-interval-ms", f.heartbeat_interval_ms,
                 "heartbeat period (peers that heartbeat less often than half their timeout allow two of it)")
      ->capture_default_str()->check(CLI::Range(10, 60000));
  cmd.add_option("--heartbeat-timeout-ms", f.heartbeat_timeout_ms, "silence after which a peer is down")
      ->capture_default_str()->check(CLI::Range(2, 3600000));
  cmd.add_option("--busy-poll-us", f.busy_poll_us,
                 "after traffic the transport thread polls this long before sleeping: lower latency for a core "
                 "(for hosts with cores to spare; dsrun: --node-arg=--busy-poll-us=N)")
      ->capture_default_str()->check(CLI::Range(0, 1000000));
  cmd.add_flag("!--no-data-endpoints", f.data_endpoints,
               "keep frames and tensors to peers on this host on the connection (TCP) instead of shared "
               "memory: for hosts where processes with one host name cannot share memory");
  cmd.add_option("--data-endpoints-max", f.data_endpoints_max,
                 "data endpoints (shared memory to peers on this host) the node holds at once; UCX keeps each "
                 "(~4 MiB mapped) until its data worker is destroyed, so past it new peers are served over TCP")
      ->capture_default_str()->check(CLI::Range(std::int64_t(0), std::int64_t(1) << 20));
  cmd.add_option("--data-endpoints-per-worker", f.data_endpoints_per_worker,
                 "connections given one data worker; a data worker is destroyed, with the endpoints UCX kept "
                 "in it, once all of them are gone")
      ->capture_default_str()->check(CLI::Range(std::int64_t(1), std::int64_t(dsrt::transport::data_endpoints_per_worker_max)));
  cmd.add_option("--link-messages-per-turn", f.link_messages_per_turn,
                 "messages the node's link actor handles per turn on the transport thread before it moves to "
                 "a scheduler thread; 0: always on the scheduler")
      ->capture_default_str()->check(CLI::Range(0, 1 << 20));
  cmd.add_option("--metrics-file", f.metrics_file,
                 "write the node's metrics (Prometheus text: its actors' series and its transport's) to this "
                 "file, replaced whole each time (dsrun: RUN_DIR/node-N.prom)");
  cmd.add_option("--metrics-interval-ms", f.metrics_interval_ms, "how often --metrics-file is written")
      ->capture_default_str()->check(CLI::Range(100, 3600000));
}

}  // namespace
}  // namespace dsrt::apps

int main(int argc, char** argv) {
  using namespace dsrt::apps;
  CLI::App app{"dsnode: one node of a dsrt cluster (dsrun starts these)"};
  app.require_subcommand(1);
  node_flags f;
  f.runtime.replicas_fixed = true;   // a node's replicas are dsrun's layout (--replicas)
  auto* head = app.add_subcommand("head", "the router and cluster front door");
  add_common(*head, f);
  head->add_option("--listen", f.listen, "HOST:PORT for workers and clients")->capture_default_str();
  head->add_option("--ready-file", f.ready_file, "written (with the address) once every replica is up");
  head->add_option("--drained-file", f.drained_file,
                   "written once a signal's drain has ended (dsrun waits for it before stopping the workers)");
  head->add_option("--drain-timeout-ms", f.drain_timeout_ms, "on SIGTERM, how long in-flight requests may take")
      ->capture_default_str()->check(CLI::Range(0, 3600000));
  auto* worker = app.add_subcommand("worker", "replicas (batcher + shard pairs) under a node supervisor");
  add_common(*worker, f);
  worker->add_option("--head", f.head, "the head's HOST:PORT")->capture_default_str();
  worker->add_option("--node-id", f.node_id, "this node's number (1..)")->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  worker->add_option("--replica-base", f.replica_base, "cluster index of this node's first replica")
      ->capture_default_str()->check(CLI::Range(0, 1 << 20));
  worker->add_option("--host-workers", f.host_workers,
                     "workers sharing this host: without --threads each takes this share of the host's cores "
                     "(dsrun sets it)")
      ->capture_default_str()->check(CLI::Range(1, 1 << 16));
  CLI11_PARSE(app, argc, argv);

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);   // started over ssh -tt: dsrun's ssh went away
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);   // before any thread starts
  if (app.got_subcommand("head")) return run_head(f, signals);
  return run_worker(f, signals);
}
