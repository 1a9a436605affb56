#include "apps/dsbench/transport_bench.h"

#include <nlohmann/json.hpp>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <thread>

#include "actors/blocking_ask.h"
#include "actors/system_config.h"
#include "actors/transport_bridge.h"
#include "apps/common/engine_setup.h"
#include "apps/common/node_process.h"
#include "apps/dsbench/hop_costs.h"
#include "apps/dsbench/hop_trace_report.h"
#include "apps/dsbench/transport_neighbours.h"
#include "transport/auth.h"
#include "transport/hop_trace.h"
#include "transport/wire.h"

namespace dsrt::apps {
namespace {

namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;
using actors::frame_msg;
using actors::peer_down_msg;
using actors::peer_up_msg;
using actors::tensor_msg;
using transport::frame_type;

constexpr auto peer_ready_wait = std::chrono::seconds(30);   // a peer process's start, at most
// --hop-trace: room for this many marks a round trip (a frame in and its reply out take 11),
// this many more for the rest (handshake, heartbeats, tensors), and at most this many in all
// (16 bytes each); marks past it are counted as dropped.
constexpr std::size_t hop_marks_per_round_trip = 16;
constexpr std::size_t hop_marks_besides = 4096;
constexpr std::size_t hop_marks_max = std::size_t(1) << 22;

struct transport_flags {
  bool serve = false;                  // internal: be the peer process
  std::string secret_file;             // internal, with --serve
  int port = 7600;
  int round_trips = 20000;
  int warmup = 1000;
  std::int64_t tensor_mb = 64;
  int tensors = 16;
  int tensor_warmup = 4;               // acknowledged before the clock starts
  int window = 2;                      // tensors in flight
  bool perftest = true;
  bool data_endpoints = true;          // false: tensors stay on the connection (A/B)
  bool link_inline = true;             // false: both actors always on CAF's scheduler (A/B)
  int busy_poll_us = 0;                // transport_config::busy_poll_us, both processes
  bool actors = true;                  // false: round trips between transport callbacks (no CAF)
  int idle_peers = 0;                  // more connections to the peer, idle while measuring
  bool hop_trace = false;              // both processes record their hop traces
  std::string hop_trace_out;           // internal, with --serve: where the peer writes its trace
  std::string json_path;
};

// ---- the peer process: echoes every frame and acknowledges every tensor ----

// The peer's answers, whoever runs them: a Cancel back for a Cancel, a ReplicaCancel for a tensor.
void echo(transport::ucx_transport& t, transport::peer_id peer, transport::decoded_frame& frame) {
  if (frame.type() != frame_type::cancel) return;
  transport::hop_trace::mark(transport::hop_trace::stage::handler);
  if (auto id = transport::decode_cancel(frame)) (void)t.send(peer, transport::encode_cancel(frame_type::cancel, *id));
}
void acknowledge(transport::ucx_transport& t, transport::peer_id peer, const transport::tensor_header_wire& header) {
  (void)t.send(peer, transport::encode_cancel(frame_type::replica_cancel, header.tag));
}

caf::behavior echo_actor(caf::event_based_actor*, transport::ucx_transport* t) {
  return {
      [=](peer_up_msg&) {},
      [=](peer_down_msg&) {},
      [=](frame_msg& m) { echo(*t, m.peer, *m.frame); },
      [=](tensor_msg& m) { acknowledge(*t, m.peer, m.header); },
  };
}

// --no-actors: the same echo as a transport handler, on the progress thread, without CAF.
class echo_handler : public transport::transport_handler {
 public:
  // Set once start() returns, before "ready" (the pinger connects after that); until then
  // (never, in practice) a frame is dropped.
  std::atomic<transport::ucx_transport*> transport{nullptr};
  void on_peer_up(transport::peer_id, const transport::hello_wire&) override {}
  void on_frame(transport::peer_id peer, transport::decoded_frame frame) override {
    if (auto* t = transport.load(std::memory_order_acquire)) echo(*t, peer, frame);
  }
  void on_tensor(transport::peer_id peer, transport::tensor_header_wire header, transport::tensor_buffer) override {
    if (auto* t = transport.load(std::memory_order_acquire)) acknowledge(*t, peer, header);
  }
  void on_peer_down(transport::peer_id, const error&) override {}
};

std::size_t hop_trace_capacity(const transport_flags& f) {
  return std::min(hop_marks_max,
                  hop_marks_per_round_trip * std::size_t(f.round_trips + f.warmup) + hop_marks_besides);
}

// With --hop-trace the peer waits for the benchmark's SIGTERM (blocked in every thread, taken
// with sigwait), writes its trace and exits at once, as SIGTERM would have ended it: nothing
// is torn down (the echo actor would keep CAF's system waiting). Exit status 1: no trace.
[[noreturn]] void write_trace_on_sigterm(const sigset_t& term, const std::string& path) {
  int signal = 0;
  while (::sigwait(&term, &signal) != 0 || signal != SIGTERM) {
  }
  transport::hop_trace::stop();
  std::ofstream out(path);
  out << hop_trace_json(transport::hop_trace::summary()).dump() << '\n';
  out.close();
  std::_Exit(out ? 0 : 1);
}

int serve(const transport_flags& f) {
  auto secret = transport::read_secret_file(f.secret_file);
  if (!secret) return report(secret.err());
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  if (f.hop_trace) {
    ::pthread_sigmask(SIG_BLOCK, &term, nullptr);   // before any thread starts: all inherit it
    transport::hop_trace::start(hop_trace_capacity(f));
  }
  auto config = actors::make_system_config(1);
  caf::actor_system system(*config);
  actors::transport_bridge bridge;
  actors::bridge_limits limits;
  if (!f.link_inline) limits.link_messages_per_turn = 0;
  transport::transport_config tc;
  tc.busy_poll_us = std::chrono::microseconds(f.busy_poll_us);
  tc.listen_port = std::uint16_t(f.port);
  // The peer takes `window` tensors of tensor_mb MiB at once, whatever their size.
  const std::uint64_t tensor_bytes = std::uint64_t(f.tensor_mb) << 20;
  tc.tensor_bytes_max = std::max(tc.tensor_bytes_max, tensor_bytes);
  tc.inbound_bytes_max =
      std::max(tc.inbound_bytes_max, std::uint64_t(f.window) * tensor_bytes + tc.session.limits.message_bytes_max * 2);
  echo_handler plain;
  transport::transport_handler& handler = f.actors ? static_cast<transport::transport_handler&>(bridge) : plain;
  auto t = transport::ucx_transport::start(tc, *secret, {transport::node_role::head, 0, 1}, handler);
  if (!t) {
    bridge.set_target(caf::actor{});
    return report(t.err());
  }
  plain.transport.store(t->get(), std::memory_order_release);
  auto echo = system.spawn(echo_actor, t->get());
  bridge.set_target(echo, {}, limits);
  std::printf("ready\n");
  std::fflush(stdout);
  // Runs until the benchmark stops it (its parent's death kills it too).
  if (f.hop_trace) write_trace_on_sigterm(term, f.hop_trace_out);
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}

// ---- this process: the pinger ----

struct measured {
  std::vector<double> rtt_us;         // one per round trip after the warm-up
  double tensor_seconds = 0;          // first tensor sent -> last acknowledged
  std::int64_t tensor_bytes = 0;
  std::string failure;
};

// The pinger's protocol, whoever runs it: round trips (Cancel out, Cancel back), then
// tensors acknowledged by ReplicaCancel. Everything runs on one thread at a time.
class pinger {
 public:
  // `t` may be set later (set_transport), before the connect that brings the peer up.
  pinger(transport_flags flags, transport::ucx_transport* t, std::shared_ptr<std::promise<measured>> done)
      : flags_(std::move(flags)), transport_(t), done_(std::move(done)) {}

