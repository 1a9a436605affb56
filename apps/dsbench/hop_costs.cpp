#include "apps/dsbench/hop_costs.h"

#include <caf/all.hpp>

#include <chrono>
#include <cstdint>
#include <memory>

#include "actors/progress_unit.h"
#include "actors/system_config.h"
#include "actors/transport_bridge.h"
#include "runtime/error.h"
#include "transport/wire.h"

namespace dsrt::apps {
namespace {

using steady = std::chrono::steady_clock;
using transport::frame_type;

// Microseconds per call of `body` (called with the iteration's index), after a warm-up.
template <class Body>
double per_call_us(int iterations, Body&& body) {
  for (int i = 0; i < iterations / 10; ++i) body(i);
  const auto start = steady::now();
  for (int i = 0; i < iterations; ++i) body(i);
  return std::chrono::duration<double, std::micro>(steady::now() - start).count() / iterations;
}

struct sink_state {
  std::uint64_t seen = 0;
  static inline const char* name = "dsbench.hop_sink";
};

// Reads each frame's type, as a link's handler does first.
caf::behavior hop_sink(caf::stateful_actor<sink_state>* self) {
  return {[self](actors::frame_msg& m) { self->state.seen += std::uint64_t(m.frame->type()); }};
}

}  // namespace

hop_costs measure_hop_costs(int iterations) {
  DSRT_ASSERT(iterations > 0, "iterations={}", iterations);
  hop_costs out;
  std::uint64_t checksum = 0;   // keeps the work observable
  out.encode_us = per_call_us(iterations, [&](int i) {
    checksum += transport::encode_cancel(frame_type::cancel, std::uint64_t(i)).size();
  });

  const transport::frame_bytes received = transport::encode_cancel(frame_type::cancel, 42);
  const transport::frame_limits limits;
  out.decode_us = per_call_us(iterations, [&](int) {
    transport::frame_bytes copy(received.begin(), received.end());   // as the transport copies an eager message
    auto frame = transport::decode_frame(std::move(copy), limits);
    DSRT_ASSERT(frame.ok(), "{}", frame.err().to_string());
    checksum += transport::decode_cancel(*frame).value();
  });

  // As the bridge delivers a frame to the link on the progress thread (transport_bridge.h).
  auto config = actors::make_system_config(1);
  caf::actor_system system(*config);
  auto sink = system.spawn(hop_sink);
  {
    auto frame = std::make_shared<transport::decoded_frame>(transport::decode_frame(received, limits).value());
    actors::progress_unit unit;
    unit.set_link(sink, 64);
    out.actor_hop_us = per_call_us(iterations, [&](int) {
      sink->enqueue(caf::make_mailbox_element(nullptr, caf::make_message_id(), {}, actors::frame_msg{1, frame}),
                    unit.context());
      unit.run_pending();
    });
  }
  caf::anon_send_exit(sink, caf::exit_reason::user_shutdown);
  DSRT_ASSERT(checksum > 0, "nothing measured");
  return out;
}

}  // namespace dsrt::apps
