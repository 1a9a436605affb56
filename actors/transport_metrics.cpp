#include "actors/transport_metrics.h"

#include <array>

namespace dsrt::actors {
namespace {

using stats = transport::transport_stats;

struct figure {
  const char* name;
  const char* help;
  std::uint64_t stats::*field;
  bool total;   // a counter (else a gauge)
};

// Every field of transport_stats (the static_assert below keeps the list whole).
constexpr std::array<figure, 18> figures{{
    {"dsrt_transport_frames_sent_total", "frames handed to UCX", &stats::frames_sent, true},
    {"dsrt_transport_frames_received_total", "frames and tensors received", &stats::frames_received, true},
    {"dsrt_transport_sent_bytes_total", "bytes handed to UCX (frames and tensors)", &stats::bytes_sent, true},
    {"dsrt_transport_received_bytes_total", "bytes received (frames and tensors)", &stats::bytes_received, true},
    {"dsrt_transport_peers_up_total", "peers that proved the cluster secret", &stats::peers_up, true},
    {"dsrt_transport_peers_rejected_total", "peers refused: no proof, a wrong one, or past connections_max",
     &stats::peers_rejected, true},
    {"dsrt_transport_frames_dropped_total", "frames for a peer no longer up, or with a token naming no connection",
     &stats::frames_dropped, true},
    {"dsrt_transport_data_endpoints_total", "connections that opened a shared-memory data endpoint",
     &stats::data_endpoints, true},
    {"dsrt_transport_tensors_direct_total", "tensors sent over a data endpoint", &stats::tensors_direct, true},
    {"dsrt_transport_frames_direct_total", "frames sent over a data endpoint", &stats::frames_direct, true},
    {"dsrt_transport_tensors_waited_total", "tensors that waited for the peer's DataEndpoint", &stats::tensors_waited,
     true},
    {"dsrt_transport_closes_pending", "endpoint closes not finished", &stats::closes_pending, false},
    {"dsrt_transport_sleeps_total", "times the progress thread slept", &stats::sleeps, true},
    {"dsrt_transport_stalls_total", "times this process did not run for longer than two heartbeat intervals",
     &stats::stalls, true},
    {"dsrt_transport_data_workers", "UCX workers holding data endpoints", &stats::data_workers, false},
    {"dsrt_transport_data_workers_destroyed_total", "data workers destroyed with the endpoints kept in them",
     &stats::data_workers_destroyed, true},
    {"dsrt_transport_data_sends_waiting", "sends waiting in connections for data_sends_posted_max",
     &stats::data_sends_waiting, false},
    {"dsrt_transport_sends_stuck", "sends of gone connections UCX has not finished (peers not reading, or gone)",
     &stats::sends_stuck, false},
}};
static_assert(sizeof(stats) == figures.size() * sizeof(std::uint64_t), "a transport_stats field without a metric");

}  // namespace

struct transport_metrics::series {
  const figure* what;
  metrics::counter* total = nullptr;
  metrics::gauge* now = nullptr;
};

transport_metrics::transport_metrics(metrics::registry& registry, std::int32_t node) {
  const metrics::label_set labels = {{"node", std::to_string(node)}};
  for (const auto& f : figures) {
    series s{&f};
    if (f.total)
      s.total = &registry.counter(f.name, f.help, labels);
    else
      s.now = &registry.gauge(f.name, f.help, labels);
    series_.push_back(s);
  }
}

transport_metrics::~transport_metrics() = default;

void transport_metrics::update(const transport::transport_stats& now) {
  std::lock_guard lock(mu_);
  for (auto& s : series_) {
    const std::uint64_t value = now.*(s.what->field), before = last_.*(s.what->field);
    if (s.total && value > before) s.total->inc(value - before);
    if (s.now) s.now->set(double(value));
  }
  last_ = now;
}

}  // namespace dsrt::actors