  void set_transport(transport::ucx_transport* t) { transport_ = t; }
  void up(transport::peer_id peer) {
    peer_ = peer;
    send_ping();
  }
  void down(const error& why) {
    out_.failure = why.to_string();
    finish();
  }
  // False once the measurements are done (or failed).
  bool frame(const transport::decoded_frame& f) {
    if (f.type() == frame_type::cancel) {   // a round trip came back
      transport::hop_trace::mark(transport::hop_trace::stage::handler);
      const double us = std::chrono::duration<double, std::micro>(steady::now() - sent_at_).count();
      if (sent_++ >= flags_.warmup) out_.rtt_us.push_back(us);
      if (sent_ < flags_.warmup + flags_.round_trips) {
        send_ping();
        return true;
      }
      if (!flags_.actors) return finish();   // no tensors without actors: round trips only
      // Steady state: from the warmup-th acknowledgement to the last, `tensors` tensors
      // complete (the receiver's buffer pool is warm, the window full).
      buffer_ = std::make_shared<std::vector<std::byte>>(std::size_t(flags_.tensor_mb) << 20, std::byte{1});
      tensors_started_ = steady::now();
      for (int i = 0; i < std::min(flags_.window, tensors_total()); ++i) send_tensor();
    } else if (f.type() == frame_type::replica_cancel) {   // a tensor acknowledged
      if (++tensors_acked_ == flags_.tensor_warmup) tensors_started_ = steady::now();
      if (tensors_acked_ < tensors_total()) {
        if (tensors_sent_ < tensors_total()) send_tensor();
        return true;
      }
      out_.tensor_seconds = std::chrono::duration<double>(steady::now() - tensors_started_).count();
      out_.tensor_bytes = std::int64_t(buffer_->size()) * flags_.tensors;
      return finish();
    }
    return true;
  }

