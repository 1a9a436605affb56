#pragma once
// A node's transport counters (transport_stats) as metrics in its registry, the
// dsrt_transport_* series (docs/OPERATIONS.md, "Metrics"): totals as counters, what is
// held now (data workers, sends waiting or stuck, closes pending) as gauges, each labelled
// with the node (node="N": 0 the head), so the files of a cluster's nodes can be read
// together without two series of one name and labels. The transport
// keeps its own counters on its progress thread; update() copies them in, so the series are
// as fresh as the last update (dsnode calls it before each export).
//
// Thread safety: update() may be called from any thread (it takes a mutex).
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/metrics/registry.h"
#include "transport/ucx_transport.h"

namespace dsrt::actors {

class transport_metrics {
 public:
  // Registers the series of node `node` in `registry`, which must outlive this.
  transport_metrics(metrics::registry& registry, std::int32_t node);
  ~transport_metrics();
  // Counters grow by what `now` adds to the last update's figures (a figure lower than
  // last time, from another transport, adds nothing); gauges take `now`'s values.
  void update(const transport::transport_stats& now);

 private:
  struct series;   // one figure of transport_stats and its metric (transport_metrics.cpp)
  std::mutex mu_;
  std::vector<series> series_;
  transport::transport_stats last_;
};

// A node's registry -- its actors' series (SERVING.md, "Metrics") -- and its transport's.
class node_metrics {
 public:
  explicit node_metrics(std::int32_t node) : registry_(std::make_shared<metrics::registry>()), transport_(*registry_, node) {}
  // For the node's actors (router_options / supervisor_options::metrics).
  const std::shared_ptr<metrics::registry>& registry() const { return registry_; }
  // Every series in Prometheus text, the transport's as `t` has them now.
  std::string text(const transport::ucx_transport& t) {
    transport_.update(t.stats());
    return registry_->prometheus_text();
  }

 private:
  std::shared_ptr<metrics::registry> registry_;
  transport_metrics transport_;
};

}  // namespace dsrt::actors
