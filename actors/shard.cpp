#include "actors/shard.h"

#include <chrono>
#include <thread>

namespace dsrt::actors {

caf::behavior shard_actor(caf::event_based_actor*, std::shared_ptr<serving::step_executor> executor,
                          std::shared_ptr<shard_faults> faults, std::uint64_t claim) {
  return {
      [executor, faults, claim](const step_request& request) {
        step_result out;
        out.step = request.step;
        // A restarted replica's shard waits here for its killed predecessor's last step.
        const auto lease = executor->lease();
        if (!executor->claimed_by(claim)) {   // replaced while it waited: its batcher is gone
          out.failure = make_error(error_code::unavailable, "step {}: this shard was replaced", request.step);
          return out;
        }
        const auto start = std::chrono::steady_clock::now();
        if (const auto slow = faults->slow_step_ms.load(); slow > 0)
          std::this_thread::sleep_for(std::chrono::milliseconds(slow));
        if (faults->fail_steps.load()) {
          executor->skip(*request.plan);
          out.failure = make_error(error_code::internal, "step {} failed: injected fault", request.step);
        } else if (auto sampled = executor->run(*request.plan); sampled) {
          out.sampled = std::move(*sampled);
        } else {
          out.failure = sampled.err();
        }
        out.duration_us = std::chrono::duration_cast<std::chrono::microseconds>(
                              std::chrono::steady_clock::now() - start).count();
        return out;
      },
  };
}

}  // namespace dsrt::actors