 private:
  int tensors_total() const { return flags_.tensor_warmup + flags_.tensors; }
  void send_ping() {
    sent_at_ = steady::now();
    (void)transport_->send(peer_, transport::encode_cancel(frame_type::cancel, std::uint64_t(sent_)));
  }
  void send_tensor() {
    const auto tag = std::uint64_t(tensors_sent_++);
    if (auto s = transport_->send_tensor(peer_, {tag, 0, 0, {std::int64_t(buffer_->size())}}, buffer_, *buffer_); !s)
      out_.failure = s.err().to_string();
  }
  bool finish() {
    if (done_) std::exchange(done_, nullptr)->set_value(std::move(out_));
    return false;
  }

  transport_flags flags_;
  transport::ucx_transport* transport_;
  std::shared_ptr<std::promise<measured>> done_;
  std::shared_ptr<std::vector<std::byte>> buffer_;   // the tensor, once round trips are done
  transport::peer_id peer_ = 0;
  int sent_ = 0;
  steady::time_point sent_at_, tensors_started_;
  int tensors_sent_ = 0, tensors_acked_ = 0;
  measured out_;
};

struct pinger_state {
  std::optional<pinger> p;
  static inline const char* name = "dsbench.pinger";
};

caf::behavior pinger_actor(caf::stateful_actor<pinger_state>* self, transport_flags flags,
                           transport::ucx_transport* t, std::shared_ptr<std::promise<measured>> done) {
  self->state.p.emplace(flags, t, std::move(done));
  (void)t->connect("127.0.0.1", std::uint16_t(flags.port));
  return {
      [self](peer_up_msg& m) { self->state.p->up(m.peer); },
      [self](peer_down_msg& m) {
        self->state.p->down(m.why);
        self->quit();
      },
      [self](frame_msg& m) {
        if (!self->state.p->frame(*m.frame)) self->quit();
      },
      [](tensor_msg&) {},
  };
}

// --no-actors: the pinger as a transport handler, on the progress thread, without CAF.
class ping_handler : public transport::transport_handler {
 public:
  explicit ping_handler(pinger& p) : pinger_(p) {}
  void on_peer_up(transport::peer_id peer, const transport::hello_wire&) override { pinger_.up(peer); }
  void on_frame(transport::peer_id, transport::decoded_frame frame) override { (void)pinger_.frame(frame); }
  void on_tensor(transport::peer_id, transport::tensor_header_wire, transport::tensor_buffer) override {}
  void on_peer_down(transport::peer_id, const error& why) override { pinger_.down(why); }

 private:
  pinger& pinger_;
};

std::string self_exe() { return fs::read_symlink("/proc/self/exe").string(); }

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, std::size_t(q * double(v.size() - 1) + 0.5))];
}

