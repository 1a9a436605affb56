#pragma once
// What one hop of an actor round trip costs besides the wire, each part timed alone in this
// process with warm caches (so each is a lower bound of its share in a real hop): encoding a
// frame, decoding one (from a received copy, as the transport does), and handing a frame to
// an actor the way the transport bridge does (a CAF mailbox element enqueued with the
// progress thread's execution unit, then that unit running the actor). dsbench transport
// adds them to ucx_perftest's one-way latency: the fastest an actor round trip could be.
namespace dsrt::apps {

struct hop_costs {
  double encode_us = 0;      // encode_cancel: a Cap'n Proto Cancel into a checksummed frame
  double decode_us = 0;      // the received bytes copied, decode_frame, decode_cancel
  double actor_hop_us = 0;   // mailbox element, enqueue, progress_unit::run_pending, dispatch
  double total_us() const { return encode_us + decode_us + actor_hop_us; }
};

// Each part `iterations` times after a tenth as many to warm up. REQUIRES: iterations > 0.
hop_costs measure_hop_costs(int iterations);

}  // namespace dsrt::apps