int run(const transport_flags& f) {
  if (f.serve) return serve(f);
  const fs::path dir = fs::temp_directory_path() / ("dsbench-transport-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto secret = transport::create_secret_file(dir / "secret");
  if (!secret) return report(secret.err());
  std::vector<std::string> peer_args = {self_exe(), "transport", "--serve", "--port", std::to_string(f.port),
                                        "--secret-file", (dir / "secret").string(), "--tensor-mb",
                                        std::to_string(f.tensor_mb), "--window", std::to_string(f.window)};
  if (!f.link_inline) peer_args.push_back("--link-on-scheduler");
  if (!f.actors) peer_args.push_back("--no-actors");
  peer_args.insert(peer_args.end(), {"--busy-poll-us", std::to_string(f.busy_poll_us)});
  const fs::path peer_trace = dir / "peer-hop-trace.json";
  if (f.hop_trace) {
    peer_args.insert(peer_args.end(), {"--hop-trace", "--hop-trace-out", peer_trace.string(), "--round-trips",
                                       std::to_string(f.round_trips), "--warmup", std::to_string(f.warmup)});
  }
  node_process peer("peer", std::move(peer_args), (dir / "peer.log").string());
  if (auto s = peer.start(); !s) return report(s.err());
  if (auto s = wait_until_ready(peer, dir / "peer.log", peer_ready_wait); !s) return report(s.err());

  measured m;
  std::uint64_t tensors_direct = 0;
  idle_peers idle;   // outlives the measurement: its connections stay up through it
  if (f.idle_peers > 0)
    if (auto s = idle.connect(*secret, f.port, f.idle_peers, peer_ready_wait); !s) return report(s.err());
  {
    auto config = actors::make_system_config(1);
    caf::actor_system system(*config);
    actors::transport_bridge bridge;
    transport::transport_config tc;
    tc.listen = false;
    tc.busy_poll_us = std::chrono::microseconds(f.busy_poll_us);
    tc.data_endpoints = f.data_endpoints;
    if (f.hop_trace) transport::hop_trace::start(hop_trace_capacity(f));
    auto done = std::make_shared<std::promise<measured>>();
    auto result = done->get_future();
    pinger plain(f, nullptr, done);   // --no-actors
    ping_handler plain_handler(plain);
    transport::transport_handler& handler =
        f.actors ? static_cast<transport::transport_handler&>(bridge) : plain_handler;
    auto t = transport::ucx_transport::start(tc, *secret, {transport::node_role::client, -1, 2}, handler);
    if (!t) {
      bridge.set_target(caf::actor{});
      return report(t.err());
    }
    actors::bridge_limits limits;
    if (!f.link_inline) limits.link_messages_per_turn = 0;
    if (f.actors) {
      bridge.set_target(system.spawn(pinger_actor, f, t->get(), done), {}, limits);
    } else {
      bridge.set_target(caf::actor{});
      plain.set_transport(t->get());   // before connect(): no callback comes before it
      (void)(*t)->connect("127.0.0.1", std::uint16_t(f.port));
    }
    if (result.wait_for(std::chrono::minutes(5)) != std::future_status::ready)
      return report(make_error(error_code::unavailable, "the benchmark did not finish within 5 minutes"));
    m = result.get();
    transport::hop_trace::stop();
    system.await_all_actors_done();
    const auto stats = (*t)->stats();
    tensors_direct = stats.tensors_direct;
  }
  idle.stop();
  peer.stop(2000);
  if (!m.failure.empty()) return report(make_error(error_code::unavailable, "{}", m.failure));
  nlohmann::json traces;
  if (f.hop_trace) {
    traces["this_process"] = hop_trace_json(transport::hop_trace::summary());
    std::ifstream in(peer_trace);
    traces["peer"] = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (!traces["peer"].is_object())
      return report(make_error(error_code::unavailable, "the peer left no hop trace in {}", peer_trace.string()));
  }

  const double rtt_p50 = percentile(m.rtt_us, 0.5);
  double rtt_mean = 0;
  for (double x : m.rtt_us) rtt_mean += x / double(m.rtt_us.size());
  const double our_mbps = f.actors ? double(m.tensor_bytes) / double(1 << 20) / m.tensor_seconds : 0;
  const char* tls = std::getenv("UCX_TLS");
  std::printf("dsbench transport: UCX_TLS=%s, %d round trips, %s, busy poll %d us, %d idle peers\n",
              tls ? tls : "(default)", f.round_trips,
              !f.actors ? "between transport callbacks (no actors)"
              : f.link_inline ? "actors on the progress threads" : "actors on CAF's scheduler",
              f.busy_poll_us, f.idle_peers);
  nlohmann::json j;
  j["ucx_tls"] = tls ? tls : "default";
  j["actors"] = f.actors;
  j["actors_on_progress_thread"] = f.actors && f.link_inline;
  j["busy_poll_us"] = f.busy_poll_us;
  j["round_trips"] = f.round_trips;
  j["idle_peers"] = f.idle_peers;
  j["rtt_us"] = {{"p50", rtt_p50}, {"mean", rtt_mean}};
  if (f.actors) {
    std::printf("dsrt actors: round trip p50 %.2f us, mean %.2f us (one way p50 %.2f us); %d tensors of %lld MiB "
                "(%d in flight): %.0f MiB/s (%llu of %d sent over the data endpoint)\n", rtt_p50, rtt_mean,
                rtt_p50 / 2, f.tensors, (long long)f.tensor_mb, f.window, our_mbps,
                (unsigned long long)tensors_direct, f.tensors + f.tensor_warmup);
    j["tensor_mib"] = f.tensor_mb;
    j["tensors"] = f.tensors;
    j["tensor_mib_per_s"] = our_mbps;
    j["tensors_over_data_endpoint"] = tensors_direct;
  } else {
    std::printf("dsrt transport callbacks: round trip p50 %.2f us, mean %.2f us (one way p50 %.2f us)\n", rtt_p50,
                rtt_mean, rtt_p50 / 2);
  }
  double pt_lat_us = 0;   // ucx_perftest's one way, when run
  if (f.perftest) {
    auto lat = perftest({"-t", "tag_lat", "-n", std::to_string(f.round_trips + f.warmup)}, f.port + 1, dir);
    if (!lat) return report(lat.err());
    // ucx_perftest's ping-pong latency is one way (half a round trip).
    const double pt_lat = (*lat)[1];
    j["perftest"]["tag_lat_p50_us"] = pt_lat;
    j["latency_ratio"] = rtt_p50 / 2 / pt_lat;
    if (f.actors) {
      auto bw = perftest({"-t", "tag_bw", "-s", std::to_string(f.tensor_mb << 20), "-n", std::to_string(f.tensors)},
                         f.port + 2, dir);
      if (!bw) return report(bw.err());
      const double pt_bw = (*bw)[4];
      std::printf("ucx_perftest: tag_lat p50 %.2f us one way; tag_bw %.0f MiB/s\n", pt_lat, pt_bw);
      std::printf("ratios: latency (dsrt one way p50 / perftest p50) %.2f (target <= 2); bandwidth (dsrt / perftest) "
                  "%.2f (target >= 0.8)\n", rtt_p50 / 2 / pt_lat, our_mbps / pt_bw);
      j["perftest"]["tag_bw_mib_per_s"] = pt_bw;
      j["bandwidth_ratio"] = our_mbps / pt_bw;
    } else {
      std::printf("ucx_perftest: tag_lat p50 %.2f us one way\n", pt_lat);
      std::printf("ratio: latency (dsrt one way p50 / perftest p50) %.2f\n", rtt_p50 / 2 / pt_lat);
    }
    pt_lat_us = pt_lat;
  }
  // The parts of a hop besides the wire, each timed alone (after the peers are gone); with
  // ucx_perftest's one way, the least this round trip could show.
  const hop_costs c = measure_hop_costs(f.round_trips);
  std::printf("hop parts alone (this process, warm caches): encode %.3f us, decode %.3f us, actor hop %.3f us\n",
              c.encode_us, c.decode_us, c.actor_hop_us);
  j["hop_costs_us"] = {{"encode", c.encode_us}, {"decode", c.decode_us}, {"actor_hop", c.actor_hop_us}};
  if (pt_lat_us > 0) {
    const double floor_us = pt_lat_us + c.encode_us + c.decode_us + (f.actors ? c.actor_hop_us : 0);
    std::printf("floor: ucx_perftest + %s = %.2f us one way, %.2fx ucx_perftest (dsrt: %.2fx)\n",
                f.actors ? "encode + decode + actor hop" : "encode + decode", floor_us, floor_us / pt_lat_us,
                rtt_p50 / 2 / pt_lat_us);
    j["floor_one_way_us"] = floor_us;
    j["floor_ratio"] = floor_us / pt_lat_us;
  }
  if (f.hop_trace) {
    // "handler": the pinger's or echo's code starts; what it does runs until "sending".
    print_hop_trace(fmt::format("this process, the pinger (handler -> sending: its bookkeeping, encoding the next "
                                "Cancel{})", f.actors ? "; callbacks -> handler: CAF's dispatch" : ""),
                    traces["this_process"]);
    print_hop_trace(fmt::format("the peer, the echo (handler -> sending: decoding the Cancel, encoding the reply{})",
                                f.actors ? "; callbacks -> handler: CAF's dispatch" : ""),
                    traces["peer"]);
    j["hop_trace"] = traces;
  }
  fs::remove_all(dir);
  if (!f.json_path.empty()) {
    std::ofstream out(f.json_path);
    out << j.dump(2) << '\n';
    if (!out) return report(make_error(error_code::internal, "cannot write {}", f.json_path));
  }
  return 0;
}

}  // namespace

std::function<int()> add_transport_bench(CLI::App& app) {
  auto f = std::make_shared<transport_flags>();
  auto* cmd = app.add_subcommand("transport",
                                 "actor round trips and tensor bandwidth to a peer process over UCX, beside ucx_perftest");
  cmd->add_option("--port", f->port, "the peer's port (ucx_perftest uses the next two)")->capture_default_str()
      ->check(CLI::Range(1, 65533));
  cmd->add_option("--round-trips", f->round_trips, "measured round trips")->capture_default_str()
      ->check(CLI::Range(1, 10000000));
  cmd->add_option("--warmup", f->warmup, "round trips before measuring")->capture_default_str()->check(CLI::Range(0, 1000000));
  cmd->add_option("--tensor-mb", f->tensor_mb, "MiB per tensor")->capture_default_str()->check(CLI::Range(1, 4096));
  cmd->add_option("--tensors", f->tensors, "tensors timed")->capture_default_str()->check(CLI::Range(1, 100000));
  cmd->add_option("--tensor-warmup", f->tensor_warmup, "tensors sent and acknowledged before timing")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000));
  cmd->add_option("--window", f->window, "tensors in flight")->capture_default_str()->check(CLI::Range(1, 64));
  cmd->add_flag("!--no-perftest", f->perftest, "skip ucx_perftest");
  cmd->add_flag("!--no-data-endpoint", f->data_endpoints,
                "send tensors over the connection, not over a data endpoint to the peer's worker address");
  auto* on_scheduler = cmd->add_flag("!--link-on-scheduler", f->link_inline,
                "run both actors on CAF's scheduler threads, not on the transport's progress threads (A/B)");
  cmd->add_flag("!--no-actors", f->actors,
                "round trips between the transports' callbacks on their progress threads, no actors (and no "
                "tensors): what the actors add is the difference to a run with them");
  auto* idle = cmd->add_option("--idle-peers", f->idle_peers,
                               "this many more connections to the peer, idle (heartbeats only) while measuring")
                    ->capture_default_str()
                    ->check(CLI::Range(0, 1000));
  cmd->add_option("--busy-poll-us", f->busy_poll_us,
                 "both processes' progress threads poll this long after traffic before sleeping")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000000));
  cmd->add_flag("--hop-trace", f->hop_trace,
                "both processes time the stages of each frame's way through their progress threads; prints "
                "each step's median (transport/hop_trace.h)")
      ->excludes(idle)     // the idle peers' progress threads would mark too
      ->excludes(on_scheduler);   // the actors' marks and sends would come from CAF's threads
  cmd->add_option("--json", f->json_path, "write the results as JSON");
  auto* serve = cmd->add_flag("--serve", f->serve, "(internal) be the peer process");
  serve->group("");
  cmd->add_option("--secret-file", f->secret_file, "(internal) the peer's secret")->group("");
  cmd->add_option("--hop-trace-out", f->hop_trace_out, "(internal) where the peer writes its hop trace")->group("");
  return [f] { return run(*f); };
}

}  // namespace dsrt::apps
